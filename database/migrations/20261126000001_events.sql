-- The event store: one row per registry log, normalized (SPEC 1.2).
--
-- Numbers that may exceed 64 bits (agent ids are uint256, feedback values int128) are NUMERIC.
-- Addresses and hashes are lower-case 0x hex text. `args` keeps the decoded log arguments as
-- they came from the chain, for audit and for fields a later version may add.

CREATE TABLE events (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id          BIGINT      NOT NULL CHECK (chain_id > 0),
    registry          TEXT        NOT NULL CHECK (registry IN ('identity', 'reputation', 'validation')),
    event_type        TEXT        NOT NULL CHECK (event_type IN (
                          'Registered', 'MetadataSet', 'URIUpdated', 'Transfer',
                          'NewFeedback', 'FeedbackRevoked', 'ResponseAppended',
                          'ValidationRequest', 'ValidationResponse')),
    contract_address  TEXT        NOT NULL,
    block_number      BIGINT      NOT NULL CHECK (block_number >= 0),
    block_hash        TEXT        NOT NULL,
    block_timestamp   TIMESTAMPTZ NOT NULL,
    tx_hash           TEXT        NOT NULL,
    log_index         INTEGER     NOT NULL CHECK (log_index >= 0),
    removed           BOOLEAN     NOT NULL DEFAULT false,
    agent_id          NUMERIC(78, 0) NOT NULL CHECK (agent_id >= 0),

    -- identity registry
    owner             TEXT,
    agent_uri         TEXT,
    updated_by        TEXT,
    metadata_key      TEXT,
    metadata_value    TEXT,
    from_address      TEXT,
    to_address        TEXT,

    -- reputation registry
    client_address    TEXT,
    feedback_index    NUMERIC(20, 0),
    value             NUMERIC,
    value_raw         NUMERIC(39, 0),
    value_decimals    SMALLINT CHECK (value_decimals BETWEEN 0 AND 18),
    tag1              TEXT,
    tag1_hash         TEXT,
    tag2              TEXT,
    endpoint          TEXT,
    feedback_uri      TEXT,
    feedback_hash     TEXT,
    responder         TEXT,
    response_uri      TEXT,
    response_hash     TEXT,

    -- validation registry
    validator_address TEXT,
    request_uri       TEXT,
    request_hash      TEXT,
    response          SMALLINT CHECK (response BETWEEN 0 AND 255),
    tag               TEXT,

    args              JSONB       NOT NULL DEFAULT '{}'::jsonb,

    -- The id of the inserting transaction. Readers that follow the table in commit-safe order
    -- only take rows whose transaction is older than every transaction still running
    -- (pg_snapshot_xmin), so a row whose id was drawn early but committed late is not skipped.
    tx_xid            XID8        NOT NULL DEFAULT pg_current_xact_id(),
    inserted_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT events_log_unique UNIQUE (chain_id, block_hash, log_index)
);

-- The processor's cursor walks (tx_xid, id).
CREATE INDEX events_cursor_idx ON events (tx_xid, id);
-- API filters; every list is ordered by id (newest first) and paginated by id.
CREATE INDEX events_agent_idx ON events (agent_id, id);
CREATE INDEX events_chain_block_idx ON events (chain_id, block_number);
CREATE INDEX events_type_idx ON events (registry, event_type, id);
CREATE INDEX events_time_idx ON events (block_timestamp);
-- Warming aggregates reads an agent's history of one event type in block order.
CREATE INDEX events_history_idx ON events (chain_id, event_type, agent_id, block_timestamp);

-- Wake listeners once per inserting transaction. NOTIFY payloads that are identical within a
-- transaction collapse into one notification, so a constant payload gives exactly one per
-- transaction however many statements insert; statements that insert nothing (all conflicts)
-- send none.
CREATE FUNCTION events_notify_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted_rows) THEN
        PERFORM pg_notify('new_event', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_new
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_new();

-- Reorgs flip `removed`; the processor must hear about that as well. (A transition table
-- cannot go with a column list, so this one wakes listeners unconditionally; reorgs are rare.)
CREATE FUNCTION events_notify_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('new_event', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_removed
    AFTER UPDATE OF removed ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_removed();
