//! Consuming a job stream: per job, check what the database knows, deliver, record the
//! attempt, then acknowledge, reschedule or dead-letter. A retry is a scheduled message,
//! never a sleep.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::MultiplexedConnection;
use shared::domain::ActionId;
use shared::job::Job;
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::{Action, ActionKind, ActionSecrets};
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::Instrument;

use crate::breaker::{self, Status};
use crate::config::Settings;
use crate::mcp::McpClients;
use crate::outcome::{Attempt, Verdict};
use crate::queue::{Message, Queue};
use crate::record::{self, After, Recorded};
use crate::targets::{Slot, Targets};
use crate::telegram::{Pace, TelegramClient};
use crate::waiting::{Addressed, Waiting};
use crate::webhook::WebhookClient;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

/// Messages read and prepared together at most.
const BATCH: usize = 64;
/// How long jobs wait while another job probes a half-open breaker.
const PROBE_PENDING: Duration = Duration::from_secs(1);
/// How long a job whose target already has its share in flight waits before it is tried
/// again (no attempt is spent).
const TARGET_BUSY: Duration = Duration::from_secs(1);
/// Transactions a consumer's recorder runs at once.
const RECORDINGS: usize = 2;
/// How long a recorder with room for a transaction gathers outcomes before it records them.
const RECORD_GATHER: Duration = Duration::from_millis(2);
/// Outcomes recorded in one transaction at most.
const MAX_RECORDED: usize = 4 * BATCH;
/// Jobs a process holds waiting (per kind) for room or for their target's share: at this
/// many its consumers read no more, and the jobs of targets that landed nothing for
/// [`TARGET_BUSY`] go back to the retry set.
const MAX_WAITING: usize = 8 * BATCH;
/// How long a consumer with deliveries in flight waits for new messages before it records
/// the deliveries that ended.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

/// What a message that does not read as a job may still say: its id.
#[derive(serde::Deserialize)]
struct JobHead {
    job_id: uuid::Uuid,
}

/// Delivers the jobs of one action kind.
#[derive(Clone)]
pub struct Worker {
    pool: PgPool,
    settings: Settings,
    webhooks: WebhookClient,
    telegram: TelegramClient,
    mcp: McpClients,
    kind: ActionKind,
    redis: RedisHandle,
    /// Deliveries in flight in this process for this kind, over all its consumers.
    in_flight: Arc<Semaphore>,
    /// Each target's share of them.
    targets: Targets,
    /// Jobs cleared and not yet started, shared by the consumers' lanes.
    waiting: Arc<Waiting<Cleared>>,
    /// The jobs this process holds.
    held: Arc<Held>,
    /// What this process learnt of breakers since it read them.
    breakers: Arc<std::sync::Mutex<HashMap<ActionId, Learnt>>>,
    /// Turns true when the process is asked to stop (see [`run_until`]).
    stop: Option<watch::Receiver<bool>>,
}

/// A breaker as this process's deliveries left it.
#[derive(Debug, Default, Clone, Copy)]
struct Learnt {
    /// Opened by one of them, until then.
    open_until: Option<Instant>,
    /// A failure counted since the breaker was read: the next success must reset it.
    failed: bool,
}

/// A job cleared for delivery: everything its own task needs.
struct Cleared {
    message_id: String,
    payload: String,
    job: Job,
    action: Action,
    /// Where it goes, as its target's share is counted.
    target: Option<String>,
    /// Held by the process until its outcome is acknowledged.
    hold: Option<Hold>,
    /// The attempt this delivery is.
    number: i32,
    secrets: Result<ActionSecrets, String>,
    /// The breaker as read for the batch, and whether this delivery is its probe.
    breaker: Status,
    probe: bool,
}

impl Addressed for Cleared {
    fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }
}

/// What a consumer shares with its lanes.
#[derive(Clone)]
struct Shared {
    outcomes: mpsc::UnboundedSender<Done>,
    /// Rung when a lane ends.
    lane_ended: Arc<tokio::sync::Notify>,
}

/// The jobs this process holds, from the moment one is cleared for delivery until its
/// outcome is recorded and its message acknowledged (or it goes back to the queue): their
/// messages are renewed meanwhile, and another copy of one of them (pushed again) is dropped
/// as a duplicate instead of being delivered a second time.
#[derive(Default)]
struct Held {
    messages: std::sync::Mutex<HashSet<String>>,
    jobs: std::sync::Mutex<HashSet<uuid::Uuid>>,
}

impl Held {
    /// Holds `job` (read as `message`), or `None` when this process already holds it.
    fn take(self: &Arc<Self>, message: &str, job: uuid::Uuid) -> Option<Hold> {
        if !self.jobs.lock().unwrap_or_else(PoisonError::into_inner).insert(job) {
            return None;
        }
        self.messages.lock().unwrap_or_else(PoisonError::into_inner).insert(message.to_owned());
        Some(Hold { held: self.clone(), message: message.to_owned(), job })
    }

    fn holds_message(&self, message: &str) -> bool {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner).contains(message)
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

/// One job held; let go when dropped (also when its lane dies).
struct Hold {
    held: Arc<Held>,
    message: String,
    job: uuid::Uuid,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.held.messages.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.message);
        self.held.jobs.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.job);
    }
}

/// A batch read and prepared, with the reader it was read with.
type Fetched = (MultiplexedConnection, Result<(Done, Vec<Cleared>), WorkerError>);

/// A delivery task's end: its message id and how it went.
type Flight = (String, Result<Landed, WorkerError>);

/// How one delivery ended.
enum Landed {
    Attempted {
        job: Box<Job>,
        number: i32,
        attempt: Attempt,
        after: After,
        later: Option<(String, i64)>,
    },
    /// Pacing says later; no attempt is spent.
    Held {
        payload: String,
        wait: Duration,
    },
}

/// What a worker did with a job it may deliver.
enum Step {
    Attempted(Attempt),
    /// Pacing says later; no attempt is spent.
    Hold(Duration),
}

impl Worker {
    pub fn new(pool: PgPool, redis: RedisHandle, kind: ActionKind, settings: Settings) -> Result<Self, reqwest::Error> {
        let webhooks = WebhookClient::new(settings.address_policy.clone())?;
        let telegram = TelegramClient::new(&settings.telegram, redis.clone())?;
        let mcp = McpClients::new(settings.address_policy.clone())?;
        let in_flight = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let targets = Targets::new(settings.per_target);
        let waiting = Arc::new(Waiting::new(BATCH / 2, MAX_WAITING, TARGET_BUSY));
        Ok(Self {
            pool,
            settings,
            webhooks,
            telegram,
            mcp,
            kind,
            redis,
            in_flight,
            targets,
            waiting,
            held: Arc::default(),
            breakers: Arc::default(),
            stop: None,
        })
    }

    /// Stops taking work when `stop` turns true: see [`run_until`].
    pub fn stop_on(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| *stop.borrow())
    }

    /// Resolves when the process is asked to stop (never, without [`Worker::stop_on`]).
    async fn stopped(&self) {
        match self.stop.clone() {
            Some(mut stop) => {
                let _ = stop.wait_for(|stopping| *stopping).await;
            }
            None => std::future::pending().await,
        }
    }

    /// The queue of consumer `index` of this process.
    pub fn queue(&self, index: usize) -> Queue {
        Queue::new(self.redis.clone(), self.kind, &format!("{}-{index}", self.settings.name))
    }

    /// Handles one message; see [`Worker::handle_batch`].
    pub async fn handle(&self, queue: &Queue, message: Message) -> Result<(), WorkerError> {
        self.handle_batch(queue, vec![message]).await
    }

    /// Handles a batch of messages to the end: prepares them, delivers the cleared ones
    /// concurrently, records every outcome and acknowledges. A message is acknowledged only
    /// after its outcome is recorded; on an error (the database or Redis away) nothing more
    /// is acknowledged and the messages come back.
    pub async fn handle_batch(&self, queue: &Queue, messages: Vec<Message>) -> Result<(), WorkerError> {
        let (mut done, cleared) = self.prepare(messages).await?;
        let mut flights = JoinSet::new();
        for mut cleared in cleared {
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else { break };
            let Some(slot) = self.targets.take(cleared.target.as_deref()) else {
                metrics::counter!("worker_held_by_busy_target_total").increment(1);
                done.holds.extend(cleared.hold.take());
                done.hold(cleared.message_id, cleared.payload, TARGET_BUSY);
                continue;
            };
            let worker = self.clone();
            flights.spawn(async move {
                let hold = cleared.hold.take();
                let flight = worker.fly(cleared, slot).await;
                drop(permit);
                (flight, hold)
            });
        }
        while let Some(landed) = flights.join_next().await {
            match landed {
                Ok((flight, hold)) => {
                    done.land(Ok(flight));
                    done.holds.extend(hold);
                }
                Err(join) => done.land(Err(join)),
            }
        }
        finish(self.pool.clone(), queue.clone(), done).await
    }

    /// Reads what the database knows of a batch of messages and sorts them: the ones to
    /// acknowledge or bring back later at once (duplicates, cancelled jobs, open breakers,
    /// busy targets) go in the returned [`Done`]; the others are cleared for delivery, each
    /// with a place among the deliveries in flight and in its target's share.
    async fn prepare(&self, messages: Vec<Message>) -> Result<(Done, Vec<Cleared>), WorkerError> {
        let mut done = Done::default();
        let mut work: Vec<(String, String, Job)> = Vec::with_capacity(messages.len());
        let mut seen = HashSet::new();
        let mut unreadable = Vec::new();
        for message in messages {
            let Some(payload) = message.payload else {
                done.acks.push(message.id);
                continue;
            };
            match serde_json::from_str::<Job>(&payload) {
                // The same job twice in one batch (pushed again): the first copy decides.
                Ok(job) if !seen.insert(job.job_id) => done.acks.push(message.id),
                Ok(job) => work.push((message.id, payload, job)),
                Err(err) => {
                    // A job that no longer reads (its action's configuration, say) is
                    // dead-lettered under its id, so its row does not wait forever.
                    let id = serde_json::from_str::<JobHead>(&payload).ok().map(|head| head.job_id);
                    tracing::error!(message.id = %message.id, job.id = ?id, error = %err, "a message that does not read as a job is dead-lettered");
                    metrics::counter!("worker_unreadable_jobs_total").increment(1);
                    unreadable.extend(id);
                    done.acks.push(message.id);
                }
            }
        }
        if !unreadable.is_empty() {
            store::outbox::mark_dead(&self.pool, &unreadable).await?;
        }
        let ids: Vec<uuid::Uuid> = work.iter().map(|(_, _, job)| job.job_id.0).collect();
        let actions: Vec<ActionId> =
            work.iter().map(|(_, _, job)| job.action.id).collect::<HashSet<_>>().into_iter().collect();
        let (states, breakers) = tokio::join!(
            record::load_many(&self.pool, &self.settings.keyring, &ids),
            breaker::statuses(&self.pool, &actions)
        );
        let (mut states, mut breakers) = (states?, breakers?);

        let mut cleared = Vec::with_capacity(work.len());
        for (message_id, payload, job) in work {
            let Some(state) = states.remove(&job.job_id.0) else {
                tracing::info!(job.id = %job.job_id, "the trigger or action was deleted; the job is cancelled, never sent");
                metrics::counter!("worker_cancelled_jobs_total").increment(1);
                done.acks.push(message_id);
                continue;
            };
            if state.is_finished() {
                // Pushed again after a crash or a Redis restart: already done, never sent twice.
                metrics::counter!("worker_duplicates_skipped_total").increment(1);
                done.acks.push(message_id);
                continue;
            }
            // An open breaker holds the job back without spending an attempt.
            let action_id = job.action.id;
            let breaker = breakers.get(&action_id).copied().unwrap_or(Status::Closed { clean: true });
            let probe = match breaker {
                Status::Closed { .. } => false,
                Status::Open(wait) => {
                    metrics::counter!("worker_held_by_breaker_total").increment(1);
                    done.hold(message_id, payload, wait);
                    continue;
                }
                Status::Probing => {
                    if breaker::try_probe(&self.pool, action_id, &self.settings.breaker).await? {
                        breakers.insert(action_id, Status::Open(PROBE_PENDING));
                        true
                    } else {
                        done.hold(message_id, payload, PROBE_PENDING);
                        continue;
                    }
                }
            };
            let action = job.action.action.clone();
            let target = crate::targets::target_of(&action);
            let Some(hold) = self.held.take(&message_id, job.job_id.0) else {
                // Another copy of this job is waiting or in flight here: that one decides. The
                // same message read again (taken back from this very process) is left to it
                // too: acknowledging it here would acknowledge the job still to be delivered.
                metrics::counter!("worker_duplicates_skipped_total").increment(1);
                if !self.held.holds_message(&message_id) {
                    done.acks.push(message_id);
                }
                continue;
            };
            cleared.push(Cleared {
                message_id,
                payload,
                job,
                action,
                target,
                hold: Some(hold),
                number: state.attempts + 1,
                secrets: state.secrets,
                breaker,
                probe,
            });
        }
        Ok((done, cleared))
    }

    /// Delivers one cleared job, updates its action's breaker, and decides what comes next.
    /// Returns the message id with the outcome, to record.
    async fn fly(&self, cleared: Cleared, slot: Slot) -> Flight {
        let Cleared { message_id, payload, job, action, number, secrets, breaker, probe, .. } = cleared;
        let span = tracing::info_span!("job", job.id = %job.job_id, trigger.id = %job.trigger.id, action.kind = job.kind().as_str());
        let landed = async {
            let action_id = job.action.id;
            // Opened by a delivery of this process since the batch was read: the job waits
            // like one read while it is open, without spending an attempt.
            if !probe && let Some(until) = self.learnt(action_id).open_until {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    metrics::counter!("worker_held_by_breaker_total").increment(1);
                    return Ok(Landed::Held { payload, wait });
                }
            }
            let attempt = match self.attempt(&job, action, &secrets).await? {
                Step::Attempted(attempt) => attempt,
                Step::Hold(wait) => return Ok(Landed::Held { payload, wait }),
            };
            // The target is done with it: its next delivery may go.
            drop(slot);
            self.update_breaker(action_id, breaker, probe, &attempt.verdict).await;
            let after = match attempt.verdict {
                Verdict::Delivered => After::Delivered,
                Verdict::Permanent => After::Failed,
                Verdict::Rejected => After::Rejected,
                Verdict::Retry { .. } if number >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX) => {
                    After::Dead
                }
                Verdict::Retry { .. } => After::Retry,
            };
            let later = (after == After::Retry).then(|| {
                let delay = match attempt.verdict {
                    // A target's wish (Retry-After, Telegram's retry_after) is honoured up to
                    // the schedule's longest wait: it cannot park a job for years.
                    Verdict::Retry { after: Some(wish) } => capped(wish, &self.settings.retry_schedule),
                    _ => self.backoff(number),
                };
                (payload, due_in(delay))
            });
            tracing::info!(attempt = number, outcome = ?after, status = ?attempt.status, error = ?attempt.error, "delivery attempt");
            Ok(Landed::Attempted { job: Box::new(job), number, attempt, after, later })
        }
        .instrument(span)
        .await;
        (message_id, landed)
    }

    /// What this process learnt of `action`'s breaker.
    fn learnt(&self, action: ActionId) -> Learnt {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner).get(&action).copied().unwrap_or_default()
    }

    /// Counts an attempt in its action's breaker. The attempt happened whatever the breaker's
    /// table says: a failure to update it is logged, and the outcome is recorded all the same.
    async fn update_breaker(&self, action: ActionId, read: Status, probe: bool, verdict: &Verdict) {
        let updated = match verdict {
            // An answer, even a no, shows the target is up; a rejected request says nothing
            // about its health.
            Verdict::Delivered | Verdict::Rejected => {
                let learnt = self.learnt(action);
                if read != (Status::Closed { clean: true }) || learnt.failed || learnt.open_until.is_some() {
                    let result = breaker::succeeded(&self.pool, action).await;
                    if result.is_ok() {
                        self.breakers.lock().unwrap_or_else(PoisonError::into_inner).remove(&action);
                    }
                    result
                } else {
                    Ok(())
                }
            }
            Verdict::Retry { .. } => match breaker::failed(&self.pool, action, probe, &self.settings.breaker).await {
                Ok(opened) => {
                    let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
                    let learnt = breakers.entry(action).or_default();
                    learnt.failed = true;
                    if opened {
                        learnt.open_until = Some(Instant::now() + self.settings.breaker.open_for);
                    }
                    Ok(())
                }
                Err(err) => Err(err),
            },
            Verdict::Permanent => Ok(()),
        };
        if let Err(err) = updated {
            tracing::warn!(action.id = %action, error = %err, "the breaker could not be updated");
        }
    }

    async fn attempt(
        &self,
        job: &Job,
        action: Action,
        secrets: &Result<ActionSecrets, String>,
    ) -> Result<Step, WorkerError> {
        let secrets = match secrets {
            Ok(secrets) => secrets,
            // A key missing here (a rotation half done) is fixed by configuration: the job
            // waits for it like for a target that is down.
            Err(error) => return Ok(Step::Attempted(Attempt::failed(Verdict::Retry { after: None }, error.clone()))),
        };
        Ok(Step::Attempted(match action {
            Action::Webhook(webhook) => match &secrets.signing_secret {
                Some(signing) => self.webhooks.deliver(job, &webhook, signing, &secrets.headers).await,
                None => Attempt::failed(Verdict::Permanent, "the webhook has no signing secret"),
            },
            Action::Telegram(telegram) => {
                let own = secrets.bot_token.clone();
                let Some(token) = self.telegram.token(own.as_ref()) else {
                    return Ok(Step::Attempted(Attempt::failed(
                        Verdict::Permanent,
                        "no bot token: set TELEGRAM_BOT_TOKEN or the action's bot_token",
                    )));
                };
                let (owned_job, owned_action) = (job.clone(), telegram.clone());
                let rendering = move || shared::render::telegram_message(&owned_job, &owned_action);
                let text = match shared::render::off_thread(rendering).await {
                    Ok(text) => text,
                    Err(error) => return Ok(Step::Attempted(Attempt::failed(Verdict::Permanent, error.to_string()))),
                };
                // The shared bot sends only to chats the trigger's owner linked (checked at
                // save time, and here again: a chat may be unlinked since).
                // It sends to the linked chat's numeric id, whatever name the action gives.
                let on_shared_bot = own.is_none();
                let mut telegram = telegram;
                if on_shared_bot {
                    match store::telegram::linked_chat_id(&self.pool, job.trigger.user_id, &telegram.chat_id).await? {
                        Some(id) => telegram.chat_id = id.to_string(),
                        None => {
                            return Ok(Step::Attempted(Attempt::failed(
                                Verdict::Permanent,
                                format!(
                                    "chat {} is not linked to the trigger's owner: the shared bot sends only to \
                                     linked chats",
                                    telegram.chat_id
                                ),
                            )));
                        }
                    }
                }
                let sender = on_shared_bot.then_some(job.trigger.user_id);
                if let Pace::Wait(wait) = self.telegram.pace(token, &telegram.chat_id, sender).await? {
                    return Ok(Step::Hold(wait));
                }
                self.telegram.send(token, &telegram, text).await
            }
            Action::Mcp(mcp) => self.mcp.call(job, &mcp, &secrets.headers).await,
        }))
    }

    /// The wait before attempt `number + 1`: the schedule's entry, ±20%.
    fn backoff(&self, number: i32) -> Duration {
        let schedule = &self.settings.retry_schedule;
        let index = usize::try_from(number - 1).unwrap_or(0).min(schedule.len().saturating_sub(1));
        let base = schedule.get(index).copied().unwrap_or(Duration::from_secs(5));
        base.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }

    /// One consumer: reads messages in batches, delivers each on a task of its own as room
    /// frees up among the process's deliveries in flight, and hands the outcomes to a
    /// recorder of its own, which records and acknowledges whatever has landed in one
    /// transaction while the next deliveries run. A slow delivery so holds up only itself.
    /// The claims of the messages it holds (waiting or in flight) are renewed, so no other
    /// consumer takes over a message whose delivery is alive; messages of consumers that
    /// died are taken over here. Runs until the task is dropped.
    pub async fn consume(self, index: usize) {
        let queue = self.queue(index);
        let mut pause = Duration::from_millis(100);
        loop {
            let (outcomes, landed) = mpsc::unbounded_channel();
            let recorder = AbortOnDrop(tokio::spawn(record_loop(self.pool.clone(), queue.clone(), landed)));
            let result = self.consume_until_error(&queue, &outcomes).await;
            drop(outcomes);
            // What landed before the error is still recorded.
            let _ = tokio::time::timeout(Duration::from_secs(5), recorder.join()).await;
            if self.stopping() {
                return;
            }
            if let Err(err) = result {
                // Deliveries in flight are dropped with their outcomes: their messages come
                // back, and targets deduplicate by the webhook id.
                tracing::warn!(error = %err, consumer = index, "worker paused; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }

    async fn consume_until_error(
        &self,
        queue: &Queue,
        outcomes: &mpsc::UnboundedSender<Done>,
    ) -> Result<(), WorkerError> {
        queue.ensure_group().await?;
        let mut reader = Some(queue.reader().await?);
        let shared = Shared { outcomes: outcomes.clone(), lane_ended: Arc::default() };
        let mut room = self.waiting.room();
        // The lanes: each delivers jobs one after the other while there are jobs it may take.
        let mut lanes: JoinSet<()> = JoinSet::new();
        // The next batch, read and prepared while the current one is delivered.
        let mut fetching: Option<JoinHandle<Fetched>> = None;
        let renew_every = self.settings.claim_idle / 3;
        let mut renewed = Instant::now();
        let mut reclaimed = Instant::now();
        loop {
            if self.stopping() {
                // Asked to stop: the jobs not started go back at once for another worker,
                // and the deliveries in flight land and are recorded, within the grace.
                let mut back = Done::default();
                for mut cleared in self.waiting.drain() {
                    back.holds.extend(cleared.hold.take());
                    back.hold(cleared.message_id, cleared.payload, Duration::ZERO);
                }
                send(outcomes, back);
                let landed = tokio::time::timeout(self.settings.shutdown_grace, async {
                    while lanes.join_next().await.is_some() {}
                })
                .await;
                if landed.is_err() {
                    tracing::warn!(
                        "deliveries still running at the end of the grace period are dropped; their messages come back"
                    );
                }
                return Ok(());
            }
            // A lane for each job that may go, while there are places.
            while let Some(permit) = self
                .waiting
                .look(&self.targets)
                .runnable
                .then(|| self.in_flight.clone().try_acquire_owned().ok())
                .flatten()
            {
                match self.waiting.next(&self.targets) {
                    Some((cleared, slot)) => {
                        lanes.spawn(self.clone().lane(shared.clone(), cleared, slot, permit));
                    }
                    None => break,
                }
            }
            while lanes.try_join_next().is_some() {}
            // Held here, the jobs of a target at its share cost nothing; once the queue is
            // full, those of targets that landed nothing for a while (they are slow) come back
            // later through the retry set instead, making way for the jobs of other targets.
            let stale = self.waiting.evict_slow(&self.targets, Instant::now());
            if !stale.is_empty() {
                let mut held = Done::default();
                for mut cleared in stale {
                    metrics::counter!("worker_held_by_busy_target_total").increment(1);
                    held.holds.extend(cleared.hold.take());
                    held.hold(cleared.message_id, cleared.payload, TARGET_BUSY);
                }
                send(outcomes, held);
            }
            let look = self.waiting.look(&self.targets);
            let (queued, runnable) = (look.queued, look.runnable);
            // Running low, or nothing here may go and there is room: fetch the next batch.
            let wanted = fetching.is_none() && self.waiting.wants_more(look);
            if wanted && reader.is_none() {
                // The last one broke (Redis went away): a new one, when Redis is back.
                match queue.reader().await {
                    Ok(conn) => reader = Some(conn),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot reach Redis to read messages; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            if wanted && let Some(conn) = reader.take() {
                let reclaim = reclaimed.elapsed() >= self.settings.claim_idle / 2;
                if reclaim {
                    reclaimed = Instant::now();
                }
                let wait = if lanes.is_empty() && queued == 0 { Duration::from_millis(1_000) } else { IN_FLIGHT_POLL };
                fetching = Some(tokio::spawn(self.clone().fetch(queue.clone(), conn, reclaim, wait)));
            }
            tokio::select! {
                fetched = async {
                    match fetching.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if fetching.is_some() => {
                    fetching = None;
                    match fetched {
                        Ok((conn, Ok((done, cleared)))) => {
                            reader = Some(conn);
                            send(outcomes, done);
                            self.waiting.push(cleared);
                        }
                        Ok((_, Err(err))) => {
                            // Deliveries in flight go on; reading tries again in a moment, on
                            // a new connection (this one may be broken for good).
                            tracing::warn!(error = %err, "reading messages failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(join) => tracing::error!(error = %join, "reading messages ended abnormally"),
                    }
                }
                // A place freed: a lane starts with it, here and now (given back, it would go
                // to the next consumer waiting, and so on round).
                permit = self.in_flight.clone().acquire_owned(), if runnable => {
                    if let (Ok(permit), Some((cleared, slot))) = (permit, self.waiting.next(&self.targets)) {
                        lanes.spawn(self.clone().lane(shared.clone(), cleared, slot, permit));
                    }
                }
                () = shared.lane_ended.notified(), if !lanes.is_empty() => {}
                // The queue gained room (a lane took a job): read on.
                _ = room.changed() => {}
                // The queue is full of jobs for busy targets: once the oldest is stale it
                // goes back, and reading resumes.
                () = sleep_until(look.stale_at), if look.stale_at.is_some() => {}
                () = tokio::time::sleep(renew_every) => {}
                () = self.stopped() => {}
            }
            if renewed.elapsed() >= renew_every {
                renewed = Instant::now();
                if let Err(err) = queue.renew(&self.held.messages()).await {
                    // The claims run out only after claim_idle: the next round tries again.
                    tracing::warn!(error = %err, "claims could not be renewed");
                }
            }
        }
    }

    /// One lane: delivers `cleared`, then each next job waiting that may go, one after the
    /// other, holding its place among the deliveries in flight all along, and hands every
    /// outcome to the recorder as it lands.
    async fn lane(self, shared: Shared, mut cleared: Cleared, mut slot: Slot, permit: OwnedSemaphorePermit) {
        loop {
            let hold = cleared.hold.take();
            let flight = self.fly(cleared, slot).await;
            let mut done = Done::default();
            done.land(Ok(flight));
            // Held until the outcome is recorded and acknowledged.
            done.holds.extend(hold);
            send(&shared.outcomes, done);
            match self.waiting.next(&self.targets) {
                Some((next, next_slot)) => (cleared, slot) = (next, next_slot),
                None => break,
            }
        }
        drop(permit);
        shared.lane_ended.notify_one();
    }

    /// Reads the next batch (taking over messages of dead consumers first when `reclaim`),
    /// waiting up to `wait` for some, and prepares it. Gives the reader back with the batch.
    async fn fetch(self, queue: Queue, mut reader: MultiplexedConnection, reclaim: bool, wait: Duration) -> Fetched {
        let batch = async {
            let mut read = if reclaim { queue.reclaim(self.settings.claim_idle, BATCH).await? } else { Vec::new() };
            if read.is_empty() {
                read = queue.read(&mut reader, BATCH, wait).await?;
            }
            self.prepare(read).await
        }
        .await;
        (reader, batch)
    }

    /// Housekeeping: moves due retries into the stream.
    pub async fn maintain(self) {
        let queue = self.queue(usize::MAX);
        while !self.stopping() {
            let result = async {
                queue.ensure_group().await?;
                queue.move_due(chrono::Utc::now().timestamp_millis(), 500).await?;
                Ok::<(), WorkerError>(())
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "worker housekeeping failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Outcomes waiting to be recorded, and what to do with their messages.
#[derive(Default)]
struct Done {
    attempts: Vec<(Job, i32, Attempt, After, String)>,
    /// Jobs to bring back later (retries, holds), as (payload, due unix ms).
    later: Vec<(String, i64)>,
    /// Messages to acknowledge once everything is recorded.
    acks: Vec<String>,
    /// The jobs' holds, let go once they are acknowledged (or not recorded).
    holds: Vec<Hold>,
}

impl Done {
    fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.later.is_empty() && self.acks.is_empty() && self.holds.is_empty()
    }

    fn merge(&mut self, other: Done) {
        self.attempts.extend(other.attempts);
        self.later.extend(other.later);
        self.acks.extend(other.acks);
        self.holds.extend(other.holds);
    }

    /// Brings a job back after `wait` without spending an attempt.
    fn hold(&mut self, message_id: String, payload: String, wait: Duration) {
        self.later.push((payload, due_in(wait)));
        self.acks.push(message_id);
    }

    /// Takes a delivery's end. One that could not be completed is left unacknowledged: its
    /// message comes back.
    fn land(&mut self, landed: Result<Flight, JoinError>) {
        match landed {
            Ok((message_id, Ok(Landed::Attempted { job, number, attempt, after, later }))) => {
                self.later.extend(later);
                self.attempts.push((*job, number, attempt, after, message_id));
            }
            Ok((message_id, Ok(Landed::Held { payload, wait }))) => self.hold(message_id, payload, wait),
            Ok((message_id, Err(err))) => {
                tracing::warn!(message.id = %message_id, error = %err, "a delivery could not be completed; it comes back");
            }
            Err(join) => tracing::error!(error = %join, "a delivery task ended abnormally; its message comes back"),
        }
    }
}

/// Resolves at `at` (never, for `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Hands outcomes to the recorder; an empty one is not worth the trip.
fn send(outcomes: &mpsc::UnboundedSender<Done>, done: Done) {
    if !done.is_empty() {
        // A recorder that went away lost its outcomes: their messages come back.
        let _ = outcomes.send(done);
    }
}

/// Records outcomes as they land, committing them in groups: the first outcome to land
/// opens a group, which gathers for a moment (without waking for each outcome that lands
/// meanwhile) and then, once one of the [`RECORDINGS`] transactions is free, takes
/// everything that landed, so transactions grow with the rate of deliveries instead of
/// multiplying. Ends when the consumer drops its sender and everything received is
/// recorded. An outcome that cannot be recorded (the database away) is left
/// unacknowledged, and its message comes back to be delivered again.
async fn record_loop(pool: PgPool, queue: Queue, mut landed: mpsc::UnboundedReceiver<Done>) {
    let mut recordings = JoinSet::new();
    let mut open = true;
    while open {
        let Some(mut done) = landed.recv().await else { break };
        tokio::time::sleep(RECORD_GATHER).await;
        while recordings.len() >= RECORDINGS {
            recordings.join_next().await;
        }
        while done.attempts.len() < MAX_RECORDED {
            match landed.try_recv() {
                Ok(more) => done.merge(more),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let (pool, queue) = (pool.clone(), queue.clone());
        recordings.spawn(async move {
            if let Err(err) = finish(pool, queue, done).await {
                tracing::warn!(error = %err, "outcomes could not be recorded; their messages come back");
            }
        });
    }
    while recordings.join_next().await.is_some() {}
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Waits for the task to end by itself.
    async fn join(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The second half of handling messages: records every attempt (in one transaction, or one
/// by one when the store refuses what one of them holds), schedules what comes back later,
/// and only then acknowledges the messages.
async fn finish(pool: PgPool, queue: Queue, done: Done) -> Result<(), WorkerError> {
    let Done { attempts, later, mut acks, holds } = done;
    let recorded: Vec<Recorded<'_>> = attempts
        .iter()
        .map(|(job, number, attempt, after, _)| Recorded { job, number: *number, attempt, after: *after })
        .collect();
    record::record_isolated(&pool, &recorded).await?;
    for (job, _, attempt, after, message_id) in attempts {
        let kind = job.kind().as_str();
        metrics::counter!("worker_deliveries_total", "kind" => kind, "outcome" => after.outcome()).increment(1);
        metrics::histogram!("worker_delivery_seconds", "kind" => kind).record(attempt.latency.as_secs_f64());
        match after {
            After::Retry => metrics::counter!("worker_retries_scheduled_total", "kind" => kind).increment(1),
            After::Dead => metrics::counter!("worker_dead_jobs_total", "kind" => kind).increment(1),
            After::Delivered | After::Failed | After::Rejected => {}
        }
        acks.push(message_id);
    }
    queue.settle(&later, &acks).await?;
    drop(holds);
    Ok(())
}

/// A target's wish is honoured up to this long at least, however short the schedule.
const WISH_CAP_FLOOR: Duration = Duration::from_secs(3_600);

/// `wish`, but no longer than the longest wait of `schedule` (or an hour, if that is longer).
fn capped(wish: Duration, schedule: &[Duration]) -> Duration {
    let longest = schedule.iter().max().copied().unwrap_or(WISH_CAP_FLOOR).max(WISH_CAP_FLOOR);
    wish.min(longest)
}

/// Unix milliseconds `wait` from now.
fn due_in(wait: Duration) -> i64 {
    chrono::Utc::now().timestamp_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Consumers per action kind in a process: while one prepares or records, another reads.
pub const CONSUMERS: usize = 2;

/// Runs the consumers and housekeeping of every kind this version delivers, until dropped.
pub async fn run(pool: PgPool, redis: RedisHandle, settings: Settings) -> Result<(), reqwest::Error> {
    run_until(pool, redis, settings, std::future::pending()).await
}

/// Like [`run`], until `stop` resolves (SIGTERM): then no new delivery starts, jobs not
/// started go back to the stream for other workers, and the deliveries in flight land and
/// are recorded within `Settings::shutdown_grace`; past it they are dropped and their
/// messages come back to another worker after the claim idle time.
pub async fn run_until(
    pool: PgPool,
    redis: RedisHandle,
    settings: Settings,
    stop: impl Future<Output = ()>,
) -> Result<(), reqwest::Error> {
    let (stopping, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for kind in ActionKind::ALL {
        let worker = Worker::new(pool.clone(), redis.clone(), kind, settings.clone())?.stop_on(stop_rx.clone());
        for index in 0..CONSUMERS {
            tasks.spawn(worker.clone().consume(index));
        }
        tasks.spawn(worker.maintain());
    }
    tasks.spawn(crate::telegram_link::run(pool.clone(), settings.telegram.clone(), stop_rx.clone()));
    tokio::select! {
        () = stop => {}
        _ = async { while tasks.join_next().await.is_some() {} } => return Ok(()),
    }
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(settings.shutdown_grace + Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop within the grace period");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_cannot_park_a_job_past_the_schedule() {
        let schedule = [5, 30, 10_800].map(Duration::from_secs);
        assert_eq!(capped(Duration::from_secs(60), &schedule), Duration::from_secs(60));
        assert_eq!(capped(Duration::from_secs(10 * 365 * 86_400), &schedule), Duration::from_secs(10_800));
        assert_eq!(capped(Duration::MAX, &schedule), Duration::from_secs(10_800));
        // A short schedule (as in tests) still lets a target ask for a few seconds.
        let short = [Duration::from_millis(50)];
        assert_eq!(capped(Duration::from_secs(2), &short), Duration::from_secs(2));
        assert_eq!(capped(Duration::from_secs(86_400), &short), WISH_CAP_FLOOR);
        assert_eq!(capped(Duration::from_secs(7), &[]), Duration::from_secs(7));
    }
}
