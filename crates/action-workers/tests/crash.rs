//! A worker process killed with SIGKILL in the middle of deliveries: another worker takes
//! its messages over, the target sees the same `webhook-id` again, and the delivery log ends
//! with exactly one success per job.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use testkit::fixtures::feedback;
use tokio::process::{Child, Command};

const JOBS: u32 = 60;

fn spawn_worker(bench: &Bench, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_action-workers"))
        .env_clear()
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:5432/{}", bench.db.name()))
        .env("REDIS_URL", std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()))
        .env("REDIS_KEY_PREFIX", &bench.redis.key_prefix)
        .env("WORKER_NAME", name)
        .env("SECRETS_KEY", testkit::SECRETS_KEY)
        .env("WORKER_CONCURRENCY", "4")
        .env("WORKER_CLAIM_IDLE_MS", "1500")
        .env("WORKER_METRICS_ADDR", "off")
        .env("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the action-workers binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_records_one_success_per_job() {
    let bench = Bench::new().await;
    let receiver = Receiver::start_slow(Duration::from_millis(150)).await;
    bench.webhook_trigger(json!({"type": "webhook", "url": receiver.url()})).await;
    bench.fire(&(0..JOBS).map(|i| feedback(1, i, u64::from(i), 1, 0, "a")).collect::<Vec<_>>()).await;

    // Kill workers while their requests are in flight.
    let mut kills = 0;
    for round in 0..3 {
        let mut worker = spawn_worker(&bench, &format!("doomed-{round}"));
        let seen = receiver.requests().len();
        testkit::wait::until("the worker to start delivering", Duration::from_secs(30), || async {
            (receiver.requests().len() > seen).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await; // mid-delivery: answers take 150 ms
        worker.start_kill().unwrap();
        worker.wait().await.unwrap();
        kills += 1;
    }
    let mut survivor = spawn_worker(&bench, "survivor");
    testkit::wait::until("every job to be delivered", Duration::from_secs(60), || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status <> 'delivered'")
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await;
    survivor.start_kill().unwrap();
    survivor.wait().await.unwrap();

    let successes: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT job_id, count(*) FROM deliveries WHERE outcome = 'success' GROUP BY job_id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(successes.len(), JOBS as usize, "every job has a success");
    assert!(successes.iter().all(|(_, n)| *n == 1), "one success per job: {successes:?}");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for request in receiver.requests() {
        *seen.entry(request.header("webhook-id").unwrap().to_owned()).or_default() += 1;
    }
    let jobs: BTreeSet<String> = successes.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), jobs, "the target saw every job, and only those");
    let resent = seen.values().filter(|n| **n > 1).count();
    println!("worker crash test: {kills} kills, {JOBS} jobs, {resent} sent again after a kill (same webhook-id)");
    assert!(resent >= 1, "a kill mid-delivery makes the target see that webhook-id again");
}
