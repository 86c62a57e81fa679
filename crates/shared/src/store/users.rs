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
