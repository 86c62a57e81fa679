//! One event against the triggers that may concern it: update their aggregates, evaluate
//! their conditions, apply history and cooldown rules, and produce the jobs of the actions
//! that fire.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use shared::domain::{Decimal, JobId, StoredEvent};
use shared::job::{Job, JobTrigger};
use shared::trigger::StoredAction;

use crate::index::TriggerIndex;
use crate::state::{CooldownCache, CooldownKey, StateCache, StateKey};
use crate::trigger::LoadedTrigger;

/// What evaluating a batch decided.
#[derive(Debug, Default)]
pub struct Decisions {
    /// One job per action of each firing, in the order of events and then of trigger ids.
    pub jobs: Vec<Job>,
    pub fires: u64,
    pub suppressed: u64,
}

/// A batch prepared for evaluation: for each event, the triggers whose scope it matches,
/// and the state rows and cooldowns evaluating it will touch (to load them in bulk). Pure
/// computation, so it can run on another core while the previous batch commits.
#[derive(Default)]
pub struct Plan {
    pub candidates: Vec<Vec<Arc<LoadedTrigger>>>,
    pub state_keys: HashSet<StateKey>,
    pub cooldown_keys: HashSet<CooldownKey>,
}

pub fn plan(index: &TriggerIndex, events: &[StoredEvent]) -> Plan {
    let mut plan = Plan { candidates: Vec::with_capacity(events.len()), ..Plan::default() };
    for event in events {
        // A log dropped by a reorg is not part of the chain: it neither feeds nor fires.
        if event.removed {
            plan.candidates.push(Vec::new());
            continue;
        }
        let matching: Vec<_> = index.candidates(event).cloned().collect();
        for trigger in &matching {
            for aggregate in &trigger.rule.aggregates {
                plan.state_keys.insert((trigger.id, aggregate.id.clone(), aggregate.per.key(event)));
            }
            if trigger.cooldown_secs > 0 {
                plan.cooldown_keys.insert((trigger.id, agent_key(event)));
            }
        }
        plan.candidates.push(matching);
    }
    plan
}

/// The cooldown key of an event: its chain and agent.
pub fn agent_key(event: &StoredEvent) -> String {
    format!("{}:{}", event.event.log.chain_id, event.event.agent_id)
}

/// What one trigger makes of one in-scope event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The condition does not hold.
    NoMatch,
    /// The condition holds, but the event is older than the trigger (or its last enabling).
    BeforeHistory,
    /// The condition holds, but the trigger fired for this agent too recently.
    CoolingDown,
    Fires,
}

/// Whether an event that already fed a state (by its id) feeds it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feeding {
    /// Every event feeds: the processor's case, where each event is seen once.
    Always,
    /// A stored event that a state has already seen does not feed it twice: a preview of an
    /// event the processor already handled.
    UnlessSeen,
}

/// Updates `trigger`'s aggregates with `event`, then decides: the aggregate values (in
/// the rule's order) and the verdict. Changes only the caches.
pub fn assess(
    event: &StoredEvent,
    trigger: &LoadedTrigger,
    states: &mut StateCache,
    cooldowns: &mut CooldownCache,
    max_window_entries: usize,
    feeding: Feeding,
) -> (Vec<Option<Decimal>>, Verdict) {
    let at = event.event.log.block_timestamp.timestamp();
    // Every aggregate is updated before the condition is evaluated, fire or not.
    let mut values = Vec::with_capacity(trigger.rule.aggregates.len());
    for aggregate in &trigger.rule.aggregates {
        let key = (trigger.id, aggregate.id.clone(), aggregate.per.key(event));
        let entry = states.entry(key, &aggregate.kind, trigger.version);
        let seen = feeding == Feeding::UnlessSeen && event.id.0 > 0 && entry.last_event_id >= event.id.0;
        if aggregate.feeds(event) && !seen {
            let sample = aggregate.kind.field().and_then(|f| f.read_number(event));
            entry.state.update(&aggregate.kind, sample, at, max_window_entries);
            entry.last_event_id = event.id.0;
            entry.trigger_version = trigger.version;
            entry.dirty = true;
        }
        values.push(entry.state.value(aggregate, at));
    }
    if !trigger.rule.condition_holds(event, &values) {
        return (values, Verdict::NoMatch);
    }
    // History: events from before the trigger existed (or was enabled) never fire it.
    if event.event.log.block_timestamp < trigger.fires_from {
        return (values, Verdict::BeforeHistory);
    }
    if trigger.cooldown_secs > 0
        && !cooldowns.admit(
            (trigger.id, agent_key(event)),
            trigger.cooldown_secs,
            event.event.log.block_timestamp,
            event.id.0,
        )
    {
        return (values, Verdict::CoolingDown);
    }
    (values, Verdict::Fires)
}

/// The aggregates as templates see them: by display name.
pub fn shown(trigger: &LoadedTrigger, values: &[Option<Decimal>]) -> Aggregates {
    trigger
        .rule
        .aggregates
        .iter()
        .zip(values)
        .map(|(aggregate, value)| (aggregate.display_name(), value.clone()))
        .collect()
}

/// Aggregate values by display name.
pub type Aggregates = BTreeMap<String, Option<Decimal>>;

/// The job of one action of a firing: what the worker renders and delivers. Its id is
/// derived from the event, the trigger and the action, so the same firing always makes the
/// same job.
pub fn job(trigger: &LoadedTrigger, action: &StoredAction, event: &StoredEvent, aggregates: Aggregates) -> Job {
    Job {
        job_id: JobId::derive(event.id, trigger.id, action.id),
        trigger: JobTrigger { id: trigger.id, name: trigger.name.clone(), user_id: trigger.user_id },
        action: action.clone(),
        event: event.clone(),
        aggregates,
        fired_at: Utc::now(),
    }
}

/// Evaluates `event` against `triggers`, the ones its scope matches (from [`plan`]).
pub fn evaluate(
    event: &StoredEvent,
    triggers: &[Arc<LoadedTrigger>],
    states: &mut StateCache,
    cooldowns: &mut CooldownCache,
    max_window_entries: usize,
    decisions: &mut Decisions,
) {
    for trigger in triggers {
        let (values, verdict) = assess(event, trigger, states, cooldowns, max_window_entries, Feeding::Always);
        match verdict {
            Verdict::NoMatch | Verdict::BeforeHistory => {}
            Verdict::CoolingDown => decisions.suppressed += 1,
            Verdict::Fires => {
                let shown = shown(trigger, &values);
                for action in &trigger.actions {
                    decisions.jobs.push(job(trigger, action, event, shown.clone()));
                }
                decisions.fires += 1;
            }
        }
    }
}
