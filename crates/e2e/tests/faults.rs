//! Fault test: 5,000 feedback transactions on anvil while three triggers watch them; the
//! indexer, the processor and one of two workers are each SIGKILLed and restarted once, and
//! Redis restarts empty once. At the end every expected delivery (computed here, from what
//! was sent) reached the receiver, none is missing, and no job was recorded as delivered
//! twice. The services run as real processes (the binaries `make test` builds first).

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use serde_json::json;
use shared::domain::{ActionId, Decimal, EventId, JobId, TriggerId};
use shared::store;
use shared::trigger::TriggerDefinition;
use testkit::chain::{Anvil, Registries, ReputationRegistry};
use testkit::outside::receiver::Receiver;
use testkit::redis_server::RedisServer;
use testkit::{TestDb, wait};
use tokio::process::{Child, Command};

const TRANSACTIONS: u64 = 5_000;
const AGENTS: u64 = 10;

/// What feedback number `i` says.
fn feedback_of(i: u64) -> (u64, i128, &'static str) {
    let value = i128::from((i * 37 + 11) % 100);
    (i % AGENTS, value, if i.is_multiple_of(3) { "latency" } else { "uptime" })
}

/// One service binary, run as a process with its own environment.
struct Service {
    name: &'static str,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf()
}

impl Service {
    fn start(name: &'static str, env: Vec<(String, String)>) -> Self {
        let mut service = Self { name, env, child: None };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let bin = bin_dir().join(self.name);
        assert!(bin.is_file(), "{} is not built: run `cargo build --bins` first (make test does)", bin.display());
        let child = Command::new(&bin)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, then start again.
    async fn kill_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().await.unwrap();
        child.wait().await.unwrap();
        self.spawn();
        println!("killed and restarted {}", self.name);
    }
}

async fn trigger(db: &TestDb, user: shared::domain::UserId, body: serde_json::Value) -> (TriggerId, ActionId) {
    let definition = TriggerDefinition::parse(&body).unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let from = chrono::DateTime::from_timestamp(946_684_800, 0);
    let (id, actions) = store::triggers::insert(&mut conn, &testkit::keyring(), user, &definition, from).await.unwrap();
    (id, actions[0])
}

#[tokio::test]
async fn every_expected_delivery_arrives_once_through_kills_and_a_redis_restart() {
    testkit::init_telemetry();
    let db = TestDb::new().await;
    let mut redis = RedisServer::start().await;
    let anvil = Anvil::start().await;
    let registries = Registries::deploy(&anvil).await;
    let receiver = Receiver::start().await;

    let user = {
        let mut conn = db.pool.acquire().await.unwrap();
        store::users::insert(&mut conn, "faults@example.com", "x").await.unwrap()
    };
    let hook = json!([{"type": "webhook", "url": receiver.url()}]);
    let scope = json!({"registry": "reputation", "event_types": ["NewFeedback"]});
    let low = trigger(
        &db,
        user,
        json!({"name": "low", "scope": scope, "actions": hook,
        "condition": {"field": "value", "op": "lt", "value": 20}}),
    )
    .await;
    let ema = trigger(
        &db,
        user,
        json!({"name": "ema", "scope": scope, "actions": hook,
        "condition": {"ema": {"field": "value", "window": 4, "min_samples": 2}, "op": "lt", "value": 50}}),
    )
    .await;
    let fast = trigger(&db, user, json!({"name": "fast", "scope": scope, "actions": hook,
        "condition": {"all": [{"field": "tag1", "op": "eq", "value": "latency"}, {"field": "value", "op": "gte", "value": 90}]}}))
    .await;

    let mut common: Vec<(String, String)> = db.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    common.extend([
        ("REDIS_URL".to_owned(), redis.url()),
        ("REDIS_KEY_PREFIX".to_owned(), "faults:".to_owned()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ]);
    let with = |extra: &[(&str, String)]| {
        let mut env = common.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let mut indexer = Service::start(
        "indexer",
        with(&[
            ("CHAIN_ID", "31337".into()),
            ("CHAIN_RPC_URLS", anvil.url()),
            ("CHAIN_IDENTITY_ADDRESS", registries.identity.to_string()),
            ("CHAIN_REPUTATION_ADDRESS", registries.reputation.to_string()),
            ("CHAIN_VALIDATION_ADDRESS", registries.validation.to_string()),
            ("CHAIN_CONFIRMATIONS", "0".into()),
            ("CHAIN_MAX_BLOCK_RANGE", "200".into()),
            ("CHAIN_POLL_INTERVAL_MS", "100".into()),
            ("INDEXER_METRICS_ADDR", "off".into()),
        ]),
    );
    let mut processor = Service::start(
        "event-processor",
        with(&[("PROCESSOR_POLL_INTERVAL_MS", "100".into()), ("PROCESSOR_METRICS_ADDR", "off".into())]),
    );
    let worker_env = |name: &str| {
        with(&[
            ("WORKER_NAME", name.to_owned()),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8".into()),
            ("WORKER_CLAIM_IDLE_MS", "2000".into()),
            ("DELIVERY_RETRY_SCHEDULE", "1".into()),
            ("WORKER_METRICS_ADDR", "off".into()),
            ("SECRETS_KEY", testkit::SECRETS_KEY.into()),
        ])
    };
    let mut worker = Service::start("action-workers", worker_env("w1"));
    let _other_worker = Service::start("action-workers", worker_env("w2"));

    // The traffic, with one fault every thousand transactions.
    let mut last = B256::ZERO;
    for i in 0..TRANSACTIONS {
        let (agent, value, tag) = feedback_of(i);
        let call = ReputationRegistry::giveFeedbackCall {
            agentId: U256::from(agent),
            value,
            valueDecimals: 0,
            tag1: tag.into(),
            tag2: String::new(),
            endpoint: String::new(),
            feedbackURI: String::new(),
            feedbackHash: B256::from(U256::from(i)),
        };
        last = registries.submit(registries.reputation, call).await;
        match i {
            1_000 => indexer.kill_and_restart().await,
            2_000 => processor.kill_and_restart().await,
            3_000 => worker.kill_and_restart().await,
            4_000 => {
                redis.stop().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                redis.restart().await;
                println!("restarted Redis, empty");
            }
            _ => {}
        }
    }
    // Transactions that arrive faster than anvil mines them wait in its pool until the next
    // one arrives: mine until the last one is in a block.
    wait::until("the last transaction mined", Duration::from_secs(30), || async {
        use alloy::providers::Provider;
        let mined = registries.provider.get_transaction_receipt(last).await.ok().flatten().map(|_| ());
        if mined.is_none() {
            registries.mine(1).await;
        }
        mined
    })
    .await;

    // What should fire, computed from what was sent.
    let mut expected_firings: Vec<(u64, (TriggerId, ActionId))> = Vec::new();
    let alpha = Decimal::ratio(2, 5);
    let mut averages: HashMap<u64, (Decimal, u32)> = HashMap::new();
    let threshold = Decimal::from(50);
    for i in 0..TRANSACTIONS {
        let (agent, value, tag) = feedback_of(i);
        let x = Decimal::from_scaled(value, 0);
        let (average, samples) = match averages.remove(&agent) {
            None => (x.clone(), 1),
            Some((previous, n)) => (previous.add(&alpha.mul(&x.sub(&previous))), n + 1),
        };
        if value < 20 {
            expected_firings.push((i, low));
        }
        if samples >= 2 && average < threshold {
            expected_firings.push((i, ema));
        }
        if tag == "latency" && value >= 90 {
            expected_firings.push((i, fast));
        }
        averages.insert(agent, (average, samples));
    }

    let event_ids: Vec<i64> = wait::until("every event indexed", Duration::from_secs(120), || async {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events WHERE NOT removed ORDER BY block_number, log_index")
                .fetch_all(&db.pool)
                .await
                .ok()?;
        (ids.len() as u64 == TRANSACTIONS).then_some(ids)
    })
    .await;
    let expected: BTreeSet<String> = expected_firings
        .iter()
        .map(|(i, (trigger, action))| {
            JobId::derive(EventId(event_ids[usize::try_from(*i).unwrap()]), *trigger, *action).to_string()
        })
        .collect();

    let received = wait::until("every expected delivery at the receiver", Duration::from_secs(180), || async {
        let ids: BTreeSet<String> =
            receiver.requests().iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
        expected.is_subset(&ids).then_some(ids)
    })
    .await;
    common::every_job_delivered(&db.pool, Duration::from_secs(60)).await;

    let requests = receiver.requests().len();
    let successes: Vec<(String, i64)> =
        sqlx::query_as("SELECT job_id::text, count(*) FROM deliveries WHERE outcome = 'success' GROUP BY job_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    println!(
        "expected deliveries {}, received distinct {}, requests {} (repeats after kills: {}), recorded successes {}",
        expected.len(),
        received.len(),
        requests,
        requests - received.len(),
        successes.len()
    );
    assert_eq!(received, expected, "exactly the expected jobs reached the receiver");
    assert!(successes.iter().all(|(_, n)| *n == 1), "a job recorded as delivered twice");
    let recorded: BTreeSet<String> = successes.into_iter().map(|(id, _)| id).collect();
    assert_eq!(recorded, expected, "every delivery is in the log, once");
}
