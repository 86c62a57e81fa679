//! The delivery log and the outbox: what a worker reads before an attempt and writes after
//! it, in one transaction per attempt.

use serde_json::Value;
use shared::job::Job;
use sqlx::PgPool;

use crate::outcome::Attempt;

/// The job as the database knows it.
#[derive(Debug, sqlx::FromRow)]
pub struct JobState {
    pub status: String,
    pub attempts: i32,
    /// The action's write-only secrets (signing secret, bot token, MCP headers).
    pub secrets: Value,
}

impl JobState {
    /// Delivered, failed or dead: nothing more to do, even if Redis hands it over again.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "delivered" | "failed" | "dead")
    }
}

/// The state of `job`, or `None` when its trigger or action was deleted meanwhile.
pub async fn load(pool: &PgPool, job: &Job) -> Result<Option<JobState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.status, o.attempts, a.secrets FROM action_outbox o
         JOIN trigger_actions a ON a.id = o.action_id
         WHERE o.job_id = $1",
    )
    .bind(job.job_id)
    .fetch_optional(pool)
    .await
}

/// How an attempt leaves the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Delivered,
    /// Failed for good (a 4xx, a refused address).
    Failed,
    /// Out of attempts.
    Dead,
    /// Another attempt is scheduled.
    Retry,
}

impl After {
    /// The `deliveries.outcome` of the attempt.
    fn outcome(self) -> &'static str {
        match self {
            After::Delivered => "success",
            After::Failed => "failed",
            After::Dead => "dead",
            After::Retry => "retry",
        }
    }

    /// The `action_outbox.status` after the attempt; `None` keeps it unfinished.
    fn status(self) -> Option<&'static str> {
        match self {
            After::Delivered => Some("delivered"),
            After::Failed => Some("failed"),
            After::Dead => Some("dead"),
            After::Retry => None,
        }
    }
}

/// Logs attempt number `number` and, when it ends the job, finishes the outbox row, in one
/// transaction. A job already finished by another worker stays as it is, and a second
/// success for one job is never recorded.
pub async fn record(pool: &PgPool, job: &Job, number: i32, attempt: &Attempt, after: After) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO deliveries
            (job_id, trigger_id, action_id, event_id, kind, attempt, outcome, status_code, error, latency_ms, response_excerpt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT DO NOTHING",
    )
    .bind(job.job_id)
    .bind(job.trigger.id)
    .bind(job.action.id)
    .bind(job.event.id.0)
    .bind(job.kind().as_str())
    .bind(number)
    .bind(after.outcome())
    .bind(attempt.status.map(i32::from))
    .bind(&attempt.error)
    .bind(i32::try_from(attempt.latency.as_millis()).unwrap_or(i32::MAX))
    .bind(&attempt.excerpt)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE action_outbox
         SET attempts = GREATEST(attempts, $2),
             status = COALESCE($3, status),
             finished_at = CASE WHEN $3 IS NULL THEN finished_at ELSE now() END,
             updated_at = now()
         WHERE job_id = $1 AND status NOT IN ('delivered', 'failed', 'dead')",
    )
    .bind(job.job_id)
    .bind(number)
    .bind(after.status())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
