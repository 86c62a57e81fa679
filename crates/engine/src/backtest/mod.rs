//! A backtest: how a trigger would have behaved over a period of stored history, with fresh
//! state (optionally warmed from the history before the period, as a newly saved trigger
//! is). The caller feeds the period's events in chain order; nothing is stored or sent.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::{AgentId, ChainId, EventId, StoredEvent};

use crate::evaluate::{Aggregates, Feeding, Verdict, assess, shown};
use crate::state::{CooldownCache, StateCache};
use crate::trigger::LoadedTrigger;
use crate::warm::Replay;

/// The most firings a report lists; its counts are always complete.
pub const MAX_LISTED: usize = 1_000;

/// One event of the period for which the condition held: a firing, or one its cooldown
/// suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = BacktestFire))]
pub struct Fire {
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub event_id: EventId,
    pub block_timestamp: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub chain_id: ChainId,
    /// Decimal text (uint256).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub agent_id: AgentId,
    /// Each aggregate by its name, as the condition saw it; null while it had no value.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, Option<String>>))]
    pub aggregates: Aggregates,
    /// The cooldown held it back: it would not have fired.
    pub suppressed_by_cooldown: bool,
}

/// What a backtest found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// Events of the scope in the period (events dropped by a reorg are not counted).
    pub events_scanned: u64,
    /// The first 1,000 firings and suppressions, in chain order.
    pub fires: Vec<Fire>,
    /// Firings, all of them (suppressed ones not counted).
    pub fire_count: u64,
    /// Firings the cooldown suppressed, all of them.
    pub suppressed_count: u64,
    /// Block time of the first firing.
    pub first_fire: Option<DateTime<Utc>>,
    /// Block time of the last firing.
    pub last_fire: Option<DateTime<Utc>>,
    /// More firings and suppressions happened than `fires` lists.
    pub truncated: bool,
}

/// A trigger run over history.
pub struct Backtest {
    trigger: LoadedTrigger,
    states: StateCache,
    cooldowns: CooldownCache,
    max_window_entries: usize,
    report: Report,
    /// The first firing's event and aggregates, to show what the actions would send.
    first: Option<(StoredEvent, Aggregates)>,
}

impl Backtest {
    /// A backtest of `trigger` with empty state. The trigger's own start of history (the time
    /// it was saved or enabled) does not apply: every event of the period may fire it.
    pub fn new(mut trigger: LoadedTrigger, max_window_entries: usize) -> Self {
        trigger.fires_from = DateTime::<Utc>::MIN_UTC;
        Self {
            trigger,
            states: StateCache::default(),
            cooldowns: CooldownCache::default(),
            max_window_entries,
            report: Report::default(),
            first: None,
        }
    }

    pub fn trigger(&self) -> &LoadedTrigger {
        &self.trigger
    }

    /// The aggregate keys held so far: what the backtest's memory grows with.
    pub fn state_keys(&self) -> usize {
        self.states.len()
    }

    /// Starts the aggregates from `warmed` (the history before the period replayed through
    /// them), instead of empty. Call before the first [`Backtest::feed`].
    pub fn warm(&mut self, warmed: Replay) {
        warmed.into_cache(&self.trigger, &mut self.states);
    }

    /// Evaluates the next event of the period (in chain order). Events dropped by a reorg
    /// and events outside the scope are passed over.
    pub fn feed(&mut self, event: &StoredEvent) {
        if event.removed || !self.trigger.rule.scope.matches(event) {
            return;
        }
        self.report.events_scanned += 1;
        let (values, verdict) = assess(
            event,
            &self.trigger,
            &mut self.states,
            &mut self.cooldowns,
            self.max_window_entries,
            Feeding::Always,
        );
        let suppressed = match verdict {
            Verdict::NoMatch | Verdict::BeforeHistory => return,
            Verdict::CoolingDown => true,
            Verdict::Fires => false,
        };
        let at = event.event.log.block_timestamp;
        let aggregates = shown(&self.trigger, &values);
        if suppressed {
            self.report.suppressed_count += 1;
        } else {
            self.report.fire_count += 1;
            self.report.first_fire.get_or_insert(at);
            self.report.last_fire = Some(at);
            if self.first.is_none() {
                self.first = Some((event.clone(), aggregates.clone()));
            }
        }
        if self.report.fires.len() < MAX_LISTED {
            self.report.fires.push(Fire {
                event_id: event.id,
                block_timestamp: at,
                chain_id: event.event.log.chain_id,
                agent_id: event.event.agent_id,
                aggregates,
                suppressed_by_cooldown: suppressed,
            });
        } else {
            self.report.truncated = true;
        }
    }

    pub fn finish(self) -> Finished {
        Finished { report: self.report, first_fire: self.first, trigger: self.trigger }
    }
}

/// A finished backtest.
pub struct Finished {
    pub report: Report,
    /// The event and aggregates of the first firing, to show what the actions would send.
    pub first_fire: Option<(StoredEvent, Aggregates)>,
    pub trigger: LoadedTrigger,
}

#[cfg(test)]
mod tests;
