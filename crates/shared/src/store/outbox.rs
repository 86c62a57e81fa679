//! `action_outbox`: one row per job (a fired action), from the processor's commit to the
//! worker's final outcome. Every statement on the table is here: the processor inserts, the
//! relay pushes and marks dispatched, workers finish, owners list and replay, retention
//! prunes. Statuses are [`OutboxStatus`]; the SQL spells them from it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::pages;
use crate::domain::{JobId, UserId};
use crate::job::Job;
use crate::trigger::ActionKind;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Committed, not yet pushed to Redis.
    Pending,
    /// Pushed to its stream (`dispatch_run_id` names the Redis run).
    Dispatched,
    Delivered,
    /// Failed for good (a permanent error or its attempts spent).
    Failed,
    /// Dead-lettered.
    Dead,
}

impl OutboxStatus {
    pub const ALL: [OutboxStatus; 5] = [Self::Pending, Self::Dispatched, Self::Delivered, Self::Failed, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the job is over (nothing more is sent).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Dead)
    }
}

/// A status the table does not allow: the row was written by something else.
#[derive(Debug, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(String);

impl TryFrom<String> for OutboxStatus {
    type Error = UnknownStatus;

    fn try_from(text: String) -> Result<Self, UnknownStatus> {
        Self::parse(&text).ok_or(UnknownStatus(text))
    }
}

/// A status as an SQL literal: the statements keep literals, so the partial indexes on
/// unfinished and dead jobs stay usable whatever plan PostgreSQL picks.
macro_rules! literal {
    ($status:ident) => {
        concat!("'", stringify!($status), "'")
    };
}
const PENDING: &str = literal!(pending);
const DISPATCHED: &str = literal!(dispatched);
const DEAD: &str = literal!(dead);
const FAILED: &str = literal!(failed);
const FINISHED: &str = concat!(literal!(delivered), ", ", literal!(failed), ", ", literal!(dead));

/// A committed job on its way to Redis: what the relay pushes.
#[derive(Debug, Clone)]
pub struct Committed {
    pub job_id: uuid::Uuid,
    pub kind: ActionKind,
    pub payload: String,
}

/// Inserts one row per job; a job id already present is left as it is. Returns the jobs as
/// serialized, for handing to the relay once the transaction commits. A job that does not
/// serialize fails the statement (it never becomes an empty payload).
pub async fn insert(conn: &mut PgConnection, jobs: &[Job]) -> Result<Vec<Committed>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let n = jobs.len();
    let (mut ids, mut triggers, mut actions, mut events, mut kinds, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for job in jobs {
        ids.push(job.job_id.0);
        triggers.push(job.trigger.id.0);
        actions.push(job.action.id.0);
        events.push(job.event.id.0);
        kinds.push(job.kind().as_str());
        payloads.push(serde_json::to_string(job).map_err(|err| sqlx::Error::Encode(Box::new(err)))?);
    }
    sqlx::query(
        "INSERT INTO action_outbox (job_id, trigger_id, action_id, event_id, kind, payload)
         SELECT j, t, a, e, k, p::jsonb
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[]) AS u(j, t, a, e, k, p)
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&triggers)
    .bind(&actions)
    .bind(&events)
    .bind(&kinds)
    .bind(&payloads)
    .execute(conn)
    .await?;
    Ok(jobs
        .iter()
        .zip(payloads)
        .map(|(job, payload)| Committed { job_id: job.job_id.0, kind: job.kind(), payload })
        .collect())
}

/// Which of `ids` are still pending (not pushed by anyone yet).
pub async fn pending_among(pool: &PgPool, ids: &[uuid::Uuid]) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
    let sql = format!("SELECT job_id FROM action_outbox WHERE job_id = ANY($1) AND status = {PENDING}");
    let rows: Vec<uuid::Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

/// Marks `ids` pushed to the Redis run `run_id` (unless they finished meanwhile).
pub async fn mark_dispatched(pool: &PgPool, ids: &[uuid::Uuid], run_id: &str) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE action_outbox SET status = {DISPATCHED}, dispatch_run_id = $2, dispatched_at = now(), updated_at = now()
         WHERE job_id = ANY($1) AND status IN ({PENDING}, {DISPATCHED})"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ids).bind(run_id).execute(pool).await?;
    Ok(())
}

/// Marks `ids` dead: jobs no worker can take (an unknown kind), so that no sweep pushes them
/// again.
pub async fn mark_dead(pool: &PgPool, ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE action_outbox SET status = {DEAD}, finished_at = now(), updated_at = now()
         WHERE job_id = ANY($1) AND status IN ({PENDING}, {DISPATCHED})"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ids).execute(pool).await?;
    Ok(())
}

/// Which unfinished rows a relay pushes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ToPush {
    /// Pending rows at least this old.
    Pending { min_age_secs: f64 },
    /// Rows dispatched to another Redis run than `run_id` (Redis restarted since, empty).
    DispatchedElsewhere,
}

/// Up to `limit` rows to push, oldest first: (job id, kind as stored, payload).
pub async fn to_push(
    pool: &PgPool,
    which: ToPush,
    run_id: &str,
    limit: i64,
) -> Result<Vec<(uuid::Uuid, String, String)>, sqlx::Error> {
    let (sql, min_age) = match which {
        ToPush::Pending { min_age_secs } => (
            format!(
                "SELECT job_id, kind, payload::text FROM action_outbox
                 WHERE status = {PENDING} AND created_at <= now() - make_interval(secs => $3) AND $1::text IS NOT NULL
                 ORDER BY created_at, job_id
                 LIMIT $2"
            ),
            min_age_secs,
        ),
        ToPush::DispatchedElsewhere => (
            format!(
                "SELECT job_id, kind, payload::text FROM action_outbox
                 WHERE status = {DISPATCHED} AND dispatch_run_id IS DISTINCT FROM $1 AND $3 >= 0
                 ORDER BY created_at, job_id
                 LIMIT $2"
            ),
            0.0,
        ),
    };
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(run_id).bind(limit).bind(min_age).fetch_all(pool).await
}

/// Jobs not finished yet (pending or dispatched).
pub async fn unfinished(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT count(*) FROM action_outbox WHERE status IN ({PENDING}, {DISPATCHED})");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await
}

/// Records attempts on their jobs, in the caller's transaction: each job's attempt count
/// rises to its number, and the jobs given a final status get it. A job already finished
/// (by another worker) stays as it is.
pub async fn record_attempts(
    conn: &mut PgConnection,
    jobs: &[uuid::Uuid],
    numbers: &[i32],
    finals: &[Option<OutboxStatus>],
) -> Result<(), sqlx::Error> {
    let finals: Vec<Option<&str>> = finals.iter().map(|s| s.map(OutboxStatus::as_str)).collect();
    let sql = format!(
        "UPDATE action_outbox o
         SET attempts = GREATEST(o.attempts, u.n),
             status = COALESCE(u.s, o.status),
             finished_at = CASE WHEN u.s IS NULL THEN o.finished_at ELSE now() END,
             updated_at = now()
         FROM UNNEST($1::uuid[], $2::int4[], $3::text[]) AS u(j, n, s)
         WHERE o.job_id = u.j AND o.status NOT IN ({FINISHED})"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(jobs).bind(numbers).bind(&finals).execute(conn).await?;
    Ok(())
}

/// A job as a worker reads it before an attempt: where it stands, and its action's sealed
/// secrets.
#[derive(sqlx::FromRow)]
pub struct JobState {
    pub job_id: uuid::Uuid,
    pub action_id: crate::domain::ActionId,
    #[sqlx(try_from = "String")]
    pub status: OutboxStatus,
    pub attempts: i32,
    #[sqlx(flatten)]
    pub secrets: super::triggers::StoredSecrets,
}

/// The states of `jobs` (absent: the row is gone), in one query.
pub async fn states(pool: &PgPool, jobs: &[uuid::Uuid]) -> Result<Vec<JobState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.job_id, o.action_id, o.status, o.attempts, a.sealed_secrets, a.secrets_key_id, a.plain_secrets
         FROM action_outbox o JOIN trigger_actions a ON a.id = o.action_id
         WHERE o.job_id = ANY($1)",
    )
    .bind(jobs)
    .fetch_all(pool)
    .await
}

/// A job and where it stands.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRow {
    pub job_id: uuid::Uuid,
    pub trigger_id: uuid::Uuid,
    pub action_id: uuid::Uuid,
    pub event_id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The user's jobs in one status, newest first, created before `before` (created_at, job id).
pub async fn by_status<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    status: OutboxStatus,
    before: Option<(DateTime<Utc>, uuid::Uuid)>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    let (at, id) = before.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    sqlx::query_as(
        "SELECT o.job_id, o.trigger_id, o.action_id, o.event_id, o.kind, o.status, o.attempts, o.created_at, o.updated_at
         FROM action_outbox o JOIN triggers t ON t.id = o.trigger_id
         WHERE t.user_id = $1 AND o.status = $2 AND ($3::timestamptz IS NULL OR (o.created_at, o.job_id) < ($3, $4))
         ORDER BY o.created_at DESC, o.job_id DESC LIMIT $5",
    )
    .bind(user)
    .bind(status.as_str())
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Puts a dead or failed job of `user` back in line with a fresh attempt budget: the relay
/// pushes it again and a worker delivers it. Returns `false` when the user has no such job,
/// or it is not dead or failed.
pub async fn replay(conn: &mut PgConnection, user: UserId, job: JobId) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "UPDATE action_outbox o
         SET status = {PENDING}, attempts = 0, finished_at = NULL, dispatch_run_id = NULL, updated_at = now()
         FROM triggers t
         WHERE o.trigger_id = t.id AND t.user_id = $1 AND o.job_id = $2 AND o.status IN ({DEAD}, {FAILED})"
    );
    let result = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user).bind(job).execute(conn).await?;
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
        let sql = format!(
            "WITH page AS (SELECT job_id FROM action_outbox WHERE job_id > $1 ORDER BY job_id LIMIT $3 FOR UPDATE SKIP LOCKED),
                      gone AS (DELETE FROM action_outbox o USING page
                               WHERE o.job_id = page.job_id
                                 AND o.status IN ({FINISHED})
                                 AND COALESCE(o.finished_at, o.updated_at) < $2
                               RETURNING o.job_id)
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT job_id FROM page ORDER BY job_id DESC LIMIT 1),
                        (SELECT count(*) FROM page) = $3"
        );
        let (deleted, last, more): (i64, Option<uuid::Uuid>, bool) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(cutoff)
        .bind(limit)
        .fetch_one(pool)
        .await?;
        Ok((deleted, last.filter(|_| more)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literals_in_the_statements_are_the_statuses() {
        let quoted = |status: OutboxStatus| format!("'{}'", status.as_str());
        assert_eq!(PENDING, quoted(OutboxStatus::Pending));
        assert_eq!(DISPATCHED, quoted(OutboxStatus::Dispatched));
        assert_eq!(DEAD, quoted(OutboxStatus::Dead));
        assert_eq!(FAILED, quoted(OutboxStatus::Failed));
        let finals: Vec<String> = OutboxStatus::ALL.into_iter().filter(|s| s.is_final()).map(quoted).collect();
        assert_eq!(FINISHED, finals.join(", "));
        for status in OutboxStatus::ALL {
            assert_eq!(OutboxStatus::parse(status.as_str()), Some(status));
        }
        assert!(OutboxStatus::try_from("cancelled".to_owned()).is_err());
    }
}
