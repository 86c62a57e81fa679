//! One job's outcome never holds up the others: an attempt the store refuses to record fails
//! its own job with the reason, and every other job of the batch is recorded and
//! acknowledged as usual.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use testkit::fixtures::feedback;
use testkit::wait;

const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until the webhook stream holds no message, read or not: every one was acknowledged.
async fn all_acknowledged(bench: &Bench) {
    let stream = shared::job::stream_key(&bench.redis, shared::trigger::ActionKind::Webhook);
    let redis = bench.redis.client().unwrap().get_multiplexed_async_connection().await.unwrap();
    wait::until("every message acknowledged", DEADLINE, || async {
        let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(action_workers::queue::GROUP)
            .query_async(&mut redis.clone())
            .await
            .unwrap();
        let length: usize = redis::cmd("XLEN").arg(&stream).query_async(&mut redis.clone()).await.unwrap();
        (pending.count() == 0 && length == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_attempt_the_store_refuses_fails_only_its_own_job() {
    let bench = Bench::new().await;
    let (refused, welcome) = (Receiver::start().await, Receiver::start().await);
    refused.answer_always(500);
    // Stands for anything the delivery log might refuse in what a target answers.
    sqlx::query("ALTER TABLE deliveries ADD CONSTRAINT no_500 CHECK (response_excerpt NOT LIKE '%answered 500%')")
        .execute(&bench.db.pool)
        .await
        .unwrap();
    let (refused_trigger, _) = bench.trigger("refused", json!({"type": "webhook", "url": refused.url()})).await;
    let (welcome_trigger, _) = bench.trigger("welcome", json!({"type": "webhook", "url": welcome.url()})).await;
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a"), feedback(1, 1, 2, 1, 0, "a")]).await;
    // One consumer, so the four jobs are delivered and recorded as one batch.
    let workers = bench.start_workers(action_workers::Settings { concurrency: 1, ..Bench::settings(true) });

    let finished = wait::until("every job finished", DEADLINE, || async {
        let rows: Vec<(uuid::Uuid, String)> =
            sqlx::query_as("SELECT trigger_id, status FROM action_outbox ORDER BY trigger_id, event_id")
                .fetch_all(&bench.db.pool)
                .await
                .unwrap();
        rows.iter().all(|(_, status)| status != "pending" && status != "dispatched").then_some(rows)
    })
    .await;
    for (trigger, status) in &finished {
        let expected = if *trigger == refused_trigger.0 { "failed" } else { "delivered" };
        assert_eq!(status, expected, "trigger {trigger}");
    }
    assert_eq!(finished.len(), 4);
    let logged: Vec<(uuid::Uuid, String, Option<String>, Option<i32>)> =
        sqlx::query_as("SELECT trigger_id, outcome, error, status_code FROM deliveries ORDER BY id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(logged.len(), 4, "one attempt each: {logged:?}");
    for (trigger, outcome, error, status) in logged {
        if trigger == refused_trigger.0 {
            assert_eq!(outcome, "failed");
            assert_eq!(status, Some(500));
            let error = error.unwrap();
            assert!(error.starts_with("the attempt could not be recorded:") && error.contains("no_500"), "{error}");
        } else {
            assert_eq!((trigger, outcome.as_str()), (welcome_trigger.0, "success"));
        }
    }
    // Every message was acknowledged, so none comes back: each target heard once per job.
    all_acknowledged(&bench).await;
    assert_eq!(refused.requests().len(), 2);
    assert_eq!(welcome.requests().len(), 2);
    workers.abort();
}

#[tokio::test]
async fn a_job_pushed_again_while_it_is_delivered_is_sent_once() {
    let bench = Bench::new().await;
    let slow = Receiver::start_slow(Duration::from_secs(2)).await;
    bench.trigger("slow", json!({"type": "webhook", "url": slow.url()})).await;
    bench.fire(&[feedback(1, 0, 1, 1, 0, "a")]).await;
    let workers = bench.start_workers(Bench::settings(true));
    wait::until("the delivery to start", DEADLINE, || async { (!slow.requests().is_empty()).then_some(()) }).await;

    // The relay pushes the same job again (as after a Redis restart) while it is in flight.
    let payload: String =
        sqlx::query_scalar("SELECT payload::text FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    let stream = shared::job::stream_key(&bench.redis, shared::trigger::ActionKind::Webhook);
    let mut redis = bench.redis.client().unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(shared::job::STREAM_FIELD)
        .arg(&payload)
        .query_async::<String>(&mut redis)
        .await
        .unwrap();

    wait::until("the job delivered", DEADLINE, || async { (bench.job_status().await == ["delivered"]).then_some(()) })
        .await;
    all_acknowledged(&bench).await;
    assert_eq!(slow.requests().len(), 1, "the second copy was not sent");
    workers.abort();
}
