use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::domain::UserId;
use shared::store::users;

use crate::auth::{AuthUser, hash_password, verify_password};
use crate::error::{ApiError, ErrorDetail};
use crate::rate_limit;
use crate::state::AppState;

const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    #[schema(example = "alice@example.com")]
    email: String,
    /// 8 to 256 characters.
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    #[schema(value_type = uuid::Uuid)]
    id: UserId,
    email: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the request is not valid")
        .with_details(vec![ErrorDetail { path: path.to_owned(), message: message.to_owned() }])
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

/// Register and login are limited per client address: the peer, or the client a trusted
/// proxy forwarded for; an IPv6 client by its /64 (see [`crate::client_address`]).
async fn limit_by_address(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    // A proxy may add a header line of its own rather than extend the client's: all lines
    // together, in order, are the list.
    let lines: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    let peer = req.peer_addr().map(|a| a.ip());
    let address = crate::client_address::limit_key(peer, forwarded.as_deref(), &state.limits.trusted_proxies);
    rate_limit::check(state, "auth", &address, state.limits.auth_per_minute).await
}

/// `POST /api/v1/auth/register`
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth", operation_id = "register",
    request_body = Credentials,
    responses(
        (status = 201, description = "the new account", body = UserView),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "taken", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    limit_by_address(&state, &req).await?;
    let Credentials { email, password } = body.into_inner();
    let email = email.trim().to_owned();
    if !plausible_email(&email) {
        return Err(invalid("email", "expected an email address"));
    }
    let length = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(invalid("password", "must be 8 to 256 characters"));
    }
    let hash = hash_password(password).await.map_err(|e| ApiError::internal(&std::io::Error::other(e)))?;
    let mut conn = state.db.acquire().await?;
    let id = match users::insert(&mut conn, &email, &hash).await {
        Ok(id) => id,
        Err(err) if users::is_unique_violation(&err) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "conflict", "an account with this email exists"));
        }
        Err(err) => return Err(ApiError::internal(&err)),
    };
    let user = users::get(&mut *conn, id).await?;
    let created_at = user.map(|u| u.created_at).unwrap_or_else(chrono::Utc::now);
    Ok(HttpResponse::Created().json(UserView { id, email, created_at }))
}

/// A JWT (HS256) for `Authorization: Bearer`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenView {
    token: String,
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
}

/// `POST /api/v1/auth/login`: a token for valid credentials; 401 without saying which part
/// was wrong.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login",
    request_body = Credentials,
    responses(
        (status = 200, description = "a token", body = TokenView),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    limit_by_address(&state, &req).await?;
    let Credentials { email, password } = body.into_inner();
    let user = users::find_by_email(&state.db, email.trim()).await?;
    let wrong = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong email or password");
    // An unknown email costs the same work as a wrong password.
    let (id, hash) = user.map(|u| (u.id, u.password_hash)).unzip();
    if !verify_password(password, hash).await {
        return Err(wrong());
    }
    let Some(id) = id else { return Err(wrong()) };
    let token = state.tokens.issue(id)?;
    Ok(HttpResponse::Ok().json(TokenView { token, token_type: "Bearer", expires_in: state.tokens.lifetime.as_secs() }))
}

/// `GET /api/v1/auth/me`
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth", operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the authenticated user", body = UserView),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let row = users::get(&state.db, user.0).await?;
    let row = row.ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(HttpResponse::Ok().json(UserView { id: row.id, email: row.email, created_at: row.created_at }))
}
