//! Asked to stop (SIGTERM), a worker process lets its deliveries in flight land and records
//! them before it exits, and gives back the jobs it had not started.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use shared::redis::RedisHandle;
use testkit::fixtures::feedback;
use testkit::wait;

#[tokio::test]
async fn deliveries_in_flight_land_and_are_recorded_before_the_process_exits() {
    let bench = Bench::new().await;
    let slow = Receiver::start_slow(Duration::from_secs(2)).await;
    bench.trigger("slow", json!({"type": "webhook", "url": slow.url()})).await;
    bench.fire(&(0..3).map(|i| feedback(1, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    let settings = action_workers::Settings { shutdown_grace: Duration::from_secs(15), ..Bench::settings(true) };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (pool, redis) = (bench.db.pool.clone(), RedisHandle::new(&bench.redis).unwrap());
    let running = tokio::spawn(action_workers::worker::run_until(pool, redis, settings, async {
        let _ = stopped.await;
    }));

    wait::until("deliveries under way", Duration::from_secs(30), || async {
        (!slow.requests().is_empty()).then_some(())
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("stopped within the grace").unwrap().unwrap();

    // Every request the target got was recorded as delivered before the exit: none is left
    // to be sent again by another worker.
    let received: Vec<String> =
        slow.requests().iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
    assert!(!received.is_empty());
    for id in &received {
        let status: String = sqlx::query_scalar("SELECT status FROM action_outbox WHERE job_id = $1::uuid")
            .bind(id)
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        assert_eq!(status, "delivered", "job {id}");
    }
}
