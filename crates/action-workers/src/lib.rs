//! Action workers (DESIGN "Data flow" 4-5): Redis streams → deliveries, with retries,
//! dead letters and a delivery log: signed webhooks, Telegram messages and MCP tool calls.

pub mod breaker;
pub mod config;
pub mod mcp;
pub mod outcome;
pub mod queue;
pub mod record;
pub mod signing;
pub mod ssrf;
pub mod targets;
pub mod telegram;
pub mod telegram_link;
mod waiting;
pub mod webhook;
pub mod worker;

pub use config::{Settings, WorkerConfig};
pub use worker::Worker;

/// Installs the TLS provider used for https webhooks; call once at start (tests too).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
