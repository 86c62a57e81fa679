//! Catching a trigger up with the processor, alone, after its aggregates were warmed in the
//! background (see [`crate::warming`]).
//!
//! While its aggregates warm, a trigger stays out of live processing, and the batches go on
//! without it. The `trigger_catch_up` row (owned by this module) holds the position up to
//! which its states and cooldowns are current. Catching up replays the events of its scope
//! after that position through the trigger alone, firing as live processing would, and each
//! chunk commits its states, cooldowns, outbox rows and the row's new position in one
//! transaction, so a crash resumes exactly where the last chunk ended. The trigger joins
//! live processing in the same step that deletes the row, with the processor's cursor at
//! the row's position: every event is evaluated for it once.

use std::collections::HashMap;
use std::sync::Arc;

use shared::domain::{StoredEvent, TriggerId};
use shared::store::events::history::ScopeFilter;
use shared::store::events::{EventRow, SELECT_COLUMNS};
use sqlx::{PgConnection, PgPool};

use crate::cursor::{Cursor, CursorError, CursorRow};
use engine::LoadedTrigger;
use engine::TriggerIndex;
use engine::evaluate::{Decisions, evaluate, plan};
use engine::state::{CooldownCache, StateCache};
use shared::store::outbox::{self, Committed};

/// The first key of the advisory lock that one trigger's way in holds (the second is a hash
/// of its id): see [`crate::warming`].
pub const LOCK_SPACE: i32 = 8_004;

/// The leader a catch-up's writes require: the backend pid of the connection that holds the
/// processor's leader lock ([`crate::service::LEADER_LOCK`]). A processor that lost the lead
/// (its lock connection gone, another processor leading) can no longer commit a warming or a
/// catch-up, as it can no longer move the cursor. `None` (a processor run directly, as in
/// tests) checks nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence(pub Option<i32>);

impl Fence {
    /// Fails with [`CursorError::Moved`] when the lead was lost; run inside the transaction
    /// whose commit it guards.
    pub async fn check(self, conn: &mut PgConnection) -> Result<(), CursorError> {
        let Some(pid) = self.0 else { return Ok(()) };
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                            WHERE locktype = 'advisory' AND granted AND pid = $1
                              AND classid::int8 = $2 >> 32 AND objid::int8 = $2 & 4294967295 AND objsubid = 1)",
        )
        .bind(pid)
        .bind(crate::service::LEADER_LOCK)
        .fetch_one(conn)
        .await?;
        if held { Ok(()) } else { Err(CursorError::Moved) }
    }
}

/// Every trigger that is catching up, with its position.
pub async fn positions(pool: &PgPool) -> Result<HashMap<TriggerId, Cursor>, CursorError> {
    let rows: Vec<(TriggerId, String, i64)> =
        sqlx::query_as("SELECT trigger_id, last_xid::text, last_id FROM trigger_catch_up").fetch_all(pool).await?;
    rows.into_iter().map(|(id, xid, last_id)| Ok((id, Cursor { xid: parse_xid(&xid)?, id: last_id }))).collect()
}

/// The position of `trigger`, `None` when it is not catching up.
pub async fn position(conn: &mut PgConnection, trigger: TriggerId) -> Result<Option<Cursor>, CursorError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT last_xid::text, last_id FROM trigger_catch_up WHERE trigger_id = $1")
            .bind(trigger)
            .fetch_optional(conn)
            .await?;
    row.map(|(xid, id)| Ok(Cursor { xid: parse_xid(&xid)?, id })).transpose()
}

fn parse_xid(text: &str) -> Result<u64, CursorError> {
    text.parse().map_err(|_| CursorError::Malformed(text.to_owned()))
}

/// Takes `trigger` out of live processing at `at` (the processor's committed cursor), unless
/// it is already catching up: then its earlier position stands, since its states are current
/// only up to there. Returns the position, `None` when the trigger was deleted meanwhile.
pub async fn begin(pool: &PgPool, trigger: TriggerId, at: Cursor, fence: Fence) -> Result<Option<Cursor>, CursorError> {
    let mut tx = pool.begin().await?;
    let (live, _) = shared::store::triggers::lock_existing(&mut tx, &[trigger.0], &[]).await?;
    if live.is_empty() {
        return Ok(None);
    }
    fence.check(&mut tx).await?;
    sqlx::query(
        "INSERT INTO trigger_catch_up (trigger_id, last_xid, last_id) VALUES ($1, $2::text::xid8, $3)
         ON CONFLICT (trigger_id) DO NOTHING",
    )
    .bind(trigger)
    .bind(at.xid.to_string())
    .bind(at.id)
    .execute(&mut *tx)
    .await?;
    let position = position(&mut tx, trigger).await?;
    tx.commit().await?;
    Ok(position)
}

/// Moves the position of `trigger` from `from` to `to`; fails when someone else moved it, so
/// two catch-ups of one trigger can never both commit the same events.
async fn advance(conn: &mut PgConnection, trigger: TriggerId, from: Cursor, to: Cursor) -> Result<(), CursorError> {
    let moved = sqlx::query(
        "UPDATE trigger_catch_up SET last_xid = $2::text::xid8, last_id = $3, updated_at = now()
         WHERE trigger_id = $1 AND last_xid = $4::text::xid8 AND last_id = $5",
    )
    .bind(trigger)
    .bind(to.xid.to_string())
    .bind(to.id)
    .bind(from.xid.to_string())
    .bind(from.id)
    .execute(conn)
    .await?;
    if moved.rows_affected() == 1 { Ok(()) } else { Err(CursorError::Moved) }
}

/// Ends the catch-up of `trigger`, which must be at `at`: from here live processing owns it.
pub async fn finish(pool: &PgPool, trigger: TriggerId, at: Cursor, fence: Fence) -> Result<(), CursorError> {
    let mut tx = pool.begin().await?;
    fence.check(&mut tx).await?;
    let done = sqlx::query(
        "DELETE FROM trigger_catch_up WHERE trigger_id = $1 AND last_xid = $2::text::xid8 AND last_id = $3",
    )
    .bind(trigger)
    .bind(at.xid.to_string())
    .bind(at.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    // Gone with its trigger, deleted meanwhile: nothing is left to hand over.
    match position(&mut *pool.acquire().await?, trigger).await? {
        None => Ok(()),
        Some(_) => Err(CursorError::Moved),
    }
}

/// Ends the catch-up of `trigger` if it is disabled: enabled again later, it joins live
/// processing with the states it has, as a trigger disabled while live does.
pub async fn abandon_if_disabled(pool: &PgPool, trigger: TriggerId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM trigger_catch_up c USING triggers t
         WHERE c.trigger_id = $1 AND t.id = c.trigger_id AND NOT t.enabled",
    )
    .bind(trigger)
    .execute(pool)
    .await?;
    Ok(())
}

/// One trigger catching up: its own caches, kept from chunk to chunk.
pub struct CatchUp {
    trigger: Arc<LoadedTrigger>,
    index: TriggerIndex,
    filter: ScopeFilter,
    states: StateCache,
    cooldowns: CooldownCache,
    /// The events one chunk reads at most.
    chunk: usize,
    max_window_entries: usize,
    fence: Fence,
}

/// What one [`CatchUp::to`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events of the scope replayed.
    pub events: usize,
    /// Firings (one outbox row per action each).
    pub fires: u64,
    /// `false` when the trigger was deleted meanwhile.
    pub live: bool,
    /// The position it is at now.
    pub reached: Cursor,
}

impl CatchUp {
    pub fn new(trigger: Arc<LoadedTrigger>, chunk: usize, max_window_entries: usize, fence: Fence) -> Self {
        Self {
            index: TriggerIndex::build([&trigger]),
            filter: ScopeFilter::of(&trigger.rule.scope),
            trigger,
            states: StateCache::default(),
            cooldowns: CooldownCache::default(),
            chunk: chunk.max(1),
            max_window_entries,
            fence,
        }
    }

    /// Replays the events after `from` up to `target` (a position the processor committed,
    /// so every event up to it is settled), a chunk per transaction, at most `chunks` of them.
    /// `jobs` receives the jobs of each chunk once it is committed. A failed chunk leaves this
    /// value unusable: start anew.
    pub async fn to(
        &mut self,
        pool: &PgPool,
        mut from: Cursor,
        target: Cursor,
        chunks: usize,
        mut jobs: impl FnMut(Vec<Committed>),
    ) -> Result<Progress, CursorError> {
        let mut progress = Progress { live: true, reached: from, ..Progress::default() };
        for _ in 0..chunks {
            if from >= target {
                break;
            }
            let rows = self.read(pool, from, target).await?;
            let to = if rows.len() < self.chunk { target } else { rows.last().map_or(target, |(at, _)| *at) };
            let events: Vec<StoredEvent> = rows
                .into_iter()
                .filter_map(|(_, row)| {
                    let id = row.id();
                    StoredEvent::try_from(row)
                        .inspect_err(|err| tracing::warn!(event.id = id, error = %err, "skipping a malformed event"))
                        .ok()
                })
                .collect();
            let plan = plan(&self.index, &events);
            crate::state::load(pool, &mut self.states, &mut self.cooldowns, plan.state_keys, plan.cooldown_keys)
                .await?;
            let mut decisions = Decisions::default();
            for (event, triggers) in events.iter().zip(&plan.candidates) {
                evaluate(
                    event,
                    triggers,
                    &mut self.states,
                    &mut self.cooldowns,
                    self.max_window_entries,
                    &mut decisions,
                );
            }

            let mut tx = pool.begin().await?;
            let actions: Vec<uuid::Uuid> = self.trigger.actions.iter().map(|a| a.id.0).collect();
            let (live, live_actions) =
                shared::store::triggers::lock_existing(&mut tx, &[self.trigger.id.0], &actions).await?;
            if live.is_empty() {
                return Ok(Progress { live: false, ..progress });
            }
            decisions.jobs.retain(|job| live_actions.contains(&job.action.id.0));
            self.states.take_dirty().write(&mut tx).await?;
            self.cooldowns.take_dirty().write(&mut tx).await?;
            let committed = outbox::insert(&mut tx, &decisions.jobs).await?;
            advance(&mut tx, self.trigger.id, from, to).await?;
            self.fence.check(&mut tx).await?;
            tx.commit().await?;

            if !committed.is_empty() {
                jobs(committed);
            }
            progress.events += events.len();
            progress.fires += decisions.fires;
            progress.reached = to;
            from = to;
            tokio::task::yield_now().await;
        }
        Ok(progress)
    }

    /// Up to a chunk of the scope's events after `from`, up to `target`, in store order.
    async fn read(&self, pool: &PgPool, from: Cursor, target: Cursor) -> Result<Vec<(Cursor, EventRow)>, CursorError> {
        let sql = format!(
            "SELECT tx_xid::text AS cursor_xid, {SELECT_COLUMNS} FROM events
             WHERE (tx_xid, id) > ($1::text::xid8, $2) AND (tx_xid, id) <= ($3::text::xid8, $4)
               AND (cardinality($5::int8[]) = 0 OR chain_id = ANY($5))
               AND (cardinality($6::text[]) = 0 OR event_type = ANY($6))
               AND (cardinality($7::text[]) = 0 OR agent_id = ANY($7::text[]::numeric[]))
             ORDER BY tx_xid, id
             LIMIT $8"
        );
        let rows: Vec<CursorRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from.xid.to_string())
            .bind(from.id)
            .bind(target.xid.to_string())
            .bind(target.id)
            .bind(&self.filter.chains)
            .bind(&self.filter.types)
            .bind(&self.filter.agents)
            .bind(i64::try_from(self.chunk).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
        rows.into_iter()
            .map(|row| Ok((Cursor { xid: parse_xid(&row.cursor_xid)?, id: row.event.id() }, row.event)))
            .collect()
    }
}
