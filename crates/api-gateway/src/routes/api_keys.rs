use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::store::api_keys::{self, ApiKeyRow};

use crate::auth::AuthUser;
use crate::auth::api_keys::new_key;
use crate::error::{ApiError, ErrorDetail};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    #[serde(default)]
    name: Option<String>,
}

/// A new key: its row, and the key itself.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    row: ApiKeyRow,
    /// Shown here only, never again.
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    items: Vec<ApiKeyRow>,
    next_cursor: Option<String>,
}

/// `POST /api/v1/api-keys`: the key is in this answer and nowhere else, ever. A user with
/// as many live keys as the quota `api_keys_per_user` allows gets 409 until one is revoked.
#[utoipa::path(
    post, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "createApiKey",
    security(("bearer" = [])),
    request_body = NewKey,
    responses(
        (status = 201, description = "the key, shown once", body = CreatedKey),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "quota_exceeded: the user already holds as many live keys as the quota api_keys_per_user allows", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    let name = body.into_inner().name.unwrap_or_else(|| "API key".to_owned());
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the request is not valid")
            .with_details(vec![ErrorDetail { path: "name".into(), message: "must be 1 to 100 characters".into() }]));
    }
    let (key, prefix, digest) = new_key();
    let mut conn = state.db.acquire().await?;
    let max = state.quotas.api_keys_per_user;
    let row = api_keys::insert_within_quota(&mut conn, user.0, name.trim(), &prefix, &digest, max)
        .await?
        .ok_or_else(|| state.quotas.api_keys_reached())?;
    Ok(HttpResponse::Created().json(CreatedKey { row, key }))
}

/// `GET /api/v1/api-keys`: prefixes and last use, never the keys.
#[utoipa::path(
    get, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "listApiKeys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the user's keys (never the keys themselves)", body = KeyList),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let items = api_keys::list(&state.db, user.0).await?;
    Ok(HttpResponse::Ok().json(KeyList { items, next_cursor: None }))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes; another user's key is 404.
#[utoipa::path(
    delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", operation_id = "revokeApiKey",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the key's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn revoke(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such API key");
    let id: uuid::Uuid = id.parse().map_err(|_| missing())?;
    if api_keys::revoke(&state.db, user.0, id).await? { Ok(HttpResponse::NoContent().finish()) } else { Err(missing()) }
}
