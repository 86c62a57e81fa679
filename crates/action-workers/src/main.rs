use std::process::ExitCode;

use action_workers::WorkerConfig;
use shared::config::Env;

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
    let (pool, redis) = match shared::startup::connect(&config.database, &config.redis, config.metrics_addr).await {
        Ok(connections) => connections,
        Err(err) => {
            tracing::error!(error = %shared::startup::error_chain(&err), "action-workers cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(version = shared::VERSION, name = %config.settings.name, "action-workers running");
    tokio::select! {
        result = action_workers::worker::run(pool, redis, config.settings) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the HTTP client");
                ExitCode::FAILURE
            }
        },
        () = shared::startup::shutdown_signal() => {
            tracing::info!("action-workers stopping");
            ExitCode::SUCCESS
        }
    }
}
