//! Webhook deliveries end to end: real jobs from the processor, a real receiver on loopback,
//! the delivery log in PostgreSQL.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use testkit::fixtures::feedback;
use testkit::wait;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_delivery_is_signed_per_standard_webhooks_with_the_job_id() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    let (_, action) = bench
        .webhook_trigger(json!({
            "type": "webhook",
            "url": receiver.url(),
            "headers": {"X-Env": "test"},
            "body_template": "{\"agent\": {{ event.agent_id }}, \"value\": {{ event.value }}, \"tag\": {{ event.tag1 }}}"
        }))
        .await;
    bench.fire(&[feedback(1, 0, 42, -32, 1, "up\"time")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    let request = wait::until("the delivery", DEADLINE, || async { receiver.requests().into_iter().next() }).await;
    let secret = bench.signing_secret(action).await;
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let mut headers = http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    verifier.verify(request.body.as_bytes(), &headers).expect("the signature verifies");

    let job_id: uuid::Uuid =
        sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(request.header("webhook-id"), Some(job_id.to_string().as_str()));
    assert_eq!(request.header("x-env"), Some("test"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    // Values are written as JSON, so a quote in the tag cannot break the document.
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body, json!({"agent": "42", "value": "-3.2", "tag": "up\"time"}));

    wait::until("the outcome to be recorded", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let attempts = bench.attempts().await;
    assert_eq!(attempts, vec![(1, "success".to_owned(), Some(200))]);
    let excerpt: Option<String> =
        sqlx::query_scalar("SELECT response_excerpt FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(excerpt.as_deref(), Some("answered 200"));
    workers.abort();
}

#[tokio::test]
async fn server_errors_are_retried_until_success_with_the_same_id() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 503]);
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("delivery after two failures", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let attempts = bench.attempts().await;
    assert_eq!(
        attempts,
        vec![
            (1, "retry".to_owned(), Some(500)),
            (2, "retry".to_owned(), Some(503)),
            (3, "success".to_owned(), Some(200))
        ]
    );
    let ids: Vec<_> = receiver.requests().iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "the id is stable across retries: {ids:?}");
    // The default body: the job, the trigger, the event and the aggregates as JSON.
    let body: serde_json::Value = serde_json::from_str(&receiver.requests()[0].body).unwrap();
    assert_eq!(body["event"]["event_type"], "NewFeedback");
    assert_eq!(body["trigger"]["name"], "hook");
    assert_eq!(body["chain"]["name"], "Anvil");
    workers.abort();
}

#[tokio::test]
async fn a_client_error_fails_at_once() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[400]);
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("the permanent failure", DEADLINE, || async { (bench.job_status().await == ["failed"]).then_some(()) })
        .await;
    assert_eq!(bench.attempts().await, vec![(1, "failed".to_owned(), Some(400))]);
    assert_eq!(receiver.requests().len(), 1);
    workers.abort();
}

#[tokio::test]
async fn a_target_that_keeps_failing_kills_the_job_and_a_replay_delivers_it() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 502, 504]);
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("the job to die", DEADLINE, || async { (bench.job_status().await == ["dead"]).then_some(()) }).await;
    let outcomes: Vec<String> = bench.attempts().await.into_iter().map(|a| a.1).collect();
    assert_eq!(outcomes, ["retry", "retry", "dead"]);

    // The target recovers (it answers 200 from now on); the user replays the dead job.
    let job: uuid::Uuid =
        sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(shared::store::outbox::replay(&mut conn, bench.user, shared::domain::JobId(job)).await.unwrap());
    bench.relay().run_once().await.unwrap();
    wait::until("the replay to deliver", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let outcomes: Vec<String> = bench.attempts().await.into_iter().map(|a| a.1).collect();
    assert_eq!(outcomes, ["retry", "retry", "dead", "success"]);
    assert_eq!(receiver.requests().len(), 4);
    workers.abort();
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_without_connecting() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        format!("http://localhost:{}/hook", receiver.port),
    ] {
        bench.webhook_trigger(json!({"type": "webhook", "url": url})).await;
    }
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    // Loopback is not allowed here.
    let workers = bench.start_workers(Bench::settings(false));

    wait::until("three refusals", DEADLINE, || async {
        (bench.job_status().await == ["failed", "failed", "failed"]).then_some(())
    })
    .await;
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT error FROM deliveries ORDER BY id").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(errors.len(), 3);
    for error in &errors {
        assert!(error.contains("refused to connect"), "{error}");
    }
    assert!(receiver.requests().is_empty(), "the loopback receiver was never contacted");
    workers.abort();
}

#[tokio::test]
async fn handled_messages_leave_the_stream() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&(0..5).map(|i| feedback(1, i, 1, 1, 0, "a")).collect::<Vec<_>>()).await;
    let stream = shared::job::stream_key(&bench.redis, shared::trigger::ActionKind::Webhook);
    let client = bench.redis.client().unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let queued: usize = redis::AsyncCommands::xlen(&mut conn, &stream).await.unwrap();
    assert_eq!(queued, 5);
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("five deliveries", DEADLINE, || async {
        (bench.job_status().await.iter().filter(|s| *s == "delivered").count() == 5).then_some(())
    })
    .await;
    wait::until("an empty stream", DEADLINE, || {
        let (stream, mut conn) = (stream.clone(), conn.clone());
        async move {
            let left: usize = redis::AsyncCommands::xlen(&mut conn, &stream).await.unwrap();
            (left == 0).then_some(())
        }
    })
    .await;
    workers.abort();
}
