//! The event processor (DESIGN "Data flow" 3): events → triggers → aggregate state and
//! outbox → Redis streams. Exactly-once decisions come from committing aggregate state,
//! cooldowns, outbox rows and the cursor in one transaction per batch.

pub mod catchup;
pub mod config;
pub mod cursor;
pub mod processor;
pub mod relay;
pub mod retention;
pub mod service;
pub mod state;
pub mod triggers;
pub mod warm;
pub mod warming;

pub use config::{ProcessorConfig, Retention, Settings};
pub use processor::{BatchReport, Processor};
pub use relay::Relay;
