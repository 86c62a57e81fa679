//! The delivery log, dead jobs, replay and breaker reset through the API, per user.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::user;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::fixtures::feedback;

#[tokio::test]
async fn attempts_dead_jobs_replay_and_breaker_reset_belong_to_their_owner() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let created: Value = alice
        .send(
            Method::POST,
            "/api/v1/triggers",
            Some(json!({"name": "t", "actions": [{"type": "webhook", "url": "https://example.com/h"}]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let trigger = created["id"].as_str().unwrap().to_owned();
    let action = created["actions"][0]["id"].as_str().unwrap().to_owned();
    // Make the trigger fire from the past, then let the real processor decide a job.
    sqlx::query("UPDATE triggers SET fires_from = '2000-01-01'").execute(&db.pool).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    shared::store::events::insert(&mut conn, &[feedback(1, 0, 1, 1, 0, "a")]).await.unwrap();
    let mut processor = event_processor::Processor::new(db.pool.clone(), event_processor::Settings::default());
    processor.refresh_triggers().await.unwrap();
    // Other tests' open transactions on the server may hold the event back for a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while processor.catch_up().await.unwrap().jobs == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the processor never fired the trigger");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A worker gave up on it and opened the breaker.
    let job: uuid::Uuid = sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_one(&db.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO deliveries (job_id, trigger_id, action_id, event_id, kind, attempt, outcome, status_code, error, latency_ms)
         SELECT job_id, trigger_id, action_id, event_id, kind, 1, 'dead', 500, 'HTTP 500', 12 FROM action_outbox",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE action_outbox SET status = 'dead', attempts = 1").execute(&db.pool).await.unwrap();
    sqlx::query("INSERT INTO action_breakers (action_id, state, consecutive_failures, trips, open_until) SELECT action_id, 'open', 5, 1, now() + interval '1 hour' FROM action_outbox")
        .execute(&db.pool)
        .await
        .unwrap();

    let attempts: Value =
        alice.send(Method::GET, &format!("/api/v1/triggers/{trigger}/deliveries"), None).await.json().await.unwrap();
    assert_eq!(attempts["items"].as_array().unwrap().len(), 1);
    assert_eq!(attempts["items"][0]["outcome"], "dead");
    assert_eq!(attempts["items"][0]["status_code"], 500);
    assert_eq!(bob.send(Method::GET, &format!("/api/v1/triggers/{trigger}/deliveries"), None).await.status(), 404);

    let dead: Value = alice.send(Method::GET, "/api/v1/deliveries?status=dead", None).await.json().await.unwrap();
    assert_eq!(dead["items"][0]["job_id"], json!(job.to_string()));
    let bobs: Value = bob.send(Method::GET, "/api/v1/deliveries?status=dead", None).await.json().await.unwrap();
    assert_eq!(bobs["items"], json!([]));
    assert_eq!(alice.send(Method::GET, "/api/v1/deliveries?status=lost", None).await.status(), 400);

    let shown: Value =
        alice.send(Method::GET, &format!("/api/v1/triggers/{trigger}"), None).await.json().await.unwrap();
    assert_eq!(shown["actions"][0]["breaker"]["state"], "open");
    assert_eq!(shown["actions"][0]["last_delivery"]["outcome"], "dead");

    let reset = format!("/api/v1/triggers/{trigger}/actions/{action}/breaker/reset");
    assert_eq!(bob.send(Method::POST, &reset, None).await.status(), 404);
    assert_eq!(alice.send(Method::POST, &reset, None).await.status(), 204);
    let shown: Value =
        alice.send(Method::GET, &format!("/api/v1/triggers/{trigger}"), None).await.json().await.unwrap();
    assert_eq!(shown["actions"][0]["breaker"]["state"], "closed");

    let replay = format!("/api/v1/deliveries/{job}/replay");
    assert_eq!(bob.send(Method::POST, &replay, None).await.status(), 404);
    let replayed = alice.send(Method::POST, &replay, None).await;
    assert_eq!(replayed.status(), 202);
    let status: String = sqlx::query_scalar("SELECT status FROM action_outbox").fetch_one(&db.pool).await.unwrap();
    assert_eq!(status, "pending", "the relay pushes it again");
    assert_eq!(alice.send(Method::POST, &replay, None).await.status(), 404, "only dead or failed jobs replay");
}
