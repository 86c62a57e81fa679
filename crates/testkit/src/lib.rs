//! What the test suites of every crate share: each test gets its own PostgreSQL database,
//! cloned from a template that holds the current migrations, and its own Redis key prefix,
//! so tests run in parallel against the machine's real services without seeing each other.

pub mod database;
pub mod fixtures;
pub mod net;
pub mod outside;
pub mod proxy;
pub mod redis_server;
pub mod wait;

pub use database::TestDb;

/// anvil with the project's registries (the devnet crate, used by tests as by `make run`).
pub mod chain {
    pub use devnet::chain::*;
}

use shared::config::RedisConfig;

/// The Redis of the machine (or `TEST_REDIS_URL`), with a key prefix no other test uses.
pub fn redis_config() -> RedisConfig {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    RedisConfig::for_url(&url, &format!("test:{}:", uuid::Uuid::new_v4().simple()))
}

/// Installs telemetry for a test process once; `RUST_LOG` controls verbosity.
pub fn init_telemetry() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    shared::telemetry::init_telemetry(&filter, false);
}

/// An HTTP client for tests, with the TLS provider the project uses installed first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The key tests seal secrets with (`SECRETS_KEY` for services started as processes).
pub const SECRETS_KEY: &str = "test:5eca1ed05eca1ed05eca1ed05eca1ed05eca1ed05eca1ed05eca1ed05eca1ed0";

/// The keyring of [`SECRETS_KEY`], as every service of a test holds it.
pub fn keyring() -> shared::secrets::Keyring {
    shared::secrets::Keyring::new(SECRETS_KEY, &[]).expect("the test key is valid")
}

/// Everything under `config`'s key prefix in Redis (strings, stream entries, sorted set and
/// hash members, list items) as text, for searching what is queued anywhere.
pub async fn redis_dump(config: &RedisConfig) -> String {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let client = redis::Client::open(url).expect("the test Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect to the test Redis");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", config.key_prefix)).query_async(&mut conn).await.expect("list the keys");
    let mut text = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.expect("a key's type");
        let mut command = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "stream" => redis::cmd("XRANGE"),
            "zset" => redis::cmd("ZRANGE"),
            "hash" => redis::cmd("HGETALL"),
            "list" => redis::cmd("LRANGE"),
            "set" => redis::cmd("SMEMBERS"),
            _ => continue,
        };
        command.arg(&key);
        match kind.as_str() {
            "stream" => command.arg("-").arg("+"),
            "zset" | "list" => command.arg(0).arg(-1),
            _ => &mut command,
        };
        let value: redis::Value = command.query_async(&mut conn).await.expect("read a key");
        text.push_str(&format!("== {key}\n"));
        flatten(&value, &mut text);
        text.push('\n');
    }
    text
}

/// A Redis reply's strings, one per line.
fn flatten(value: &redis::Value, text: &mut String) {
    match value {
        redis::Value::BulkString(bytes) => {
            text.push_str(&String::from_utf8_lossy(bytes));
            text.push('\n');
        }
        redis::Value::SimpleString(s) => {
            text.push_str(s);
            text.push('\n');
        }
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|v| flatten(v, text)),
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, text);
            flatten(v, text);
        }),
        other => text.push_str(&format!("{other:?}\n")),
    }
}
