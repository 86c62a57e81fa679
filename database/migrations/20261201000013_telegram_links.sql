-- The server's shared Telegram bot sends only to chats their users linked (SPEC 3): a user
-- asks the API for a one-time code and sends `/start <code>` to the bot in the chat; the
-- workers read the bot's updates and record the link.

-- Codes issued and not yet used: only a SHA-256 digest of each is kept.
CREATE TABLE telegram_link_codes (
    code_hash  BYTEA       PRIMARY KEY,
    user_id    UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX telegram_link_codes_user_idx ON telegram_link_codes (user_id, created_at);

-- Chats linked to a user. `username` is the chat's public @name, when it has one, so an
-- action may name a channel by it.
CREATE TABLE telegram_chats (
    user_id   UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id   BIGINT      NOT NULL,
    username  TEXT,
    title     TEXT        NOT NULL DEFAULT '',
    linked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, chat_id)
);
CREATE INDEX telegram_chats_username_idx ON telegram_chats (user_id, lower(username));

-- How far the shared bot's updates were read, per bot (the numeric id its token starts with).
CREATE TABLE telegram_update_offsets (
    bot_id      BIGINT      PRIMARY KEY,
    next_offset BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
