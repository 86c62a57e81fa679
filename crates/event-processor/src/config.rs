use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigError, DatabaseConfig, Env, Problems, RedisConfig};

/// Everything the processor reads at start.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub settings: Settings,
    /// Where `/metrics` is served; `None` when disabled.
    pub metrics_addr: Option<SocketAddr>,
}

/// The tunables of processing, separate from connections so tests can build them directly.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events read and committed per transaction.
    pub batch_size: usize,
    /// How often the table is polled when no notification arrives.
    pub poll_interval: Duration,
    /// When a trigger's aggregates are new, how many stored events per key warm them.
    pub warm_events_per_key: u32,
    /// Entries kept per windowed aggregate and key (the oldest are dropped beyond it).
    pub max_window_entries: usize,
    /// Outbox rows pushed to Redis per round trip.
    pub relay_batch_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            poll_interval: Duration::from_millis(500),
            warm_events_per_key: 1_000,
            max_window_entries: 10_000,
            relay_batch_size: 500,
        }
    }
}

impl ProcessorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let defaults = Settings::default();
        let batch_size =
            env.parsed("PROCESSOR_BATCH_SIZE", defaults.batch_size, "a whole number of events", &mut problems);
        let poll_ms = env.parsed("PROCESSOR_POLL_INTERVAL_MS", 500u64, "a whole number of milliseconds", &mut problems);
        let warm = env.parsed(
            "AGGREGATE_WARM_EVENTS",
            defaults.warm_events_per_key,
            "a whole number of events",
            &mut problems,
        );
        let entries =
            env.parsed("AGGREGATE_MAX_WINDOW_ENTRIES", defaults.max_window_entries, "a whole number", &mut problems);
        if batch_size == 0 || batch_size > 10_000 {
            problems.push("PROCESSOR_BATCH_SIZE", "must be between 1 and 10000");
        }
        if poll_ms == 0 {
            problems.push("PROCESSOR_POLL_INTERVAL_MS", "must be at least 1");
        }
        let metrics_addr =
            env.address_or_off("PROCESSOR_METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9101)), &mut problems);
        let config = Self {
            database: DatabaseConfig::from_env(env, &mut problems),
            redis: RedisConfig::from_env(env, &mut problems),
            settings: Settings {
                batch_size: batch_size.clamp(1, 10_000),
                poll_interval: Duration::from_millis(poll_ms.max(1)),
                warm_events_per_key: warm,
                max_window_entries: entries.max(1),
                relay_batch_size: defaults.relay_batch_size,
            },
            metrics_addr,
        };
        problems.finish(config)
    }
}
