use crate::backtest::BacktestLimits;
use std::time::Duration;

use secrecy::SecretString;

use crate::quotas::{MAX_ACTIONS_PER_TRIGGER, MAX_SCOPE_LIST_LEN, Quotas};
use crate::rate_limit::RateLimits;
use shared::config::{ConfigError, DatabaseConfig, Env, Problems, RedisConfig, ServerConfig};
use shared::secrets::Keyring;

/// Minimum length of `JWT_SECRET`: 32 characters, 256 bits of a random key in hex or base64.
const JWT_SECRET_MIN_LEN: usize = 32;

/// Everything the gateway reads at start (SPEC 5).
#[derive(Debug)]
pub struct GatewayConfig {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub server: ServerConfig,
    pub jwt_secret: SecretString,
    /// How long a login token is valid (`JWT_EXPIRY_SECS`).
    pub jwt_lifetime: Duration,
    pub limits: RateLimits,
    /// What one user may have (`QUOTA_*`).
    pub quotas: Quotas,
    /// How far one backtest may go (`BACKTEST_MAX_EVENTS`).
    pub backtest: BacktestLimits,
    /// Browser origins allowed to call the API (`CORS_ORIGINS`); none by default.
    pub cors_origins: Vec<String>,
    /// `SECRETS_KEY` and `SECRETS_OLD_KEYS`.
    pub keyring: Keyring,
}

impl GatewayConfig {
    /// Reads and checks every variable; the error lists all problems at once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let config = Self {
            database: DatabaseConfig::from_env(env, &mut problems),
            redis: RedisConfig::from_env(env, &mut problems),
            server: ServerConfig::from_env(env, &mut problems),
            jwt_secret: env.required_secret(
                "JWT_SECRET",
                JWT_SECRET_MIN_LEN,
                "a random string that signs login tokens; `make run` generates one for local use",
                &mut problems,
            ),
            cors_origins: env
                .get("CORS_ORIGINS")
                .map(|raw| {
                    raw.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            limits: RateLimits {
                auth_per_minute: env
                    .parsed("RATE_LIMIT_AUTH_PER_MINUTE", 10u32, "a whole number of requests", &mut problems)
                    .max(1),
                per_minute: env
                    .parsed("RATE_LIMIT_PER_MINUTE", 600u32, "a whole number of requests", &mut problems)
                    .max(1),
                trusted_proxies: {
                    let (nets, bad) = crate::client_address::parse_trusted(env.get("TRUSTED_PROXIES").unwrap_or(""));
                    for entry in bad {
                        problems.push("TRUSTED_PROXIES", format!("{entry:?} is not an address or a CIDR"));
                    }
                    nets
                },
            },
            jwt_lifetime: Duration::from_secs(
                env.parsed("JWT_EXPIRY_SECS", 86_400u64, "a whole number of seconds", &mut problems).max(1),
            ),
            quotas: quotas(env, &mut problems),
            backtest: BacktestLimits {
                max_events: env
                    .parsed(
                        "BACKTEST_MAX_EVENTS",
                        BacktestLimits::default().max_events,
                        "a whole number of events",
                        &mut problems,
                    )
                    .max(1),
                ..BacktestLimits::default()
            },
            keyring: Keyring::from_env(env, &mut problems),
        };
        problems.finish(config)
    }
}

/// The per-user quotas (`QUOTA_*`): each at least 1, and those on one trigger no more than
/// the trigger parser accepts at all.
fn quotas(env: &Env, problems: &mut Problems) -> Quotas {
    let defaults = Quotas::default();
    Quotas {
        triggers_per_user: quota(env, "QUOTA_TRIGGERS_PER_USER", defaults.triggers_per_user, u32::MAX, problems),
        actions_per_trigger: quota(
            env,
            "QUOTA_ACTIONS_PER_TRIGGER",
            defaults.actions_per_trigger,
            MAX_ACTIONS_PER_TRIGGER,
            problems,
        ),
        api_keys_per_user: quota(env, "QUOTA_API_KEYS_PER_USER", defaults.api_keys_per_user, u32::MAX, problems),
        scope_list_len: quota(env, "QUOTA_SCOPE_LIST_LENGTH", defaults.scope_list_len, MAX_SCOPE_LIST_LEN, problems),
    }
}

/// One quota: a whole number from 1 to `most`.
fn quota(env: &Env, key: &str, default: u32, most: u32, problems: &mut Problems) -> u32 {
    let value = env.parsed(key, default, "a whole number", problems);
    if value == 0 {
        problems.push(key, "must be at least 1");
    } else if value > most {
        problems.push(key, format!("must be at most {most}: a trigger cannot hold more"));
    }
    value.clamp(1, most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once_without_secrets() {
        let env = Env::from_pairs([
            ("DB_PORT", "54x32"),
            ("DB_PASSWORD", "correct-horse-battery-staple"),
            ("REDIS_PASSWORD", "redis-secret-value"),
        ]);
        let err = GatewayConfig::from_env(&env).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("DB_PORT: must be a port number"), "{message}");
        assert!(message.contains("\"54x32\""), "{message}");
        assert!(message.contains("JWT_SECRET: is required"), "{message}");
        assert!(message.contains("SECRETS_KEY: is required"), "{message}");
        assert_eq!(err.problems.len(), 3, "{message}");
        assert!(!message.contains("correct-horse"), "{message}");
        assert!(!message.contains("redis-secret"), "{message}");
    }

    #[test]
    fn a_bad_database_url_is_named_but_not_echoed() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "mysql://user:sup3rsecret@db/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SECRETS_KEY", "t:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        ]);
        let message = GatewayConfig::from_env(&env).unwrap_err().to_string();
        assert!(message.contains("DATABASE_URL: is not a valid postgres:// URL"), "{message}");
        assert!(!message.contains("sup3rsecret"), "{message}");
    }

    #[test]
    fn defaults_point_at_the_local_services() {
        let env = Env::from_pairs([
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SECRETS_KEY", "t:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        ]);
        let config = GatewayConfig::from_env(&env).unwrap();
        assert_eq!(config.database.describe(), "127.0.0.1:5432/erc8004");
        assert_eq!(config.redis.describe(), "127.0.0.1:6379");
        assert_eq!(config.server.socket_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(config.database.max_connections, 10);
        assert_eq!(config.quotas, Quotas::default());
    }

    #[test]
    fn quotas_are_read_and_checked() {
        let env = Env::from_pairs([
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SECRETS_KEY", "t:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            ("QUOTA_TRIGGERS_PER_USER", "3"),
            ("QUOTA_ACTIONS_PER_TRIGGER", "2"),
            ("QUOTA_API_KEYS_PER_USER", "1"),
            ("QUOTA_SCOPE_LIST_LENGTH", "5"),
        ]);
        let quotas = GatewayConfig::from_env(&env).unwrap().quotas;
        let want = Quotas { triggers_per_user: 3, actions_per_trigger: 2, api_keys_per_user: 1, scope_list_len: 5 };
        assert_eq!(quotas, want);

        let env = Env::from_pairs([
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SECRETS_KEY", "t:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            ("QUOTA_TRIGGERS_PER_USER", "0"),
            ("QUOTA_ACTIONS_PER_TRIGGER", "11"),
            ("QUOTA_API_KEYS_PER_USER", "many"),
            ("QUOTA_SCOPE_LIST_LENGTH", "1001"),
        ]);
        let message = GatewayConfig::from_env(&env).unwrap_err().to_string();
        assert!(message.contains("QUOTA_TRIGGERS_PER_USER: must be at least 1"), "{message}");
        assert!(message.contains("QUOTA_ACTIONS_PER_TRIGGER: must be at most 10"), "{message}");
        assert!(message.contains("QUOTA_API_KEYS_PER_USER: must be a whole number"), "{message}");
        assert!(message.contains("QUOTA_SCOPE_LIST_LENGTH: must be at most 1000"), "{message}");
    }
}
