//! The Redis side of one action kind: the job stream read through a consumer group, and the
//! sorted set of retries waiting for their time.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use shared::job::{STREAM_FIELD, stream_key};
use shared::redis::RedisHandle;
use shared::trigger::ActionKind;

/// The consumer group every worker of a kind joins.
pub const GROUP: &str = "workers";

/// A message read from a job stream.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    /// The job's JSON, or `None` when the entry has no job field (it is acknowledged and
    /// dropped).
    pub payload: Option<String>,
}

impl Message {
    fn from_entry(entry: StreamId) -> Self {
        let payload = entry.get::<String>(STREAM_FIELD);
        Self { id: entry.id, payload }
    }
}

/// Moves due retries back into the stream, atomically: each member is XADDed and removed.
const MOVE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', ARGV[3], job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
";

#[derive(Clone)]
pub struct Queue {
    redis: RedisHandle,
    stream: String,
    retries: String,
    consumer: String,
    /// Where the next scan of the pending list for dead consumers' messages starts.
    reclaim_from: Arc<std::sync::Mutex<String>>,
}

/// Stretches of the pending list one [`Queue::reclaim`] looks at, at most, before it gives up
/// until next time.
const RECLAIM_STRETCHES: usize = 8;

impl Queue {
    pub fn new(redis: RedisHandle, kind: ActionKind, consumer: &str) -> Self {
        let stream = stream_key(redis.config(), kind);
        let retries = redis.config().key(&format!("retries:{}", kind.as_str()));
        Self {
            redis,
            stream,
            retries,
            consumer: consumer.to_owned(),
            reclaim_from: Arc::new(std::sync::Mutex::new("0-0".to_owned())),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Creates the consumer group (and the stream) if absent. Reads from the start of the
    /// stream, so jobs pushed before any worker existed are delivered too.
    pub async fn ensure_group(&self) -> redis::RedisResult<()> {
        let mut conn = self.redis.connection().await?;
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(&self.stream, GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A connection of its own for blocking reads, which would otherwise hold up every other
    /// command on a shared connection.
    pub async fn reader(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        self.redis.config().client()?.get_multiplexed_async_connection_with_config(&config).await
    }

    /// New messages for this consumer, waiting up to `block` for some (zero: not at all). A Redis that
    /// restarted empty has lost the group: it is created again.
    pub async fn read(
        &self,
        reader: &mut MultiplexedConnection,
        count: usize,
        block: Duration,
    ) -> redis::RedisResult<Vec<Message>> {
        let mut options = StreamReadOptions::default().group(GROUP, &self.consumer).count(count);
        // Zero means "only what is there now" (BLOCK 0 would wait for ever).
        if !block.is_zero() {
            options = options.block(usize::try_from(block.as_millis()).unwrap_or(1_000));
        }
        let reply: redis::RedisResult<Option<StreamReadReply>> =
            reader.xread_options(&[&self.stream], &[">"], &options).await;
        let reply = match reply {
            Err(err) if err.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        Ok(reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).map(Message::from_entry).collect()).unwrap_or_default())
    }

    /// Takes over messages another consumer read but did not acknowledge within `idle`
    /// (it died, or hangs). The scan of the pending list goes on from where the last one
    /// stopped (each call looks at a bounded stretch of it), so messages far down a long list,
    /// behind many that live consumers keep renewing, are reached too.
    pub async fn reclaim(&self, idle: Duration, count: usize) -> redis::RedisResult<Vec<Message>> {
        let mut conn = self.redis.connection().await?;
        let idle_ms = usize::try_from(idle.as_millis()).unwrap_or(usize::MAX);
        for _ in 0..RECLAIM_STRETCHES {
            let start = self.reclaim_from.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let options = StreamAutoClaimOptions::default().count(count);
            let reply: redis::RedisResult<StreamAutoClaimReply> =
                conn.xautoclaim_options(&self.stream, GROUP, &self.consumer, idle_ms, &start, options).await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(err) if err.code() == Some("NOGROUP") => {
                    self.ensure_group().await?;
                    return Ok(Vec::new());
                }
                Err(err) => return Err(err),
            };
            let wrapped = reply.next_stream_id == "0-0";
            *self.reclaim_from.lock().unwrap_or_else(PoisonError::into_inner) = reply.next_stream_id;
            if !reply.claimed.is_empty() || wrapped {
                return Ok(reply.claimed.into_iter().map(Message::from_entry).collect());
            }
        }
        Ok(Vec::new())
    }

    /// Renews this consumer's claim on `ids`, whose deliveries are still running: their idle
    /// time starts again, so no other consumer takes them over (see [`Queue::reclaim`]).
    pub async fn renew(&self, ids: &[String]) -> redis::RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.redis.connection().await?;
        redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async::<redis::Value>(&mut conn)
            .await
            .map(drop)
    }

    /// Settles messages whose outcome is recorded, in one transaction (`MULTI`): schedules
    /// the `later` ones (payload, due unix ms) in the retry set, then acknowledges every one of
    /// `acks` and deletes it from the stream (once recorded in PostgreSQL nothing needs them,
    /// and the stream stays small). All or nothing: a job is never both scheduled and still
    /// pending, to be taken over and sent twice.
    pub async fn settle(&self, later: &[(String, i64)], acks: &[String]) -> redis::RedisResult<()> {
        if later.is_empty() && acks.is_empty() {
            return Ok(());
        }
        let mut conn = self.redis.connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (payload, due) in later {
            pipe.zadd(&self.retries, payload, *due).ignore();
        }
        if !acks.is_empty() {
            pipe.xack(&self.stream, GROUP, acks).ignore().xdel(&self.stream, acks).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Moves retries that are due back into the stream. Returns how many moved.
    pub async fn move_due(&self, now_ms: i64, limit: usize) -> redis::RedisResult<usize> {
        let mut conn = self.redis.connection().await?;
        redis::Script::new(MOVE_DUE)
            .key(&self.retries)
            .key(&self.stream)
            .arg(now_ms)
            .arg(limit)
            .arg(STREAM_FIELD)
            .invoke_async(&mut conn)
            .await
    }
}
