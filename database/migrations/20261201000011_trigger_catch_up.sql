-- A trigger whose aggregates are warmed in the background stays out of live processing until
-- it has caught up with the processor. This row holds the position in the event store up to
-- which its aggregate states and cooldowns are current; catching up moves it forward in the
-- same transaction as the states, cooldowns and outbox rows it writes, and the trigger joins
-- live processing when the row is deleted. After a restart, catching up resumes from here.

CREATE TABLE trigger_catch_up (
    trigger_id UUID        PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE,
    last_xid   XID8        NOT NULL,
    last_id    BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
