//! Secrets at rest and in flight: an action's credentials are sealed in PostgreSQL, never
//! queued in the outbox or Redis, read by the worker at delivery time, survive a key
//! rotation, and never follow a redirect to another origin.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use shared::secrets::Keyring;
use shared::store::triggers::{self, Reseal};
use testkit::fixtures::feedback;
use testkit::wait;

const DEADLINE: Duration = Duration::from_secs(30);
const AUTHORIZATION: &str = "Bearer 7a1c0ffee7a1c0ffee";
const API_KEY: &str = "apikey9f8e7d6c5b4a";
const CUSTOM: &str = "customsecret31337";

/// The key the bench seals with, and a second one to rotate to.
const OLD_KEY: &str = testkit::SECRETS_KEY;
const NEW_KEY: &str = "next:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn verify(secret: &str, request: &testkit::outside::receiver::Received) {
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    let mut headers = http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    verifier.verify(request.body.as_bytes(), &headers).expect("the signature verifies");
}

#[tokio::test]
async fn credentials_are_sealed_in_the_database_and_never_queued() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    // The first attempt fails, so the job also waits in the retry set for a while.
    receiver.answer(&[503]);
    let (_, action) = bench
        .webhook_trigger(json!({
            "type": "webhook",
            "url": receiver.url(),
            "headers": {"Authorization": AUTHORIZATION, "X-Api-Key": API_KEY, "X-Env": "public-value"},
            "secret_headers": {"X-Custom-Token": CUSTOM}
        }))
        .await;
    let signing = bench.signing_secret(action).await;
    bench.fire(&[feedback(1, 0, 42, 10, 0, "x")]).await;
    let secrets = [AUTHORIZATION, "7a1c0ffee7a1c0ffee", API_KEY, CUSTOM, signing.as_str()];
    let assert_nowhere = |stored: String, queued: String, jobs_queued: bool| {
        for secret in secrets {
            assert!(!stored.contains(secret), "{secret} is in the database in clear");
            assert!(!queued.contains(secret), "{secret} is queued in Redis in clear");
        }
        assert!(stored.contains("public-value"), "the search reads the tables");
        if jobs_queued {
            assert!(queued.contains("public-value"), "the search reads the queue: {queued}");
        }
    };
    assert_nowhere(bench.db.dump().await, testkit::redis_dump(&bench.redis).await, true);

    let workers = bench.start_workers(Bench::settings(true));
    wait::until("the retry to deliver", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("authorization"), Some(AUTHORIZATION));
        assert_eq!(request.header("x-api-key"), Some(API_KEY));
        assert_eq!(request.header("x-custom-token"), Some(CUSTOM));
        assert_eq!(request.header("x-env"), Some("public-value"));
        verify(&signing, request);
    }
    // Nor are they written down by the attempts (the delivered job has left the queue).
    assert_nowhere(bench.db.dump().await, testkit::redis_dump(&bench.redis).await, false);
    workers.abort();
}

#[tokio::test]
async fn a_retry_after_a_key_rotation_still_signs_with_the_same_secret() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(500);
    let (_, action) = bench
        .webhook_trigger(json!({"type": "webhook", "url": receiver.url(), "headers": {"Authorization": AUTHORIZATION}}))
        .await;
    let signing = bench.signing_secret(action).await;
    bench.fire(&[feedback(1, 0, 42, 10, 0, "x")]).await;

    // A worker under the old key makes the first attempt, which fails.
    let settings = action_workers::Settings {
        retry_schedule: vec![Duration::from_millis(300)],
        max_attempts: 10,
        ..Bench::settings(true)
    };
    let old_worker = bench.start_workers(settings.clone());
    wait::until("a first attempt", DEADLINE, || async { (!receiver.requests().is_empty()).then_some(()) }).await;
    old_worker.abort();
    let _ = old_worker.await;

    // Rotation: the new key seals, the old one still opens, every row is sealed anew...
    let rotating = Keyring::new(NEW_KEY, &[OLD_KEY]).unwrap();
    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert_eq!(triggers::reseal(&mut conn, &rotating, Reseal::NotCurrent).await.unwrap(), 1);
    assert_eq!(triggers::reseal(&mut conn, &rotating, Reseal::NotCurrent).await.unwrap(), 0);
    assert_eq!(triggers::count_not_under(&mut conn, &rotating).await.unwrap(), 0);
    let key_id: String = sqlx::query_scalar("SELECT secrets_key_id FROM trigger_actions WHERE id = $1")
        .bind(action)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(key_id, "next");
    drop(conn);

    // ... and the old key is dropped: a worker with the new key alone delivers the retry.
    receiver.answer_always(200);
    let only_new = Keyring::new(NEW_KEY, &[]).unwrap();
    let new_worker = bench.start_workers(action_workers::Settings { keyring: only_new, ..settings });
    wait::until("the retry to deliver", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let last = receiver.requests().pop().unwrap();
    verify(&signing, &last);
    assert_eq!(last.header("authorization"), Some(AUTHORIZATION));
    new_worker.abort();
}

#[tokio::test]
async fn a_worker_without_the_key_keeps_the_job_for_when_it_has_it() {
    let bench = Bench::new().await;
    let receiver = Receiver::start().await;
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&[feedback(1, 0, 42, 10, 0, "x")]).await;

    let settings = action_workers::Settings {
        retry_schedule: vec![Duration::from_millis(200)],
        max_attempts: 50,
        ..Bench::settings(true)
    };
    let stranger = Keyring::new(NEW_KEY, &[]).unwrap();
    let wrong = bench.start_workers(action_workers::Settings { keyring: stranger, ..settings.clone() });
    let error: String = wait::until("an attempt without the key", DEADLINE, || async {
        sqlx::query_scalar("SELECT error FROM deliveries LIMIT 1").fetch_optional(&bench.db.pool).await.unwrap()
    })
    .await;
    assert!(error.contains("\"test\"") && error.contains("SECRETS_OLD_KEYS"), "{error}");
    assert!(receiver.requests().is_empty(), "nothing is sent without the secrets");
    assert_eq!(bench.job_status().await, ["dispatched"]);
    wrong.abort();
    let _ = wrong.await;

    let right = bench.start_workers(settings);
    wait::until("the delivery once the key is there", DEADLINE, || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 1);
    right.abort();
}

#[tokio::test]
async fn credentials_are_never_redirected_to_another_origin() {
    let bench = Bench::new().await;
    let elsewhere = Receiver::start().await;
    let with_credentials = Receiver::start().await;
    with_credentials.redirect_to(&format!("http://localhost:{}/stolen", elsewhere.port));
    let without = Receiver::start().await;
    without.redirect_to(&elsewhere.url());
    bench
        .trigger(
            "with",
            json!({"type": "webhook", "url": with_credentials.url(), "headers": {"Authorization": AUTHORIZATION}}),
        )
        .await;
    bench.trigger("without", json!({"type": "webhook", "url": without.url()})).await;
    bench.fire(&[feedback(1, 0, 42, 10, 0, "x")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("both jobs to finish", DEADLINE, || async {
        let statuses = bench.job_status().await;
        statuses.iter().all(|s| s != "pending" && s != "dispatched").then_some(())
    })
    .await;
    let arrived = elsewhere.requests();
    assert_eq!(arrived.len(), 1, "only the job without credentials followed its redirect");
    let first: Vec<_> = with_credentials.requests();
    assert_eq!(first[0].header("authorization"), Some(AUTHORIZATION), "the first hop had the credentials");
    let error: String = sqlx::query_scalar(
        "SELECT d.error FROM deliveries d JOIN triggers t ON t.id = d.trigger_id WHERE t.name = 'with' LIMIT 1",
    )
    .fetch_one(&bench.db.pool)
    .await
    .unwrap();
    assert!(error.contains("within its origin"), "{error}");
    workers.abort();
}
