use std::process::ExitCode;

use indexer::IndexerConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match shared::startup::configure("indexer", IndexerConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    indexer::install_tls_provider();
    let pool = match shared::db::connect_and_migrate(&config.database).await {
        Ok(pool) => pool,
        Err(err) => {
            tracing::error!(error = %shared::startup::error_chain(&err), "indexer cannot start");
            return ExitCode::FAILURE;
        }
    };
    shared::startup::serve_metrics(config.metrics_addr).await;
    tracing::info!(version = shared::VERSION, chains = config.chains.len(), "indexer running");
    tokio::select! {
        () = indexer::run(pool, config.chains) => ExitCode::SUCCESS,
        () = shared::startup::shutdown_signal() => {
            tracing::info!("indexer stopping");
            ExitCode::SUCCESS
        }
    }
}
