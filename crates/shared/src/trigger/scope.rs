use crate::domain::{AgentId, ChainId, EventType, Registry, StoredEvent};

/// Which events reach a trigger at all. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub chain_ids: Vec<ChainId>,
    pub registry: Option<Registry>,
    pub event_types: Vec<EventType>,
    pub agent_ids: Vec<AgentId>,
}

impl Scope {
    /// The event types the trigger can see: the listed ones, else the registry's, else all.
    pub fn event_types_in_scope(&self) -> Vec<EventType> {
        if !self.event_types.is_empty() {
            self.event_types.clone()
        } else if let Some(registry) = self.registry {
            registry.event_types().collect()
        } else {
            EventType::ALL.to_vec()
        }
    }

    pub fn matches(&self, event: &StoredEvent) -> bool {
        let e = &event.event;
        (self.chain_ids.is_empty() || self.chain_ids.contains(&e.log.chain_id))
            && self.registry.is_none_or(|r| r == e.registry())
            && (self.event_types.is_empty() || self.event_types.contains(&e.event_type()))
            && (self.agent_ids.is_empty() || self.agent_ids.contains(&e.agent_id))
    }

    /// The scope as JSON, in the shape the API takes.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        if !self.chain_ids.is_empty() {
            map.insert("chain_ids".into(), serde_json::json!(self.chain_ids));
        }
        if let Some(registry) = self.registry {
            map.insert("registry".into(), serde_json::json!(registry));
        }
        if !self.event_types.is_empty() {
            map.insert("event_types".into(), serde_json::json!(self.event_types));
        }
        if !self.agent_ids.is_empty() {
            map.insert("agent_ids".into(), serde_json::json!(self.agent_ids));
        }
        serde_json::Value::Object(map)
    }
}
