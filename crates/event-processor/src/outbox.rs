//! Outbox rows: one per job (a fired action), written in the batch's transaction.

use shared::job::Job;
use shared::trigger::ActionKind;
use sqlx::PgConnection;

/// A committed job on its way to Redis: what the relay pushes.
#[derive(Debug, Clone)]
pub struct Committed {
    pub job_id: uuid::Uuid,
    pub kind: ActionKind,
    pub payload: String,
}

/// Inserts the rows; a job id already present is left as it is. Returns the jobs as
/// serialized, for handing to the relay once the transaction commits.
pub async fn insert(conn: &mut PgConnection, rows: &[Job]) -> Result<Vec<Committed>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut jobs = Vec::with_capacity(rows.len());
    let mut triggers = Vec::with_capacity(rows.len());
    let mut actions = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for job in rows {
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
        .map(|(job, payload)| Committed { job_id: job.job_id.0, kind: job.kind(), payload })
        .collect())
}
