//! Processor benchmark: sustained events/s from the events table to Redis with 10,000
//! enabled triggers (1,000 stateful, about 1% of events firing), the machine's limit for
//! the same path without matching, and commit-to-XADD latency at 500 events/s. First, the
//! memory of the trigger index for 10,000 triggers whose scopes list 100 agents each, against
//! what the former index (one bucket per combination of the scope's lists) took.
//!
//! `cargo bench -p event-processor --bench processor` (against the machine's PostgreSQL and
//! Redis, in a database and key prefix of its own).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::LoadedTrigger;
use engine::TriggerIndex;
use event_processor::cursor::{self, Cursor};
use event_processor::{Processor, Relay, Settings};
use redis::AsyncCommands;
use serde_json::json;
use shared::domain::{AgentId, ChainId, EventType, StoredEvent, TriggerId, UserId};
use shared::job::{STREAM_FIELD, stream_key};
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::{ActionKind, Rule, TriggerDefinition};
use testkit::TestDb;
use testkit::fixtures::feedback;

const TRIGGERS: u64 = 10_000;
const STATEFUL: u64 = 1_000;
const EVENTS: u64 = 100_000;
const LATENCY_RATE: u64 = 500;
const LATENCY_SECS: u64 = 10;

const ROUNDS: usize = 3;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Forgets every decision, so the processor can run over the same events again.
async fn reset(db: &TestDb, redis: &RedisHandle) {
    for sql in [
        "DELETE FROM action_outbox",
        "DELETE FROM aggregate_state",
        "DELETE FROM cooldowns",
        "DELETE FROM processor_cursor",
    ] {
        sqlx::query(sql).execute(&db.pool).await.expect("reset");
    }
    let mut conn = redis.connection().await.expect("redis");
    let _: () = conn.del(stream_key(redis.config(), ActionKind::Webhook)).await.expect("DEL");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn create_triggers(db: &TestDb) -> BTreeSet<i64> {
    let mut conn = db.pool.acquire().await.expect("connection");
    let user = store::users::insert(&mut conn, "bench@example.com", "x").await.expect("user");
    let mut tx = db.pool.begin().await.expect("transaction");
    for i in 0..TRIGGERS {
        // Each trigger watches one agent; 1 in 10 keeps an EMA.
        let condition = if i < STATEFUL {
            json!({"all": [
                {"ema": {"field": "value", "window": 10, "as": "e"}, "op": "gte", "value": 0},
                {"field": "value", "op": "lt", "value": 1}
            ]})
        } else {
            json!({"field": "value", "op": "lt", "value": 1})
        };
        let definition = TriggerDefinition::parse(&json!({
            "name": format!("bench {i}"),
            "scope": {"registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": [i.to_string()]},
            "condition": condition,
            "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
        }))
        .expect("valid trigger");
        let from = chrono::DateTime::from_timestamp(946_684_800, 0);
        store::triggers::insert(&mut tx, &testkit::keyring(), user, &definition, from).await.expect("insert trigger");
    }
    // One more trigger for the latency phase: every event tagged "latency" fires it.
    let latency = TriggerDefinition::parse(&json!({
        "name": "latency",
        "scope": {"event_types": ["NewFeedback"]},
        "condition": {"field": "tag1", "op": "eq", "value": "latency"},
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    }))
    .expect("valid trigger");
    let from = chrono::DateTime::from_timestamp(946_684_800, 0);
    store::triggers::insert(&mut tx, &testkit::keyring(), user, &latency, from).await.expect("insert trigger");
    tx.commit().await.expect("commit triggers");
    BTreeSet::new()
}

/// Inserts the events; returns the ids expected to fire (value 0 => 1% of them).
async fn insert_events(db: &TestDb) -> BTreeSet<i64> {
    for chunk in 0..EVENTS / 1_000 {
        let events: Vec<_> = (0..1_000u64)
            .map(|i| {
                let n = chunk * 1_000 + i;
                // Value 0 for 1 in 100 events; agents spread over the triggers' agents.
                let value = ((n * 37) % 100) as i128;
                feedback(1 + chunk, i as u32, (n * 7919) % TRIGGERS, value, 0, "bench")
            })
            .collect();
        let mut conn = db.pool.acquire().await.expect("connection");
        store::events::insert(&mut conn, &events).await.expect("insert events");
    }
    sqlx::query_scalar("SELECT id FROM events WHERE value < 1")
        .fetch_all(&db.pool)
        .await
        .expect("expected firings")
        .into_iter()
        .collect()
}

async fn stream_len(redis: &RedisHandle) -> usize {
    let mut conn = redis.connection().await.expect("redis");
    conn.xlen(stream_key(redis.config(), ActionKind::Webhook)).await.expect("XLEN")
}

/// The path without matching: read the same batches, parse them, XADD one job per
/// expected firing.
async fn limit(db: &TestDb, redis: &RedisHandle, expected: &BTreeSet<i64>, batch: usize) -> (Duration, usize) {
    let key = redis.config().key("limit:jobs");
    let mut conn = redis.connection().await.expect("redis");
    let started = Instant::now();
    let mut position = Cursor::default();
    let mut pushed = 0;
    loop {
        let rows = cursor::read_batch(&db.pool, position, batch).await.expect("read");
        let Some(last) = rows.last().map(|(c, _)| *c) else { break };
        position = last;
        let mut pipe = redis::pipe();
        for (_, row) in rows {
            let event = StoredEvent::try_from(row).expect("event");
            if expected.contains(&event.id.0) {
                let job = json!({"job_id": uuid::Uuid::new_v4(), "event": event});
                pipe.cmd("XADD").arg(&key).arg("*").arg(STREAM_FIELD).arg(job.to_string()).ignore();
                pushed += 1;
            }
        }
        pipe.query_async::<()>(&mut conn).await.expect("XADD");
    }
    (started.elapsed(), pushed)
}

/// Commit-to-XADD and commit-to-decision (the job's `fired_at`) latencies in ms, sorted.
async fn latency(db: &TestDb, redis: &RedisHandle, settings: Settings) -> (Vec<f64>, Vec<f64>) {
    let service = tokio::spawn(event_processor::service::run(db.pool.clone(), redis.clone(), settings));
    let before = stream_len(redis).await;
    // Let the service load its 10,000 triggers and catch up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The writer stands for the indexer: a process of its own, here a thread with its own
    // runtime and connection, so it does not share the service's scheduler.
    let per_tick = 10u64;
    let ticks = LATENCY_RATE * LATENCY_SECS / per_tick;
    let options = db.config.connect_options().clone();
    let writer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&options).await.expect("writer connection");
            let mut commits: Vec<(i64, f64)> = Vec::new();
            let tick = Duration::from_micros(1_000_000 * per_tick / LATENCY_RATE);
            let mut next = tokio::time::Instant::now();
            let base_block = 1_000_000u64;
            for t in 0..ticks {
                let events: Vec<_> =
                    (0..per_tick).map(|i| feedback(base_block + t, i as u32, 20_000 + i, 50, 0, "latency")).collect();
                store::events::insert(&mut conn, &events).await.expect("insert");
                let committed = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64() * 1000.0;
                commits.push(((base_block + t) as i64, committed));
                next += tick;
                tokio::time::sleep_until(next).await;
            }
            commits
        })
    });
    let commits = tokio::task::spawn_blocking(move || writer.join().expect("writer thread")).await.expect("join");
    // Wait for every job, then read XADD times from the stream entry ids (ms).
    let expected = before + (ticks * per_tick) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_len(redis).await < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.abort();
    let mut conn = redis.connection().await.expect("redis");
    let entries: Vec<(String, Vec<(String, String)>)> =
        conn.xrange_all(stream_key(redis.config(), ActionKind::Webhook)).await.expect("XRANGE");
    let committed: std::collections::HashMap<i64, f64> = commits.into_iter().collect();
    let mut latencies = Vec::new();
    let mut decide = Vec::new();
    for (id, fields) in entries.into_iter().skip(before) {
        let added_ms: f64 = id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(f64::NAN);
        let Some((_, json)) = fields.into_iter().find(|(k, _)| k == STREAM_FIELD) else { continue };
        let job: shared::job::Job = serde_json::from_str(&json).expect("job");
        if let Some(at) = committed.get(&(job.event.event.log.block_number as i64)) {
            latencies.push(added_ms - at);
            let decided = job.fired_at.timestamp_micros() as f64 / 1000.0;
            decide.push(decided - at);
        }
    }
    latencies.sort_by(f64::total_cmp);
    decide.sort_by(f64::total_cmp);
    (latencies, decide)
}

const INDEX_TRIGGERS: u64 = 10_000;
const INDEX_AGENTS_EACH: u64 = 100;
/// The agents the index figure's triggers watch: each is named by 20 triggers on average.
const INDEX_AGENT_POPULATION: u64 = 50_000;

/// Trigger `i` of the index figure: 100 agents spread over the population, and `extra` in
/// its scope.
fn index_trigger(i: u64, extra: &serde_json::Value) -> Arc<LoadedTrigger> {
    let agents: Vec<String> = (0..INDEX_AGENTS_EACH)
        .map(|j| ((i * 37 + j * (INDEX_AGENT_POPULATION / INDEX_AGENTS_EACH)) % INDEX_AGENT_POPULATION).to_string())
        .collect();
    let mut scope = extra.clone();
    scope["agent_ids"] = json!(agents);
    Arc::new(LoadedTrigger {
        id: TriggerId::new_random(),
        user_id: UserId::new_random(),
        name: format!("index {i}"),
        enabled: true,
        version: 1,
        rule: Rule::parse(Some(&scope), None).expect("a valid scope"),
        cooldown_secs: 0,
        fires_from: chrono::Utc::now(),
        actions: Vec::new(),
    })
}

/// hashbrown's buckets for a table grown to `items`: a power of two, at most 7/8 full.
fn table_buckets(items: usize) -> usize {
    match items {
        0 => 0,
        1..4 => 4,
        4..8 => 8,
        _ => (items * 8 / 7).next_power_of_two(),
    }
}

/// The bucket slots and heap bytes the former index took for `triggers`: one bucket per
/// (chain or any) x (event type or any) x (agent or any) combination of each scope, each a
/// `Vec` of `Arc` grown by pushes. The figure's triggers share their chains and event types
/// and differ in their agents, which makes the count exact without building the buckets.
fn former_index(triggers: &[Arc<LoadedTrigger>]) -> (usize, usize) {
    let scope = &triggers[0].rule.scope;
    let types = if scope.event_types.is_empty() && scope.registry.is_some() {
        scope.event_types_in_scope()
    } else {
        scope.event_types.clone()
    };
    let combinations = scope.chain_ids.len().max(1) * types.len().max(1);
    let mut naming: HashMap<AgentId, usize> = HashMap::new();
    for trigger in triggers {
        let s = &trigger.rule.scope;
        assert!(s.chain_ids == scope.chain_ids && s.registry == scope.registry && s.event_types == scope.event_types);
        for agent in &s.agent_ids {
            *naming.entry(*agent).or_default() += 1;
        }
    }
    type FormerKey = (Option<ChainId>, Option<EventType>, Option<AgentId>);
    let arc = size_of::<Arc<LoadedTrigger>>();
    let slots = combinations * naming.values().sum::<usize>();
    let vectors = combinations * naming.values().map(|n| n.next_power_of_two().max(4) * arc).sum::<usize>();
    let table = table_buckets(combinations * naming.len()) * (size_of::<(FormerKey, Vec<Arc<LoadedTrigger>>)>() + 1);
    (slots, table + vectors)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints the memory of the trigger index for 10,000 triggers listing 100 agents each, with
/// three kinds of scope, against the former index.
fn index_memory() {
    println!(
        "trigger index memory: {INDEX_TRIGGERS} triggers x {INDEX_AGENTS_EACH} agents each \
         ({INDEX_AGENT_POPULATION} agents, each named by ~{} triggers); triggers themselves not counted",
        INDEX_TRIGGERS * INDEX_AGENTS_EACH / INDEX_AGENT_POPULATION
    );
    let chains: [u64; 10] = [1, 10, 56, 100, 137, 8453, 42161, 43114, 59144, 534352];
    let shapes = [
        ("agents only", json!({})),
        ("agents + reputation registry", json!({"registry": "reputation"})),
        ("agents + reputation registry + 10 chains", json!({"registry": "reputation", "chain_ids": chains})),
    ];
    for (name, extra) in shapes {
        let triggers: Vec<_> = (0..INDEX_TRIGGERS).map(|i| index_trigger(i, &extra)).collect();
        let started = Instant::now();
        let index = TriggerIndex::build(&triggers);
        let built = started.elapsed();
        let (former_slots, former_bytes) = former_index(&triggers);
        let bytes = index.approx_heap_bytes();
        println!(
            "  {name}: before {former_slots} slots, {:.1} MiB; after {} entries, {:.1} MiB (built in {built:.1?}); {:.1}x less",
            mib(former_bytes),
            index.entries(),
            mib(bytes),
            former_bytes as f64 / bytes as f64
        );
        if name.ends_with("10 chains") {
            println!(
                "| trigger index memory, {INDEX_TRIGGERS} triggers x {INDEX_AGENTS_EACH} agents (+ registry, 10 chains) | {:.1} MiB | {:.1} MiB before | {:.1}x less |",
                mib(bytes),
                mib(former_bytes),
                former_bytes as f64 / bytes as f64
            );
        }
    }
}

#[tokio::main]
async fn main() {
    shared::telemetry::init_telemetry("warn", false);
    index_memory();
    let db = TestDb::new().await;
    let redis = RedisHandle::new(&testkit::redis_config()).expect("redis");
    let settings = Settings { poll_interval: Duration::from_millis(100), ..Settings::default() };

    let t = Instant::now();
    create_triggers(&db).await;
    let expected = insert_events(&db).await;
    println!(
        "setup: {TRIGGERS} triggers ({STATEFUL} stateful), {EVENTS} events, {} expected firings ({:.1?})",
        expected.len(),
        t.elapsed()
    );

    // Three rounds of each, alternating, on the same events; medians are reported.
    let mut limit_rates = Vec::new();
    let mut rates = Vec::new();
    let mut load_time = Duration::ZERO;
    let mut jobs = 0;
    for round in 0..ROUNDS {
        let (limit_time, pushed) = limit(&db, &redis, &expected, settings.batch_size).await;
        assert_eq!(pushed, expected.len());
        limit_rates.push(EVENTS as f64 / limit_time.as_secs_f64());

        reset(&db, &redis).await;
        let mut processor = Processor::new(db.pool.clone(), settings.clone());
        let relay = Relay::new(db.pool.clone(), redis.clone(), settings.relay_batch_size);
        let load = Instant::now();
        processor.refresh_triggers().await.expect("load triggers");
        load_time = load.elapsed();
        let started = Instant::now();
        let report = processor.catch_up().await.expect("process");
        relay.run_once().await.expect("relay");
        let elapsed = started.elapsed();
        rates.push(report.events as f64 / elapsed.as_secs_f64());
        jobs = report.jobs;
        let fired: BTreeSet<i64> = sqlx::query_scalar::<_, i64>("SELECT event_id FROM action_outbox")
            .fetch_all(&db.pool)
            .await
            .expect("outbox")
            .into_iter()
            .collect();
        assert_eq!(fired, expected, "the processor fired exactly the expected events");
        println!(
            "round {}: limit {:.0} events/s, processor {:.0} events/s",
            round + 1,
            limit_rates[round],
            rates[round]
        );
    }
    let limit_rate = median(&mut limit_rates);
    let rate = median(&mut rates);
    println!("loading {TRIGGERS} triggers: {load_time:.1?}");
    println!("limit (read + parse + XADD one job per expected firing, no matching): median {limit_rate:.0} events/s");
    println!(
        "processor (match + aggregates + outbox + cursor in one transaction, then relay, {jobs} jobs): median {rate:.0} events/s"
    );
    println!("ratio to the limit: {:.2}", rate / limit_rate);
    println!(
        "| processor: events matched, state + outbox + cursor committed, relayed | {rate:.0} events/s | {limit_rate:.0} events/s (read + parse + XADD) | {:.2} |",
        rate / limit_rate
    );

    // Steady state: no autovacuum of the 100,000 fresh rows in the middle of the run.
    sqlx::query("VACUUM ANALYZE").execute(&db.pool).await.expect("vacuum");
    let (latencies, decide) = latency(&db, &redis, settings).await;
    println!(
        "commit -> XADD at {LATENCY_RATE} events/s for {LATENCY_SECS} s ({} jobs): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| processor: commit -> XADD latency at {LATENCY_RATE} events/s | p50 {:.1} ms, p99 {:.1} ms | | |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    println!(
        "  of which commit -> decision: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        percentile(&decide, 50.0),
        percentile(&decide, 90.0),
        percentile(&decide, 99.0)
    );
}
