use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use shared::domain::UserId;

use super::api_keys::{KEY_PREFIX, digest};
use crate::error::ApiError;
use crate::rate_limit;
use crate::state::AppState;

/// The authenticated user of a request (`Authorization: Bearer <login token or API key>`). Taking it as a
/// handler argument is what makes a route protected.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(&std::io::Error::other("application state missing")))?;
            let header = header.ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
            let token = header
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| unauthorized("the Authorization header must be Bearer <token>"))?;
            let user = if token.starts_with(KEY_PREFIX) {
                match shared::store::api_keys::authenticate(&state.db, &digest(token)).await {
                    Ok(Some(user)) => user,
                    Ok(None) => return Err(unauthorized("invalid or revoked API key")),
                    Err(err) => return Err(ApiError::internal(&err)),
                }
            } else {
                let user = state.tokens.verify(token).ok_or_else(|| unauthorized("invalid or expired token"))?;
                // A token outlives nothing: the user must still exist. Checked while the
                // request is counted, not before.
                let who = user.to_string();
                let (exists, counted) = tokio::join!(
                    shared::store::users::get(&state.db, user),
                    rate_limit::check(&state, "user", &who, state.limits.per_minute)
                );
                match exists {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(unauthorized("invalid or expired token")),
                    Err(err) => return Err(ApiError::internal(&err)),
                }
                counted?;
                return Ok(AuthUser(user));
            };
            rate_limit::check(&state, "user", &user.to_string(), state.limits.per_minute).await?;
            Ok(AuthUser(user))
        })
    }
}
