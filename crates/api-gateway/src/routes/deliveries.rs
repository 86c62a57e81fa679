use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use shared::domain::{ActionId, JobId, TriggerId};
use shared::store::{deliveries, jobs, triggers};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorDetail};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
}

fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the query is not valid")
        .with_details(vec![ErrorDetail { path: path.into(), message: message.into() }])
}

fn limit(page: &Page) -> Result<i64, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if (1..=100).contains(&limit) { Ok(limit) } else { Err(invalid("limit", "must be between 1 and 100")) }
}

/// `GET /api/v1/triggers/{id}/deliveries`: every attempt, newest first.
pub async fn for_trigger(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such trigger");
    let trigger: TriggerId = id.parse().map_err(|_| missing())?;
    triggers::get(&state.db, user.0, trigger).await.map_err(|e| ApiError::internal(&e))?.ok_or_else(missing)?;
    let limit = limit(&page)?;
    let before = match &page.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| invalid("cursor", "not a cursor from this API"))?),
    };
    let mut items = deliveries::for_trigger(&state.db, user.0, trigger, before, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(50));
    let next_cursor = if more { items.last().map(|d| d.id.to_string()) } else { None };
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next_cursor})))
}

/// `GET /api/v1/deliveries?status=dead|failed|success|pending`: the user's jobs by outcome.
pub async fn by_status(
    state: web::Data<AppState>,
    user: AuthUser,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let status = match page.status.as_deref().unwrap_or("dead") {
        "dead" => "dead",
        "failed" => "failed",
        "success" | "delivered" => "delivered",
        "pending" => "dispatched",
        _ => return Err(invalid("status", "expected dead, failed, success or pending")),
    };
    let limit = limit(&page)?;
    let before = match &page.cursor {
        None => None,
        Some(c) => Some(decode(c).ok_or_else(|| invalid("cursor", "not a cursor from this API"))?),
    };
    let mut items = deliveries::jobs_by_status(&state.db, user.0, status, before, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(50));
    let next_cursor = if more { items.last().map(|j| encode(j.created_at, j.job_id)) } else { None };
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next_cursor})))
}

fn encode(at: chrono::DateTime<chrono::Utc>, id: uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode(cursor: &str) -> Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
}

/// `POST /api/v1/deliveries/{job_id}/replay`: a dead or failed job goes back in line.
pub async fn replay(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no dead or failed job with this id");
    let job: JobId = id.parse().map_err(|_| missing())?;
    let mut conn = state.db.acquire().await.map_err(|e| ApiError::internal(&e))?;
    if jobs::replay(&mut conn, user.0, job).await.map_err(|e| ApiError::internal(&e))? {
        Ok(HttpResponse::Accepted().json(json!({"job_id": job, "status": "pending"})))
    } else {
        Err(missing())
    }
}

/// `POST /api/v1/triggers/{id}/actions/{action_id}/breaker/reset`
pub async fn reset_breaker(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such action");
    let (trigger, action) = path.into_inner();
    let trigger: TriggerId = trigger.parse().map_err(|_| missing())?;
    let action: ActionId = action.parse().map_err(|_| missing())?;
    let mut conn = state.db.acquire().await.map_err(|e| ApiError::internal(&e))?;
    if triggers::reset_breaker(&mut conn, user.0, trigger, action).await.map_err(|e| ApiError::internal(&e))? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(missing())
    }
}
