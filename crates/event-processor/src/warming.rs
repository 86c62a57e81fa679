//! Triggers on their way into live processing: their new aggregates are warmed from history
//! and they are caught up with the processor, without holding up the batches of anyone else.
//!
//! When a trigger is created or gains an aggregate, the processor takes it out of live
//! processing at its committed cursor ([`catchup::begin`]) and hands it to a task here. The
//! task warms the new aggregates from the history up to that position ([`warm::warm`]), then
//! replays the events committed since through the trigger alone, firing as live processing
//! would ([`CatchUp`]), until it is less than a batch behind (or stops gaining on a busy
//! store). The processor then replays the last few events itself, between two batches, and files the trigger in its index. A trigger
//! over a long history therefore costs the batches of others nothing while it warms; only its
//! own first firings wait for it.
//!
//! With [`Settings::warm_in_background`] off, the same steps run inside the refresh: the
//! processor waits for each trigger, which makes tests deterministic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::domain::TriggerId;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::catchup::{self, CatchUp};
use crate::config::Settings;
use crate::cursor::{self, Cursor};
use crate::processor::ProcessError;
use crate::relay::{self, HandOff};
use crate::warm;
use engine::LoadedTrigger;

/// A trigger's way in.
enum Stage {
    /// Warming and catching up on a task of its own.
    Running(JoinHandle<Result<Option<Cursor>, ProcessError>>),
    /// Warmed, and caught up to this position: the processor takes it from here.
    Ready(Cursor),
    /// The task failed; it starts again at the first refresh after this moment.
    Failed(Instant),
}

struct Entry {
    trigger: Arc<LoadedTrigger>,
    stage: Stage,
    /// Failures in a row, for the wait before the next start.
    failures: u32,
}

/// The wait before a way in that failed `failures` times in a row starts again.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(30))
}

/// The triggers warming, by id.
pub struct Warming {
    pool: PgPool,
    settings: Settings,
    entries: HashMap<TriggerId, Entry>,
    /// Rung when a task ends, so the processor takes its trigger without waiting for a poll.
    finished: Arc<Notify>,
    hand_off: Option<HandOff>,
    /// Permits for the ways in that run at once.
    turns: Arc<Semaphore>,
}

/// How many triggers warm at once.
const CONCURRENT_WARMINGS: usize = 2;

impl Drop for Warming {
    fn drop(&mut self) {
        for entry in self.entries.values() {
            if let Stage::Running(task) = &entry.stage {
                task.abort();
            }
        }
    }
}

impl Warming {
    pub fn new(pool: PgPool, settings: Settings) -> Self {
        Self {
            pool,
            settings,
            entries: HashMap::new(),
            finished: Arc::default(),
            hand_off: None,
            turns: Arc::new(Semaphore::new(CONCURRENT_WARMINGS)),
        }
    }

    pub fn hand_off_to(&mut self, relay: HandOff) {
        self.hand_off = Some(relay);
    }

    /// Notified whenever a trigger's warming task ends.
    pub fn finished(&self) -> Arc<Notify> {
        self.finished.clone()
    }

    /// The number of triggers not yet in live processing.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether trigger `id` is on its way in.
    pub fn holds(&self, id: TriggerId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Whether `trigger` must warm or catch up before it joins live processing: it has
    /// aggregates never warmed, or a catch-up that did not end (`catching_up`).
    pub async fn needed(
        pool: &PgPool,
        trigger: &LoadedTrigger,
        catching_up: &HashMap<TriggerId, Cursor>,
    ) -> Result<bool, sqlx::Error> {
        Ok(catching_up.contains_key(&trigger.id) || !warm::unwarmed(pool, trigger).await?.is_empty())
    }

    /// Takes `trigger` out of live processing at `cursor` (unless it already is) and starts
    /// its way in. The same version already on its way keeps going.
    pub async fn start(&mut self, trigger: Arc<LoadedTrigger>, cursor: Cursor) -> Result<(), ProcessError> {
        if self.entries.get(&trigger.id).is_some_and(|e| e.trigger.version == trigger.version) {
            return Ok(());
        }
        self.cancel(trigger.id).await;
        self.launch(trigger, cursor, 0).await
    }

    async fn launch(&mut self, trigger: Arc<LoadedTrigger>, cursor: Cursor, failures: u32) -> Result<(), ProcessError> {
        // Out of live processing from here, durably, before the cursor moves on.
        let Some(from) = catchup::begin(&self.pool, trigger.id, cursor, self.settings.fence).await? else {
            return Ok(());
        };
        let way_in = way_in(
            self.pool.clone(),
            trigger.clone(),
            from,
            self.settings.clone(),
            self.hand_off.clone(),
            self.turns.clone(),
        );
        let stage = if self.settings.warm_in_background {
            let finished = self.finished.clone();
            Stage::Running(tokio::spawn(async move {
                let outcome = way_in.await;
                finished.notify_one();
                outcome
            }))
        } else {
            match way_in.await? {
                Some(at) => Stage::Ready(at),
                None => return Ok(()),
            }
        };
        self.entries.insert(trigger.id, Entry { trigger, stage, failures });
        Ok(())
    }

    /// Stops the way in of trigger `id` (deleted, disabled or changed). Its progress is
    /// durable: a later start resumes it.
    pub async fn cancel(&mut self, id: TriggerId) {
        if let Some(Entry { stage: Stage::Running(task), .. }) = self.entries.remove(&id) {
            task.abort();
            // Whatever it was writing is committed or rolled back before anything else starts.
            let _ = task.await;
        }
    }

    /// The triggers ready to join live processing, with their positions; failed tasks are
    /// started again (from where their last commit left them).
    pub async fn take_ready(&mut self, cursor: Cursor) -> Result<Vec<(Arc<LoadedTrigger>, Cursor)>, ProcessError> {
        let mut ready = Vec::new();
        let mut retry = Vec::new();
        let ids: Vec<TriggerId> = self.entries.keys().copied().collect();
        for id in ids {
            let outcome = match self.entries.get_mut(&id).map(|e| &mut e.stage) {
                Some(Stage::Running(task)) if task.is_finished() => Some(task.await),
                _ => None,
            };
            let stage = match outcome {
                None => None,
                Some(Ok(Ok(Some(at)))) => Some(Some(Stage::Ready(at))),
                Some(Ok(Ok(None))) => {
                    // Deleted meanwhile.
                    self.entries.remove(&id);
                    continue;
                }
                Some(Ok(Err(err))) => {
                    tracing::warn!(trigger.id = %id, error = %shared::startup::error_chain(&err), "warming failed; it starts again");
                    Some(None)
                }
                Some(Err(join)) => {
                    tracing::error!(trigger.id = %id, error = %join, "warming task ended abnormally; it starts again");
                    Some(None)
                }
            };
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            match stage {
                Some(Some(stage)) => entry.stage = stage,
                Some(None) => {
                    metrics::counter!("processor_warming_failures_total").increment(1);
                    entry.failures += 1;
                    entry.stage = Stage::Failed(Instant::now() + backoff(entry.failures));
                }
                None => {}
            }
            match entry.stage {
                Stage::Ready(at) => {
                    ready.push((entry.trigger.clone(), at));
                    self.entries.remove(&id);
                }
                Stage::Failed(due) if due <= Instant::now() => retry.push((entry.trigger.clone(), entry.failures)),
                Stage::Failed(_) | Stage::Running(_) => {}
            }
        }
        for (trigger, failures) in retry {
            self.entries.remove(&trigger.id);
            self.launch(trigger, cursor, failures).await?;
        }
        metrics::gauge!("processor_triggers_warming").set(self.entries.len() as f64);
        Ok(ready)
    }
}

/// Warms the aggregates of `trigger` that were never warmed, up to its catch-up position
/// `from`, then (in the background) catches it up with the processor's committed cursor until it is
/// less than a batch behind or stops gaining. Returns the position reached, `None` when the trigger was
/// deleted meanwhile.
async fn way_in(
    pool: PgPool,
    trigger: Arc<LoadedTrigger>,
    from: Cursor,
    settings: Settings,
    hand_off: Option<HandOff>,
    turns: Arc<Semaphore>,
) -> Result<Option<Cursor>, ProcessError> {
    // Few at a time: warming reads history, and must leave the batches their share.
    let _turn = turns.acquire_owned().await;
    // One way in per trigger at a time, whoever runs it (a processor that lost the lead may
    // still be finishing one): a trigger someone else holds is tried again later, without
    // holding a turn meanwhile. The lock goes with the transaction, which writes nothing
    // (and so has no transaction id that would hold the batches back).
    let mut exclusive = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))")
        .bind(catchup::LOCK_SPACE)
        .bind(trigger.id)
        .fetch_one(&mut *exclusive)
        .await?;
    if !locked {
        return Err(ProcessError::WarmingElsewhere(trigger.id));
    }
    let pending = warm::unwarmed(&pool, &trigger).await?;
    if !pending.is_empty() {
        let replayed = warm::warm(&pool, &trigger, &pending, from, &settings).await?;
        tracing::info!(trigger.id = %trigger.id, aggregates = pending.len(), events = replayed, "warmed aggregates");
    }
    let mut at = from;
    if settings.warm_in_background {
        let mut catch_up =
            CatchUp::new(trigger.clone(), settings.batch_size, settings.max_window_entries, settings.fence);
        // Each round catches up with what arrived during the last one. It stops when that is
        // less than a batch, or when a round stopped shrinking (events arrive as fast as it
        // reads them): the processor then replays the rest, about one round, when it files
        // the trigger.
        let mut last_round = usize::MAX;
        loop {
            let target = cursor::load(&pool).await?;
            if target <= at {
                break;
            }
            let progress =
                catch_up.to(&pool, at, target, usize::MAX, |jobs| relay::hand(hand_off.as_ref(), jobs)).await?;
            if !progress.live {
                return Ok(None);
            }
            at = target;
            if progress.events < settings.batch_size || progress.events >= last_round {
                break;
            }
            last_round = progress.events;
        }
    }
    exclusive.commit().await?;
    Ok(Some(at))
}
