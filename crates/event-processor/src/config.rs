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
    /// Most stored events one trigger's warming replays in all (keys past it start empty):
    /// warming runs while the processor waits, so this bounds the wait one trigger causes.
    pub warm_max_events: usize,
    /// Whether a trigger's aggregates warm on a task of their own while processing goes on
    /// (`AGGREGATE_WARM_IN_BACKGROUND`, on unless set to `false`), rather than inside the
    /// refresh while processing waits. [`Settings::default`] leaves it off, so a test knows a
    /// trigger is live once the refresh returns.
    pub warm_in_background: bool,
    /// Entries kept per windowed aggregate and key (the oldest are dropped beyond it).
    pub max_window_entries: usize,
    /// Outbox rows pushed to Redis per round trip.
    pub relay_batch_size: usize,
    /// What the maintenance loop deletes, and how often.
    pub retention: Retention,
    /// The leader lock that warming and catch-up writes require (set by the service).
    pub fence: crate::catchup::Fence,
}

/// How long finished work is kept (see [`crate::retention`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished outbox rows and delivery attempts older than this many days are deleted
    /// (`RETENTION_DAYS`, at least 1).
    pub days: u32,
    /// Events older than this many days are deleted once nothing needs them
    /// (`EVENTS_RETENTION_DAYS`); `None` keeps them forever, as the audit trail.
    pub events_days: Option<u32>,
    /// Time between two rounds (`RETENTION_INTERVAL_SECS`).
    pub interval: Duration,
    /// Rows per DELETE statement.
    pub batch: usize,
}

/// The longest retention accepted, in days (a hundred years).
const MAX_RETENTION_DAYS: u32 = 36_500;

impl Default for Retention {
    fn default() -> Self {
        Self { days: 30, events_days: None, interval: Duration::from_secs(3_600), batch: 10_000 }
    }
}

impl Retention {
    fn from_env(env: &Env, problems: &mut Problems) -> Self {
        let defaults = Self::default();
        let days = env.parsed("RETENTION_DAYS", defaults.days, "a whole number of days", problems);
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            problems.push("RETENTION_DAYS", format!("must be between 1 and {MAX_RETENTION_DAYS}"));
        }
        let events_days = env.get("EVENTS_RETENTION_DAYS").map(|_| {
            // A value that does not parse is reported once; the placeholder passes the range.
            let days = env.parsed("EVENTS_RETENTION_DAYS", 1u32, "a whole number of days", problems);
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                problems.push("EVENTS_RETENTION_DAYS", format!("must be between 1 and {MAX_RETENTION_DAYS}"));
            }
            days
        });
        let interval =
            env.parsed("RETENTION_INTERVAL_SECS", defaults.interval.as_secs(), "a whole number of seconds", problems);
        if interval == 0 {
            problems.push("RETENTION_INTERVAL_SECS", "must be at least 1");
        }
        Self {
            days: days.clamp(1, MAX_RETENTION_DAYS),
            events_days: events_days.map(|d| d.clamp(1, MAX_RETENTION_DAYS)),
            interval: Duration::from_secs(interval.max(1)),
            batch: defaults.batch,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            poll_interval: Duration::from_millis(500),
            warm_events_per_key: engine::warm::DEFAULT_EVENTS_PER_KEY,
            warm_max_events: engine::warm::DEFAULT_MAX_EVENTS,
            warm_in_background: false,
            max_window_entries: engine::DEFAULT_MAX_WINDOW_ENTRIES,
            relay_batch_size: 500,
            retention: Retention::default(),
            fence: crate::catchup::Fence::default(),
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
        let warm_max = env.parsed(
            "AGGREGATE_WARM_MAX_EVENTS",
            defaults.warm_max_events,
            "a whole number of events",
            &mut problems,
        );
        let in_background = env.parsed("AGGREGATE_WARM_IN_BACKGROUND", true, "true or false", &mut problems);
        let entries =
            env.parsed("AGGREGATE_MAX_WINDOW_ENTRIES", defaults.max_window_entries, "a whole number", &mut problems);
        if batch_size == 0 || batch_size > 10_000 {
            problems.push("PROCESSOR_BATCH_SIZE", "must be between 1 and 10000");
        }
        if poll_ms == 0 {
            problems.push("PROCESSOR_POLL_INTERVAL_MS", "must be at least 1");
        }
        let retention = Retention::from_env(env, &mut problems);
        let metrics_addr =
            env.address_or_off("PROCESSOR_METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9101)), &mut problems);
        let config = Self {
            database: DatabaseConfig::from_env(env, &mut problems),
            redis: RedisConfig::from_env(env, &mut problems),
            settings: Settings {
                batch_size: batch_size.clamp(1, 10_000),
                poll_interval: Duration::from_millis(poll_ms.max(1)),
                warm_events_per_key: warm,
                warm_max_events: warm_max,
                warm_in_background: in_background,
                max_window_entries: entries.max(1),
                relay_batch_size: defaults.relay_batch_size,
                retention,
                fence: crate::catchup::Fence::default(),
            },
            metrics_addr,
        };
        problems.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_defaults_keep_events() {
        let config = ProcessorConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.settings.retention, Retention::default());
        assert_eq!(config.settings.retention.events_days, None);
    }

    #[test]
    fn retention_reads_its_variables() {
        let env = Env::from_pairs([
            ("RETENTION_DAYS", "7"),
            ("EVENTS_RETENTION_DAYS", "90"),
            ("RETENTION_INTERVAL_SECS", "60"),
        ]);
        let retention = ProcessorConfig::from_env(&env).unwrap().settings.retention;
        let expected = Retention { days: 7, events_days: Some(90), interval: Duration::from_secs(60), batch: 10_000 };
        assert_eq!(retention, expected);
    }

    #[test]
    fn bad_retention_values_are_all_reported() {
        let env = Env::from_pairs([
            ("RETENTION_DAYS", "0"),
            ("EVENTS_RETENTION_DAYS", "a month"),
            ("RETENTION_INTERVAL_SECS", "0"),
        ]);
        let err = ProcessorConfig::from_env(&env).unwrap_err();
        let variables: Vec<&str> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(variables, ["RETENTION_DAYS", "EVENTS_RETENTION_DAYS", "RETENTION_INTERVAL_SECS"]);
    }
}
