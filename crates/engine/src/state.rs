//! Aggregate states and cooldowns held in memory while events are evaluated. The caller
//! loads the rows of the keys it will touch ([`StateCache::missing`], [`StateCache::fill`]),
//! and takes back what changed as rows to write ([`StateCache::take_dirty`]); nothing here
//! reads or writes a store. After a failed write the caller clears the caches: the store
//! stays the only truth.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use shared::store::aggregate_state::{StateRow, StateRows};
use shared::store::cooldowns::{CooldownRow, CooldownRows};
use shared::trigger::AggregateKind;

use crate::aggregates::AggregateState;

pub use shared::store::aggregate_state::StateKey;
pub use shared::store::cooldowns::CooldownKey;

#[derive(Debug, Clone)]
pub struct CachedState {
    pub state: AggregateState,
    pub trigger_version: i64,
    pub last_event_id: i64,
    pub dirty: bool,
}

#[derive(Default)]
pub struct StateCache {
    /// `None`: known to be absent from the store.
    entries: HashMap<StateKey, Option<CachedState>>,
}

impl StateCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The keys of `keys` not cached yet: those to load before evaluating.
    pub fn missing(&self, keys: HashSet<StateKey>) -> Vec<StateKey> {
        keys.into_iter().filter(|k| !self.entries.contains_key(k)).collect()
    }

    /// Caches the stored `rows` of the `loaded` keys; a key without a row is known absent.
    /// A state that does not read starts over rather than stopping every trigger.
    pub fn fill(&mut self, loaded: Vec<StateKey>, rows: Vec<StateRow>) {
        for key in loaded {
            self.entries.insert(key, None);
        }
        for row in rows {
            match serde_json::from_value::<AggregateState>(row.state) {
                Ok(state) => {
                    let cached = CachedState {
                        state,
                        trigger_version: row.trigger_version,
                        last_event_id: row.last_event_id,
                        dirty: false,
                    };
                    self.entries.insert((row.trigger_id, row.aggregate, row.key), Some(cached));
                }
                Err(err) => {
                    tracing::error!(trigger.id = %row.trigger_id, aggregate = %row.aggregate, error = %err, "aggregate state unreadable; reset");
                }
            }
        }
    }

    /// Caches `state` as the state of `key`.
    pub fn put(&mut self, key: StateKey, state: CachedState) {
        self.entries.insert(key, Some(state));
    }

    /// The cached state of `key`, created empty when absent.
    pub fn entry(&mut self, key: StateKey, kind: &AggregateKind, trigger_version: i64) -> &mut CachedState {
        let slot = self.entries.entry(key).or_insert(None);
        slot.get_or_insert_with(|| CachedState {
            state: AggregateState::new(kind),
            trigger_version,
            last_event_id: 0,
            dirty: false,
        })
    }

    /// Takes every changed state out for writing, and marks it clean.
    pub fn take_dirty(&mut self) -> StateRows {
        let mut rows = StateRows::default();
        for (key, entry) in self.entries.iter_mut() {
            let Some(entry) = entry.as_mut().filter(|e| e.dirty) else { continue };
            rows.push(key.clone(), entry.trigger_version, entry.state.to_json(), entry.last_event_id);
            entry.dirty = false;
        }
        rows
    }
}

#[derive(Debug, Clone)]
pub struct Cooldown {
    pub last_fired_at: DateTime<Utc>,
    pub last_event_id: i64,
    pub suppressed: i64,
    pub dirty: bool,
}

#[derive(Default)]
pub struct CooldownCache {
    entries: HashMap<CooldownKey, Option<Cooldown>>,
}

impl CooldownCache {
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys of `keys` not cached yet.
    pub fn missing(&self, keys: HashSet<CooldownKey>) -> Vec<CooldownKey> {
        keys.into_iter().filter(|k| !self.entries.contains_key(k)).collect()
    }

    /// Caches the stored `rows` of the `loaded` keys; a key without a row is known absent.
    pub fn fill(&mut self, loaded: Vec<CooldownKey>, rows: Vec<CooldownRow>) {
        for key in loaded {
            self.entries.insert(key, None);
        }
        for row in rows {
            let cooldown = Cooldown {
                last_fired_at: row.last_fired_at,
                last_event_id: row.last_event_id,
                suppressed: row.suppressed_count,
                dirty: false,
            };
            self.entries.insert((row.trigger_id, row.agent_key), Some(cooldown));
        }
    }

    /// Decides a would-be firing at block time `at`: `true` when it may fire (and records it),
    /// `false` when the cooldown suppresses it (and counts it).
    pub fn admit(&mut self, key: CooldownKey, cooldown_secs: u64, at: DateTime<Utc>, event_id: i64) -> bool {
        let slot = self.entries.entry(key).or_insert(None);
        if let Some(cooldown) = slot.as_mut() {
            let until = cooldown.last_fired_at
                + chrono::Duration::seconds(i64::try_from(cooldown_secs).unwrap_or(i64::MAX / 2));
            if at < until {
                cooldown.suppressed += 1;
                cooldown.dirty = true;
                return false;
            }
        }
        let suppressed = slot.as_ref().map_or(0, |c| c.suppressed);
        *slot = Some(Cooldown { last_fired_at: at, last_event_id: event_id, suppressed, dirty: true });
        true
    }

    /// Takes every changed cooldown out for writing, and marks it clean.
    pub fn take_dirty(&mut self) -> CooldownRows {
        let mut rows = CooldownRows::default();
        for (key, entry) in self.entries.iter_mut() {
            let Some(entry) = entry.as_mut().filter(|e| e.dirty) else { continue };
            rows.push(key.clone(), entry.last_fired_at, entry.last_event_id, entry.suppressed);
            entry.dirty = false;
        }
        rows
    }
}
