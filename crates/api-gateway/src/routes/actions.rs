//! What a user can do to one action of a trigger: reset its circuit breaker, rotate its
//! signing secret.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;
use shared::domain::{ActionId, TriggerId};
use shared::store::triggers::{self, Rotation};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

fn missing() -> ApiError {
    ApiError::not_found("no such action")
}

fn ids(path: web::Path<(String, String)>) -> Result<(TriggerId, ActionId), ApiError> {
    let (trigger, action) = path.into_inner();
    Ok((trigger.parse().map_err(|_| missing())?, action.parse().map_err(|_| missing())?))
}

/// `POST /api/v1/triggers/{id}/actions/{action_id}/breaker/reset`
#[utoipa::path(
    post, path = "/api/v1/triggers/{id}/actions/{action_id}/breaker/reset", tag = "triggers", operation_id = "resetBreaker",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id"), ("action_id" = String, Path, description = "the action's id")),
    responses(
        (status = 204, description = "the breaker is closed"),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn reset_breaker(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (trigger, action) = ids(path)?;
    let mut conn = state.db.acquire().await?;
    if triggers::reset_breaker(&mut conn, user.0, trigger, action).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(missing())
    }
}

/// `POST /api/v1/triggers/{id}/actions/{action_id}/secret/rotate`: a new signing secret for
/// a webhook action, shown in this answer only. Every request signed from now on, retries
/// of earlier jobs included, uses it.
#[utoipa::path(
    post, path = "/api/v1/triggers/{id}/actions/{action_id}/secret/rotate", tag = "triggers", operation_id = "rotateSigningSecret",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id"), ("action_id" = String, Path, description = "the webhook action's id")),
    responses(
        (status = 200, description = "the new signing secret, shown once", body = crate::openapi::schemas::RotatedSecret),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 422, description = "not possible for this resource", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (trigger, action) = ids(path)?;
    let mut conn = state.db.acquire().await?;
    match triggers::rotate_signing_secret(&mut conn, &state.keyring, user.0, trigger, action).await? {
        Rotation::Rotated(secret) => {
            Ok(HttpResponse::Ok().json(json!({"action_id": action, "signing_secret": secret})))
        }
        Rotation::NotWebhook => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_webhook",
            "only webhook actions have a signing secret",
        )),
        Rotation::Missing => Err(missing()),
    }
}
