//! Jobs as their owner sees them: replaying one that died or failed; and the pruning of
//! finished jobs.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::pages;
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

/// Deletes the outbox rows of jobs that finished (delivered, failed or dead) before `cutoff`,
/// looking at `batch` rows per statement, and returns how many went. A pending or dispatched
/// row is never deleted, however old: it is work still to do. A worker that meets a job
/// whose row is gone acknowledges it without sending it, so a pruned job is never sent again.
///
/// The statements walk the whole table once in job-id order, a page at a time (job ids are
/// hashes, so there is no older end to start from), and each checks the status again on the
/// row it deletes: a job replayed meanwhile stays.
pub async fn prune_finished_before(pool: &PgPool, cutoff: DateTime<Utc>, batch: usize) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    // Job ids are UUIDv5, never the nil UUID.
    pages::delete_page_by_page(uuid::Uuid::nil(), |after| async move {
        let (deleted, last, more): (i64, Option<uuid::Uuid>, bool) = sqlx::query_as(
            "WITH page AS (SELECT job_id FROM action_outbox WHERE job_id > $1 ORDER BY job_id LIMIT $3 FOR UPDATE SKIP LOCKED),
                      gone AS (DELETE FROM action_outbox o USING page
                               WHERE o.job_id = page.job_id
                                 AND o.status IN ('delivered', 'failed', 'dead')
                                 AND COALESCE(o.finished_at, o.updated_at) < $2
                               RETURNING o.job_id)
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT job_id FROM page ORDER BY job_id DESC LIMIT 1),
                        (SELECT count(*) FROM page) = $3",
        )
        .bind(after)
        .bind(cutoff)
        .bind(limit)
        .fetch_one(pool)
        .await?;
        Ok((deleted, last.filter(|_| more)))
    })
    .await
}
