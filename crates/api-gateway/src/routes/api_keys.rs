use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::store::api_keys::{self, ApiKeyRow};

use crate::auth::AuthUser;
use crate::auth::api_keys::new_key;
use crate::error::{ApiError, ErrorDetail};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct NewKey {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    row: ApiKeyRow,
    /// Shown here only, never again.
    key: String,
}

#[derive(Serialize)]
struct KeyList {
    items: Vec<ApiKeyRow>,
    next_cursor: Option<String>,
}

/// `POST /api/v1/api-keys`: the key is in this answer and nowhere else, ever.
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
    let mut conn = state.db.acquire().await.map_err(|e| ApiError::internal(&e))?;
    let row =
        api_keys::insert(&mut conn, user.0, name.trim(), &prefix, &digest).await.map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Created().json(CreatedKey { row, key }))
}

/// `GET /api/v1/api-keys`: prefixes and last use, never the keys.
pub async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let items = api_keys::list(&state.db, user.0).await.map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(KeyList { items, next_cursor: None }))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes; another user's key is 404.
pub async fn revoke(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such API key");
    let id: uuid::Uuid = id.parse().map_err(|_| missing())?;
    if api_keys::revoke(&state.db, user.0, id).await.map_err(|e| ApiError::internal(&e))? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(missing())
    }
}
