//! Action workers (DESIGN "Data flow" 4-5): Redis streams → deliveries, with retries,
//! dead letters and a delivery log. This version delivers signed webhooks.

pub mod breaker;
pub mod config;
pub mod outcome;
pub mod queue;
pub mod record;
pub mod render;
pub mod signing;
pub mod ssrf;
pub mod telegram;
pub mod webhook;
pub mod worker;

pub use config::{Settings, WorkerConfig};
pub use worker::Worker;

/// Installs the TLS provider used for https webhooks; call once at start (tests too).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
