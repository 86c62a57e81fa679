-- The event processor's durable state (DESIGN "Data flow" 3). One transaction per batch
-- writes aggregate state, cooldowns, outbox rows and the cursor together.

-- Where a processor partition has read up to, in (tx_xid, id) order.
CREATE TABLE processor_cursor (
    partition   INTEGER     PRIMARY KEY CHECK (partition >= 0),
    last_xid    XID8        NOT NULL DEFAULT '0'::xid8,
    last_id     BIGINT      NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per trigger x aggregate x key. `aggregate` names the aggregate within the trigger's
-- condition (its `as`, or its position); `key` is the agent, the agent and client, or '' for
-- per-trigger state. `trigger_version` lets a changed condition start from fresh state.
CREATE TABLE aggregate_state (
    trigger_id      UUID        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    aggregate       TEXT        NOT NULL,
    key             TEXT        NOT NULL,
    trigger_version BIGINT      NOT NULL,
    state           JSONB       NOT NULL,
    last_event_id   BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (trigger_id, aggregate, key)
);

-- Cooldown per (trigger, agent), on block time; suppressed fires are counted.
CREATE TABLE cooldowns (
    trigger_id       UUID        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    agent_key        TEXT        NOT NULL,
    last_fired_at    TIMESTAMPTZ NOT NULL,
    last_event_id    BIGINT      NOT NULL,
    suppressed_count BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (trigger_id, agent_key)
);

-- One row per job (a fired action). The job id is derived from (event, trigger, action), so
-- a firing decided twice collides here instead of producing a second job. A row is finished
-- only when a worker records the job's final outcome; until then the relay may push it again
-- (after a Redis restart, say).
CREATE TABLE action_outbox (
    job_id          UUID        PRIMARY KEY,
    trigger_id      UUID        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    action_id       UUID        NOT NULL REFERENCES trigger_actions (id) ON DELETE CASCADE,
    event_id        BIGINT      NOT NULL REFERENCES events (id),
    kind            TEXT        NOT NULL CHECK (kind IN ('telegram', 'webhook', 'mcp')),
    payload         JSONB       NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'dispatched', 'delivered', 'failed', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    dispatched_at   TIMESTAMPTZ,
    dispatch_run_id TEXT,
    finished_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX action_outbox_unfinished_idx ON action_outbox (created_at)
    WHERE status IN ('pending', 'dispatched');
CREATE INDEX action_outbox_trigger_idx ON action_outbox (trigger_id, created_at);
CREATE INDEX action_outbox_dead_idx ON action_outbox (status, updated_at)
    WHERE status IN ('dead', 'failed');

-- Every delivery attempt (SPEC 3).
CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           UUID        NOT NULL,
    trigger_id       UUID        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    action_id        UUID        NOT NULL,
    event_id         BIGINT      NOT NULL,
    kind             TEXT        NOT NULL CHECK (kind IN ('telegram', 'webhook', 'mcp')),
    attempt          INTEGER     NOT NULL CHECK (attempt >= 1),
    outcome          TEXT        NOT NULL
                     CHECK (outcome IN ('success', 'retry', 'failed', 'rejected', 'dead')),
    status_code      INTEGER,
    error            TEXT,
    latency_ms       INTEGER,
    response_excerpt TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_trigger_idx ON deliveries (trigger_id, id);
CREATE INDEX deliveries_job_idx ON deliveries (job_id, attempt);
-- At most one successful attempt is ever recorded for a job.
CREATE UNIQUE INDEX deliveries_one_success ON deliveries (job_id) WHERE outcome = 'success';
