//! The running service: trigger changes while it runs, and Redis or PostgreSQL going away
//! for a while.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Bench, long_ago, stream_jobs, webhook};
use event_processor::Settings;
use serde_json::json;
use shared::config::{DatabaseConfig, RedisConfig};
use shared::redis::RedisHandle;
use shared::trigger::ActionKind;
use sqlx::PgPool;
use testkit::fixtures::feedback;
use testkit::proxy::TcpProxy;
use testkit::redis_server::RedisServer;
use testkit::wait;

const DEADLINE: Duration = Duration::from_secs(60);

fn fast() -> Settings {
    Settings { poll_interval: Duration::from_millis(50), ..Settings::default() }
}

fn spawn_service(pool: PgPool, redis: &RedisConfig) -> tokio::task::JoinHandle<()> {
    let redis = RedisHandle::new(redis).unwrap();
    tokio::spawn(event_processor::service::run(pool, redis, fast()))
}

async fn stream_ids(redis: &RedisConfig) -> BTreeSet<uuid::Uuid> {
    stream_jobs(redis, ActionKind::Webhook).await.into_iter().map(|j| j.job_id.0).collect()
}

async fn outbox_ids(pool: &PgPool) -> BTreeSet<uuid::Uuid> {
    sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_all(pool).await.unwrap().into_iter().collect()
}

#[tokio::test]
async fn trigger_changes_reach_a_running_processor() {
    let bench = Bench::new().await;
    let everything = json!({"field": "value", "op": "gte", "value": 0});
    // Read at start, before any event.
    let (first, _) = bench.trigger(webhook("first", json!({}), everything.clone()), long_ago()).await;
    let service = spawn_service(bench.db.pool.clone(), &bench.redis);
    bench.insert(&[feedback(1, 0, 1, 5, 0, "a")]).await;
    wait::until("a job of the new trigger", DEADLINE, || async {
        let jobs = bench.stream(ActionKind::Webhook).await;
        jobs.iter().any(|j| j.trigger.id == first).then_some(())
    })
    .await;

    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(shared::store::triggers::set_enabled(&mut conn, bench.user, first, false, None).await.unwrap());
    // A canary created after the change; once its aggregate is warmed, the processor has
    // read the triggers again, the disabled one included.
    let (canary, _) = bench
        .trigger(
            webhook("canary", json!({}), json!({"count": {"window_secs": 60}, "op": "gte", "value": 1})),
            long_ago(),
        )
        .await;
    wait::until("the canary to be loaded", DEADLINE, || async {
        let warmed: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregate_state WHERE trigger_id = $1")
            .bind(canary)
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        (warmed > 0).then_some(())
    })
    .await;
    bench.insert(&[feedback(2, 0, 1, 5, 0, "a")]).await;
    let jobs = wait::until("the canary's job", DEADLINE, || async {
        let jobs = bench.stream(ActionKind::Webhook).await;
        jobs.iter().any(|j| j.trigger.id == canary).then_some(jobs)
    })
    .await;
    let first_jobs = jobs.iter().filter(|j| j.trigger.id == first).count();
    assert_eq!(first_jobs, 1, "the disabled trigger did not fire again");
    service.abort();
}

#[tokio::test]
async fn a_trigger_warming_in_the_background_goes_live_by_itself() {
    let bench = Bench::new().await;
    let redis = RedisHandle::new(&bench.redis).unwrap();
    let settings = Settings { warm_in_background: true, ..fast() };
    let service = tokio::spawn(event_processor::service::run(bench.db.pool.clone(), redis, settings));
    bench.insert(&[feedback(1, 0, 1, 10, 0, "a"), feedback(2, 0, 1, 20, 0, "a"), feedback(3, 0, 1, 30, 0, "a")]).await;

    let ema = json!({"ema": {"field": "value", "window": 3, "as": "e"}, "op": "gte", "value": 0});
    let (trigger, _) = bench.trigger(webhook("ema", json!({}), ema), testkit::fixtures::block_time(100)).await;
    // An event processed before the processor has read the new trigger never reaches it:
    // wait until it has (its aggregate warmed), then send the one that must fire it.
    wait::until("the trigger to be warmed", DEADLINE, || async {
        let warmed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM aggregate_state WHERE trigger_id = $1 AND key = '#warmed'")
                .bind(trigger)
                .fetch_one(&bench.db.pool)
                .await
                .unwrap();
        (warmed > 0).then_some(())
    })
    .await;
    bench.insert(&[feedback(200, 0, 1, 40, 0, "a")]).await;
    let job = wait::until("the warmed trigger's job", DEADLINE, || async {
        bench.stream(ActionKind::Webhook).await.into_iter().find(|j| j.trigger.id == trigger)
    })
    .await;
    // 10, 15, 22.5 from history, then 31.25: warmed before it fired.
    assert_eq!(job.aggregates.get("e").cloned().flatten().map(|v| v.to_string()).as_deref(), Some("31.25"));
    wait::until("the catch-up to end", DEADLINE, || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM trigger_catch_up").fetch_one(&bench.db.pool).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
    service.abort();
}

#[tokio::test]
async fn redis_restarting_empty_loses_no_job() {
    let bench = Bench::new().await;
    let mut server = RedisServer::start().await;
    let redis = RedisConfig::for_url(&server.url(), "t:");
    // The trigger exists before the processor starts, so it is read before any event.
    bench.trigger(webhook("all", json!({}), json!({"field": "value", "op": "gte", "value": 0})), long_ago()).await;
    let service = spawn_service(bench.db.pool.clone(), &redis);

    bench.insert(&(0..20).map(|i| feedback(1, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    wait::until("the first jobs in Redis", DEADLINE, || async { (stream_ids(&redis).await.len() == 20).then_some(()) })
        .await;

    server.stop().await;
    bench.insert(&(0..30).map(|i| feedback(2, i, 2, 1, 0, "a")).collect::<Vec<_>>()).await;
    wait::until("the processor to decide while Redis is down", DEADLINE, || async {
        (outbox_ids(&bench.db.pool).await.len() == 50).then_some(())
    })
    .await;
    server.restart().await;

    let expected = outbox_ids(&bench.db.pool).await;
    wait::until("every job in the restarted Redis", DEADLINE, || async {
        (stream_ids(&redis).await == expected).then_some(())
    })
    .await;
    service.abort();
    server.stop().await;
}

#[tokio::test]
async fn jobs_committed_while_redis_is_away_are_pushed_once_each_when_it_returns() {
    let bench = Bench::new().await;
    let mut server = RedisServer::start().await;
    let redis = RedisConfig::for_url(&server.url(), "t:");
    bench.trigger(webhook("all", json!({}), json!({"field": "value", "op": "gte", "value": 0})), long_ago()).await;
    let service = spawn_service(bench.db.pool.clone(), &redis);
    bench.insert(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    wait::until("the first job in Redis", DEADLINE, || async { (stream_ids(&redis).await.len() == 1).then_some(()) })
        .await;

    server.stop().await;
    // Committed in many batches while Redis is away: the fast path cannot push them.
    for block in 0..10u64 {
        let events: Vec<_> = (0..500u32).map(|i| feedback(2 + block, i, u64::from(i), 1, 0, "a")).collect();
        bench.insert(&events).await;
    }
    wait::until("every decision while Redis is away", DEADLINE, || async {
        (outbox_ids(&bench.db.pool).await.len() == 5_001).then_some(())
    })
    .await;
    server.restart().await;

    let expected = outbox_ids(&bench.db.pool).await;
    wait::until("every job pushed again", DEADLINE, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status <> 'dispatched'")
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        (left == 0 && stream_ids(&redis).await == expected).then_some(())
    })
    .await;
    let pushed = stream_jobs(&redis, ActionKind::Webhook).await.len();
    assert_eq!(pushed, expected.len(), "each job once in the restarted Redis");
    service.abort();
    server.stop().await;
}

#[tokio::test]
async fn postgres_going_away_pauses_and_then_resumes_without_loss() {
    let bench = Bench::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through_proxy =
        DatabaseConfig::new(testkit::database::admin_options().port(proxy.port()).database(bench.db.name()));
    let pool = shared::db::connect_lazy(&through_proxy);
    bench.trigger(webhook("all", json!({}), json!({"field": "value", "op": "gte", "value": 0})), long_ago()).await;
    let service = spawn_service(pool, &bench.redis);

    bench.insert(&(0..10).map(|i| feedback(1, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    wait::until("jobs before the outage", DEADLINE, || async {
        (stream_ids(&bench.redis).await.len() == 10).then_some(())
    })
    .await;

    proxy.cut();
    bench.insert(&(0..10).map(|i| feedback(2, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage itself
    assert_eq!(stream_ids(&bench.redis).await.len(), 10, "nothing is decided while the database is away");
    proxy.restore();

    wait::until("jobs after the outage", DEADLINE, || async {
        (stream_ids(&bench.redis).await.len() == 20).then_some(())
    })
    .await;
    assert_eq!(outbox_ids(&bench.db.pool).await, stream_ids(&bench.redis).await);
    service.abort();
}
