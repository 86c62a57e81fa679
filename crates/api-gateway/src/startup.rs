use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use shared::db::DbStartError;
use shared::redis::RedisHandle;
use shared::secrets::Keyring;
use shared::store::triggers::{self, Reseal};

use crate::auth::TokenKeys;
use crate::config::GatewayConfig;
use crate::error::json_config;
use crate::request_span::request_span;
use crate::routes;
use crate::state::AppState;

/// How long in-flight requests may finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbStartError),
    #[error("invalid Redis address")]
    Redis(#[from] shared::redis::RedisError),
    #[error("cannot seal the secrets stored before sealing")]
    Seal(#[from] triggers::WriteError),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Cross-origin requests from the configured origins only.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Seals whatever secrets are still stored in clear (written before sealing existed).
pub async fn seal_plain_secrets(db: &sqlx::PgPool, keyring: &Keyring) -> Result<usize, triggers::WriteError> {
    let mut conn = db.acquire().await?;
    let sealed = triggers::reseal(&mut conn, keyring, Reseal::Plain).await?;
    if sealed > 0 {
        tracing::info!(actions = sealed, "sealed the secrets stored in clear");
    }
    Ok(sealed)
}

/// A bound, not yet running, HTTP server.
pub struct Application {
    server: Server,
    address: SocketAddr,
}

impl Application {
    /// Connects to PostgreSQL (applying migrations) and binds the configured address. Redis
    /// is connected on first use, so the gateway starts while Redis is down and says so in
    /// its health.
    pub async fn build(config: GatewayConfig) -> Result<Self, StartupError> {
        let db = shared::db::connect_and_migrate(&config.database).await?;
        let redis = RedisHandle::new(&config.redis)?;
        let address = config.server.socket_addr();
        let listener = TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })?;
        let tokens = TokenKeys::new(&config.jwt_secret, config.jwt_lifetime);
        seal_plain_secrets(&db, &config.keyring).await?;
        let state = AppState::new(db, redis, tokens, config.keyring)
            .with_limits(config.limits)
            .with_quotas(config.quotas)
            .with_backtest_limits(config.backtest)
            .with_cors_origins(config.cors_origins);
        Self::serve(state, listener)
    }

    /// Serves the API with the given state on an already bound listener.
    pub fn serve(state: AppState, listener: TcpListener) -> Result<Self, StartupError> {
        let address = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
        let origins = state.cors_origins.clone();
        let data = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(cors(&origins))
                .wrap(from_fn(request_span))
                .app_data(data.clone())
                .app_data(json_config())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)
        .map_err(|source| StartupError::Bind { address, source })?
        .run();
        Ok(Self { server, address })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Runs until SIGTERM or SIGINT, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
