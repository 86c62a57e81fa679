//! What every background service does at start and stop.

use std::net::SocketAddr;

use sqlx::PgPool;

use crate::config::{ConfigError, DatabaseConfig, Env, RedisConfig};
use crate::redis::RedisHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] crate::db::DbStartError),
    #[error("invalid Redis configuration")]
    Redis(#[from] crate::redis::RedisError),
}

/// Reads the environment (and `.env`), sets up telemetry, and reads the service's
/// configuration with `parse`. On a bad configuration, prints one message naming every
/// problem and gives back the exit code to return.
pub fn configure<T>(
    service: &str,
    parse: impl FnOnce(&Env) -> Result<T, ConfigError>,
) -> Result<T, std::process::ExitCode> {
    let env = Env::load().map_err(|err| {
        eprintln!("{service}: {err}");
        std::process::ExitCode::FAILURE
    })?;
    crate::telemetry::init_telemetry(&env.log_filter(), env.json_logs());
    parse(&env).map_err(|err| {
        eprintln!("{service}: {err}");
        std::process::ExitCode::FAILURE
    })
}

/// Connects to PostgreSQL (applying migrations), prepares the Redis connection (made on
/// first use), and serves `/metrics` on `metrics_addr` when given.
pub async fn connect(
    database: &DatabaseConfig,
    redis: &RedisConfig,
    metrics_addr: Option<SocketAddr>,
) -> Result<(PgPool, RedisHandle), StartError> {
    let pool = crate::db::connect_and_migrate(database).await?;
    let redis = RedisHandle::new(redis)?;
    serve_metrics(metrics_addr).await;
    Ok((pool, redis))
}

/// Serves `/metrics` at `addr` (when set); a port that cannot be bound is logged, not fatal.
pub async fn serve_metrics(addr: Option<SocketAddr>) {
    if let Some(addr) = addr {
        match crate::metrics_server::serve(addr, crate::metrics::prometheus()).await {
            Ok(bound) => tracing::info!(address = %bound, "metrics at /metrics"),
            Err(err) => tracing::warn!(error = %err, %addr, "cannot serve metrics"),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// An error with its causes, `outer: inner: innermost`, for one log line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
