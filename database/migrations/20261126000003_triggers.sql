-- Triggers and their actions (SPEC 2 and 3).
--
-- `scope` and `condition` hold the JSON the user saved, already validated by the trigger
-- parser. `version` grows with every change; processors compare it to what they hold.
-- `fires_from` is the block time from which the trigger may fire: its creation, or its last
-- enabling.

CREATE TABLE triggers (
    id            UUID        PRIMARY KEY,
    user_id       UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT        NOT NULL,
    description   TEXT,
    enabled       BOOLEAN     NOT NULL DEFAULT true,
    scope         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    condition     JSONB,
    cooldown_secs BIGINT      NOT NULL DEFAULT 0 CHECK (cooldown_secs >= 0),
    version       BIGINT      NOT NULL DEFAULT 1,
    fires_from    TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX triggers_user_idx ON triggers (user_id, created_at, id);
CREATE INDEX triggers_enabled_idx ON triggers (enabled) WHERE enabled;

-- One row per action. `config` is what the API returns; `secrets` (webhook signing secret,
-- bot token, MCP headers) is write-only and never leaves the server except to the target.
CREATE TABLE trigger_actions (
    id         UUID        PRIMARY KEY,
    trigger_id UUID        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    position   INTEGER     NOT NULL CHECK (position >= 0),
    kind       TEXT        NOT NULL CHECK (kind IN ('telegram', 'webhook', 'mcp')),
    config     JSONB       NOT NULL,
    secrets    JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (trigger_id, position)
);

-- Circuit breaker per action (SPEC 3). Workers write it; the API reads and resets it.
CREATE TABLE action_breakers (
    action_id            UUID        PRIMARY KEY REFERENCES trigger_actions (id) ON DELETE CASCADE,
    state                TEXT        NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures INTEGER     NOT NULL DEFAULT 0,
    trips                INTEGER     NOT NULL DEFAULT 0,
    opened_at            TIMESTAMPTZ,
    open_until           TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tell running processors that a trigger changed; they reload by version.
CREATE FUNCTION triggers_notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('trigger_changed', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER triggers_notify_changed
    AFTER INSERT OR UPDATE OR DELETE ON triggers
    FOR EACH STATEMENT EXECUTE FUNCTION triggers_notify_changed();
CREATE TRIGGER trigger_actions_notify_changed
    AFTER INSERT OR UPDATE OR DELETE ON trigger_actions
    FOR EACH STATEMENT EXECUTE FUNCTION triggers_notify_changed();
