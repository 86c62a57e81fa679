//! `aggregate_state`: the state of each aggregate of each trigger, one row per key (an agent,
//! an agent and client, or the whole trigger), plus one marker row per aggregate once it was
//! warmed from history. The states themselves are JSON that the engine reads and writes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::TriggerId;

/// (trigger, aggregate id, key).
pub type StateKey = (TriggerId, String, String);

/// The key of the row that records that a trigger's aggregate was warmed from history.
pub const WARMED_MARKER: &str = "#warmed";

/// One stored state, as read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateRow {
    pub trigger_id: TriggerId,
    pub aggregate: String,
    pub key: String,
    pub state: serde_json::Value,
    pub trigger_version: i64,
    pub last_event_id: i64,
}

/// The stored rows of `keys` (absent keys have none), in one query.
pub async fn fetch<'e>(db: impl sqlx::PgExecutor<'e>, keys: &[StateKey]) -> Result<Vec<StateRow>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let triggers: Vec<uuid::Uuid> = keys.iter().map(|k| k.0.0).collect();
    let aggregates: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let state_keys: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
    sqlx::query_as(
        "SELECT s.trigger_id, s.aggregate, s.key, s.state, s.trigger_version, s.last_event_id
         FROM aggregate_state s
         JOIN UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(trigger_id, aggregate, key)
           ON s.trigger_id = k.trigger_id AND s.aggregate = k.aggregate AND s.key = k.key",
    )
    .bind(&triggers)
    .bind(&aggregates)
    .bind(&state_keys)
    .fetch_all(db)
    .await
}

/// Keeps the items of a column whose `keep` flag is set.
pub(crate) fn retain_by<T>(column: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    column.retain(|_| flags.next().copied().unwrap_or(false));
}

/// States to write, column by column, ready for one UNNEST upsert.
#[derive(Debug, Default)]
pub struct StateRows {
    triggers: Vec<uuid::Uuid>,
    aggregates: Vec<String>,
    keys: Vec<String>,
    versions: Vec<i64>,
    /// The states as JSON text.
    states: Vec<String>,
    last_events: Vec<i64>,
}

impl StateRows {
    pub fn push(&mut self, key: StateKey, trigger_version: i64, state: String, last_event_id: i64) {
        let (trigger, aggregate, key) = key;
        self.triggers.push(trigger.0);
        self.aggregates.push(aggregate);
        self.keys.push(key);
        self.versions.push(trigger_version);
        self.states.push(state);
        self.last_events.push(last_event_id);
    }

    pub fn len(&self) -> usize {
        self.triggers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// The trigger of every row.
    pub fn triggers(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.triggers.iter().copied()
    }

    /// Keeps the rows of `live` triggers only.
    pub fn retain_triggers(&mut self, live: &HashSet<uuid::Uuid>) {
        let keep: Vec<bool> = self.triggers.iter().map(|t| live.contains(t)).collect();
        retain_by(&mut self.triggers, &keep);
        retain_by(&mut self.aggregates, &keep);
        retain_by(&mut self.keys, &keep);
        retain_by(&mut self.versions, &keep);
        retain_by(&mut self.states, &keep);
        retain_by(&mut self.last_events, &keep);
    }

    /// Inserts or replaces the rows, all in one statement.
    pub async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.triggers.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO aggregate_state (trigger_id, aggregate, key, trigger_version, state, last_event_id)
             SELECT t, a, k, v, s::jsonb, e
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[]) AS u(t, a, k, v, s, e)
             ON CONFLICT (trigger_id, aggregate, key) DO UPDATE
                SET state = EXCLUDED.state, trigger_version = EXCLUDED.trigger_version,
                    last_event_id = EXCLUDED.last_event_id, updated_at = now()",
        )
        .bind(&self.triggers)
        .bind(&self.aggregates)
        .bind(&self.keys)
        .bind(&self.versions)
        .bind(&self.states)
        .bind(&self.last_events)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The aggregates of `trigger` that carry a warm marker.
pub async fn warmed(pool: &PgPool, trigger: TriggerId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT aggregate FROM aggregate_state WHERE trigger_id = $1 AND key = $2")
        .bind(trigger)
        .bind(WARMED_MARKER)
        .fetch_all(pool)
        .await
}

/// Deletes the states of `trigger`'s aggregates other than `current` (it no longer has them).
pub async fn delete_other_aggregates(
    conn: &mut PgConnection,
    trigger: TriggerId,
    current: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM aggregate_state WHERE trigger_id = $1 AND NOT (aggregate = ANY($2))")
        .bind(trigger)
        .bind(current)
        .execute(conn)
        .await?;
    Ok(())
}

/// One windowed aggregate (`count`, `avg`, `sum`, `min`, `max`) of a trigger: the id its state
/// rows carry and its window on block time. EMAs have no window and never appear here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowedAggregate {
    pub trigger: TriggerId,
    pub aggregate: String,
    pub window_secs: u64,
}

/// Deletes the state rows of `windows` whose window has passed, at most `batch` per
/// statement, and returns how many went.
///
/// A row goes when both hold:
/// - it has not been fed for longer than its window, on the wall clock: `updated_at` is
///   before `idle_before - window`;
/// - it holds no sample at or after `horizon - window` (block time).
///
/// `horizon` is a block time that no event still to be processed is older than (the caller
/// keeps a margin for late events). An event at block time `at >= horizon` drops every sample
/// at or before `at - window` before it is counted (see the engine's window update), so it
/// would drop all of this row's samples: to it the row is exactly an empty window, and an
/// absent row is read as an empty window (the engine starts a missing key empty). Deleting the row therefore changes no value any later event sees.
///
/// EMA rows, rows of other shapes and the warm markers ([`WARMED_MARKER`]) are never deleted.
/// Each deletion checks `updated_at` again on the row it deletes, so a row the processor
/// updates meanwhile stays, and rows a transaction holds are skipped (never waited for).
pub async fn prune_idle_keys(
    pool: &PgPool,
    windows: &[WindowedAggregate],
    idle_before: DateTime<Utc>,
    horizon: DateTime<Utc>,
    batch: usize,
) -> Result<u64, sqlx::Error> {
    if windows.is_empty() {
        return Ok(0);
    }
    let triggers: Vec<uuid::Uuid> = windows.iter().map(|w| w.trigger.0).collect();
    let aggregates: Vec<&str> = windows.iter().map(|w| w.aggregate.as_str()).collect();
    let secs: Vec<i64> = windows.iter().map(|w| i64::try_from(w.window_secs).unwrap_or(i64::MAX)).collect();
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut total = 0_u64;
    loop {
        // The JSON path is lax: a state whose entries are not what the processor writes
        // holds no sample it can read, and the processor would reset it anyway.
        let deleted = sqlx::query(
            "WITH doomed AS (
                SELECT s.trigger_id, s.aggregate, s.key, w.secs
                FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) AS w(trigger_id, aggregate, secs)
                JOIN aggregate_state s ON s.trigger_id = w.trigger_id AND s.aggregate = w.aggregate
                WHERE s.key <> $4
                  AND s.state->>'t' = 'window'
                  AND s.updated_at < $5::timestamptz - w.secs * interval '1 second'
                  AND NOT jsonb_path_exists(s.state, '$.entries[*][0] ? (@ >= $oldest)',
                                            jsonb_build_object('oldest', $6::int8 - w.secs), true)
                LIMIT $7
                FOR UPDATE OF s SKIP LOCKED)
             DELETE FROM aggregate_state s USING doomed d
             WHERE s.trigger_id = d.trigger_id AND s.aggregate = d.aggregate AND s.key = d.key
               AND s.updated_at < $5::timestamptz - d.secs * interval '1 second'",
        )
        .bind(&triggers)
        .bind(&aggregates)
        .bind(&secs)
        .bind(WARMED_MARKER)
        .bind(idle_before)
        .bind(horizon.timestamp())
        .bind(limit)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < limit.unsigned_abs() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}
