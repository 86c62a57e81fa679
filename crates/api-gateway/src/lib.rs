//! The REST API (SPEC 4): built from configuration by [`Application::build`], or around an
//! existing pool and listener by [`Application::serve`] (tests).

pub mod auth;
pub mod backtest;
mod client_address;
mod config;
mod error;
pub mod openapi;
pub mod quotas;
pub mod rate_limit;
mod request_span;
mod routes;
mod startup;
mod state;

pub use config::GatewayConfig;
pub use error::ApiError;
pub use startup::{Application, StartupError, seal_plain_secrets};
pub use state::AppState;
