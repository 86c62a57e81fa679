//! Consuming a job stream: per job, check what the database knows, deliver, record the
//! attempt, then acknowledge, reschedule or dead-letter. A retry is a scheduled message,
//! never a sleep.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use shared::domain::ActionId;
use shared::job::Job;
use shared::redis::RedisHandle;
use shared::trigger::{Action, ActionKind};
use sqlx::PgPool;
use tracing::Instrument;

use crate::breaker::{self, Status};
use crate::config::Settings;
use crate::mcp::McpClients;
use crate::outcome::{Attempt, Verdict};
use crate::queue::{Message, Queue};
use crate::record::{self, After, Recorded};
use crate::telegram::{Pace, TelegramClient};
use crate::webhook::WebhookClient;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

/// Messages read and handled together.
const BATCH: usize = 64;
/// How long jobs wait while another job probes a half-open breaker.
const PROBE_PENDING: Duration = Duration::from_secs(1);

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
        let telegram =
            TelegramClient::new(&settings.telegram.api_url, settings.telegram.bot_token.clone(), redis.clone())?;
        let mcp = McpClients::new(settings.address_policy.clone())?;
        Ok(Self { pool, settings, webhooks, telegram, mcp, kind, redis })
    }

    /// The queue of consumer `index` of this process.
    pub fn queue(&self, index: usize) -> Queue {
        Queue::new(self.redis.clone(), self.kind, &format!("{}-{index}", self.settings.name))
    }

    /// Handles one message; see [`Worker::handle_batch`].
    pub async fn handle(&self, queue: &Queue, message: Message) -> Result<(), WorkerError> {
        self.handle_batch(queue, vec![message]).await
    }

    /// Handles a batch of messages: one query for the jobs' states, one for their breakers,
    /// the deliveries one after the other, then one transaction recording every attempt, one
    /// round trip scheduling retries, one acknowledging. A message is acknowledged only
    /// after its outcome is recorded; on an error (the database or Redis away) nothing is
    /// acknowledged and the messages come back.
    pub async fn handle_batch(&self, queue: &Queue, messages: Vec<Message>) -> Result<(), WorkerError> {
        let done = self.deliver_batch(messages).await?;
        finish(self.pool.clone(), queue.clone(), done).await
    }

    /// The first half of [`Worker::handle_batch`]: everything up to the deliveries. What it
    /// returns must be passed to [`finish`] before the messages count as handled.
    async fn deliver_batch(&self, messages: Vec<Message>) -> Result<Done, WorkerError> {
        let mut acks = Vec::with_capacity(messages.len());
        let mut later: Vec<(String, i64)> = Vec::new();
        let mut work: Vec<(String, String, Job)> = Vec::with_capacity(messages.len());
        let mut seen = HashSet::new();
        for message in messages {
            let Some(payload) = message.payload else {
                acks.push(message.id);
                continue;
            };
            match serde_json::from_str::<Job>(&payload) {
                // The same job twice in one batch (pushed again): the first copy decides.
                Ok(job) if !seen.insert(job.job_id) => acks.push(message.id),
                Ok(job) => work.push((message.id, payload, job)),
                Err(err) => {
                    tracing::error!(message.id = %message.id, error = %err, "dropping a message that is not a job");
                    acks.push(message.id);
                }
            }
        }
        let ids: Vec<uuid::Uuid> = work.iter().map(|(_, _, job)| job.job_id.0).collect();
        let actions: Vec<ActionId> =
            work.iter().map(|(_, _, job)| job.action.id).collect::<HashSet<_>>().into_iter().collect();
        let (states, breakers) =
            tokio::join!(record::load_many(&self.pool, &ids), breaker::statuses(&self.pool, &actions));
        let (states, mut breakers) = (states?, breakers?);

        let mut attempts: Vec<(Job, i32, Attempt, After, String)> = Vec::with_capacity(work.len());
        for (message_id, payload, job) in work {
            let span = tracing::info_span!("job", job.id = %job.job_id, trigger.id = %job.trigger.id, action.kind = job.kind().as_str());
            // Entered only around synchronous work: a span held across an await would leak
            // into whatever else the thread polls meanwhile.
            let Some(state) = states.get(&job.job_id.0) else {
                span.in_scope(|| tracing::info!("the trigger or action was deleted; the job is cancelled, never sent"));
                metrics::counter!("worker_cancelled_jobs_total").increment(1);
                acks.push(message_id);
                continue;
            };
            if state.is_finished() {
                // Pushed again after a crash or a Redis restart: already done, never sent twice.
                metrics::counter!("worker_duplicates_skipped_total").increment(1);
                acks.push(message_id);
                continue;
            }
            // An open breaker holds the job back without spending an attempt.
            let action = job.action.id;
            let probe = match breakers.get(&action).copied().unwrap_or(Status::Closed { clean: true }) {
                Status::Closed { .. } => false,
                Status::Open(wait) => {
                    metrics::counter!("worker_held_by_breaker_total").increment(1);
                    later.push((payload, due_in(wait)));
                    acks.push(message_id);
                    continue;
                }
                Status::Probing => {
                    if breaker::try_probe(&self.pool, action, &self.settings.breaker).await? {
                        breakers.insert(action, Status::Open(PROBE_PENDING));
                        true
                    } else {
                        later.push((payload, due_in(PROBE_PENDING)));
                        acks.push(message_id);
                        continue;
                    }
                }
            };
            let number = state.attempts + 1;
            let attempt = match self.attempt(&job, &state.secrets).instrument(span.clone()).await? {
                Step::Attempted(attempt) => attempt,
                Step::Hold(wait) => {
                    later.push((payload, due_in(wait)));
                    acks.push(message_id);
                    continue;
                }
            };
            match attempt.verdict {
                Verdict::Delivered => {
                    if breakers.get(&action) != Some(&Status::Closed { clean: true }) {
                        breaker::succeeded(&self.pool, action).await?;
                        breakers.insert(action, Status::Closed { clean: true });
                    }
                }
                Verdict::Retry { .. } => {
                    if breaker::failed(&self.pool, action, probe, &self.settings.breaker).await? {
                        breakers.insert(action, Status::Open(self.settings.breaker.open_for));
                    } else if let Some(Status::Closed { clean }) = breakers.get_mut(&action) {
                        *clean = false;
                    }
                }
                // A rejected request says nothing about the target's health; an answer
                // (even a no) shows it is up.
                Verdict::Permanent => {}
                Verdict::Rejected => {
                    if breakers.get(&action) != Some(&Status::Closed { clean: true }) {
                        breaker::succeeded(&self.pool, action).await?;
                        breakers.insert(action, Status::Closed { clean: true });
                    }
                }
            }
            let after = match attempt.verdict {
                Verdict::Delivered => After::Delivered,
                Verdict::Permanent => After::Failed,
                Verdict::Rejected => After::Rejected,
                Verdict::Retry { .. } if number >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX) => {
                    After::Dead
                }
                Verdict::Retry { .. } => After::Retry,
            };
            if after == After::Retry {
                let delay = match attempt.verdict {
                    Verdict::Retry { after: Some(wish) } => wish,
                    _ => self.backoff(number),
                };
                later.push((payload, due_in(delay)));
            }
            span.in_scope(|| {
                tracing::info!(attempt = number, outcome = ?after, status = ?attempt.status, error = ?attempt.error, "delivery attempt");
            });
            attempts.push((job, number, attempt, after, message_id));
        }

        Ok(Done { attempts, later, acks })
    }

    async fn attempt(&self, job: &Job, secrets: &serde_json::Value) -> Result<Step, WorkerError> {
        let action: Action = match serde_json::from_value(job.action.config.clone()) {
            Ok(action) => action,
            Err(err) => {
                let error = format!("the action's configuration is unreadable: {err}");
                return Ok(Step::Attempted(Attempt::failed(Verdict::Permanent, error)));
            }
        };
        let secret = |name: &str| secrets.get(name).and_then(|s| s.as_str()).map(|s| SecretString::from(s.to_owned()));
        Ok(Step::Attempted(match action {
            Action::Webhook(webhook) => match secret("signing_secret") {
                Some(signing) => self.webhooks.deliver(job, &webhook, &signing).await,
                None => Attempt::failed(Verdict::Permanent, "the webhook has no signing secret"),
            },
            Action::Telegram(telegram) => {
                let own = secret("bot_token");
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
                if let Pace::Wait(wait) = self.telegram.pace(token, &telegram.chat_id).await? {
                    return Ok(Step::Hold(wait));
                }
                self.telegram.send(token, &telegram, text).await
            }
            Action::Mcp(mcp) => {
                let headers: BTreeMap<String, SecretString> = secrets
                    .get("headers")
                    .and_then(|h| h.as_object())
                    .map(|h| {
                        h.iter()
                            .filter_map(|(k, v)| Some((k.clone(), SecretString::from(v.as_str()?.to_owned()))))
                            .collect()
                    })
                    .unwrap_or_default();
                self.mcp.call(job, &mcp, &headers).await
            }
        }))
    }

    /// The wait before attempt `number + 1`: the schedule's entry, ±20%.
    fn backoff(&self, number: i32) -> Duration {
        let schedule = &self.settings.retry_schedule;
        let index = usize::try_from(number - 1).unwrap_or(0).min(schedule.len().saturating_sub(1));
        let base = schedule.get(index).copied().unwrap_or(Duration::from_secs(5));
        base.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }

    /// One consumer: reads and handles messages until the task is dropped.
    pub async fn consume(self, index: usize) {
        let queue = self.queue(index);
        let mut pause = Duration::from_millis(100);
        loop {
            let result = async {
                queue.ensure_group().await?;
                let mut reader = queue.reader().await?;
                // Batch N is recorded while batch N+1 is delivered; one batch at most waits.
                let mut recording: Option<tokio::task::JoinHandle<Result<(), WorkerError>>> = None;
                // The next batch is read while the current one is delivered.
                let mut messages = queue.read(&mut reader, BATCH, Duration::from_millis(1_000)).await?;
                loop {
                    let current = std::mem::take(&mut messages);
                    let (next, done) = if current.is_empty() {
                        (queue.read(&mut reader, BATCH, Duration::from_millis(1_000)).await, None)
                    } else {
                        let (next, done) = tokio::join!(
                            queue.read(&mut reader, BATCH, Duration::from_millis(0)),
                            self.deliver_batch(current)
                        );
                        (next, Some(done?))
                    };
                    messages = next?;
                    if let Some(previous) = recording.take() {
                        previous.await.unwrap_or(Ok(()))?;
                    }
                    if let Some(done) = done {
                        recording = Some(tokio::spawn(finish(self.pool.clone(), queue.clone(), done)));
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), WorkerError>(())
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, consumer = index, "worker paused; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }

    /// Housekeeping: moves due retries into the stream and takes over messages of dead
    /// consumers.
    pub async fn maintain(self) {
        let queue = self.queue(usize::MAX);
        let mut last_claim = tokio::time::Instant::now();
        loop {
            let result = async {
                queue.ensure_group().await?;
                queue.move_due(chrono::Utc::now().timestamp_millis(), 500).await?;
                if last_claim.elapsed() >= self.settings.claim_idle / 2 {
                    last_claim = tokio::time::Instant::now();
                    let claimed = queue.reclaim(self.settings.claim_idle, BATCH).await?;
                    if !claimed.is_empty() {
                        self.handle_batch(&queue, claimed).await?;
                    }
                }
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

/// A batch whose deliveries are done and whose outcomes are still to be recorded.
struct Done {
    attempts: Vec<(Job, i32, Attempt, After, String)>,
    /// Jobs to bring back later (retries, holds), as (payload, due unix ms).
    later: Vec<(String, i64)>,
    /// Messages to acknowledge once everything is recorded.
    acks: Vec<String>,
}

/// The second half of handling a batch: records every attempt (in one transaction, or one by
/// one when the store refuses what one of them holds), schedules what comes back later, and
/// only then acknowledges the messages.
async fn finish(pool: PgPool, queue: Queue, done: Done) -> Result<(), WorkerError> {
    let Done { attempts, later, mut acks } = done;
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
    queue.retry_many(&later).await?;
    queue.ack_many(&acks).await?;
    Ok(())
}

/// Unix milliseconds `wait` from now.
fn due_in(wait: Duration) -> i64 {
    chrono::Utc::now().timestamp_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Runs the consumers and housekeeping of every kind this version delivers, until dropped.
pub async fn run(pool: PgPool, redis: RedisHandle, settings: Settings) -> Result<(), reqwest::Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for kind in ActionKind::ALL {
        let worker = Worker::new(pool.clone(), redis.clone(), kind, settings.clone())?;
        for index in 0..settings.concurrency {
            tasks.spawn(worker.clone().consume(index));
        }
        tasks.spawn(worker.maintain());
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
