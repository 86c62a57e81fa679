-- Secrets at rest are sealed (SECRETS_KEY): `sealed_secrets` holds an action's write-only
-- secrets encrypted under the key named by `secrets_key_id`, bound to the action's id.
-- Rows written before sealing keep their secrets in `plain_secrets` until the gateway seals
-- them at its next start; nothing writes that column any more.
ALTER TABLE trigger_actions RENAME COLUMN secrets TO plain_secrets;
ALTER TABLE trigger_actions ALTER COLUMN plain_secrets DROP NOT NULL;
ALTER TABLE trigger_actions ALTER COLUMN plain_secrets DROP DEFAULT;
ALTER TABLE trigger_actions ADD COLUMN sealed_secrets BYTEA;
ALTER TABLE trigger_actions ADD COLUMN secrets_key_id TEXT;
ALTER TABLE trigger_actions ADD CONSTRAINT trigger_actions_secrets_sealed_or_plain
    CHECK ((sealed_secrets IS NULL) = (secrets_key_id IS NULL)
           AND (sealed_secrets IS NOT NULL OR plain_secrets IS NOT NULL));
-- The rows a re-seal still has to rewrite.
CREATE INDEX trigger_actions_key_idx ON trigger_actions (secrets_key_id);
