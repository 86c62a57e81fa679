//! The processor as a real process, killed with SIGKILL again and again while events stream
//! in: after a final run, every expected job is in Redis and no unexpected one is.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use common::{Bench, long_ago, stream_jobs, webhook};
use serde_json::json;
use shared::domain::{EventId, JobId};
use shared::trigger::ActionKind;
use testkit::fixtures::feedback;
use testkit::wait;
use tokio::process::{Child, Command};

const EVENTS: u64 = 10_000;
const PER_TRANSACTION: u64 = 100;
const AGENTS: u64 = 50;

fn spawn_processor(bench: &Bench) -> Child {
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", bench.db.name());
    Command::new(env!("CARGO_BIN_EXE_event-processor"))
        .env_clear()
        .env("DATABASE_URL", url)
        .env("REDIS_URL", std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()))
        .env("REDIS_KEY_PREFIX", &bench.redis.key_prefix)
        .env("PROCESSOR_METRICS_ADDR", "off")
        .env("PROCESSOR_POLL_INTERVAL_MS", "50")
        .env("PROCESSOR_BATCH_SIZE", "250")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the event-processor binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_processor_repeatedly_loses_and_invents_no_job() {
    let bench = Bench::new().await;
    let (low, low_actions) =
        bench.trigger(webhook("low", json!({}), json!({"field": "value", "op": "lt", "value": 10})), long_ago()).await;
    let (fifth, fifth_actions) = bench
        .trigger(
            webhook("fifth", json!({}), json!({"count": {"window_secs": 31536000}, "op": "eq", "value": 5})),
            long_ago(),
        )
        .await;

    let writer_pool = bench.db.pool.clone();
    let writer = tokio::spawn(async move {
        for t in 0..EVENTS / PER_TRANSACTION {
            let events: Vec<_> = (0..PER_TRANSACTION)
                .map(|i| {
                    let n = t * PER_TRANSACTION + i;
                    feedback(1 + t, i as u32, n % AGENTS, (n % 100) as i128, 0, "load")
                })
                .collect();
            let mut conn = writer_pool.acquire().await.unwrap();
            shared::store::events::insert(&mut conn, &events).await.unwrap();
            drop(conn);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });

    // Kill at varying moments: start-up, mid-batch, mid-relay.
    let mut kills = 0;
    let mut pause_ms = 150u64;
    while !writer.is_finished() {
        let mut child = spawn_processor(&bench);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        pause_ms = 150 + (pause_ms * 7919) % 500;
    }
    writer.await.unwrap();

    let mut last = spawn_processor(&bench);
    wait::until("the final run to catch up and dispatch everything", Duration::from_secs(120), || async {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events e, processor_cursor c WHERE (e.tx_xid, e.id) > (c.last_xid, c.last_id)",
        )
        .fetch_one(&bench.db.pool)
        .await
        .unwrap();
        let undispatched: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status = 'pending'")
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
        (behind == 0 && undispatched == 0).then_some(())
    })
    .await;
    last.start_kill().unwrap();
    last.wait().await.unwrap();

    // What should have fired, computed from the events alone (one writer: id order is
    // commit order).
    let events: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, agent_id::text, value::text FROM events ORDER BY id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(events.len() as u64, EVENTS);
    let mut expected = BTreeSet::new();
    let mut seen_per_agent: BTreeMap<String, u32> = BTreeMap::new();
    for (id, agent, value) in &events {
        if value.parse::<i64>().unwrap() < 10 {
            expected.insert(JobId::derive(EventId(*id), low, low_actions[0]));
        }
        let seen = seen_per_agent.entry(agent.clone()).or_default();
        *seen += 1;
        if *seen == 5 {
            expected.insert(JobId::derive(EventId(*id), fifth, fifth_actions[0]));
        }
    }

    let pushed: Vec<JobId> =
        stream_jobs(&bench.redis, ActionKind::Webhook).await.into_iter().map(|j| j.job_id).collect();
    let distinct: BTreeSet<JobId> = pushed.iter().copied().collect();
    let missing = expected.difference(&distinct).count();
    let unexpected = distinct.difference(&expected).count();
    let pushed_twice = pushed.len() - distinct.len();
    println!(
        "crash test: {kills} kills, {} events, {} expected jobs, {} pushed, {missing} missing, {unexpected} unexpected, {pushed_twice} pushed more than once",
        events.len(),
        expected.len(),
        pushed.len()
    );
    assert!(kills >= 3, "the test killed the processor only {kills} times");
    assert_eq!(missing, 0, "jobs missing");
    assert_eq!(unexpected, 0, "jobs that should not exist");
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(outbox as usize, expected.len(), "one outbox row per expected job");
}
