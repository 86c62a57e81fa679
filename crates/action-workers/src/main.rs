use std::process::ExitCode;

use action_workers::WorkerConfig;
use shared::config::Env;
use shared::redis::RedisHandle;

#[tokio::main]
async fn main() -> ExitCode {
    let env = match Env::load() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("action-workers: {err}");
            return ExitCode::FAILURE;
        }
    };
    shared::telemetry::init_telemetry(&env.log_filter(), env.json_logs());
    let config = match WorkerConfig::from_env(&env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("action-workers: {err}");
            return ExitCode::FAILURE;
        }
    };
    action_workers::install_tls_provider();
    let pool = match shared::db::connect_and_migrate(&config.database).await {
        Ok(pool) => pool,
        Err(err) => {
            tracing::error!(error = %anyhow::Error::from(err), "action-workers cannot start");
            return ExitCode::FAILURE;
        }
    };
    let redis = match RedisHandle::new(&config.redis) {
        Ok(redis) => redis,
        Err(err) => {
            tracing::error!(error = %err, "invalid Redis configuration");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = config.metrics_addr {
        match shared::metrics_server::serve(addr, shared::metrics::prometheus()).await {
            Ok(bound) => tracing::info!(address = %bound, "metrics at /metrics"),
            Err(err) => tracing::warn!(error = %err, %addr, "cannot serve metrics"),
        }
    }
    tracing::info!(version = shared::VERSION, name = %config.settings.name, "action-workers running");
    tokio::select! {
        result = action_workers::worker::run(pool, redis, config.settings) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the HTTP client");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("action-workers stopping");
            ExitCode::SUCCESS
        }
    }
}
