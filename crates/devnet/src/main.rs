//! `cargo run -p devnet [-- --demo]`: anvil on `DEVNET_PORT` (8545) with the registries
//! deployed; with `--demo`, a transaction every `DEMO_INTERVAL_MS` (2000). Stops (and stops
//! anvil) on Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use devnet::chain::{Anvil, Registries};

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init_telemetry(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()), false);
    let number = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let port = u16::try_from(number("DEVNET_PORT", 8545)).unwrap_or(8545);
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        tracing::error!(port, "the devnet port is taken (another anvil?); set DEVNET_PORT");
        return ExitCode::FAILURE;
    }
    let anvil = Anvil::start_at(port, &[]).await;
    let registries = Registries::deploy(&anvil).await;
    tracing::info!(
        chain = devnet::CHAIN_ID,
        rpc = %anvil.url(),
        identity = %registries.identity,
        reputation = %registries.reputation,
        validation = %registries.validation,
        "devnet ready"
    );
    let demo = std::env::args().any(|a| a == "--demo");
    tokio::select! {
        () = async {
            if demo {
                devnet::traffic::run(&registries, Duration::from_millis(number("DEMO_INTERVAL_MS", 2_000))).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {}
        () = shared::startup::shutdown_signal() => tracing::info!("devnet stopping"),
    }
    drop(anvil);
    ExitCode::SUCCESS
}
