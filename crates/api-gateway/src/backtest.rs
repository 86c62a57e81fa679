//! Running a backtest for the API: few at a time per gateway and one at a time per user,
//! reading the scope's history a page at a time into the engine (on a blocking thread, so
//! no request of anyone else waits on it), bounded in events, memory and time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::LoadedTrigger;
use engine::backtest::{Backtest, Finished};
use engine::warm::Replay;
use shared::domain::{StoredEvent, UserId};
use shared::redis::RedisHandle;
use shared::store::events::history::{self, ChainPosition, Partition, ScopeFilter, Upto};
use shared::trigger::Per;
use sqlx::PgPool;
use tokio::time::Instant;

/// How far backtests may go (`BACKTEST_MAX_EVENTS`), and how they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacktestLimits {
    /// Events of the period one backtest may scan.
    pub max_events: u64,
    /// Aggregate keys one backtest may hold (each agent, or agent and client, of the scope
    /// has one per aggregate): what bounds its memory.
    pub max_keys: usize,
    /// How long one backtest may run, warming included.
    pub max_duration: Duration,
    /// Backtests one gateway runs at once, all users together.
    pub concurrent: usize,
    /// Events read per query.
    pub page_events: u32,
    /// While a backtest runs, its answer sends a blank every this often: the JSON is
    /// unchanged, and a client that went away is noticed, which stops the backtest.
    pub keep_alive: Duration,
}

impl Default for BacktestLimits {
    fn default() -> Self {
        Self {
            max_events: 2_000_000,
            max_keys: 200_000,
            max_duration: Duration::from_secs(300),
            concurrent: 2,
            page_events: 5_000,
            keep_alive: Duration::from_secs(1),
        }
    }
}

/// What to backtest.
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Warm the aggregates from the history before `from` first.
    pub warm: bool,
}

/// Why a backtest stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the history failed")]
    Database(#[from] sqlx::Error),
    #[error("the backtest holds more than {0} aggregate keys")]
    TooManyKeys(usize),
    #[error("the backtest ran longer than {0:?}")]
    TooLong(Duration),
    #[error("evaluating the events failed")]
    Evaluation,
}

/// Runs `trigger` over the period. `tick` is called after each page (to keep the client's
/// connection alive).
pub async fn run(
    pool: &PgPool,
    trigger: LoadedTrigger,
    period: &Period,
    limits: BacktestLimits,
    mut tick: impl FnMut(),
) -> Result<Finished, RunError> {
    let deadline = Instant::now() + limits.max_duration;
    let in_time = || if Instant::now() < deadline { Ok(()) } else { Err(RunError::TooLong(limits.max_duration)) };
    let filter = ScopeFilter::of(&trigger.rule.scope);
    let mut backtest = Backtest::new(trigger, engine::DEFAULT_MAX_WINDOW_ENTRIES);
    if period.warm {
        let replay = warm(pool, backtest.trigger(), &filter, period.from, &mut tick, &in_time).await?;
        backtest.warm(replay);
    }
    // The next page is read while the current one is evaluated.
    let read = |after: Option<ChainPosition>| {
        let filter = &filter;
        async move {
            let mut conn = pool.acquire().await?;
            history::period_page(&mut conn, filter, period.from, period.to, after, limits.page_events).await
        }
    };
    let mut page = read(None).await?;
    loop {
        in_time()?;
        let last_page = page.rows < limits.page_events as usize;
        let (last, events) = (page.last, std::mem::take(&mut page.events));
        // A page is thousands of evaluations: off the request threads.
        let evaluated = tokio::task::spawn_blocking(move || {
            for event in &events {
                backtest.feed(event);
            }
            backtest
        });
        if last_page {
            backtest = evaluated.await.map_err(|_| RunError::Evaluation)?;
        } else {
            let (next, evaluated) = tokio::join!(read(last), evaluated);
            backtest = evaluated.map_err(|_| RunError::Evaluation)?;
            page = next?;
        }
        if backtest.state_keys() > limits.max_keys {
            return Err(RunError::TooManyKeys(limits.max_keys));
        }
        tick();
        if last_page {
            break;
        }
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
    in_time: &impl Fn() -> Result<(), RunError>,
) -> Result<Replay, RunError> {
    let mut replay = Replay::default();
    let aggregates: Vec<_> = trigger.rule.aggregates.iter().collect();
    if aggregates.is_empty() {
        return Ok(replay);
    }
    let per_key = engine::warm::DEFAULT_EVENTS_PER_KEY;
    let upto = Upto::Before(from);
    let feed = |events: Vec<(u64, StoredEvent)>, replay: &mut Replay| {
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
        in_time()?;
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

/// How long the per-user guard lives unless renewed.
const LEASE: Duration = Duration::from_secs(30);

const RENEW: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The user's one place, across every gateway: a Redis key that expires unless renewed (a
/// task renews it while the backtest runs), so a gateway that dies frees it.
struct Lease {
    redis: RedisHandle,
    key: String,
    token: String,
}

impl Lease {
    async fn call(&self, script: &str, lease: bool) -> redis::RedisResult<i64> {
        let mut conn = self.redis.connection().await?;
        let script = redis::Script::new(script);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.token);
        if lease {
            invocation.arg(LEASE.as_millis() as u64);
        }
        invocation.invoke_async(&mut conn).await
    }
}

/// A backtest's places: one of the gateway's, and the user's. Given back by
/// [`Running::release`], or when dropped (a client that left, a failure).
pub struct Running {
    _place: tokio::sync::OwnedSemaphorePermit,
    lease: Option<Arc<Lease>>,
    renewal: Option<AbortOnDrop>,
}

/// Why a backtest could not start.
pub enum Refused {
    /// Another backtest of the user is running.
    UserBusy,
    /// The gateway runs as many backtests as it may.
    GatewayBusy,
}

impl Running {
    /// Takes a place among the gateway's backtests and the user's place, or refuses. With
    /// Redis away the user's place is not kept (the gateway's limit still holds), and a
    /// warning is logged.
    pub async fn start(
        places: &Arc<tokio::sync::Semaphore>,
        redis: &RedisHandle,
        user: UserId,
    ) -> Result<Self, Refused> {
        let place = places.clone().try_acquire_owned().map_err(|_| Refused::GatewayBusy)?;
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
        let lease = match taken {
            Ok(Some(_)) => Arc::new(Lease { redis: redis.clone(), key, token }),
            Ok(None) => return Err(Refused::UserBusy),
            Err(err) => {
                tracing::warn!(error = %err, "Redis is away: a backtest runs without its one-per-user guard");
                return Ok(Self { _place: place, lease: None, renewal: None });
            }
        };
        let renewing = lease.clone();
        let renewal = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if let Err(err) = renewing.call(RENEW, true).await {
                    tracing::warn!(error = %err, "a backtest's guard could not be renewed");
                }
            }
        }));
        Ok(Self { _place: place, lease: Some(lease), renewal: Some(renewal) })
    }

    /// Gives the user's place back now (before the answer ends, so the next backtest of the
    /// user is not refused).
    pub async fn release(mut self) {
        self.renewal.take();
        if let Some(lease) = self.lease.take() {
            let released = tokio::time::timeout(Duration::from_secs(2), lease.call(RELEASE, false)).await;
            if !matches!(released, Ok(Ok(_))) {
                tracing::warn!("a backtest's guard could not be released; it expires");
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.renewal.take();
        let Some(lease) = self.lease.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = lease.call(RELEASE, false).await {
                    tracing::warn!(error = %err, "a backtest's guard could not be released; it expires");
                }
            });
        }
    }
}

/// A spawned task, stopped when this is dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
