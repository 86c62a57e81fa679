//! The batch loop: read settled events after the cursor, evaluate them, and commit state,
//! cooldowns, outbox rows and the new cursor in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use shared::domain::{StoredEvent, TriggerId};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::catchup::{self, CatchUp};
use crate::config::Settings;
use crate::cursor::{self, Cursor, CursorError};
use crate::relay::HandOff;
use crate::triggers::{Refresh, TriggerSet};
use crate::warming::Warming;
use engine::LoadedTrigger;
use engine::TriggerIndex;
use engine::evaluate::{Decisions, Plan, evaluate, plan};
use engine::state::{CooldownCache, StateCache};
use shared::job::Job;
use shared::store::aggregate_state::StateRows;
use shared::store::cooldowns::CooldownRows;
use shared::store::outbox::{self, Committed};

/// Chunks (of a batch each) a trigger done warming may still replay between two batches
/// before it is filed; further behind, it goes back to its task.
const FINAL_CHUNKS: usize = 2;
/// The most a final replay is doubled: 2 << 5 = 64 chunks (32,000 events with the default
/// batch), still short next to a backlog, which its task catches up with instead.
const MAX_DOUBLINGS: u32 = 5;

/// Cached aggregate states beyond which the cache is emptied after a commit.
const MAX_CACHED_STATES: usize = 500_000;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error("the batch reader failed: {0}")]
    Reader(String),
    #[error("trigger {0} is being warmed by another processor")]
    WarmingElsewhere(shared::domain::TriggerId),
}

/// Everything one batch decided, written in one transaction with the cursor.
struct Writes {
    states: StateRows,
    cooldowns: CooldownRows,
    outbox: Vec<Job>,
    from: Cursor,
    to: Cursor,
}

/// A batch whose commit is under way.
struct InFlight {
    write: JoinHandle<Result<Vec<Committed>, ProcessError>>,
    to: Cursor,
    report: BatchReport,
}

async fn write(pool: PgPool, mut writes: Writes) -> Result<Vec<Committed>, ProcessError> {
    let mut tx = pool.begin().await?;
    drop_vanished(&mut tx, &mut writes).await?;
    writes.states.write(&mut tx).await?;
    writes.cooldowns.write(&mut tx).await?;
    let committed = outbox::insert(&mut tx, &writes.outbox).await?;
    cursor::advance(&mut tx, writes.from, writes.to).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Drops what the batch decided for triggers and actions deleted since they were loaded (a
/// user may delete a trigger at any moment), and locks the others until the commit, so one
/// user's deletion never fails the batch of everyone.
async fn drop_vanished(tx: &mut sqlx::PgConnection, writes: &mut Writes) -> Result<(), sqlx::Error> {
    let mut triggers: Vec<uuid::Uuid> = writes.states.triggers().chain(writes.cooldowns.triggers()).collect();
    triggers.extend(writes.outbox.iter().map(|row| row.trigger.id.0));
    triggers.sort_unstable();
    triggers.dedup();
    if triggers.is_empty() {
        return Ok(());
    }
    let mut actions: Vec<uuid::Uuid> = writes.outbox.iter().map(|row| row.action.id.0).collect();
    actions.sort_unstable();
    actions.dedup();
    let (live_triggers, live_actions) = shared::store::triggers::lock_existing(tx, &triggers, &actions).await?;
    if live_triggers.len() == triggers.len() && live_actions.len() == actions.len() {
        return Ok(());
    }
    let fires = writes.outbox.len();
    writes.outbox.retain(|row| live_triggers.contains(&row.trigger.id.0) && live_actions.contains(&row.action.id.0));
    writes.states.retain_triggers(&live_triggers);
    writes.cooldowns.retain_triggers(&live_triggers);
    let dropped = fires - writes.outbox.len();
    tracing::debug!(dropped, "jobs of triggers or actions deleted since they were loaded are dropped");
    metrics::counter!("processor_vanished_jobs_total").increment(u64::try_from(dropped).unwrap_or(0));
    Ok(())
}

/// A batch as read: the events that parsed, their plan, and where it ends.
struct ParsedBatch {
    events: Vec<StoredEvent>,
    plan: Plan,
    read: usize,
    malformed: usize,
    last: Option<Cursor>,
}

/// Reads, parses and plans the batch after `from`. A row that does not parse is skipped
/// and counted: one bad row must not stop the others.
async fn read_parsed(
    pool: &PgPool,
    index: &TriggerIndex,
    from: Cursor,
    limit: usize,
) -> Result<ParsedBatch, ProcessError> {
    let rows = cursor::read_batch(pool, from, limit).await?;
    let last = rows.last().map(|(position, _)| *position);
    let read = rows.len();
    let mut malformed = 0;
    let mut events = Vec::with_capacity(rows.len());
    for (_, row) in rows {
        let id = row.id();
        match StoredEvent::try_from(row) {
            Ok(event) => events.push(event),
            Err(err) => {
                tracing::error!(event.id = id, error = %err, "skipping a malformed event");
                metrics::counter!("processor_malformed_events_total").increment(1);
                malformed += 1;
            }
        }
    }
    let plan = plan(index, &events);
    Ok(ParsedBatch { events, plan, read, malformed, last })
}

fn spawn_read(
    pool: &PgPool,
    index: &Arc<TriggerIndex>,
    from: Cursor,
    limit: usize,
) -> JoinHandle<Result<ParsedBatch, ProcessError>> {
    let (pool, index) = (pool.clone(), index.clone());
    tokio::spawn(async move { read_parsed(&pool, &index, from, limit).await })
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub events: usize,
    pub malformed: usize,
    pub fires: u64,
    pub suppressed: u64,
    pub jobs: u64,
}

pub struct Processor {
    pool: PgPool,
    settings: Settings,
    triggers: TriggerSet,
    index: Arc<TriggerIndex>,
    states: StateCache,
    cooldowns: CooldownCache,
    /// Triggers on their way into the index.
    warming: Warming,
    /// How many times in a row each trigger was sent back to its task because more events
    /// had come than its final replay takes: each time the next final replay takes twice as
    /// many, so a trigger always gets in, however steady the traffic.
    sent_back: HashMap<TriggerId, u32>,
    cursor: Option<Cursor>,
    /// Receives the jobs of every committed batch (the relay's fast path).
    hand_off: Option<HandOff>,
    lag_measured: Option<std::time::Instant>,
}

impl Processor {
    pub fn new(pool: PgPool, settings: Settings) -> Self {
        Self {
            warming: Warming::new(pool.clone(), settings.clone()),
            sent_back: HashMap::new(),
            pool,
            settings,
            triggers: TriggerSet::default(),
            index: Arc::default(),
            states: StateCache::default(),
            cooldowns: CooldownCache::default(),
            cursor: None,
            hand_off: None,
            lag_measured: None,
        }
    }

    /// Sends the jobs of every committed batch to `relay`, which pushes them without reading
    /// them back. (Rows it never gets, say after a crash, are found in the outbox.)
    pub fn hand_off_to(mut self, relay: HandOff) -> Self {
        self.warming.hand_off_to(relay.clone());
        self.hand_off = Some(relay);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The cursor as last committed by this processor (`None` before its first read).
    pub fn position(&self) -> Option<Cursor> {
        self.cursor
    }

    pub fn triggers_loaded(&self) -> usize {
        self.triggers.len()
    }

    /// Forgets everything not committed: caches and the cursor are read again. Triggers on
    /// their way in keep going (their progress is committed as they go).
    pub fn reset(&mut self) {
        self.states.clear();
        self.cooldowns.clear();
        self.cursor = None;
        self.triggers = TriggerSet::default();
        self.index = Arc::default();
    }

    async fn cursor(&mut self) -> Result<Cursor, ProcessError> {
        match self.cursor {
            Some(cursor) => Ok(cursor),
            None => {
                let cursor = cursor::load(&self.pool).await?;
                self.cursor = Some(cursor);
                Ok(cursor)
            }
        }
    }

    /// Reloads changed triggers and files the changes in the index: only the triggers that
    /// changed are filed again (all of them when the set was empty, as after a reset). A
    /// trigger with aggregates to warm, or a catch-up to finish, is not filed but handed to
    /// [`Warming`], and filed here once it has caught up (see [`crate::warming`]). Returns
    /// whether the index changed.
    ///
    /// The batch reader holds the index only while it reads, so the changes are normally
    /// made in place; when an aborted reader has not let go of it yet, `Arc::make_mut` copies
    /// it first (the cost of the full rebuild this replaces).
    pub async fn refresh_triggers(&mut self) -> Result<bool, ProcessError> {
        let reload = self.triggers.is_empty();
        let refresh = self.triggers.refresh(&self.pool).await?;
        let mut filed = false;
        if !refresh.is_empty() {
            let staged = self.stage(&refresh).await;
            let live = match staged {
                Ok(live) => live,
                Err(err) => {
                    // The set already holds triggers the index does not, and the index may
                    // hold triggers taken out meanwhile: the next refresh reads them all
                    // again and builds the index anew.
                    self.triggers = TriggerSet::default();
                    self.index = Arc::default();
                    return Err(err);
                }
            };
            if !refresh.changed.is_empty() {
                // States of changed triggers may have been rewritten by warming.
                self.states.clear();
                self.cooldowns.clear();
            }
            if reload {
                self.index = Arc::new(TriggerIndex::build(&live));
            } else {
                let index = Arc::make_mut(&mut self.index);
                for id in refresh.removed.iter().chain(refresh.changed.iter().map(|t| &t.id)) {
                    index.remove(*id);
                }
                for trigger in live {
                    index.insert(trigger);
                }
            }
            filed = true;
            tracing::info!(
                triggers = self.triggers.len(),
                changed = refresh.changed.len(),
                removed = refresh.removed.len(),
                warming = self.warming.len(),
                "triggers reloaded"
            );
        } else if reload {
            // Nothing is enabled: no index left over from a failed refresh.
            self.index = Arc::default();
        }
        filed |= self.file_ready().await?;
        metrics::gauge!("processor_triggers_loaded").set(self.triggers.len() as f64);
        // Triggers gone from the way in (deleted meanwhile) are forgotten here too.
        let warming = &self.warming;
        self.sent_back.retain(|id, _| warming.holds(*id));
        Ok(filed)
    }

    /// Sorts the changed triggers: those that may be filed at once are returned; the others
    /// start their way in. Removed triggers stop theirs.
    async fn stage(&mut self, refresh: &Refresh) -> Result<Vec<Arc<LoadedTrigger>>, ProcessError> {
        for id in &refresh.removed {
            self.warming.cancel(*id).await;
            // Disabled while catching up: like any disabled trigger, it is fed nothing until
            // it is enabled again, and then goes on from the states it has.
            catchup::abandon_if_disabled(&self.pool, *id).await?;
        }
        if refresh.changed.is_empty() {
            return Ok(Vec::new());
        }
        let cursor = self.cursor().await?;
        let catching_up = catchup::positions(&self.pool).await?;
        let mut live = Vec::with_capacity(refresh.changed.len());
        for trigger in &refresh.changed {
            if Warming::needed(&self.pool, trigger, &catching_up).await? {
                self.warming.start(trigger.clone(), cursor).await?;
            } else {
                self.warming.cancel(trigger.id).await;
                live.push(trigger.clone());
            }
        }
        Ok(live)
    }

    /// Files the triggers whose warming is done, once each has replayed, here between two
    /// batches, the few events committed since its task stopped. Returns whether any was.
    async fn file_ready(&mut self) -> Result<bool, ProcessError> {
        let cursor = self.cursor().await?;
        let ready = self.warming.take_ready(cursor).await?;
        let mut filed = false;
        for (trigger, at) in ready {
            if !self.triggers.holds(&trigger) {
                // Changed or removed since it started: its newer version has its own way in.
                self.sent_back.remove(&trigger.id);
                continue;
            }
            let mut catch_up = CatchUp::new(
                trigger.clone(),
                self.settings.batch_size,
                self.settings.max_window_entries,
                self.settings.fence,
            );
            let hand_off = self.hand_off.as_ref();
            let times = self.sent_back.get(&trigger.id).copied().unwrap_or(0);
            let chunks = FINAL_CHUNKS << times.min(MAX_DOUBLINGS);
            let progress =
                catch_up.to(&self.pool, at, cursor, chunks, |jobs| crate::relay::hand(hand_off, jobs)).await?;
            if !progress.live {
                self.sent_back.remove(&trigger.id);
                continue;
            }
            if progress.reached < cursor {
                // The batches went far ahead meanwhile (a backlog): the rest is not replayed
                // here, between two batches, but on its task again.
                self.sent_back.insert(trigger.id, times + 1);
                self.warming.start(trigger, cursor).await?;
                continue;
            }
            self.sent_back.remove(&trigger.id);
            catchup::finish(&self.pool, trigger.id, cursor, self.settings.fence).await?;
            // The caches may hold states of its earlier version.
            self.states.clear();
            self.cooldowns.clear();
            Arc::make_mut(&mut self.index).insert(trigger.clone());
            filed = true;
            tracing::info!(trigger.id = %trigger.id, events = progress.events, fires = progress.fires, "trigger caught up and live");
        }
        Ok(filed)
    }

    /// The number of enabled triggers still warming or catching up (not yet live).
    pub fn warming(&self) -> usize {
        self.warming.len()
    }

    /// Notified when a trigger's warming ends in the background: the next
    /// [`Processor::refresh_triggers`] files it.
    pub fn warming_finished(&self) -> Arc<tokio::sync::Notify> {
        self.warming.finished()
    }

    /// Processes one batch. Returns what it did; `events == 0` means it is caught up.
    pub async fn process_batch(&mut self) -> Result<BatchReport, ProcessError> {
        let from = self.cursor().await?;
        let batch = read_parsed(&self.pool, &self.index, from, self.settings.batch_size).await?;
        let Some((writes, report)) = self.decide(from, batch).await? else {
            return Ok(BatchReport::default());
        };
        let to = writes.to;
        match write(self.pool.clone(), writes).await {
            Ok(committed) => {
                self.committed(to, committed, &report);
                self.trim_caches();
                Ok(report)
            }
            Err(err) => {
                // The caches hold changes that did not commit.
                self.reset();
                Err(err)
            }
        }
    }

    /// Processes batches until no settled event is left. Returns the totals. Three batches
    /// are in flight at once: the next one is read, parsed and planned on another task, this
    /// one is evaluated, and the previous one commits. Commits stay in order, and a failed
    /// commit discards everything decided after it.
    pub async fn catch_up(&mut self) -> Result<BatchReport, ProcessError> {
        let mut total = BatchReport::default();
        let from = self.cursor().await?;
        let mut next = spawn_read(&self.pool, &self.index, from, self.settings.batch_size);
        let mut decided_up_to = from;
        let mut in_flight: Option<InFlight> = None;
        let outcome = loop {
            let batch = match (&mut next).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(err)) => break Err(err),
                Err(join) => break Err(ProcessError::Reader(join.to_string())),
            };
            let Some(to) = batch.last else { break Ok(()) };
            next = spawn_read(&self.pool, &self.index, to, self.settings.batch_size);
            let decided = self.decide(decided_up_to, batch).await;
            // The previous batch must be committed before this one may be.
            if let Some(previous) = in_flight.take()
                && let Err(err) = self.land(previous, &mut total).await
            {
                break Err(err);
            }
            match decided {
                Ok(Some((writes, report))) => {
                    decided_up_to = writes.to;
                    in_flight = Some(InFlight { write: tokio::spawn(write(self.pool.clone(), writes)), to, report });
                }
                Ok(None) => {}
                Err(err) => break Err(err),
            }
        };
        next.abort();
        let outcome = match (outcome, in_flight.take()) {
            (Ok(()), Some(previous)) => self.land(previous, &mut total).await,
            (outcome, _) => outcome,
        };
        match outcome {
            Ok(()) => {
                self.trim_caches();
                self.record_lag().await;
                Ok(total)
            }
            Err(err) => {
                // Whatever was decided after the last commit is gone with the caches.
                self.reset();
                Err(err)
            }
        }
    }

    /// Waits for a batch's commit and takes it as done.
    async fn land(&mut self, in_flight: InFlight, total: &mut BatchReport) -> Result<(), ProcessError> {
        let committed = match in_flight.write.await {
            Ok(result) => result?,
            Err(join) => return Err(ProcessError::Reader(join.to_string())),
        };
        let report = in_flight.report;
        self.committed(in_flight.to, committed, &report);
        total.events += report.events;
        total.malformed += report.malformed;
        total.fires += report.fires;
        total.suppressed += report.suppressed;
        total.jobs += report.jobs;
        Ok(())
    }

    /// Evaluates one read batch: updates the cached state and returns what must be written
    /// (`None` for an empty batch).
    async fn decide(
        &mut self,
        from: Cursor,
        batch: ParsedBatch,
    ) -> Result<Option<(Writes, BatchReport)>, ProcessError> {
        let Some(to) = batch.last else {
            return Ok(None);
        };
        let mut report = BatchReport { events: batch.read, malformed: batch.malformed, ..BatchReport::default() };
        let plan = batch.plan;
        crate::state::load(&self.pool, &mut self.states, &mut self.cooldowns, plan.state_keys, plan.cooldown_keys)
            .await?;
        let mut decisions = Decisions::default();
        for (event, triggers) in batch.events.iter().zip(&plan.candidates) {
            evaluate(
                event,
                triggers,
                &mut self.states,
                &mut self.cooldowns,
                self.settings.max_window_entries,
                &mut decisions,
            );
        }
        report.fires = decisions.fires;
        report.suppressed = decisions.suppressed;
        report.jobs = decisions.jobs.len() as u64;
        if let Some(last) = batch.events.last() {
            let lag = chrono::Utc::now() - last.event.log.block_timestamp;
            metrics::gauge!("processor_lag_seconds").set(lag.num_milliseconds().max(0) as f64 / 1000.0);
        }
        let writes = Writes {
            states: self.states.take_dirty(),
            cooldowns: self.cooldowns.take_dirty(),
            outbox: decisions.jobs,
            from,
            to,
        };
        Ok(Some((writes, report)))
    }

    /// Empties the state cache when it has grown too large. Only when nothing is in flight:
    /// a batch being committed may hold the only copy of states it changed.
    fn trim_caches(&mut self) {
        if self.states.len() > MAX_CACHED_STATES {
            self.states.clear();
        }
    }

    /// A batch is committed: move the cursor, hand its jobs to the relay, count it.
    fn committed(&mut self, to: Cursor, committed: Vec<Committed>, report: &BatchReport) {
        self.cursor = Some(to);
        crate::relay::hand(self.hand_off.as_ref(), committed);
        metrics::counter!("processor_events_total").increment(report.events as u64);
        metrics::counter!("processor_fires_total").increment(report.fires);
        metrics::counter!("processor_suppressed_fires_total").increment(report.suppressed);
        metrics::counter!("processor_jobs_enqueued_total").increment(report.jobs);
    }

    async fn record_lag(&mut self) {
        let Some(cursor) = self.cursor else { return };
        // Once a second at most: it is a metric, not part of processing.
        if self.lag_measured.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        self.lag_measured = Some(std::time::Instant::now());
        let newest: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT max(id) FROM events").fetch_one(&self.pool).await;
        if let Ok(Some(newest)) = newest {
            metrics::gauge!("processor_lag_events").set((newest - cursor.id).max(0) as f64);
        }
    }
}
