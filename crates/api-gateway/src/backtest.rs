//! Running a backtest for the API: one at a time per user, reading the scope's history a
//! page at a time into the engine, never holding more than a page of events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::LoadedTrigger;
use engine::backtest::{Backtest, Finished};
use engine::warm::Replay;
use shared::domain::UserId;
use shared::redis::RedisHandle;
use shared::store::events::history::{self, ChainPosition, Partition, ScopeFilter, Upto};
use shared::trigger::Per;
use sqlx::PgPool;

/// How far backtests may go (`BACKTEST_MAX_EVENTS`), and how they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacktestLimits {
    /// Events of the period one backtest may scan.
    pub max_events: u64,
    /// Events read per query.
    pub page_events: u32,
    /// While a backtest runs, its answer sends a blank every this often: the JSON is
    /// unchanged, and a client that went away is noticed, which stops the backtest.
    pub keep_alive: Duration,
}

impl Default for BacktestLimits {
    fn default() -> Self {
        Self { max_events: 2_000_000, page_events: 5_000, keep_alive: Duration::from_secs(1) }
    }
}

/// What to backtest.
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Warm the aggregates from the history before `from` first.
    pub warm: bool,
}

/// Runs `trigger` over the period. `tick` is called after each page (to keep the client's
/// connection alive).
pub async fn run(
    pool: &PgPool,
    trigger: LoadedTrigger,
    period: &Period,
    limits: BacktestLimits,
    mut tick: impl FnMut(),
) -> Result<Finished, sqlx::Error> {
    let filter = ScopeFilter::of(&trigger.rule.scope);
    let mut backtest = Backtest::new(trigger, engine::DEFAULT_MAX_WINDOW_ENTRIES);
    if period.warm {
        let replay = warm(pool, backtest.trigger(), &filter, period.from, &mut tick).await?;
        backtest.warm(replay);
    }
    let mut after: Option<ChainPosition> = None;
    loop {
        let mut conn = pool.acquire().await?;
        let page = history::period_page(&mut conn, &filter, period.from, period.to, after, limits.page_events).await?;
        drop(conn);
        for event in &page.events {
            backtest.feed(event);
        }
        tick();
        if page.rows < limits.page_events as usize {
            break;
        }
        after = page.last;
        tokio::task::yield_now().await;
    }
    Ok(backtest.finish())
}

/// The trigger's aggregates as a trigger saved at `from` would have them after warming: the
/// latest events of each key before `from` replayed, within the same bounds as the
/// processor's warming (per key, and in all).
async fn warm(
    pool: &PgPool,
    trigger: &LoadedTrigger,
    filter: &ScopeFilter,
    from: DateTime<Utc>,
    tick: &mut impl FnMut(),
) -> Result<Replay, sqlx::Error> {
    let mut replay = Replay::default();
    let aggregates: Vec<_> = trigger.rule.aggregates.iter().collect();
    if aggregates.is_empty() {
        return Ok(replay);
    }
    let per_key = engine::warm::DEFAULT_EVENTS_PER_KEY;
    let upto = Upto::Before(from);
    let feed = |events: Vec<(u64, shared::domain::StoredEvent)>, replay: &mut Replay| {
        for (_, event) in events.iter().filter(|(_, e)| trigger.rule.scope.matches(e)) {
            replay.feed(&aggregates, event, engine::DEFAULT_MAX_WINDOW_ENTRIES);
        }
    };
    if aggregates.iter().any(|a| a.per == Per::Trigger) {
        let mut conn = pool.acquire().await?;
        let events =
            history::latest_per_key(&mut conn, filter, &filter.agents, Partition::Whole, upto, per_key).await?;
        feed(events, &mut replay);
        return Ok(replay);
    }
    let agents_per_page = (engine::warm::PAGE_EVENTS / per_key).max(1);
    let mut after: Option<String> = None;
    loop {
        let mut conn = pool.acquire().await?;
        let page = history::agents_page(&mut conn, filter, upto, after.as_deref(), agents_per_page).await?;
        let Some(last) = page.last().cloned() else { break };
        let events = history::latest_per_key(&mut conn, filter, &page, Partition::Agent, upto, per_key).await?;
        drop(conn);
        feed(events, &mut replay);
        tick();
        if page.len() < agents_per_page as usize || replay.events >= engine::warm::DEFAULT_MAX_EVENTS {
            break;
        }
        after = Some(last);
    }
    Ok(replay)
}

/// One backtest at a time per user, across every gateway: a Redis key that expires unless
/// renewed, so a gateway that dies frees it. Released when dropped.
pub struct Running {
    redis: RedisHandle,
    key: String,
    token: String,
}

/// How long the key lives unless renewed.
const LEASE: Duration = Duration::from_secs(30);

/// Why a backtest could not start.
pub enum Refused {
    /// Another backtest of the user is running.
    Busy,
}

impl Running {
    /// Takes the user's place, or refuses when another backtest of theirs runs. With Redis
    /// away, the backtest runs unguarded (it is bounded on its own) and a warning is logged.
    pub async fn start(redis: &RedisHandle, user: UserId) -> Result<Option<Self>, Refused> {
        let key = redis.config().key(&format!("backtest:{user}"));
        let token = uuid::Uuid::new_v4().to_string();
        let taken: redis::RedisResult<Option<String>> = async {
            let mut conn = redis.connection().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .query_async(&mut conn)
                .await
        }
        .await;
        match taken {
            Ok(Some(_)) => Ok(Some(Self { redis: redis.clone(), key, token })),
            Ok(None) => Err(Refused::Busy),
            Err(err) => {
                tracing::warn!(error = %err, "Redis is away: a backtest runs without its one-per-user guard");
                Ok(None)
            }
        }
    }

    /// Keeps the place for another lease (called while the backtest runs).
    pub fn renew(&self) {
        let (redis, key, token) = (self.redis.clone(), self.key.clone(), self.token.clone());
        tokio::spawn(async move {
            let script = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
            );
            if let Ok(mut conn) = redis.connection().await {
                let renewed: redis::RedisResult<i64> =
                    script.key(&key).arg(&token).arg(LEASE.as_millis() as u64).invoke_async(&mut conn).await;
                if let Err(err) = renewed {
                    tracing::warn!(error = %err, "a backtest's guard could not be renewed");
                }
            }
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (redis, key, token) = (self.redis.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.token));
        // Dropped on a runtime thread (the request's); the release needs no answer.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                );
                if let Ok(mut conn) = redis.connection().await {
                    let released: redis::RedisResult<i64> = script.key(&key).arg(&token).invoke_async(&mut conn).await;
                    if let Err(err) = released {
                        tracing::warn!(error = %err, "a backtest's guard could not be released; it expires");
                    }
                }
            });
        }
    }
}

/// A spawned backtest, stopped when its answer is dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
