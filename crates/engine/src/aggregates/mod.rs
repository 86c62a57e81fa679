//! The state of one aggregate for one key, and how an event updates it (SPEC 2). Windows run
//! on block time, so a replay computes exactly what the live run computed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use shared::domain::Decimal;
use shared::trigger::{Aggregate, AggregateKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum AggregateState {
    /// Exponential moving average and how many samples it has seen.
    Ema { value: Option<Decimal>, samples: u64 },
    /// The samples inside a sliding window: (block time in seconds, value), oldest first.
    Window { entries: VecDeque<(i64, Decimal)> },
}

impl AggregateState {
    pub fn new(kind: &AggregateKind) -> Self {
        match kind {
            AggregateKind::Ema { .. } => AggregateState::Ema { value: None, samples: 0 },
            _ => AggregateState::Window { entries: VecDeque::new() },
        }
    }

    /// The state as the store keeps it (JSON text).
    pub fn to_json(&self) -> String {
        // Nothing in a state can fail to serialize: no maps, and decimals print as text.
        serde_json::to_string(self).expect("an aggregate state serializes")
    }

    /// Feeds one sample observed at block time `at`. `sample` is the aggregate's field in the
    /// event (`None` for `count`, which needs none). An event without the field does not
    /// feed a field aggregate.
    pub fn update(&mut self, kind: &AggregateKind, sample: Option<Decimal>, at: i64, max_entries: usize) {
        match (self, kind) {
            (AggregateState::Ema { value, samples }, AggregateKind::Ema { alpha, .. }) => {
                let Some(x) = sample else { return };
                *value = Some(match value.take() {
                    None => x,
                    // alpha * x + (1 - alpha) * previous
                    Some(previous) => previous.add(&alpha.mul(&x.sub(&previous))),
                });
                *samples += 1;
            }
            (AggregateState::Window { entries }, kind) => {
                let x = match kind {
                    AggregateKind::Count { .. } => Decimal::from(0),
                    _ => match sample {
                        Some(x) => x,
                        None => return,
                    },
                };
                let window = kind.window_secs().unwrap_or(0);
                let cutoff = at.saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
                entries.retain(|(ts, _)| *ts > cutoff);
                entries.push_back((at, x));
                while entries.len() > max_entries {
                    entries.pop_front();
                }
            }
            // A state of the wrong shape (a stored row from another definition): start over.
            (state, kind) => {
                *state = AggregateState::new(kind);
                state.update(kind, sample, at, max_entries);
            }
        }
    }

    /// The aggregate's value seen from block time `at`, or `None` while it has none.
    pub fn value(&self, aggregate: &Aggregate, at: i64) -> Option<Decimal> {
        match (self, &aggregate.kind) {
            (AggregateState::Ema { value, samples }, AggregateKind::Ema { min_samples, .. }) => {
                if *samples >= u64::from(*min_samples) { value.clone() } else { None }
            }
            (AggregateState::Window { entries }, kind) => {
                let window = i64::try_from(kind.window_secs().unwrap_or(0)).unwrap_or(i64::MAX);
                let cutoff = at.saturating_sub(window);
                let inside = entries.iter().filter(|(ts, _)| *ts > cutoff).map(|(_, v)| v);
                match kind {
                    AggregateKind::Count { .. } => Some(Decimal::from(inside.count() as i64)),
                    AggregateKind::Sum { .. } => Some(inside.fold(Decimal::from(0), |sum, v| sum.add(v))),
                    AggregateKind::Avg { .. } => {
                        let (sum, n) = inside.fold((Decimal::from(0), 0i64), |(sum, n), v| (sum.add(v), n + 1));
                        sum.div(&Decimal::from(n))
                    }
                    AggregateKind::Min { .. } => inside.min().cloned(),
                    AggregateKind::Max { .. } => inside.max().cloned(),
                    AggregateKind::Ema { .. } => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
