//! The delivery log and job outcomes as their owner sees them, and the pruning of old
//! attempts.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use super::pages;
use crate::domain::{TriggerId, UserId};

/// One attempt.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptRow {
    pub id: i64,
    pub job_id: uuid::Uuid,
    pub action_id: uuid::Uuid,
    pub event_id: i64,
    pub kind: String,
    pub attempt: i32,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: Option<i32>,
    pub response_excerpt: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Attempts of one of the user's triggers, newest first, ids below `before`.
pub async fn for_trigger<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    trigger: TriggerId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.job_id, d.action_id, d.event_id, d.kind, d.attempt, d.outcome, d.status_code, d.error,
                d.latency_ms, d.response_excerpt, d.created_at
         FROM deliveries d JOIN triggers t ON t.id = d.trigger_id
         WHERE t.user_id = $1 AND d.trigger_id = $2 AND ($3::int8 IS NULL OR d.id < $3)
         ORDER BY d.id DESC LIMIT $4",
    )
    .bind(user)
    .bind(trigger)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Deletes the attempts recorded before `cutoff`, at most `batch` per statement, and returns
/// how many went.
///
/// Attempts are only ever appended, each stamped with the time of its transaction, so the
/// order of ids is the order of time (to within the length of a transaction): the old
/// attempts are the first ids. Each statement takes the next `batch` ids and deletes those
/// older than the cutoff; a page that holds a younger attempt (or is the last) has reached
/// the cutoff, and the pruning stops there. Every statement walks only its own page of the
/// primary key, however large the log.
pub async fn prune_before(pool: &PgPool, cutoff: DateTime<Utc>, batch: usize) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    pages::delete_page_by_page(0_i64, |after| async move {
        let (deleted, last, more): (i64, Option<i64>, bool) = sqlx::query_as(
            "WITH page AS (SELECT id, created_at FROM deliveries WHERE id > $1 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED),
                      gone AS (DELETE FROM deliveries d USING page
                               WHERE d.id = page.id AND d.created_at < $2
                               RETURNING d.id)
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT max(id) FROM page),
                        (SELECT count(*) FROM page) = $3 AND NOT EXISTS (SELECT 1 FROM page WHERE created_at >= $2)",
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
