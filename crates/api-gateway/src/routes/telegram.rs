//! Linking Telegram chats to the user, for the server's shared bot: a one-time code, sent to
//! the bot as `/start <code>` from the chat, links it (the workers read the bot's updates).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::store::telegram::{self, LinkedChat};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// A code to send to the bot.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkCode {
    /// Valid once, until `expires_at`.
    code: String,
    /// What to send to the bot from the chat to link (in a group or channel, with the bot
    /// added to it).
    command: String,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChatList {
    items: Vec<LinkedChat>,
}

/// `POST /api/v1/telegram/link-codes`: a one-time code that links the chat it is sent from.
#[utoipa::path(
    post, path = "/api/v1/telegram/link-codes", tag = "telegram", operation_id = "createTelegramLinkCode",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the code; send `/start <code>` to the bot from the chat to link", body = LinkCode),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn create_code(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (code, expires_at) = telegram::issue_code(&mut conn, user.0).await?;
    let command = format!("/start {code}");
    Ok(HttpResponse::Created().json(LinkCode { code, command, expires_at }))
}

/// `GET /api/v1/telegram/chats`: the chats linked to the user.
#[utoipa::path(
    get, path = "/api/v1/telegram/chats", tag = "telegram", operation_id = "listTelegramChats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the linked chats, most recent first", body = ChatList),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let items = telegram::list(&state.db, user.0).await?;
    Ok(HttpResponse::Ok().json(ChatList { items }))
}

/// `DELETE /api/v1/telegram/chats/{chat_id}`: the shared bot sends there no more for this
/// user (deliveries to it fail, naming the reason).
#[utoipa::path(
    delete, path = "/api/v1/telegram/chats/{chat_id}", tag = "telegram", operation_id = "unlinkTelegramChat",
    security(("bearer" = [])),
    params(("chat_id" = i64, Path, description = "the chat's numeric id")),
    responses(
        (status = 204, description = "unlinked"),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not linked to this user", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn unlink(
    state: web::Data<AppState>,
    user: AuthUser,
    chat: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such linked chat");
    let chat: i64 = chat.parse().map_err(|_| missing())?;
    if telegram::unlink(&state.db, user.0, chat).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(missing())
    }
}
