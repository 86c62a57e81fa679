use std::process::ExitCode;

use api_gateway::{Application, GatewayConfig};
use shared::config::Env;

#[actix_web::main]
async fn main() -> ExitCode {
    let env = match Env::load() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("api-gateway: {err}");
            return ExitCode::FAILURE;
        }
    };
    shared::telemetry::init_telemetry(&env.log_filter(), env.json_logs());
    let config = match GatewayConfig::from_env(&env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("api-gateway: {err}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %anyhow::Error::from(err), "api-gateway cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(address = %app.local_addr(), version = shared::VERSION, "api-gateway listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "api-gateway stopped with an error");
            ExitCode::FAILURE
        }
    }
}
