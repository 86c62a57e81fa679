-- The relay's hot query reads only pending rows; rows dispatched to a Redis that is still
-- running are looked at only after a Redis restart.
CREATE INDEX action_outbox_pending_idx ON action_outbox (created_at, job_id) WHERE status = 'pending';
