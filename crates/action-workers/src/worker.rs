//! Consuming a job stream: per job, check what the database knows, deliver, record the
//! attempt, then acknowledge, reschedule or dead-letter. A retry is a scheduled message,
//! never a sleep.

use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use shared::job::Job;
use shared::redis::RedisHandle;
use shared::trigger::{Action, ActionKind};
use sqlx::PgPool;

use crate::breaker::{self, Gate};
use crate::config::Settings;
use crate::outcome::{Attempt, Verdict};
use crate::queue::{Message, Queue};
use crate::record::{self, After};
use crate::telegram::{Pace, TelegramClient, render_message};
use crate::webhook::WebhookClient;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

/// Delivers the jobs of one action kind.
#[derive(Clone)]
pub struct Worker {
    pool: PgPool,
    settings: Settings,
    webhooks: WebhookClient,
    telegram: TelegramClient,
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
        Ok(Self { pool, settings, webhooks, telegram, kind, redis })
    }

    /// The queue of consumer `index` of this process.
    pub fn queue(&self, index: usize) -> Queue {
        Queue::new(self.redis.clone(), self.kind, &format!("{}-{index}", self.settings.name))
    }

    /// Handles one message and acknowledges it once its outcome is recorded. On an error
    /// (the database or Redis away) the message stays unacknowledged and comes back.
    pub async fn handle(&self, queue: &Queue, message: Message) -> Result<(), WorkerError> {
        let Some(payload) = message.payload else {
            queue.ack(&message.id).await?;
            return Ok(());
        };
        let job: Job = match serde_json::from_str(&payload) {
            Ok(job) => job,
            Err(err) => {
                tracing::error!(message.id = %message.id, error = %err, "dropping a message that is not a job");
                queue.ack(&message.id).await?;
                return Ok(());
            }
        };
        let span = tracing::info_span!("job", job.id = %job.job_id, trigger.id = %job.trigger.id, action.kind = job.kind().as_str());
        let _entered = span.enter();
        let Some(state) = record::load(&self.pool, &job).await? else {
            tracing::info!("the trigger or action was deleted; dropping the job");
            queue.ack(&message.id).await?;
            return Ok(());
        };
        if state.is_finished() {
            // Pushed again after a crash or a Redis restart: already done, never sent twice.
            metrics::counter!("worker_duplicates_skipped_total").increment(1);
            queue.ack(&message.id).await?;
            return Ok(());
        }
        // An open breaker holds the job back without spending an attempt.
        let gate = breaker::gate(&self.pool, job.action.id, &self.settings.breaker).await?;
        if let Gate::Wait(wait) = gate {
            metrics::counter!("worker_held_by_breaker_total").increment(1);
            return hold(queue, &message.id, &payload, wait).await;
        }
        let number = state.attempts + 1;
        let attempt = match self.attempt(&job, &state.secrets).await? {
            Step::Attempted(attempt) => attempt,
            Step::Hold(wait) => return hold(queue, &message.id, &payload, wait).await,
        };
        match attempt.verdict {
            Verdict::Delivered => breaker::succeeded(&self.pool, job.action.id).await?,
            Verdict::Retry { .. } => {
                breaker::failed(&self.pool, job.action.id, gate == Gate::Probe, &self.settings.breaker).await?;
            }
            // A rejected request says nothing about the target's health.
            Verdict::Permanent => {}
        }
        let after = match attempt.verdict {
            Verdict::Delivered => After::Delivered,
            Verdict::Permanent => After::Failed,
            Verdict::Retry { .. } if number >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX) => {
                After::Dead
            }
            Verdict::Retry { .. } => After::Retry,
        };
        record::record(&self.pool, &job, number, &attempt, after).await?;
        let kind = job.kind().as_str();
        metrics::counter!("worker_deliveries_total", "kind" => kind, "outcome" => format!("{after:?}").to_lowercase())
            .increment(1);
        metrics::histogram!("worker_delivery_seconds", "kind" => kind).record(attempt.latency.as_secs_f64());
        if after == After::Retry {
            let delay = match attempt.verdict {
                Verdict::Retry { after: Some(wish) } => wish,
                _ => self.backoff(number),
            };
            let due = chrono::Utc::now().timestamp_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
            queue.retry_at(&payload, due).await?;
            metrics::counter!("worker_retries_scheduled_total", "kind" => kind).increment(1);
        }
        if after == After::Dead {
            metrics::counter!("worker_dead_jobs_total", "kind" => kind).increment(1);
        }
        tracing::info!(attempt = number, outcome = ?after, status = ?attempt.status, error = ?attempt.error, "delivery attempt");
        queue.ack(&message.id).await?;
        Ok(())
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
                let text = match render_message(job, &telegram) {
                    Ok(text) => text,
                    Err(error) => return Ok(Step::Attempted(Attempt::failed(Verdict::Permanent, error))),
                };
                if let Pace::Wait(wait) = self.telegram.pace(token, &telegram.chat_id).await? {
                    return Ok(Step::Hold(wait));
                }
                self.telegram.send(token, &telegram, text).await
            }
            Action::Mcp(_) => Attempt::failed(Verdict::Permanent, "MCP tool calls are not delivered by this version"),
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
                loop {
                    let messages = queue.read(&mut reader, 16, Duration::from_millis(1_000)).await?;
                    for message in messages {
                        self.handle(&queue, message).await?;
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
                    for message in queue.reclaim(self.settings.claim_idle, 100).await? {
                        self.handle(&queue, message).await?;
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

/// Puts a job back for later without spending an attempt, and acknowledges the message.
async fn hold(queue: &Queue, message: &str, payload: &str, wait: Duration) -> Result<(), WorkerError> {
    let due = chrono::Utc::now().timestamp_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4);
    queue.retry_at(payload, due).await?;
    queue.ack(message).await?;
    Ok(())
}

/// Runs the consumers and housekeeping of every kind this version delivers, until dropped.
pub async fn run(pool: PgPool, redis: RedisHandle, settings: Settings) -> Result<(), reqwest::Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for kind in [ActionKind::Webhook, ActionKind::Telegram] {
        let worker = Worker::new(pool.clone(), redis.clone(), kind, settings.clone())?;
        for index in 0..settings.concurrency {
            tasks.spawn(worker.clone().consume(index));
        }
        tasks.spawn(worker.maintain());
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
