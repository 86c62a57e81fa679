//! Everything the services of the ERC-8004 backend have in common: configuration, the
//! PostgreSQL and Redis connections, the normalized event model, and telemetry.

pub mod config;
pub mod db;
pub mod domain;
pub mod job;
pub mod metrics;
pub mod metrics_server;
pub mod redis;
pub mod render;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod trigger;

/// The version every service reports (health endpoint, logs).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
