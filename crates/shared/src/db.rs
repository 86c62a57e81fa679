//! The PostgreSQL pool and the schema migrations.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::DatabaseConfig;

/// The migrations in `database/migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../database/migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbStartError {
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the database migrations")]
    Migrate(#[source] MigrateError),
}

fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(config.max_connections).acquire_timeout(config.acquire_timeout)
}

/// Opens a pool and checks that the server answers.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbStartError> {
    pool_options(config)
        .connect_with(config.connect_options().clone())
        .await
        .map_err(|source| DbStartError::Connect { target: config.describe(), source })
}

/// A pool that connects on first use; a service built on it starts even while the database
/// is down.
pub fn connect_lazy(config: &DatabaseConfig) -> PgPool {
    pool_options(config).connect_lazy_with(config.connect_options().clone())
}

/// Applies every migration not yet applied. Safe to run concurrently from several services:
/// sqlx serialises migrators with an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), DbStartError> {
    MIGRATOR.run(pool).await.map_err(DbStartError::Migrate)
}

/// What every service does at start: connect, then bring the schema up to date.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> Result<PgPool, DbStartError> {
    let pool = connect(config).await?;
    migrate(&pool).await?;
    Ok(pool)
}
