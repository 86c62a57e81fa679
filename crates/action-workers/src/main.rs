use std::process::ExitCode;

use action_workers::WorkerConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match shared::startup::configure("action-workers", WorkerConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    action_workers::install_tls_provider();
    let (pool, redis) = match shared::startup::connect(&config.database, &config.redis, config.metrics_addr).await {
        Ok(connections) => connections,
        Err(err) => {
            tracing::error!(error = %shared::startup::error_chain(&err), "action-workers cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(version = shared::VERSION, name = %config.settings.name, "action-workers running");
    // On SIGTERM the workers finish (or hand back) what they hold, within the grace period.
    let stop = async {
        shared::startup::shutdown_signal().await;
        tracing::info!("action-workers stopping");
    };
    match action_workers::worker::run_until(pool, redis, config.settings, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the HTTP client");
            ExitCode::FAILURE
        }
    }
}
