//! The running service: leadership, wake-ups, the batch loop, the relay and, on the leader,
//! retention, with back-off while PostgreSQL or Redis is away.

use std::time::{Duration, Instant};

use shared::redis::RedisHandle;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use shared::startup::error_chain;

use crate::config::Settings;
use crate::processor::Processor;
use crate::relay::{HAND_OFF_BATCHES, Relay};
use shared::store::outbox::Committed;

/// The advisory lock that makes one processor the active one; others wait as standbys.
pub const LEADER_LOCK: i64 = 8_004_003;
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Triggers are re-read this often even without a `trigger_changed` notification.
const TRIGGER_REFRESH: Duration = Duration::from_secs(5);
/// How often the relay looks for outbox rows the fast path did not push.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Pending rows younger than this are left to the fast path.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(2);

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Runs until the future is dropped.
pub async fn run(pool: PgPool, redis: RedisHandle, settings: Settings) {
    let mut backoff = Backoff::new();
    loop {
        match lead(&pool, &redis, &settings).await {
            Ok(()) => backoff.reset(),
            Err(err) => {
                tracing::warn!(error = %error_chain(&*err), "processor paused; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Becomes the leader, then processes until something fails.
async fn lead(
    pool: &PgPool,
    redis: &RedisHandle,
    settings: &Settings,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut lock_conn = PgConnection::connect_with(&pool.connect_options()).await?;
    loop {
        let acquired: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut lock_conn).await?;
        if acquired {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!("processor is the leader");
    // Relaying and pruning run only while this processor leads: losing the lead drops them,
    // so two relays never push the same rows.
    let _retention = AbortOnDrop(tokio::spawn(crate::retention::run(pool.clone(), settings.retention.clone())));
    let (hand_off, committed) = mpsc::channel(HAND_OFF_BATCHES);
    let relay = Relay::new(pool.clone(), redis.clone(), settings.relay_batch_size);
    let _relay = AbortOnDrop(tokio::spawn(relay_loop(relay, committed)));
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all(["new_event", "trigger_changed"]).await?;

    // What the processor commits outside the cursor's own check is fenced by this lock.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut lock_conn).await?;
    let settings = Settings { fence: crate::catchup::Fence(Some(pid)), ..settings.clone() };
    let mut processor = Processor::new(pool.clone(), settings.clone()).hand_off_to(hand_off);
    processor.refresh_triggers().await?;
    let warmed = processor.warming_finished();
    let mut last_refresh = Instant::now();
    let mut triggers_dirty = false;
    loop {
        if triggers_dirty || last_refresh.elapsed() >= TRIGGER_REFRESH {
            processor.refresh_triggers().await?;
            last_refresh = Instant::now();
            triggers_dirty = false;
        }
        let report = processor.catch_up().await?;
        if report.events > 0 {
            tracing::debug!(events = report.events, fires = report.fires, "caught up");
        }
        // Wait for a wake-up, or poll: a NOTIFY may be lost and rows may be held back
        // behind a transaction that was still open.
        tokio::select! {
            notification = listener.recv() => {
                if notification?.channel() == "trigger_changed" {
                    triggers_dirty = true;
                }
            }
            // A trigger done warming is filed at once.
            _ = warmed.notified() => triggers_dirty = true,
            _ = tokio::time::sleep(settings.poll_interval) => {
                // Still the leader? A dead lock connection means another may take over.
                sqlx::query("SELECT 1").execute(&mut lock_conn).await?;
            }
        }
    }
}

/// Pushes what the processor hands over as soon as it arrives; every second, sweeps the
/// outbox for rows the fast path never got (a crash, a Redis restart).
async fn relay_loop(relay: Relay, mut committed: mpsc::Receiver<Vec<Committed>>) {
    let mut backoff = Backoff::new();
    let mut next_sweep = Instant::now();
    loop {
        let result = if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP_INTERVAL;
            relay.sweep(SWEEP_MIN_AGE).await
        } else {
            tokio::select! {
                jobs = committed.recv() => match jobs {
                    Some(jobs) => relay.push_committed(&jobs).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_sweep.into()) => continue,
            }
        };
        match result {
            Ok(pushed) => {
                if pushed > 0 {
                    tracing::debug!(pushed, "relay pushed jobs");
                }
                backoff.reset();
            }
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), "relay paused; retrying");
                // Whatever was handed over is in the outbox: the sweep will find it, so
                // nothing waits here for Redis to come back.
                while committed.try_recv().is_ok() {}
                next_sweep = Instant::now();
                backoff.wait().await;
            }
        }
    }
}
