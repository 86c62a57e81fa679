//! Jobs as their owner sees them: replaying one that died or failed.

use sqlx::PgConnection;

use crate::domain::{JobId, UserId};

/// Puts a dead or failed job of `user` back in line with a fresh attempt budget: the relay
/// pushes it again and a worker delivers it. Returns `false` when the user has no such job,
/// or it is not dead or failed.
pub async fn replay(conn: &mut PgConnection, user: UserId, job: JobId) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE action_outbox o
         SET status = 'pending', attempts = 0, finished_at = NULL, dispatch_run_id = NULL, updated_at = now()
         FROM triggers t
         WHERE o.trigger_id = t.id AND t.user_id = $1 AND o.job_id = $2 AND o.status IN ('dead', 'failed')",
    )
    .bind(user)
    .bind(job)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
