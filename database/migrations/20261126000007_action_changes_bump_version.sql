-- Processors reload a trigger when its version changes. A change to one of its actions is a
-- change to the trigger: bump the version in the same transaction, so that no processor can
-- keep a trigger loaded without the action that was added to it.
CREATE FUNCTION trigger_actions_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE triggers SET version = version + 1, updated_at = now()
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.trigger_id ELSE NEW.trigger_id END;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trigger_actions_bump_version
    AFTER INSERT OR UPDATE OR DELETE ON trigger_actions
    FOR EACH ROW EXECUTE FUNCTION trigger_actions_bump_version();
