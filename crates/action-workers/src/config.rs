use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use shared::config::{ConfigError, DatabaseConfig, Env, Problems, RedisConfig};
use shared::secrets::Keyring;

use crate::breaker::BreakerSettings;
use crate::ssrf::AddressPolicy;

/// Everything the workers read at start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub settings: Settings,
    pub metrics_addr: Option<SocketAddr>,
}

/// Delivery tunables, apart from connections so tests can build them directly.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Deliveries in flight per action kind in this process.
    pub concurrency: usize,
    /// Deliveries in flight per target (the origin of a webhook URL or MCP server) and action
    /// kind in this process; the target's other jobs wait their turn without holding up
    /// anyone else's.
    pub per_target: usize,
    /// This process's name among the consumers of each stream.
    pub name: String,
    /// A message read but not acknowledged for this long is taken over by another consumer.
    /// A consumer renews the claims of its deliveries in flight every third of it, so a slow
    /// delivery that is alive is never taken over, whatever its timeout.
    pub claim_idle: Duration,
    /// Waits before the 2nd, 3rd, ... attempt (the last one repeats), each ±20%.
    pub retry_schedule: Vec<Duration>,
    /// Attempts in all before a job is dead.
    pub max_attempts: u32,
    /// Where webhooks may go.
    pub address_policy: AddressPolicy,
    pub breaker: BreakerSettings,
    pub telegram: TelegramSettings,
    /// On SIGTERM, how long deliveries in flight may take to land and be recorded
    /// (`WORKER_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace: Duration,
    /// Opens the actions' secrets at delivery time (`SECRETS_KEY`, `SECRETS_OLD_KEYS`).
    pub keyring: Keyring,
}

/// Where the Telegram Bot API is, and the server's bot.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub api_url: String,
    /// Used when an action has no `bot_token` of its own, for chats linked to the trigger's
    /// owner only.
    pub bot_token: Option<SecretString>,
    /// Messages a second one user may send through the shared bot
    /// (`TELEGRAM_SHARED_PER_USER_PER_SECOND`).
    pub shared_per_user_per_second: u32,
    /// How long one `getUpdates` waits for updates (long polling).
    pub long_poll: Duration,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.telegram.org".to_owned(),
            bot_token: None,
            shared_per_user_per_second: 5,
            long_poll: Duration::from_secs(25),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            per_target: 8,
            name: default_name(),
            claim_idle: Duration::from_secs(30),
            retry_schedule: [5, 30, 120, 600, 1_800, 3_600, 10_800].into_iter().map(Duration::from_secs).collect(),
            max_attempts: 8,
            address_policy: AddressPolicy::default(),
            breaker: BreakerSettings::default(),
            telegram: TelegramSettings::default(),
            shutdown_grace: Duration::from_secs(20),
            keyring: Keyring::default(),
        }
    }
}

fn default_name() -> String {
    format!("worker-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let defaults = Settings::default();
        let concurrency = env.parsed("WORKER_CONCURRENCY", defaults.concurrency, "a whole number", &mut problems);
        if !(1..=1_024).contains(&concurrency) {
            problems.push("WORKER_CONCURRENCY", "must be between 1 and 1024");
        }
        let per_target = env.parsed("WORKER_PER_TARGET", defaults.per_target, "a whole number", &mut problems);
        if per_target == 0 {
            problems.push("WORKER_PER_TARGET", "must be at least 1");
        }
        let claim_ms = env.parsed("WORKER_CLAIM_IDLE_MS", 30_000u64, "a whole number of milliseconds", &mut problems);
        if claim_ms < 1_000 {
            // Claims are renewed every third of it, between two steps of a consumer.
            problems.push("WORKER_CLAIM_IDLE_MS", "must be at least 1000");
        }
        let max_attempts = env.parsed("DELIVERY_MAX_ATTEMPTS", defaults.max_attempts, "a whole number", &mut problems);
        if max_attempts == 0 {
            problems.push("DELIVERY_MAX_ATTEMPTS", "must be at least 1");
        }
        let retry_schedule = match env.get("DELIVERY_RETRY_SCHEDULE") {
            None => defaults.retry_schedule.clone(),
            Some(raw) => {
                let parsed: Result<Vec<Duration>, _> =
                    raw.split(',').map(|s| s.trim().parse::<f64>().map(Duration::from_secs_f64)).collect();
                match parsed {
                    Ok(schedule) if !schedule.is_empty() => schedule,
                    _ => {
                        problems.push(
                            "DELIVERY_RETRY_SCHEDULE",
                            format!("must be seconds separated by commas, e.g. 5,30,120 (got {raw:?})"),
                        );
                        defaults.retry_schedule.clone()
                    }
                }
            }
        };
        let allowed = match env.get("WEBHOOK_ALLOWED_CIDRS") {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .filter_map(|s| match s.trim().parse::<IpNet>() {
                    Ok(net) => Some(net),
                    Err(_) => {
                        problems
                            .push("WEBHOOK_ALLOWED_CIDRS", format!("{:?} is not a CIDR such as 127.0.0.0/8", s.trim()));
                        None
                    }
                })
                .collect(),
        };
        let breaker = BreakerSettings {
            threshold: env
                .parsed("BREAKER_THRESHOLD", defaults.breaker.threshold, "a whole number of failures", &mut problems)
                .max(1),
            open_for: Duration::from_secs(
                env.parsed("BREAKER_OPEN_SECS", 30u64, "a whole number of seconds", &mut problems).max(1),
            ),
            max_open_for: Duration::from_secs(
                env.parsed("BREAKER_MAX_OPEN_SECS", 3_600u64, "a whole number of seconds", &mut problems).max(1),
            ),
            probe_timeout: defaults.breaker.probe_timeout,
        };
        let telegram_api = env.string("TELEGRAM_API_URL", &defaults.telegram.api_url);
        if !(telegram_api.starts_with("http://") || telegram_api.starts_with("https://")) {
            problems.push("TELEGRAM_API_URL", format!("must be an http(s) URL (got {telegram_api:?})"));
        }
        let grace = env.parsed("WORKER_SHUTDOWN_GRACE_SECS", 20u64, "a whole number of seconds", &mut problems);
        let metrics_addr =
            env.address_or_off("WORKER_METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9102)), &mut problems);
        let config = Self {
            database: DatabaseConfig::from_env(env, &mut problems),
            redis: RedisConfig::from_env(env, &mut problems),
            settings: Settings {
                concurrency: concurrency.clamp(1, 1_024),
                per_target: per_target.max(1),
                name: env.get("WORKER_NAME").map(str::to_owned).unwrap_or(defaults.name),
                claim_idle: Duration::from_millis(claim_ms.max(100)),
                retry_schedule,
                max_attempts: max_attempts.max(1),
                address_policy: AddressPolicy { allowed },
                breaker,
                telegram: TelegramSettings {
                    api_url: telegram_api,
                    bot_token: env.secret("TELEGRAM_BOT_TOKEN"),
                    shared_per_user_per_second: env
                        .parsed(
                            "TELEGRAM_SHARED_PER_USER_PER_SECOND",
                            defaults.telegram.shared_per_user_per_second,
                            "a whole number of messages",
                            &mut problems,
                        )
                        .clamp(1, 30),
                    ..defaults.telegram.clone()
                },
                shutdown_grace: Duration::from_secs(grace),
                keyring: Keyring::from_env(env, &mut problems),
            },
            metrics_addr,
        };
        problems.finish(config)
    }
}
