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
