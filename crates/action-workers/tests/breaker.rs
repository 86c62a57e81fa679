//! The circuit breaker: it opens after consecutive failures, holds jobs back without
//! spending their attempts, lets one probe through when the open period ends, and closes
//! when a probe succeeds.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use action_workers::breaker::BreakerSettings;
use common::{Bench, Receiver};
use serde_json::json;
use testkit::fixtures::feedback;
use testkit::wait;

#[tokio::test]
async fn the_breaker_opens_holds_probes_and_closes() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(503);
    let (_, action) = bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&(0..3).map(|i| feedback(1, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    let mut settings = Bench::settings(true);
    // Without the breaker, four attempts 50 ms apart would kill every job within a second.
    settings.max_attempts = 4;
    settings.breaker = BreakerSettings {
        threshold: 2,
        open_for: Duration::from_millis(300),
        max_open_for: Duration::from_millis(600),
        probe_timeout: Duration::from_secs(5),
    };
    let workers = bench.start_workers(settings);

    let breaker = || async {
        sqlx::query_as::<_, (String, i32, i32)>(
            "SELECT state, trips, consecutive_failures FROM action_breakers WHERE action_id = $1",
        )
        .bind(action)
        .fetch_optional(&bench.db.pool)
        .await
        .unwrap()
    };
    // Open, then a failed probe opens it again: three trips take well over a second.
    wait::until("three trips of the breaker", Duration::from_secs(30), || async {
        breaker().await.filter(|(_, trips, _)| *trips >= 3).map(|_| ())
    })
    .await;
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    // Up to three jobs fail before the breaker opens (two workers run at once); after that
    // each trip lets exactly one probe through.
    assert!(attempts <= 3 + 3, "attempts were spent while the breaker was open: {attempts}");
    assert_eq!(bench.job_status().await, ["dispatched", "dispatched", "dispatched"], "no job died");

    receiver.answer_always(200);
    wait::until("every job delivered after a successful probe", Duration::from_secs(30), || async {
        (bench.job_status().await == ["delivered", "delivered", "delivered"]).then_some(())
    })
    .await;
    let (state, _, failures) = breaker().await.unwrap();
    assert_eq!((state.as_str(), failures), ("closed", 0));
    workers.abort();
}
