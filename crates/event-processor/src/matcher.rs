//! Finds the triggers an event can concern without looking at the others: triggers are
//! bucketed by (chain, event type, agent), each part either a value their scope names or
//! "any", so an event is looked up under eight keys whatever the number of triggers.

use std::collections::HashMap;
use std::sync::Arc;

use shared::domain::{AgentId, ChainId, EventType, StoredEvent};

use crate::triggers::LoadedTrigger;

type Key = (Option<ChainId>, Option<EventType>, Option<AgentId>);

#[derive(Default)]
pub struct TriggerIndex {
    buckets: HashMap<Key, Vec<Arc<LoadedTrigger>>>,
}

fn or_any<T: Copy>(values: &[T]) -> Vec<Option<T>> {
    if values.is_empty() { vec![None] } else { values.iter().copied().map(Some).collect() }
}

impl TriggerIndex {
    pub fn build<'a>(triggers: impl IntoIterator<Item = &'a Arc<LoadedTrigger>>) -> Self {
        let mut buckets: HashMap<Key, Vec<Arc<LoadedTrigger>>> = HashMap::new();
        for trigger in triggers {
            let scope = &trigger.rule.scope;
            // A registry without event types stands for its event types.
            let types = if scope.event_types.is_empty() && scope.registry.is_some() {
                scope.event_types_in_scope()
            } else {
                scope.event_types.clone()
            };
            for chain in or_any(&scope.chain_ids) {
                for event_type in or_any(&types) {
                    for agent in or_any(&scope.agent_ids) {
                        buckets.entry((chain, event_type, agent)).or_default().push(trigger.clone());
                    }
                }
            }
        }
        // A stable order, so that the same events produce outbox rows in the same order.
        for bucket in buckets.values_mut() {
            bucket.sort_by_key(|t| t.id);
        }
        Self { buckets }
    }

    /// The triggers whose scope may match `event`: each at most once, since a trigger sits
    /// in exactly one of the eight buckets an event is looked up in.
    pub fn candidates<'a>(&'a self, event: &StoredEvent) -> impl Iterator<Item = &'a Arc<LoadedTrigger>> + 'a {
        let e = &event.event;
        let (chain, event_type, agent) = (e.log.chain_id, e.event_type(), e.agent_id);
        let mut keys = Vec::with_capacity(8);
        for c in [Some(chain), None] {
            for t in [Some(event_type), None] {
                for a in [Some(agent), None] {
                    keys.push((c, t, a));
                }
            }
        }
        keys.into_iter().filter_map(|key| self.buckets.get(&key)).flatten()
    }
}
