use std::process::ExitCode;

use api_gateway::{Application, GatewayConfig};

#[actix_web::main]
async fn main() -> ExitCode {
    let config = match shared::startup::configure("api-gateway", GatewayConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %shared::startup::error_chain(&err), "api-gateway cannot start");
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
