-- The API shows each action's latest delivery next to its breaker.
CREATE INDEX deliveries_action_idx ON deliveries (action_id, id);
