use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use shared::domain::{JobId, TriggerId};
use shared::store::outbox::{self, OutboxStatus};
use shared::store::{deliveries, triggers};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::routes::pagination;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
}

/// `GET /api/v1/triggers/{id}/deliveries`: every attempt, newest first.
#[utoipa::path(
    get, path = "/api/v1/triggers/{id}/deliveries", tag = "deliveries", operation_id = "listTriggerDeliveries",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the trigger's id"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "every attempt, newest first", body = crate::openapi::schemas::AttemptPage),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn for_trigger(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such trigger");
    let trigger: TriggerId = id.parse().map_err(|_| missing())?;
    triggers::get(&state.db, user.0, trigger).await?.ok_or_else(missing)?;
    let limit = pagination::limit(page.limit)?;
    let before = match &page.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| pagination::invalid("cursor", "not a cursor from this API"))?),
    };
    let mut items = deliveries::for_trigger(&state.db, user.0, trigger, before, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(50));
    let next_cursor = if more { items.last().map(|d| d.id.to_string()) } else { None };
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next_cursor})))
}

/// `GET /api/v1/deliveries?status=dead|failed|success|pending`: the user's jobs by outcome.
#[utoipa::path(
    get, path = "/api/v1/deliveries", tag = "deliveries", operation_id = "listJobsByStatus",
    security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "dead (default), failed, success or pending"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "the user's jobs in that status, newest first", body = crate::openapi::schemas::JobPage),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn by_status(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let status = match page.status.as_deref().unwrap_or("dead") {
        "dead" => OutboxStatus::Dead,
        "failed" => OutboxStatus::Failed,
        "success" | "delivered" => OutboxStatus::Delivered,
        "pending" => OutboxStatus::Dispatched,
        _ => return Err(pagination::invalid("status", "expected dead, failed, success or pending")),
    };
    let limit = pagination::limit(page.limit)?;
    let before = pagination::decode(page.cursor.as_deref())?;
    let mut items = outbox::by_status(&state.db, user.0, status, before, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(50));
    let next_cursor = if more { items.last().map(|j| pagination::encode(j.created_at, j.job_id)) } else { None };
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next_cursor})))
}

/// `POST /api/v1/deliveries/{job_id}/replay`: a dead or failed job goes back in line.
#[utoipa::path(
    post, path = "/api/v1/deliveries/{id}/replay", tag = "deliveries", operation_id = "replayJob",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the job's id")),
    responses(
        (status = 202, description = "the job is queued again", body = crate::openapi::schemas::Replayed),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn replay(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no dead or failed job with this id");
    let job: JobId = id.parse().map_err(|_| missing())?;
    let mut conn = state.db.acquire().await?;
    if outbox::replay(&mut conn, user.0, job).await? {
        Ok(HttpResponse::Accepted().json(json!({"job_id": job, "status": "pending"})))
    } else {
        Err(missing())
    }
}
