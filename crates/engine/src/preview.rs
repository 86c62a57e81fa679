//! A dry run: what a trigger would make of one event, from the current state, changing
//! nothing. The API's `POST /triggers/{id}/test` shows it.

use std::collections::HashSet;

use serde::Serialize;
use shared::domain::StoredEvent;

use crate::evaluate::{Aggregates, Feeding, Verdict, agent_key, assess, shown};
use crate::state::{CooldownCache, CooldownKey, StateCache, StateKey};
use crate::trigger::LoadedTrigger;

/// Why a trigger would or would not fire for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The event was dropped by a reorg: it neither feeds nor fires.
    Removed,
    /// The event is outside the trigger's scope.
    OutOfScope,
    /// In scope, but the condition does not hold.
    NoMatch,
    /// The condition holds, but the event is older than the trigger (or its last enabling).
    BeforeHistory,
    /// The condition holds, but the trigger fired for this agent too recently.
    CoolingDown,
    Fires,
}

impl From<Verdict> for Outcome {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::NoMatch => Outcome::NoMatch,
            Verdict::BeforeHistory => Outcome::BeforeHistory,
            Verdict::CoolingDown => Outcome::CoolingDown,
            Verdict::Fires => Outcome::Fires,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub outcome: Outcome,
    /// The aggregates as the condition would see them: current state, updated by this event
    /// when it feeds them (and a stored event the state has already seen is not counted twice).
    pub aggregates: Aggregates,
}

impl Preview {
    pub fn fires(&self) -> bool {
        self.outcome == Outcome::Fires
    }
}

/// The state and cooldown keys a preview of `event` reads: load them into the caches given
/// to [`preview`].
pub fn keys(trigger: &LoadedTrigger, event: &StoredEvent) -> (HashSet<StateKey>, HashSet<CooldownKey>) {
    let states = trigger.rule.aggregates.iter().map(|a| (trigger.id, a.id.clone(), a.per.key(event))).collect();
    let cooldowns =
        if trigger.cooldown_secs > 0 { HashSet::from([(trigger.id, agent_key(event))]) } else { HashSet::new() };
    (states, cooldowns)
}

/// Evaluates `event` against `trigger` on `states` and `cooldowns`, holding its current state
/// for the [`keys`] of the event (the caller's copies: they change as a live evaluation
/// would change them, and are then dropped).
pub fn preview(
    trigger: &LoadedTrigger,
    event: &StoredEvent,
    states: &mut StateCache,
    cooldowns: &mut CooldownCache,
    max_window_entries: usize,
) -> Preview {
    let early = if event.removed {
        Some(Outcome::Removed)
    } else if !trigger.rule.scope.matches(event) {
        Some(Outcome::OutOfScope)
    } else {
        None
    };
    if let Some(outcome) = early {
        // Shown as they stand: this event would not touch them.
        let at = event.event.log.block_timestamp.timestamp();
        let values: Vec<_> = trigger
            .rule
            .aggregates
            .iter()
            .map(|aggregate| {
                let key = (trigger.id, aggregate.id.clone(), aggregate.per.key(event));
                states.entry(key, &aggregate.kind, trigger.version).state.value(aggregate, at)
            })
            .collect();
        return Preview { outcome, aggregates: shown(trigger, &values) };
    }
    let (values, verdict) = assess(event, trigger, states, cooldowns, max_window_entries, Feeding::UnlessSeen);
    Preview { outcome: verdict.into(), aggregates: shown(trigger, &values) }
}
