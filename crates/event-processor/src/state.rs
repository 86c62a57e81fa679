//! Aggregate state and cooldowns, cached in memory and written back in the batch's
//! transaction. After a failed transaction the caches are cleared: PostgreSQL stays the
//! only truth.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use shared::domain::TriggerId;
use shared::trigger::AggregateKind;
use sqlx::{PgConnection, PgPool};

use crate::aggregates::AggregateState;

/// (trigger, aggregate id, key).
pub type StateKey = (TriggerId, String, String);
/// (trigger, `chain:agent`).
pub type CooldownKey = (TriggerId, String);

/// The key of the row that records that a trigger's aggregate was warmed from history.
pub const WARMED_MARKER: &str = "#warmed";

#[derive(Debug, Clone)]
pub struct CachedState {
    pub state: AggregateState,
    pub trigger_version: i64,
    pub last_event_id: i64,
    pub dirty: bool,
}

#[derive(Default)]
pub struct StateCache {
    /// `None`: known to be absent from the table.
    entries: HashMap<StateKey, Option<CachedState>>,
}

impl StateCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Loads every key not cached yet, in one query.
    pub async fn prefetch(&mut self, pool: &PgPool, keys: HashSet<StateKey>) -> Result<(), sqlx::Error> {
        let missing: Vec<StateKey> = keys.into_iter().filter(|k| !self.entries.contains_key(k)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let triggers: Vec<uuid::Uuid> = missing.iter().map(|k| k.0.0).collect();
        let aggregates: Vec<&str> = missing.iter().map(|k| k.1.as_str()).collect();
        let state_keys: Vec<&str> = missing.iter().map(|k| k.2.as_str()).collect();
        let rows: Vec<(TriggerId, String, String, serde_json::Value, i64, i64)> = sqlx::query_as(
            "SELECT s.trigger_id, s.aggregate, s.key, s.state, s.trigger_version, s.last_event_id
             FROM aggregate_state s
             JOIN UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(trigger_id, aggregate, key)
               ON s.trigger_id = k.trigger_id AND s.aggregate = k.aggregate AND s.key = k.key",
        )
        .bind(&triggers)
        .bind(&aggregates)
        .bind(&state_keys)
        .fetch_all(pool)
        .await?;
        for key in missing {
            self.entries.insert(key, None);
        }
        for (trigger, aggregate, key, state, trigger_version, last_event_id) in rows {
            match serde_json::from_value::<AggregateState>(state) {
                Ok(state) => {
                    self.entries.insert(
                        (trigger, aggregate, key),
                        Some(CachedState { state, trigger_version, last_event_id, dirty: false }),
                    );
                }
                Err(err) => {
                    // Unreadable state starts over rather than stopping every trigger.
                    tracing::error!(trigger.id = %trigger, %aggregate, error = %err, "aggregate state unreadable; reset");
                }
            }
        }
        Ok(())
    }

    /// The cached state of `key`, created empty when absent.
    pub fn entry(&mut self, key: StateKey, kind: &AggregateKind, trigger_version: i64) -> &mut CachedState {
        let slot = self.entries.entry(key).or_insert(None);
        slot.get_or_insert_with(|| CachedState {
            state: AggregateState::new(kind),
            trigger_version,
            last_event_id: 0,
            dirty: false,
        })
    }

    /// Takes every changed state out for writing, and marks it clean.
    pub fn take_dirty(&mut self) -> StateRows {
        let mut rows = StateRows::default();
        for ((trigger, aggregate, key), entry) in self.entries.iter_mut() {
            let Some(entry) = entry.as_mut().filter(|e| e.dirty) else { continue };
            rows.triggers.push(trigger.0);
            rows.aggregates.push(aggregate.clone());
            rows.keys.push(key.clone());
            rows.versions.push(entry.trigger_version);
            rows.states.push(serde_json::to_string(&entry.state).unwrap_or_else(|_| "{}".to_owned()));
            rows.last_events.push(entry.last_event_id);
            entry.dirty = false;
        }
        rows
    }
}

/// Keeps the items of a column whose `keep` flag is set.
fn retain_by<T>(column: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    column.retain(|_| flags.next().copied().unwrap_or(false));
}

/// Changed aggregate states, column by column, ready for one UNNEST upsert.
#[derive(Debug, Default)]
pub struct StateRows {
    triggers: Vec<uuid::Uuid>,
    aggregates: Vec<String>,
    keys: Vec<String>,
    versions: Vec<i64>,
    states: Vec<String>,
    last_events: Vec<i64>,
}

impl StateRows {
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

    pub async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        upsert_states(
            conn,
            &self.triggers,
            &self.aggregates,
            &self.keys,
            &self.versions,
            &self.states,
            &self.last_events,
        )
        .await
    }
}

/// Inserts or replaces aggregate state rows, all in one statement.
pub async fn upsert_states(
    conn: &mut PgConnection,
    triggers: &[uuid::Uuid],
    aggregates: &[String],
    keys: &[String],
    versions: &[i64],
    states: &[String],
    last_events: &[i64],
) -> Result<(), sqlx::Error> {
    if triggers.is_empty() {
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
    .bind(triggers)
    .bind(aggregates)
    .bind(keys)
    .bind(versions)
    .bind(states)
    .bind(last_events)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Cooldown {
    pub last_fired_at: DateTime<Utc>,
    pub last_event_id: i64,
    pub suppressed: i64,
    pub dirty: bool,
}

#[derive(Default)]
pub struct CooldownCache {
    entries: HashMap<CooldownKey, Option<Cooldown>>,
}

impl CooldownCache {
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub async fn prefetch(&mut self, pool: &PgPool, keys: HashSet<CooldownKey>) -> Result<(), sqlx::Error> {
        let missing: Vec<CooldownKey> = keys.into_iter().filter(|k| !self.entries.contains_key(k)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let triggers: Vec<uuid::Uuid> = missing.iter().map(|k| k.0.0).collect();
        let agents: Vec<&str> = missing.iter().map(|k| k.1.as_str()).collect();
        let rows: Vec<(TriggerId, String, DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT c.trigger_id, c.agent_key, c.last_fired_at, c.last_event_id, c.suppressed_count
             FROM cooldowns c
             JOIN UNNEST($1::uuid[], $2::text[]) AS k(trigger_id, agent_key)
               ON c.trigger_id = k.trigger_id AND c.agent_key = k.agent_key",
        )
        .bind(&triggers)
        .bind(&agents)
        .fetch_all(pool)
        .await?;
        for key in missing {
            self.entries.insert(key, None);
        }
        for (trigger, agent, last_fired_at, last_event_id, suppressed) in rows {
            self.entries
                .insert((trigger, agent), Some(Cooldown { last_fired_at, last_event_id, suppressed, dirty: false }));
        }
        Ok(())
    }

    /// Decides a would-be firing at block time `at`: `true` when it may fire (and records it),
    /// `false` when the cooldown suppresses it (and counts it).
    pub fn admit(&mut self, key: CooldownKey, cooldown_secs: u64, at: DateTime<Utc>, event_id: i64) -> bool {
        let slot = self.entries.entry(key).or_insert(None);
        if let Some(cooldown) = slot.as_mut() {
            let until = cooldown.last_fired_at
                + chrono::Duration::seconds(i64::try_from(cooldown_secs).unwrap_or(i64::MAX / 2));
            if at < until {
                cooldown.suppressed += 1;
                cooldown.dirty = true;
                return false;
            }
        }
        let suppressed = slot.as_ref().map_or(0, |c| c.suppressed);
        *slot = Some(Cooldown { last_fired_at: at, last_event_id: event_id, suppressed, dirty: true });
        true
    }

    /// Takes every changed cooldown out for writing, and marks it clean.
    pub fn take_dirty(&mut self) -> CooldownRows {
        let mut rows = CooldownRows::default();
        for ((trigger, agent), entry) in self.entries.iter_mut() {
            let Some(entry) = entry.as_mut().filter(|e| e.dirty) else { continue };
            rows.triggers.push(trigger.0);
            rows.agents.push(agent.clone());
            rows.fired.push(entry.last_fired_at);
            rows.events.push(entry.last_event_id);
            rows.suppressed.push(entry.suppressed);
            entry.dirty = false;
        }
        rows
    }
}

/// Changed cooldowns, column by column.
#[derive(Debug, Default)]
pub struct CooldownRows {
    triggers: Vec<uuid::Uuid>,
    agents: Vec<String>,
    fired: Vec<DateTime<Utc>>,
    events: Vec<i64>,
    suppressed: Vec<i64>,
}

impl CooldownRows {
    /// The trigger of every row.
    pub fn triggers(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.triggers.iter().copied()
    }

    /// Keeps the rows of `live` triggers only.
    pub fn retain_triggers(&mut self, live: &HashSet<uuid::Uuid>) {
        let keep: Vec<bool> = self.triggers.iter().map(|t| live.contains(t)).collect();
        retain_by(&mut self.triggers, &keep);
        retain_by(&mut self.agents, &keep);
        retain_by(&mut self.fired, &keep);
        retain_by(&mut self.events, &keep);
        retain_by(&mut self.suppressed, &keep);
    }

    pub async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.triggers.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO cooldowns (trigger_id, agent_key, last_fired_at, last_event_id, suppressed_count)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[], $5::int8[])
             ON CONFLICT (trigger_id, agent_key) DO UPDATE
                SET last_fired_at = EXCLUDED.last_fired_at, last_event_id = EXCLUDED.last_event_id,
                    suppressed_count = EXCLUDED.suppressed_count",
        )
        .bind(&self.triggers)
        .bind(&self.agents)
        .bind(&self.fired)
        .bind(&self.events)
        .bind(&self.suppressed)
        .execute(conn)
        .await?;
        Ok(())
    }
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
/// at or before `at - window` before it is counted (see [`AggregateState::update`]), so it
/// would drop all of this row's samples: to it the row is exactly an empty window, and an
/// absent row is read as an empty window ([`StateCache::entry`] creates
/// [`AggregateState::new`]). Deleting the row therefore changes no value any later event sees.
///
/// EMA rows, rows of other shapes and the warm markers ([`WARMED_MARKER`]) are never deleted.
/// Each deletion checks `updated_at` again on the row it deletes, so a row the processor
/// updates meanwhile stays, and rows a transaction holds are skipped (never waited for).
pub async fn prune_idle_aggregate_keys(
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

/// Deletes the cooldowns that ended before block time `horizon` (`last_fired_at +
/// cooldown_secs` of the trigger as it is now), at most `batch` per statement, and returns
/// how many went. `horizon` is a block time no event still to be processed is older than, so
/// every later event finds the cooldown over, as it finds an absent one. What is lost is the
/// row's count of suppressed firings. Rows a transaction holds are skipped, never waited for.
pub async fn prune_expired_cooldowns(pool: &PgPool, horizon: DateTime<Utc>, batch: usize) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut total = 0_u64;
    loop {
        let deleted = sqlx::query(
            "WITH doomed AS (
                SELECT c.trigger_id, c.agent_key
                FROM cooldowns c JOIN triggers t ON t.id = c.trigger_id
                WHERE c.last_fired_at < $1::timestamptz - t.cooldown_secs * interval '1 second'
                LIMIT $2
                FOR UPDATE OF c SKIP LOCKED)
             DELETE FROM cooldowns c USING doomed d, triggers t
             WHERE c.trigger_id = d.trigger_id AND c.agent_key = d.agent_key AND t.id = c.trigger_id
               AND c.last_fired_at < $1::timestamptz - t.cooldown_secs * interval '1 second'",
        )
        .bind(horizon)
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
