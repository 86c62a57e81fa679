-- Events retention (EVENTS_RETENTION_DAYS) deletes only events that no outbox row references,
-- and PostgreSQL checks the outbox's foreign key for every event it deletes: without this
-- index each of those checks would read the whole outbox.
CREATE INDEX action_outbox_event_idx ON action_outbox (event_id);
