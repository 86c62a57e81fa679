//! Retention: a round, every `RETENTION_INTERVAL_SECS` on the leader, that deletes what is
//! no longer needed, in bounded batches, each table through the module that owns it:
//! - delivery attempts, and outbox rows of finished jobs, older than `RETENTION_DAYS`;
//! - aggregate keys whose window has passed ([`aggregate_state::prune_idle_keys`]) and
//!   cooldowns that are over ([`cooldowns::prune_expired`]), which changes no decision;
//! - events older than `EVENTS_RETENTION_DAYS`, only when it is set (events are the audit
//!   trail), and only those the processor has passed and no outbox row references.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use shared::startup::error_chain;
use shared::store::{aggregate_state, cooldowns, deliveries, events, outbox};
use sqlx::PgPool;

use crate::catchup;
use crate::config::Retention;
use crate::cursor::{self, CursorError};
use crate::triggers;

/// How late an event may arrive, in block time: how much older than the next event to
/// process (or than now, once the processor is caught up) an event still to come may be (a
/// chain whose indexer lags behind the others, events stored out of block order). Aggregate
/// keys and cooldowns are pruned only when no event up to this much older could still see
/// them; an event later than that (a backfill of old blocks, an indexer back after an outage
/// longer than this) may find a window empty that it would have found holding samples.
pub const BLOCK_TIME_MARGIN: TimeDelta = TimeDelta::days(1);

/// Triggers read per query when collecting the windowed aggregates.
const TRIGGERS_PER_PAGE: usize = 500;

/// The first round waits this long after the loop starts (the processor has just become the
/// leader and catches up first), or one interval when that is shorter. Short, so that a
/// leader that restarts now and then still prunes.
const FIRST_ROUND_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Cursor(#[from] CursorError),
}

/// What one round deleted, table by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub outbox: u64,
    pub aggregate_keys: u64,
    pub cooldowns: u64,
    pub events: u64,
}

impl Pruned {
    /// Counts the round in `retention_pruned_rows_total{table}` and logs it.
    fn record(&self) {
        let tables = [
            ("deliveries", self.deliveries),
            ("action_outbox", self.outbox),
            ("aggregate_state", self.aggregate_keys),
            ("cooldowns", self.cooldowns),
            ("events", self.events),
        ];
        for (table, rows) in tables {
            metrics::counter!("retention_pruned_rows_total", "table" => table).increment(rows);
        }
        tracing::info!(
            deliveries = self.deliveries,
            outbox = self.outbox,
            aggregate_keys = self.aggregate_keys,
            cooldowns = self.cooldowns,
            events = self.events,
            "retention round done"
        );
    }
}

/// One round, as of wall-clock time `now`. Outbox rows go before events, so that events
/// whose jobs were pruned can go in the same round.
pub async fn run_once(pool: &PgPool, retention: &Retention, now: DateTime<Utc>) -> Result<Pruned, RetentionError> {
    let cutoff = days_before(now, retention.days);
    let deliveries = deliveries::prune_before(pool, cutoff, retention.batch).await?;
    let outbox = outbox::prune_finished_before(pool, cutoff, retention.batch).await?;

    // Block time: no event still to be processed is older than `reference` (the first one
    // after the cursor, when the processor is behind), less the margin for late ones.
    // A trigger still catching up reads events from further back: it counts as the processor.
    let processed = catchup::positions(pool).await?.into_values().fold(cursor::load(pool).await?, Ord::min);
    let reference = cursor::next_block_time(pool, processed).await?.map_or(now, |next| next.min(now));
    let horizon = before(reference, BLOCK_TIME_MARGIN);
    let idle_before = before(now, BLOCK_TIME_MARGIN);
    let aggregate_keys = prune_aggregate_keys(pool, idle_before, horizon, retention.batch).await?;
    let cooldowns = cooldowns::prune_expired(pool, horizon, retention.batch).await?;

    let events = match retention.events_days {
        Some(days) => {
            let cutoff = days_before(now, days);
            events::prune_processed_before(pool, cutoff, processed.xid, processed.id, retention.batch).await?
        }
        None => 0,
    };
    Ok(Pruned { deliveries, outbox, aggregate_keys, cooldowns, events })
}

/// Runs a round every `retention.interval` until dropped. The service runs it only while
/// its processor is the leader, so one instance prunes at a time (two at once would do no
/// harm: a row is deleted once). A failed round is logged and the next one tries again.
pub async fn run(pool: PgPool, retention: Retention) {
    let interval = retention.interval.max(Duration::from_secs(1));
    let first = tokio::time::Instant::now() + FIRST_ROUND_AFTER.min(interval);
    let mut rounds = tokio::time::interval_at(first, interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rounds.tick().await;
        match run_once(&pool, &retention, Utc::now()).await {
            Ok(pruned) => pruned.record(),
            Err(err) => tracing::warn!(error = %error_chain(&err), "retention round failed; the next one tries again"),
        }
    }
}

/// Prunes the idle keys of every windowed aggregate, a page of triggers at a time.
async fn prune_aggregate_keys(
    pool: &PgPool,
    idle_before: DateTime<Utc>,
    horizon: DateTime<Utc>,
    batch: usize,
) -> Result<u64, sqlx::Error> {
    let mut after = None;
    let mut total = 0;
    loop {
        let (windows, last) = triggers::windowed_aggregates(pool, after, TRIGGERS_PER_PAGE).await?;
        let Some(last) = last else { return Ok(total) };
        total += aggregate_state::prune_idle_keys(pool, &windows, idle_before, horizon, batch).await?;
        after = Some(last);
    }
}

/// `days` days before `now` (the Unix epoch when that is out of range: nothing is older).
fn days_before(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    before(now, TimeDelta::days(i64::from(days)))
}

/// `span` before `at`, or the Unix epoch when that is out of range.
fn before(at: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(span).unwrap_or_default()
}
