//! User accounts.

use sqlx::PgConnection;

use crate::domain::UserId;

/// Creates a user with an already hashed password. Fails on a duplicate email (unique).
pub async fn insert(conn: &mut PgConnection, email: &str, password_hash: &str) -> Result<UserId, sqlx::Error> {
    let id = UserId::new_random();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(conn)
        .await?;
    Ok(id)
}

/// A user as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The user with this email, compared without regard to case.
pub async fn find_by_email<'e>(db: impl sqlx::PgExecutor<'e>, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(db)
        .await
}

pub async fn get<'e>(db: impl sqlx::PgExecutor<'e>, id: UserId) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Whether an error is a unique-constraint violation (a duplicate email, say).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
