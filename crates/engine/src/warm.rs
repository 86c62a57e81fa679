//! Warming: replaying the stored history of a trigger's scope through its aggregates, so an
//! EMA over the last ten feedbacks is meaningful as soon as the trigger is saved. The caller
//! reads the history (the latest events of each key, in store order) and writes the states.

use std::collections::HashMap;

use shared::domain::StoredEvent;
use shared::store::aggregate_state::StateRows;
use shared::trigger::Aggregate;

use crate::aggregates::AggregateState;
use crate::state::{CachedState, StateCache};
use crate::trigger::LoadedTrigger;

/// How many of the latest events of each key warm an aggregate, unless configured.
pub const DEFAULT_EVENTS_PER_KEY: u32 = 1_000;
/// About how many events one page of history holds (per chain an agent id appears on): a
/// page takes as many agents as fit at the per-key count each, and at least one.
pub const PAGE_EVENTS: u32 = 10_000;
/// How many events one trigger's warming replays at most, unless configured.
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// The states that replaying history makes, by (aggregate id, key), with the last event
/// that fed each, as live processing records it.
#[derive(Default)]
pub struct Replay {
    states: HashMap<(String, String), (AggregateState, i64)>,
    /// Events replayed so far.
    pub events: usize,
}

impl Replay {
    /// Feeds one event of the history (in store order) to the `aggregates` it feeds.
    pub fn feed(&mut self, aggregates: &[&Aggregate], event: &StoredEvent, max_window_entries: usize) {
        let at = event.event.log.block_timestamp.timestamp();
        for aggregate in aggregates.iter().filter(|a| a.feeds(event)) {
            let sample = aggregate.kind.field().and_then(|f| f.read_number(event));
            let (state, last_event) = self
                .states
                .entry((aggregate.id.clone(), aggregate.per.key(event)))
                .or_insert_with(|| (AggregateState::new(&aggregate.kind), 0));
            state.update(&aggregate.kind, sample, at, max_window_entries);
            *last_event = event.id.0;
        }
        self.events += 1;
    }

    /// The states made so far, as rows to write for `trigger`; the replay starts over empty
    /// (its count of events goes on).
    pub fn take_rows(&mut self, trigger: &LoadedTrigger) -> StateRows {
        let mut rows = StateRows::default();
        for ((aggregate, key), (state, last_event)) in self.states.drain() {
            rows.push((trigger.id, aggregate, key), trigger.version, state.to_json(), last_event);
        }
        rows
    }

    /// The states made, put in `cache` as the states `trigger` starts from.
    pub fn into_cache(self, trigger: &LoadedTrigger, cache: &mut StateCache) {
        for ((aggregate, key), (state, last_event_id)) in self.states {
            let cached = CachedState { state, trigger_version: trigger.version, last_event_id, dirty: false };
            cache.put((trigger.id, aggregate, key), cached);
        }
    }
}
