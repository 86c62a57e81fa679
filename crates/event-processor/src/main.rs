use std::process::ExitCode;

use event_processor::ProcessorConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match shared::startup::configure("event-processor", ProcessorConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (pool, redis) = match shared::startup::connect(&config.database, &config.redis, config.metrics_addr).await {
        Ok(connections) => connections,
        Err(err) => {
            tracing::error!(error = %shared::startup::error_chain(&err), "event-processor cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(version = shared::VERSION, "event-processor running");
    tokio::select! {
        () = event_processor::service::run(pool, redis, config.settings) => ExitCode::SUCCESS,
        () = shared::startup::shutdown_signal() => {
            tracing::info!("event-processor stopping");
            ExitCode::SUCCESS
        }
    }
}
