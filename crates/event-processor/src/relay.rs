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
use uuid::Uuid;

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
}

impl Relay {
    pub fn new(pool: PgPool, redis: RedisHandle, batch_size: usize) -> Self {
        Self { pool, redis, batch_size: batch_size.max(1) }
    }

    /// Pushes every row that is pending, or was dispatched to a Redis that has since
    /// restarted. Returns how many were pushed.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let mut conn = self.redis.connection().await?;
        let run_id = run_id(&mut conn).await?;
        let mut pushed = 0;
        loop {
            let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
                "SELECT job_id, kind, payload::text FROM action_outbox
                 WHERE status = 'pending' OR (status = 'dispatched' AND dispatch_run_id IS DISTINCT FROM $1)
                 ORDER BY created_at, job_id
                 LIMIT $2",
            )
            .bind(&run_id)
            .bind(i64::try_from(self.batch_size).unwrap_or(500))
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for (_, kind, payload) in &rows {
                let kind = ActionKind::parse(kind).unwrap_or(ActionKind::Webhook);
                pipe.cmd("XADD")
                    .arg(stream_key(self.redis.config(), kind))
                    .arg("*")
                    .arg(STREAM_FIELD)
                    .arg(payload)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
            sqlx::query(
                "UPDATE action_outbox SET status = 'dispatched', dispatch_run_id = $2, dispatched_at = now(), updated_at = now()
                 WHERE job_id = ANY($1) AND status IN ('pending', 'dispatched')",
            )
            .bind(&ids)
            .bind(&run_id)
            .execute(&self.pool)
            .await?;
            pushed += rows.len();
            metrics::counter!("relay_jobs_pushed_total").increment(rows.len() as u64);
            if rows.len() < self.batch_size {
                break;
            }
        }
        let unfinished: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status IN ('pending', 'dispatched')")
                .fetch_one(&self.pool)
                .await;
        if let Ok(n) = unfinished {
            metrics::gauge!("processor_outbox_unfinished").set(n as f64);
        }
        Ok(pushed)
    }
}

/// The run id of the Redis server: it changes whenever Redis restarts.
pub async fn run_id(conn: &mut ConnectionManager) -> Result<String, RelayError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines().find_map(|line| line.strip_prefix("run_id:")).map(|id| id.trim().to_owned()).ok_or(RelayError::NoRunId)
}
