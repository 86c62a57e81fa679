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

#[tokio::test]
async fn any_number_of_trips_opens_within_bounds_and_a_reset_forgets_them() {
    let bench = Bench::new().await;
    let (trigger, action) = bench.webhook_trigger(json!({"type": "webhook", "url": "https://example.com/h"})).await;
    // A breaker that tripped more often than a float can double.
    sqlx::query(
        "INSERT INTO action_breakers (action_id, state, consecutive_failures, trips) VALUES ($1, 'closed', 4, 5000)",
    )
    .bind(action)
    .execute(&bench.db.pool)
    .await
    .unwrap();
    let settings = BreakerSettings { threshold: 5, ..BreakerSettings::default() };
    let opened = action_workers::breaker::failed(&bench.db.pool, action, false, &settings).await.unwrap();
    assert!(opened);
    let open_for: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (open_until - now()))::float8 FROM action_breakers WHERE action_id = $1",
    )
    .bind(action)
    .fetch_one(&bench.db.pool)
    .await
    .unwrap();
    assert!(open_for > 0.0 && open_for <= settings.max_open_for.as_secs_f64() + 1.0, "{open_for}");

    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(shared::store::triggers::reset_breaker(&mut conn, bench.user, trigger, action).await.unwrap());
    let (state, trips): (String, i32) = sqlx::query_as("SELECT state, trips FROM action_breakers WHERE action_id = $1")
        .bind(action)
        .fetch_one(&bench.db.pool)
        .await
        .unwrap();
    assert_eq!((state.as_str(), trips), ("closed", 0));
}
