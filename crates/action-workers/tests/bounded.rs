//! One job's template or one user's deletion fails that job alone: a template that explodes
//! on a hostile event fails its job for good with a clear error while the others are
//! delivered, and the attempts of a trigger deleted in flight never fail the batch's log.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use action_workers::outcome::Attempt;
use action_workers::record::{self, After, Recorded};
use common::{Bench, Receiver};
use serde_json::json;
use shared::job::Job;
use testkit::fixtures::feedback;
use testkit::wait;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_template_that_explodes_on_one_event_fails_that_job_alone() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    // Fine for an ordinary tag (it passed the save-time trial), far over the cap for a long one.
    bench
        .trigger("echo", json!({"type": "webhook", "url": receiver.url(), "body_template": "{{ event.tag1 * 500 }}"}))
        .await;
    bench.trigger("plain", json!({"type": "webhook", "url": receiver.url()})).await;
    let hostile = "\u{FFFD}".repeat(10_000);
    bench.fire(&[feedback(1, 0, 7, 1, 0, &hostile), feedback(2, 0, 7, 1, 0, "ok")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("every job to finish", DEADLINE, || async {
        let statuses = bench.job_status().await;
        statuses.iter().all(|s| s != "pending" && s != "dispatched").then_some(())
    })
    .await;
    workers.abort();
    assert_eq!(receiver.requests().len(), 3, "the plain trigger twice, the echo once");
    let failed: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("SELECT attempt, outcome, error FROM deliveries WHERE outcome <> 'success'")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (attempt, outcome, error) = &failed[0];
    assert_eq!((*attempt, outcome.as_str()), (1, "failed"), "failed for good at once");
    assert!(error.as_deref().unwrap().contains("exceeds its budget"), "{error:?}");
}

#[tokio::test]
async fn attempts_of_a_trigger_deleted_in_flight_do_not_fail_the_others() {
    let bench = Bench::new().await;
    bench.trigger("kept", json!({"type": "webhook", "url": "https://example.com/kept"})).await;
    let (gone, _) = bench.trigger("gone", json!({"type": "webhook", "url": "https://example.com/gone"})).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "a")]).await;
    let payloads: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM action_outbox").fetch_all(&bench.db.pool).await.unwrap();
    let jobs: Vec<Job> = payloads.into_iter().map(|p| serde_json::from_value(p).unwrap()).collect();
    assert_eq!(jobs.len(), 2);

    // Deleted while both jobs were being delivered.
    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(shared::store::triggers::delete(&mut conn, bench.user, gone).await.unwrap());
    let delivered = Attempt {
        verdict: action_workers::outcome::Verdict::Delivered,
        status: Some(200),
        error: None,
        latency: Duration::from_millis(3),
        excerpt: None,
    };
    let attempts: Vec<Recorded<'_>> =
        jobs.iter().map(|job| Recorded { job, number: 1, attempt: &delivered, after: After::Delivered }).collect();
    record::record_many(&bench.db.pool, &attempts).await.expect("the log of the others is kept");

    let logged: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT trigger_id FROM deliveries").fetch_all(&bench.db.pool).await.unwrap();
    let kept = jobs.iter().find(|j| j.trigger.id != gone).unwrap();
    assert_eq!(logged, [kept.trigger.id.0]);
    assert_eq!(bench.job_status().await, ["delivered"]);
}

#[tokio::test]
async fn what_a_target_answers_never_fails_the_log() {
    let bench = Bench::new().await;
    bench.trigger("a", json!({"type": "webhook", "url": "https://example.com/a"})).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "a")]).await;
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    let job: Job = serde_json::from_value(payload).unwrap();
    let garbage = Attempt {
        verdict: action_workers::outcome::Verdict::Permanent,
        status: Some(400),
        error: Some("said \0 no".into()),
        latency: Duration::from_millis(3),
        excerpt: Some("\0\0 body".into()),
    };
    let attempt = Recorded { job: &job, number: 1, attempt: &garbage, after: After::Failed };
    record::record_many(&bench.db.pool, &[attempt]).await.expect("recorded");
    let (error, excerpt): (String, String) =
        sqlx::query_as("SELECT error, response_excerpt FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!((error.as_str(), excerpt.as_str()), ("said \u{FFFD} no", "\u{FFFD}\u{FFFD} body"));
}

#[tokio::test]
async fn a_job_whose_action_no_longer_reads_is_dead_lettered_not_left_waiting() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    bench.trigger("broken later", json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&[feedback(1, 0, 7, 1, 0, "a")]).await;
    // The job in the stream is replaced by one whose action's configuration no longer reads
    // (a payload of an older or a tampered layout).
    let mut payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    payload["action"]["config"] = json!({"type": "webhook", "url": 42});
    let stream = shared::job::stream_key(&bench.redis, shared::trigger::ActionKind::Webhook);
    let mut redis = bench.redis.client().unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut redis).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(shared::job::STREAM_FIELD)
        .arg(payload.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let workers = bench.start_workers(Bench::settings(true));
    wait::until("the job to be dead-lettered", DEADLINE, || async {
        (bench.job_status().await == vec!["dead".to_owned()]).then_some(())
    })
    .await;
    workers.abort();
    assert!(receiver.requests().is_empty(), "nothing was sent");
}
