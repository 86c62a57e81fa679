//! The delivery log and the outbox: what a worker reads before an attempt and writes after
//! it, in one transaction per attempt.

use std::collections::HashMap;

use shared::domain::Text;
use shared::job::Job;
use shared::secrets::Keyring;
use shared::store::outbox::{self, OutboxStatus};
use shared::trigger::ActionSecrets;
use sqlx::PgPool;

use crate::outcome::{Attempt, Verdict};

/// The job as the database knows it.
pub struct JobState {
    pub status: OutboxStatus,
    pub attempts: i32,
    /// The action's write-only secrets (signing secret, bot token, credential headers), opened;
    /// why they do not open otherwise.
    pub secrets: Result<ActionSecrets, String>,
}

impl std::fmt::Debug for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobState")
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("secrets", &self.secrets.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl JobState {
    /// Delivered, failed or dead: nothing more to do, even if Redis hands it over again.
    pub fn is_finished(&self) -> bool {
        self.status.is_final()
    }
}

/// The states of several jobs, by job id, in one query, their secrets opened with `keyring`.
pub async fn load_many(
    pool: &PgPool,
    keyring: &Keyring,
    jobs: &[uuid::Uuid],
) -> Result<HashMap<uuid::Uuid, JobState>, sqlx::Error> {
    let rows = outbox::states(pool, jobs).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let secrets = row
                .secrets
                .open(keyring, row.action_id)
                .map(|opened| ActionSecrets::read(&opened))
                .map_err(|err| err.to_string());
            (row.job_id, JobState { status: row.status, attempts: row.attempts, secrets })
        })
        .collect())
}

/// How an attempt leaves the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Delivered,
    /// Failed for good (a 4xx, a refused address).
    Failed,
    /// The target refused it (an MCP tool reporting an error); finished like a failure.
    Rejected,
    /// Out of attempts.
    Dead,
    /// Another attempt is scheduled.
    Retry,
}

impl After {
    /// The `deliveries.outcome` of the attempt.
    pub fn outcome(self) -> &'static str {
        match self {
            After::Delivered => "success",
            After::Failed => "failed",
            After::Rejected => "rejected",
            After::Dead => "dead",
            After::Retry => "retry",
        }
    }

    /// The job's status after the attempt; `None` keeps it unfinished.
    fn status(self) -> Option<OutboxStatus> {
        match self {
            After::Delivered => Some(OutboxStatus::Delivered),
            After::Failed | After::Rejected => Some(OutboxStatus::Failed),
            After::Dead => Some(OutboxStatus::Dead),
            After::Retry => None,
        }
    }
}

/// One attempt to record.
pub struct Recorded<'a> {
    pub job: &'a Job,
    pub number: i32,
    pub attempt: &'a Attempt,
    pub after: After,
}

/// Records `attempts` with [`record_many`], so that what one of them holds never stops the
/// others: when the store refuses the batch for its data, the attempts are recorded one by
/// one, and one it still refuses is recorded as a permanent failure that names the reason
/// (its job ends failed, and is never sent again). Fails only when the store is unavailable:
/// then nothing is recorded, nothing may be acknowledged, and the messages come back.
pub async fn record_isolated(pool: &PgPool, attempts: &[Recorded<'_>]) -> Result<(), sqlx::Error> {
    let Err(err) = record_many(pool, attempts).await else { return Ok(()) };
    if !shared::store::refused_data(&err) {
        return Err(err);
    }
    tracing::warn!(error = %err, attempts = attempts.len(), "the batch's attempts were refused; recording them one by one");
    for one in attempts {
        let Err(err) = record_many(pool, std::slice::from_ref(one)).await else { continue };
        if !shared::store::refused_data(&err) {
            return Err(err);
        }
        tracing::error!(job.id = %one.job.job_id, error = %err, "an attempt could not be recorded; its job fails");
        metrics::counter!("worker_unrecordable_attempts_total").increment(1);
        let failed = Attempt {
            status: one.attempt.status,
            latency: one.attempt.latency,
            ..Attempt::failed(Verdict::Permanent, format!("the attempt could not be recorded: {err}"))
        };
        let fallback = Recorded { job: one.job, number: one.number, attempt: &failed, after: After::Failed };
        if let Err(err) = record_many(pool, std::slice::from_ref(&fallback)).await {
            if !shared::store::refused_data(&err) {
                return Err(err);
            }
            // Nothing about this job can be stored; keeping its message would only bring it
            // back forever.
            tracing::error!(job.id = %one.job.job_id, error = %err, "not even the failure could be recorded; the message is dropped");
        }
    }
    Ok(())
}

/// Logs several attempts and finishes the jobs they end, in one transaction; the same rules
/// as for a single attempt: a job already finished by another worker stays as it is, and a
/// second success for one job is never recorded.
///
/// An attempt whose trigger or action was deleted while it was delivered is not logged (its
/// log went with the trigger): the others are, whatever one user deletes meanwhile.
pub async fn record_many(pool: &PgPool, attempts: &[Recorded<'_>]) -> Result<(), sqlx::Error> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    let triggers: Vec<uuid::Uuid> = attempts.iter().map(|r| r.job.trigger.id.0).collect();
    let actions: Vec<uuid::Uuid> = attempts.iter().map(|r| r.job.action.id.0).collect();
    let (live_triggers, live_actions) = shared::store::triggers::lock_existing(&mut tx, &triggers, &actions).await?;
    let live: Vec<&Recorded<'_>> = attempts
        .iter()
        .filter(|r| live_triggers.contains(&r.job.trigger.id.0) && live_actions.contains(&r.job.action.id.0))
        .collect();
    if live.len() < attempts.len() {
        let cancelled = attempts.len() - live.len();
        tracing::info!(cancelled, "attempts of deleted triggers are not logged");
        metrics::counter!("worker_cancelled_jobs_total").increment(u64::try_from(cancelled).unwrap_or(0));
    }
    let attempts = live;
    let jobs: Vec<uuid::Uuid> = attempts.iter().map(|r| r.job.job_id.0).collect();
    let triggers: Vec<uuid::Uuid> = attempts.iter().map(|r| r.job.trigger.id.0).collect();
    let actions: Vec<uuid::Uuid> = attempts.iter().map(|r| r.job.action.id.0).collect();
    let events: Vec<i64> = attempts.iter().map(|r| r.job.event.id.0).collect();
    let kinds: Vec<&str> = attempts.iter().map(|r| r.job.kind().as_str()).collect();
    let numbers: Vec<i32> = attempts.iter().map(|r| r.number).collect();
    let outcomes: Vec<&str> = attempts.iter().map(|r| r.after.outcome()).collect();
    let statuses: Vec<Option<i32>> = attempts.iter().map(|r| r.attempt.status.map(i32::from)).collect();
    // A target answers whatever it likes (a NUL byte included): what it said is made
    // storable here, so that one target's answer never fails the log of the batch.
    let errors: Vec<Option<Text>> = attempts.iter().map(|r| r.attempt.error.as_deref().map(Text::new)).collect();
    let latencies: Vec<i32> =
        attempts.iter().map(|r| i32::try_from(r.attempt.latency.as_millis()).unwrap_or(i32::MAX)).collect();
    let excerpts: Vec<Option<Text>> = attempts.iter().map(|r| r.attempt.excerpt.as_deref().map(Text::new)).collect();
    let finals: Vec<Option<OutboxStatus>> = attempts.iter().map(|r| r.after.status()).collect();
    sqlx::query(
        "INSERT INTO deliveries
            (job_id, trigger_id, action_id, event_id, kind, attempt, outcome, status_code, error, latency_ms, response_excerpt)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::int4[], $7::text[],
                              $8::int4[], $9::text[], $10::int4[], $11::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&jobs)
    .bind(&triggers)
    .bind(&actions)
    .bind(&events)
    .bind(&kinds)
    .bind(&numbers)
    .bind(&outcomes)
    .bind(&statuses)
    .bind(&errors)
    .bind(&latencies)
    .bind(&excerpts)
    .execute(&mut *tx)
    .await?;
    outbox::record_attempts(&mut tx, &jobs, &numbers, &finals).await?;
    tx.commit().await
}
