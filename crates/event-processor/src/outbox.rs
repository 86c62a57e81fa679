//! Outbox rows: one per fired action, written in the batch's transaction.

use std::collections::BTreeMap;

use chrono::Utc;
use shared::domain::{Decimal, JobId, StoredEvent};
use shared::job::{Job, JobTrigger};
use shared::trigger::{ActionKind, StoredAction};
use sqlx::PgConnection;

use crate::triggers::LoadedTrigger;

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub job: Job,
}

impl OutboxRow {
    pub fn new(
        trigger: &LoadedTrigger,
        action: &StoredAction,
        event: &StoredEvent,
        aggregates: BTreeMap<String, Option<Decimal>>,
    ) -> Self {
        Self {
            job: Job {
                job_id: JobId::derive(event.id, trigger.id, action.id),
                trigger: JobTrigger { id: trigger.id, name: trigger.name.clone(), user_id: trigger.user_id },
                action: action.clone(),
                event: event.clone(),
                aggregates,
                fired_at: Utc::now(),
            },
        }
    }
}

/// A committed job on its way to Redis: what the relay pushes.
#[derive(Debug, Clone)]
pub struct Committed {
    pub job_id: uuid::Uuid,
    pub kind: ActionKind,
    pub payload: String,
}

/// Inserts the rows; a job id already present is left as it is. Returns the jobs as
/// serialized, for handing to the relay once the transaction commits.
pub async fn insert(conn: &mut PgConnection, rows: &[OutboxRow]) -> Result<Vec<Committed>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut jobs = Vec::with_capacity(rows.len());
    let mut triggers = Vec::with_capacity(rows.len());
    let mut actions = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for row in rows {
        let job = &row.job;
        jobs.push(job.job_id.0);
        triggers.push(job.trigger.id.0);
        actions.push(job.action.id.0);
        events.push(job.event.id.0);
        kinds.push(job.kind().as_str());
        payloads.push(serde_json::to_string(job).unwrap_or_else(|_| "{}".to_owned()));
    }
    sqlx::query(
        "INSERT INTO action_outbox (job_id, trigger_id, action_id, event_id, kind, payload)
         SELECT j, t, a, e, k, p::jsonb
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[]) AS u(j, t, a, e, k, p)
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(&jobs)
    .bind(&triggers)
    .bind(&actions)
    .bind(&events)
    .bind(&kinds)
    .bind(&payloads)
    .execute(conn)
    .await?;
    Ok(rows
        .iter()
        .zip(payloads)
        .map(|(row, payload)| Committed { job_id: row.job.job_id.0, kind: row.job.kind(), payload })
        .collect())
}
