use std::process::ExitCode;

use event_processor::ProcessorConfig;
use shared::config::Env;
use shared::redis::RedisHandle;

#[tokio::main]
async fn main() -> ExitCode {
    let env = match Env::load() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("event-processor: {err}");
            return ExitCode::FAILURE;
        }
    };
    shared::telemetry::init_telemetry(&env.log_filter(), env.json_logs());
    let config = match ProcessorConfig::from_env(&env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("event-processor: {err}");
            return ExitCode::FAILURE;
        }
    };
    let pool = match shared::db::connect_and_migrate(&config.database).await {
        Ok(pool) => pool,
        Err(err) => {
            tracing::error!(error = %anyhow::Error::from(err), "event-processor cannot start");
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
    tracing::info!(version = shared::VERSION, "event-processor running");
    tokio::select! {
        () = event_processor::service::run(pool, redis, config.settings) => ExitCode::SUCCESS,
        () = shutdown_signal() => {
            tracing::info!("event-processor stopping");
            ExitCode::SUCCESS
        }
    }
}

async fn shutdown_signal() {
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
