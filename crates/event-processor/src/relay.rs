//! Moves outbox rows into Redis streams, one stream per action kind.
//!
//! A row is marked dispatched with the run id of the Redis that took it. Redis on this
//! machine keeps nothing on disk: when it restarts, its run id changes and every row still
//! unfinished is pushed again, so no job is lost. A crash between the push and the marking
//! pushes a row twice; workers deduplicate by job id.

use redis::aio::ConnectionManager;
use shared::job::{STREAM_FIELD, stream_key};
use shared::redis::RedisHandle;
use shared::trigger::ActionKind;
use sqlx::PgPool;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use shared::store::outbox::{self, Committed, ToPush};

/// Committed jobs on their way from the processor to the relay's fast path.
pub type HandOff = mpsc::Sender<Vec<Committed>>;

/// Batches of jobs the hand-off holds at most: beyond it (Redis away, the relay behind),
/// jobs are left to the sweep, which finds them in the outbox.
pub const HAND_OFF_BATCHES: usize = 64;

/// Gives committed jobs to the relay's fast path, if there is room: jobs it does not take
/// are in the outbox, where the sweep finds them.
pub fn hand(relay: Option<&HandOff>, jobs: Vec<Committed>) {
    let Some(relay) = relay else { return };
    if jobs.is_empty() {
        return;
    }
    let count = jobs.len() as u64;
    if relay.try_send(jobs).is_err() {
        metrics::counter!("relay_hand_off_skipped_total").increment(count);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not report a run id")]
    NoRunId,
}

pub struct Relay {
    pool: PgPool,
    redis: RedisHandle,
    batch_size: usize,
    /// When the outbox gauge was last measured (at most once a second, off the hot path).
    gauge_measured: std::sync::Mutex<Option<std::time::Instant>>,
    /// The Redis run id that every dispatched row is known to be in; `None` until checked.
    settled_run_id: std::sync::Mutex<Option<String>>,
}

impl Relay {
    pub fn new(pool: PgPool, redis: RedisHandle, batch_size: usize) -> Self {
        Self {
            pool,
            redis,
            batch_size: batch_size.max(1),
            gauge_measured: std::sync::Mutex::new(None),
            settled_run_id: std::sync::Mutex::new(None),
        }
    }

    /// Pushes every row that is pending, or was dispatched to a Redis that has since
    /// restarted. Returns how many were pushed.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        self.sweep(Duration::ZERO).await
    }

    /// Like [`Relay::run_once`], but leaves pending rows younger than `min_age` to the fast
    /// path ([`Relay::push_committed`]), which is about to push them.
    pub async fn sweep(&self, min_age: Duration) -> Result<usize, RelayError> {
        let mut conn = self.redis.connection().await?;
        let run_id = run_id(&mut conn).await?;
        let known = self.settled_run_id.lock().ok().and_then(|id| id.clone());
        let mut pushed = 0;
        if known.as_deref() != Some(run_id.as_str()) {
            // First run, or Redis restarted: whatever it held is gone.
            pushed += self.push_rows(&mut conn, &run_id, Selection::DispatchedElsewhere, min_age).await?;
            if let Ok(mut settled) = self.settled_run_id.lock() {
                *settled = Some(run_id.clone());
            }
        }
        pushed += self.push_rows(&mut conn, &run_id, Selection::Pending, min_age).await?;
        self.measure_outbox().await;
        Ok(pushed)
    }

    /// The fast path: pushes jobs just committed by the processor, without reading their
    /// payloads back, then marks their rows dispatched. Only rows still pending are pushed:
    /// a sweep that ran while these jobs waited may have pushed them already.
    pub async fn push_committed(&self, jobs: &[Committed]) -> Result<usize, RelayError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.job_id).collect();
        let pending = outbox::pending_among(&self.pool, &ids).await?;
        let jobs: Vec<&Committed> = jobs.iter().filter(|j| pending.contains(&j.job_id)).collect();
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut conn = self.redis.connection().await?;
        let run_id = run_id(&mut conn).await?;
        let mut pipe = redis::pipe();
        for job in &jobs {
            pipe.cmd("XADD")
                .arg(stream_key(self.redis.config(), job.kind))
                .arg("*")
                .arg(STREAM_FIELD)
                .arg(&job.payload)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.job_id).collect();
        self.mark_dispatched(&ids, &run_id).await?;
        metrics::counter!("relay_jobs_pushed_total").increment(jobs.len() as u64);
        Ok(jobs.len())
    }

    async fn mark_dispatched(&self, ids: &[Uuid], run_id: &str) -> Result<(), RelayError> {
        Ok(outbox::mark_dispatched(&self.pool, ids, run_id).await?)
    }

    async fn push_rows(
        &self,
        conn: &mut ConnectionManager,
        run_id: &str,
        selection: Selection,
        min_age: Duration,
    ) -> Result<usize, RelayError> {
        let which = match selection {
            Selection::Pending => ToPush::Pending { min_age_secs: min_age.as_secs_f64() },
            Selection::DispatchedElsewhere => ToPush::DispatchedElsewhere,
        };
        let mut pushed = 0;
        loop {
            let limit = i64::try_from(self.batch_size).unwrap_or(500);
            let rows = outbox::to_push(&self.pool, which, run_id, limit).await?;
            if rows.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            let (mut ids, mut unreadable) = (Vec::with_capacity(rows.len()), Vec::new());
            for (id, kind, payload) in &rows {
                // The table allows only the kinds there are: a kind this relay does not know
                // is a row written by something else, and no stream may take it.
                let Some(kind) = ActionKind::parse(kind) else {
                    tracing::error!(job.id = %id, %kind, "a job of an unknown kind is dead-lettered");
                    unreadable.push(*id);
                    continue;
                };
                pipe.cmd("XADD")
                    .arg(stream_key(self.redis.config(), kind))
                    .arg("*")
                    .arg(STREAM_FIELD)
                    .arg(payload)
                    .ignore();
                ids.push(*id);
            }
            if !unreadable.is_empty() {
                outbox::mark_dead(&self.pool, &unreadable).await?;
                metrics::counter!("relay_unknown_kind_jobs_total").increment(unreadable.len() as u64);
            }
            if !ids.is_empty() {
                pipe.query_async::<()>(conn).await?;
                self.mark_dispatched(&ids, run_id).await?;
            }
            pushed += ids.len();
            metrics::counter!("relay_jobs_pushed_total").increment(ids.len() as u64);
            if rows.len() < self.batch_size {
                break;
            }
        }
        Ok(pushed)
    }

    async fn measure_outbox(&self) {
        {
            let Ok(mut last) = self.gauge_measured.lock() else { return };
            if last.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let unfinished = outbox::unfinished(&self.pool).await;
        if let Ok(n) = unfinished {
            metrics::gauge!("processor_outbox_unfinished").set(n as f64);
        }
    }
}

#[derive(Clone, Copy)]
enum Selection {
    Pending,
    DispatchedElsewhere,
}

/// The run id of the Redis server: it changes whenever Redis restarts.
pub async fn run_id(conn: &mut ConnectionManager) -> Result<String, RelayError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines().find_map(|line| line.strip_prefix("run_id:")).map(|id| id.trim().to_owned()).ok_or(RelayError::NoRunId)
}
