use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    status: &'static str,
    database: &'static str,
    redis: &'static str,
    version: &'static str,
    /// The dependencies that failed their check; absent when healthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<&'static str>,
}

fn describe(ok: bool) -> &'static str {
    if ok { "connected" } else { "disconnected" }
}

/// `GET /api/v1/health`: 200 when PostgreSQL and Redis both answer, otherwise 503 naming
/// the part that does not.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "health", operation_id = "health",
    responses(
        (status = 200, description = "PostgreSQL and Redis answer", body = Health),
        (status = 503, description = "a dependency is down", body = Health),
    ),
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = async {
        let ping = sqlx::query("SELECT 1").execute(&state.db);
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "health: database check failed");
                false
            }
            Err(_) => {
                tracing::warn!("health: database check timed out");
                false
            }
        }
    };
    let redis = async {
        match state.redis.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "health: redis check failed");
                false
            }
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let failing: Vec<_> =
        [("database", database), ("redis", redis)].into_iter().filter(|(_, ok)| !ok).map(|(name, _)| name).collect();
    let body = Health {
        status: if failing.is_empty() { "healthy" } else { "unhealthy" },
        database: describe(database),
        redis: describe(redis),
        version: shared::VERSION,
        failing,
    };
    if body.failing.is_empty() { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
