-- Logs of the registry addresses that could not become events: they did not decode under a
-- known topic0, or the event store refused the decoded row. Each is kept with its raw topics
-- and data and the reason, so an operator can see it and a later version can index it; the
-- range around it is committed without it and the chain moves on.

CREATE TABLE quarantined_logs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id         BIGINT      NOT NULL,
    contract_address TEXT        NOT NULL,
    block_number     BIGINT      NOT NULL,
    block_hash       TEXT        NOT NULL,
    tx_hash          TEXT,
    log_index        BIGINT      NOT NULL,
    topics           TEXT[]      NOT NULL,
    data             BYTEA       NOT NULL,
    -- 'decode' (the log does not fit its topic's layout) or 'store' (the row was refused).
    stage            TEXT        NOT NULL CHECK (stage IN ('decode', 'store')),
    reason           TEXT        NOT NULL,
    quarantined_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT quarantined_logs_unique UNIQUE (chain_id, block_hash, log_index)
);
CREATE INDEX quarantined_logs_chain_idx ON quarantined_logs (chain_id, block_number);
