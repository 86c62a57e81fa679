//! Telegram chats linked to users, the one-time codes that link them, and how far the shared
//! bot's updates were read. Only a SHA-256 digest of a code is stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgExecutor};

use crate::domain::UserId;

/// How long a link code is valid.
pub const CODE_LIFETIME_SECS: i64 = 15 * 60;
/// Codes one user may hold at once; issuing another forgets the oldest.
pub const MAX_CODES_PER_USER: i64 = 5;
/// Chats one user may link.
pub const MAX_CHATS_PER_USER: i64 = 100;
/// Longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkedChat {
    pub chat_id: i64,
    /// The chat's public @name, without the @, when it has one.
    pub username: Option<String>,
    pub title: String,
    pub linked_at: DateTime<Utc>,
}

/// The chat a `/start <code>` came from, as the update described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: i64,
    pub username: Option<String>,
    pub title: String,
}

/// What redeeming a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The chat is linked to this user (again, if it was already).
    Linked(UserId),
    /// No such code, or it expired.
    Unknown,
    /// The user already has as many chats as allowed.
    Full,
}

fn digest(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

/// A new code for `user`, valid [`CODE_LIFETIME_SECS`]: 128 random bits, URL-safe, fit for a
/// Telegram deep link's start parameter. Returns it with its expiry.
pub async fn issue_code(conn: &mut PgConnection, user: UserId) -> Result<(String, DateTime<Utc>), sqlx::Error> {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut tx = conn.begin().await?;
    sqlx::query("DELETE FROM telegram_link_codes WHERE expires_at < now()").execute(&mut *tx).await?;
    sqlx::query(
        "DELETE FROM telegram_link_codes WHERE code_hash IN (
             SELECT code_hash FROM telegram_link_codes WHERE user_id = $1
             ORDER BY created_at DESC OFFSET $2)",
    )
    .bind(user)
    .bind(MAX_CODES_PER_USER - 1)
    .execute(&mut *tx)
    .await?;
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO telegram_link_codes (code_hash, user_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at",
    )
    .bind(digest(&code))
    .bind(user)
    .bind(CODE_LIFETIME_SECS as f64)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((code, expires_at))
}

/// Links `chat` to the owner of `code`, which is used up. Idempotent for a chat already
/// linked to that user (its name and title are refreshed).
pub async fn redeem(conn: &mut PgConnection, code: &str, chat: &Chat) -> Result<Redeemed, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let owner: Option<UserId> = sqlx::query_scalar(
        "DELETE FROM telegram_link_codes WHERE code_hash = $1 AND expires_at > now() RETURNING user_id",
    )
    .bind(digest(code))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user) = owner else {
        return Ok(Redeemed::Unknown);
    };
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(user).execute(&mut *tx).await?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM telegram_chats WHERE user_id = $1 AND chat_id <> $2")
        .bind(user)
        .bind(chat.id)
        .fetch_one(&mut *tx)
        .await?;
    if held >= MAX_CHATS_PER_USER {
        tx.commit().await?;
        return Ok(Redeemed::Full);
    }
    let title: String =
        crate::domain::Text::new(chat.title.chars().take(MAX_TITLE_CHARS).collect::<String>()).into_string();
    let username = chat.username.as_deref().filter(|u| is_username(u));
    sqlx::query(
        "INSERT INTO telegram_chats (user_id, chat_id, username, title) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, chat_id) DO UPDATE SET username = EXCLUDED.username, title = EXCLUDED.title",
    )
    .bind(user)
    .bind(chat.id)
    .bind(username)
    .bind(title)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Redeemed::Linked(user))
}

/// A Telegram public name: 5 to 32 letters, digits or underscores.
pub fn is_username(name: &str) -> bool {
    (5..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The user's linked chats, most recent first.
pub async fn list<'e>(db: impl PgExecutor<'e>, user: UserId) -> Result<Vec<LinkedChat>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_id, username, title, linked_at FROM telegram_chats WHERE user_id = $1
         ORDER BY linked_at DESC, chat_id",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Unlinks one of the user's chats; `false` when it was not linked.
pub async fn unlink<'e>(db: impl PgExecutor<'e>, user: UserId, chat: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM telegram_chats WHERE user_id = $1 AND chat_id = $2")
        .bind(user)
        .bind(chat)
        .execute(db)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The numeric id of `chat` (a numeric id, or an @username) among the chats linked to
/// `user`, `None` when it is not one of them. Messages go to that id, never to the name: a
/// public name can pass to another chat after the link was made.
pub async fn linked_chat_id<'e>(db: impl PgExecutor<'e>, user: UserId, chat: &str) -> Result<Option<i64>, sqlx::Error> {
    let (id, username) = match chat.strip_prefix('@') {
        Some(name) => (None, Some(name.to_ascii_lowercase())),
        None => (chat.parse::<i64>().ok(), None),
    };
    if id.is_none() && username.is_none() {
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT chat_id FROM telegram_chats WHERE user_id = $1 AND (chat_id = $2 OR lower(username) = $3)
         ORDER BY linked_at DESC LIMIT 1",
    )
    .bind(user)
    .bind(id)
    .bind(username)
    .fetch_optional(db)
    .await
}

/// Whether `chat` (a numeric id, or an @username) is linked to `user`.
pub async fn is_linked<'e>(db: impl PgExecutor<'e>, user: UserId, chat: &str) -> Result<bool, sqlx::Error> {
    Ok(linked_chat_id(db, user, chat).await?.is_some())
}

/// Where the bot `bot_id`'s updates were read up to (the next `offset` to ask for).
pub async fn next_offset<'e>(db: impl PgExecutor<'e>, bot_id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT next_offset FROM telegram_update_offsets WHERE bot_id = $1")
        .bind(bot_id)
        .fetch_optional(db)
        .await
}

/// Records that the bot `bot_id`'s updates before `offset` are handled.
pub async fn set_next_offset<'e>(db: impl PgExecutor<'e>, bot_id: i64, offset: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO telegram_update_offsets (bot_id, next_offset) VALUES ($1, $2)
         ON CONFLICT (bot_id) DO UPDATE SET next_offset = GREATEST(telegram_update_offsets.next_offset, $2),
                                            updated_at = now()",
    )
    .bind(bot_id)
    .bind(offset)
    .execute(db)
    .await?;
    Ok(())
}
