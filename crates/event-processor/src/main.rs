use std::process::ExitCode;

use event_processor::ProcessorConfig;
use shared::config::Env;

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
