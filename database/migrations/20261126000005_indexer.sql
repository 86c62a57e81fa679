-- The indexer's progress per chain, and the recent block hashes it checks for reorgs.

CREATE TABLE indexer_checkpoints (
    chain_id        BIGINT      PRIMARY KEY CHECK (chain_id > 0),
    last_block      BIGINT      NOT NULL CHECK (last_block >= -1),
    last_block_hash TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE indexer_blocks (
    chain_id     BIGINT      NOT NULL,
    block_number BIGINT      NOT NULL,
    block_hash   TEXT        NOT NULL,
    parent_hash  TEXT        NOT NULL,
    block_time   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);
