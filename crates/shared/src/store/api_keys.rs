//! API keys: only a SHA-256 digest of each key is stored, next to a short prefix the user
//! can recognise it by.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgExecutor};

use crate::domain::UserId;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyRow {
    pub id: uuid::Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut PgConnection,
    user: UserId,
    name: &str,
    prefix: &str,
    digest: &[u8],
) -> Result<ApiKeyRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, user_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, prefix, created_at, last_used_at",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(user)
    .bind(name)
    .bind(prefix)
    .bind(digest)
    .fetch_one(conn)
    .await
}

/// Stores a key as [`insert`] does, unless the user already holds `max` keys that are not
/// revoked: then `None`, and nothing is written. The owner's row stays locked until the
/// caller's transaction ends, so two creations racing for the last place are decided one
/// after the other, and the second one counts the first.
pub async fn insert_within_quota(
    conn: &mut PgConnection,
    user: UserId,
    name: &str,
    prefix: &str,
    digest: &[u8],
    max: u32,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(user).execute(&mut *tx).await?;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
    if live >= i64::from(max) {
        return Ok(None);
    }
    let row = insert(&mut tx, user, name, prefix, digest).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// The user's keys that are not revoked, newest first.
pub async fn list<'e>(db: impl PgExecutor<'e>, user: UserId) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, prefix, created_at, last_used_at FROM api_keys
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Revokes one of the user's keys; `false` when the user has no such live key.
pub async fn revoke<'e>(db: impl PgExecutor<'e>, user: UserId, id: uuid::Uuid) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL")
            .bind(user)
            .bind(id)
            .execute(db)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// The owner of a live key with this digest, noting the use (at most once a minute).
pub async fn authenticate<'e>(db: impl PgExecutor<'e>, digest: &[u8]) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH found AS (SELECT id, user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL),
              touched AS (
                UPDATE api_keys SET last_used_at = now()
                WHERE id IN (SELECT id FROM found) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute'))
         SELECT user_id FROM found",
    )
    .bind(digest)
    .fetch_optional(db)
    .await
}
