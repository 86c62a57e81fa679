//! The evaluation of triggers, with no store in it: which triggers an event concerns (the
//! scope index), how it moves their aggregates, whether their conditions hold, what the
//! history and cooldown rules make of that, and the jobs of the actions that fire. States
//! and cooldowns come in and go out as values; the event processor loads and stores them,
//! the API previews one event with them, and a backtest runs a trigger over history with
//! fresh ones.

pub mod aggregates;
pub mod backtest;
pub mod evaluate;
pub mod index;
pub mod preview;
pub mod state;
pub mod trigger;
pub mod warm;

pub use evaluate::{Aggregates, Decisions, Verdict};
pub use index::TriggerIndex;
pub use trigger::LoadedTrigger;

/// The most samples a windowed aggregate holds per key, unless configured.
pub const DEFAULT_MAX_WINDOW_ENTRIES: usize = 10_000;
