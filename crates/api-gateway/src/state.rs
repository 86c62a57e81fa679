use crate::backtest::BacktestLimits;
use metrics_exporter_prometheus::PrometheusHandle;
use shared::redis::RedisHandle;
use shared::secrets::Keyring;
use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::quotas::Quotas;
use crate::rate_limit::RateLimits;

/// What every request handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: RedisHandle,
    pub metrics: PrometheusHandle,
    pub tokens: TokenKeys,
    pub limits: RateLimits,
    /// What one user may have.
    pub quotas: Quotas,
    /// Browser origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Seals the actions' secrets before they are stored.
    pub keyring: Keyring,
    /// How far backtests may go.
    pub backtest: BacktestLimits,
    /// Places for the backtests this gateway runs at once.
    pub backtests: std::sync::Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(db: PgPool, redis: RedisHandle, tokens: TokenKeys, keyring: Keyring) -> Self {
        Self {
            db,
            redis,
            metrics: shared::metrics::prometheus(),
            tokens,
            limits: RateLimits::default(),
            quotas: Quotas::default(),
            cors_origins: Vec::new(),
            keyring,
            backtest: BacktestLimits::default(),
            backtests: std::sync::Arc::new(tokio::sync::Semaphore::new(BacktestLimits::default().concurrent)),
        }
    }

    pub fn with_cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = origins;
        self
    }

    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    pub fn with_backtest_limits(mut self, limits: BacktestLimits) -> Self {
        self.backtest = limits;
        self.backtests = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1)));
        self
    }
}
