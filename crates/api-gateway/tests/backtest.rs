//! `POST /triggers/backtest`: a trigger (a draft or a saved one) run over stored history with
//! fresh state. Hand-computed fires, warming, the live processor's agreement, reorgs,
//! tenancy, limits, and a client that goes away.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use api_gateway::backtest::BacktestLimits;
use common::{Client, Running, user};
use reqwest::Method;
use serde_json::{Value, json};
use shared::domain::NewEvent;
use shared::redis::RedisHandle;
use testkit::fixtures::{block_time, feedback};
use testkit::{TestDb, wait};

/// Feedbacks for agent 7, one per block, tagged `uptime`: (block, value).
fn feedbacks(values: &[(u64, i128)]) -> Vec<NewEvent> {
    values.iter().map(|(block, value)| feedback(*block, 0, 7, *value, 0, "uptime")).collect()
}

async fn store(db: &TestDb, events: &[NewEvent]) {
    let mut conn = db.pool.acquire().await.unwrap();
    shared::store::events::insert(&mut conn, events).await.unwrap();
}

fn ema_below_50(cooldown_secs: u64) -> Value {
    json!({
        "name": "uptime falling",
        "scope": {"event_types": ["NewFeedback"], "agent_ids": ["7"]},
        // window 3: alpha = 0.5
        "condition": {"ema": {"field": "value", "window": 3, "as": "ema"}, "op": "lt", "value": "50"},
        "cooldown_secs": cooldown_secs,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    })
}

/// The whole of blocks `first..=last`, as a period.
fn blocks(first: u64, last: u64) -> (String, String) {
    (block_time(first).to_rfc3339(), (block_time(last) + chrono::Duration::seconds(1)).to_rfc3339())
}

async fn backtest(client: &Client<'_>, body: Value) -> (u16, Value) {
    let response = client.send(Method::POST, "/api/v1/triggers/backtest", Some(body)).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(text.trim_start()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, value)
}

fn listed(result: &Value, aggregate: &str) -> Vec<(i64, Value, bool)> {
    result["fires"]
        .as_array()
        .unwrap_or_else(|| panic!("no fires in {result}"))
        .iter()
        .map(|f| {
            (f["event_id"].as_i64().unwrap(), f["aggregates"][aggregate].clone(), f["suppressed_by_cooldown"] == true)
        })
        .collect()
}

async fn event_ids(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM events ORDER BY block_number").fetch_all(&db.pool).await.unwrap()
}

#[tokio::test]
async fn an_ema_fires_where_the_hand_computed_average_crosses_and_nothing_is_written() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    // EMA: 100, 70, 45 (fires), 62.5, 31.25 (fires)
    store(&db, &feedbacks(&[(1, 100), (2, 40), (3, 20), (4, 80), (5, 0)])).await;
    let ids = event_ids(&db).await;
    let (from, to) = blocks(1, 5);
    let (status, result) =
        backtest(&alice, json!({"trigger": ema_below_50(0), "from": from, "to": to, "warm": false})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["events_scanned"], 5);
    assert_eq!(listed(&result, "ema"), vec![(ids[2], json!("45"), false), (ids[4], json!("31.25"), false)]);
    assert_eq!((result["fire_count"].clone(), result["suppressed_count"].clone()), (json!(2), json!(0)));
    assert_eq!(result["first_fire"], json!(block_time(3)));
    assert_eq!(result["last_fire"], json!(block_time(5)));
    assert_eq!(result["truncated"], false);
    assert_eq!(result["fires"][0]["agent_id"], "7");
    // What the webhook would have sent for the first firing.
    let action = &result["first_fire_actions"][0];
    assert_eq!(action["type"], "webhook");
    let sent: Value = serde_json::from_str(action["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["aggregates"]["ema"], "45", "{action}");
    assert_eq!(sent["event"]["id"], ids[2], "{action}");
    // Nothing written: no trigger, no state, no job.
    for table in ["triggers", "aggregate_state", "cooldowns", "action_outbox"] {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table} was written");
    }
}

#[tokio::test]
async fn a_count_window_under_a_cooldown_fires_and_suppresses_as_computed_by_hand() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    // Blocks are 12 s apart: 1,000 s are 83⅓ blocks. Each event makes the count (1 h) reach
    // at least 2 from block 50 on; block 0 alone has 1.
    store(&db, &feedbacks(&[(0, 1), (50, 1), (100, 1), (150, 1), (200, 1), (600, 1)])).await;
    let ids = event_ids(&db).await;
    let trigger = json!({
        "name": "two in an hour",
        "scope": {"event_types": ["NewFeedback"]},
        "condition": {"count": {"window_secs": 3600, "as": "n"}, "op": "gte", "value": 2},
        "cooldown_secs": 1000,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    });
    let (from, to) = blocks(0, 600);
    let (status, result) = backtest(&alice, json!({"trigger": trigger, "from": from, "to": to})).await;
    assert_eq!(status, 200, "{result}");
    // 50: n=2, fires. 100: n=3, 600 s later: suppressed. 150: n=4, 1,200 s after 50: fires.
    // 200: n=5, 600 s later: suppressed. 600: blocks 350 and later only: n=1.
    assert_eq!(
        listed(&result, "n"),
        vec![
            (ids[1], json!("2"), false),
            (ids[2], json!("3"), true),
            (ids[3], json!("4"), false),
            (ids[4], json!("5"), true),
        ]
    );
    assert_eq!((result["fire_count"].clone(), result["suppressed_count"].clone()), (json!(2), json!(2)));
    assert_eq!(
        (result["first_fire"].clone(), result["last_fire"].clone()),
        (json!(block_time(50)), json!(block_time(150)))
    );
}

#[tokio::test]
async fn warming_takes_the_history_before_the_period_and_cold_does_not() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    // Before the period: 10, 10. In it: 60. Warm: EMA 10, 10, then 35: fires. Cold: 60.
    store(&db, &feedbacks(&[(1, 10), (2, 10), (3, 60)])).await;
    let (from, to) = blocks(3, 3);
    let (status, warm) = backtest(&alice, json!({"trigger": ema_below_50(0), "from": from, "to": to})).await;
    assert_eq!(status, 200, "{warm}");
    assert_eq!(warm["warm"], true, "warming is the default");
    assert_eq!(warm["events_scanned"], 1, "the history before the period is not scanned");
    assert_eq!(listed(&warm, "ema").iter().map(|f| f.1.clone()).collect::<Vec<_>>(), vec![json!("35")]);
    let (_, cold) = backtest(&alice, json!({"trigger": ema_below_50(0), "from": from, "to": to, "warm": false})).await;
    assert_eq!((cold["fire_count"].clone(), cold["events_scanned"].clone()), (json!(0), json!(1)));
}

#[tokio::test]
async fn the_backtest_of_a_saved_trigger_fires_where_the_live_processor_fired() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created: Value =
        alice.send(Method::POST, "/api/v1/triggers", Some(ema_below_50(30))).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE triggers SET fires_from = '2000-01-01'").execute(&db.pool).await.unwrap();
    let values: Vec<(u64, i128)> = (1..=60).map(|b| (b, i128::from((b * 37 % 100) as u8))).collect();
    store(&db, &feedbacks(&values)).await;

    let mut processor = event_processor::Processor::new(db.pool.clone(), event_processor::Settings::default());
    processor.refresh_triggers().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut processed = 0;
    while processed < values.len() {
        assert!(tokio::time::Instant::now() < deadline, "the processor never took every event");
        processed += processor.catch_up().await.unwrap().events;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut live: Vec<i64> =
        sqlx::query_scalar("SELECT event_id FROM action_outbox").fetch_all(&db.pool).await.unwrap();
    live.sort_unstable();
    assert!(live.len() >= 3, "the history should fire the trigger a few times, fired {}", live.len());

    let (from, to) = blocks(1, 60);
    let (status, result) = backtest(&alice, json!({"trigger_id": id, "from": from, "to": to, "warm": false})).await;
    assert_eq!(status, 200, "{result}");
    let backtested: Vec<i64> = listed(&result, "ema").into_iter().filter(|f| !f.2).map(|f| f.0).collect();
    assert_eq!(backtested, live);
    assert_eq!(result["fire_count"], live.len());
    let suppressed: i64 = sqlx::query_scalar("SELECT COALESCE(sum(suppressed_count), 0)::int8 FROM cooldowns")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(result["suppressed_count"], suppressed);
    // The live state is not touched by the backtest.
    let states: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregate_state").fetch_one(&db.pool).await.unwrap();
    assert!(states > 0);
}

#[tokio::test]
async fn an_event_dropped_by_a_reorg_is_skipped() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    // EMA 100, 45 (fires), 72.5; without the second: 100, 100.
    store(&db, &feedbacks(&[(1, 100), (2, -10), (3, 100)])).await;
    let ids = event_ids(&db).await;
    let (from, to) = blocks(1, 3);
    let body = json!({"trigger": ema_below_50(0), "from": from, "to": to});
    let (_, before) = backtest(&alice, body.clone()).await;
    assert_eq!(listed(&before, "ema").iter().map(|f| f.0).collect::<Vec<_>>(), vec![ids[1]]);
    sqlx::query("UPDATE events SET removed = true WHERE id = $1").bind(ids[1]).execute(&db.pool).await.unwrap();
    let (_, after) = backtest(&alice, body).await;
    assert_eq!((after["events_scanned"].clone(), after["fire_count"].clone()), (json!(2), json!(0)));
}

#[tokio::test]
async fn another_users_trigger_is_not_found_and_hostile_requests_are_refused_by_name() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let created: Value =
        alice.send(Method::POST, "/api/v1/triggers", Some(ema_below_50(0))).await.json().await.unwrap();
    let (status, body) = backtest(&bob, json!({"trigger_id": created["id"]})).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    let (status, _) = backtest(&bob, json!({"trigger_id": "not-a-uuid"})).await;
    assert_eq!(status, 404);

    let mut bad = ema_below_50(0);
    bad["condition"]["op"] = json!("sideways");
    bad["name"] = json!("a\u{0}b");
    let (status, body) = backtest(&alice, json!({"trigger": bad})).await;
    assert_eq!(status, 400, "{body}");
    let paths: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().filter_map(|d| d["path"].as_str()).collect();
    assert!(paths.contains(&"trigger.condition.op"), "{body}");
    assert!(paths.iter().any(|p| p.starts_with("trigger.name")), "{body}");

    // Nesting 10,000 deep, sent as text (building it as a value would be deep to drop too).
    let deep = format!(
        r#"{{"trigger": {{"name": "deep", "condition": {}1{}, "actions": []}}}}"#,
        r#"{"all": ["#.repeat(10_000),
        "]}".repeat(10_000)
    );
    let response = app
        .client
        .post(format!("{}/api/v1/triggers/backtest", app.base))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "deep nesting");

    for (request, path) in [
        (json!({"trigger": ema_below_50(0), "from": "yesterday"}), "from"),
        (json!({"trigger": ema_below_50(0), "to": "2026-13-01T00:00:00Z"}), "to"),
        (json!({"trigger": ema_below_50(0), "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}), "from"),
        (json!({"trigger": ema_below_50(0), "trigger_id": created["id"]}), "trigger"),
        (json!({}), "trigger"),
    ] {
        let (status, body) = backtest(&alice, request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(body["error"]["details"][0]["path"], path, "{request}: {body}");
    }
    let (status, body) = backtest(&alice, json!({"trigger": ema_below_50(0), "speed": "ludicrous"})).await;
    assert_eq!(status, 400, "an unknown field: {body}");
}

/// The gateway with `limits`, and its Redis handle (to see the one-per-user guard).
fn start_with(db: &TestDb, limits: BacktestLimits) -> (Running, RedisHandle) {
    let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
    let app = Running::start(common::state(db.pool.clone(), redis.clone()).with_backtest_limits(limits));
    (app, redis)
}

#[tokio::test]
async fn a_period_over_the_limit_is_refused_with_its_count() {
    let db = TestDb::new().await;
    let (app, _) = start_with(&db, BacktestLimits { max_events: 3, ..BacktestLimits::default() });
    let alice = user(&app, "alice@example.com").await;
    store(&db, &feedbacks(&[(1, 1), (2, 1), (3, 1), (4, 1)])).await;
    let (from, to) = blocks(1, 4);
    let (status, body) = backtest(&alice, json!({"trigger": ema_below_50(0), "from": from, "to": to})).await;
    assert_eq!((status, body["error"]["code"].clone()), (422, json!("too_many_events")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("more than 3 events"), "{body}");
    let (from, to) = blocks(2, 4);
    let (status, _) = backtest(&alice, json!({"trigger": ema_below_50(0), "from": from, "to": to})).await;
    assert_eq!(status, 200, "three events are within the limit");
}

#[tokio::test]
async fn a_backtest_that_outgrows_its_memory_bound_cuts_its_answer_instead_of_ending_it() {
    let db = TestDb::new().await;
    let (app, _) = start_with(&db, BacktestLimits { max_keys: 2, page_events: 2, ..BacktestLimits::default() });
    let alice = user(&app, "alice@example.com").await;
    // Three agents: three keys of the EMA once the second page is read.
    let events: Vec<NewEvent> = (1..=6).map(|b| feedback(b, 0, b % 3, 10, 0, "uptime")).collect();
    store(&db, &events).await;
    let mut trigger = ema_below_50(0);
    trigger["scope"] = json!({"event_types": ["NewFeedback"]});
    let (from, to) = blocks(1, 6);
    let response = alice
        .send(Method::POST, "/api/v1/triggers/backtest", Some(json!({"trigger": trigger, "from": from, "to": to})))
        .await;
    assert_eq!(response.status(), 200, "the answer had begun");
    let body = response.text().await;
    assert!(body.is_err(), "the answer must be cut, not completed: {body:?}");
    // The user's place is given back.
    let retry = json!({"trigger": ema_below_50(0), "from": from, "to": to});
    wait::until("the user's place to be given back", Duration::from_secs(10), || async {
        (backtest(&alice, retry.clone()).await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_gateway_runs_few_backtests_at_once_whoever_asks() {
    let db = TestDb::new().await;
    let limits = BacktestLimits { concurrent: 1, page_events: 1, ..BacktestLimits::default() };
    let (app, redis) = start_with(&db, limits);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let values: Vec<(u64, i128)> = (1..=20_000).map(|b| (b, 1)).collect();
    store(&db, &feedbacks(&values)).await;
    let (from, to) = blocks(1, 20_000);
    let long = json!({"trigger": ema_below_50(0), "from": from, "to": to, "warm": false});
    let first = start_long(&app, &alice, long);
    wait_for_guard(&redis, &alice).await;
    let (status, body) = backtest(&bob, json!({"trigger": ema_below_50(0), "warm": false})).await;
    assert_eq!((status, body["error"]["code"].clone()), (429, json!("backtests_busy")), "{body}");
    first.abort();
}

/// Starts a backtest whose answer nobody reads until it ends.
fn start_long(app: &Running, client: &Client<'_>, body: Value) -> tokio::task::JoinHandle<String> {
    let request =
        app.client.post(format!("{}/api/v1/triggers/backtest", app.base)).bearer_auth(&client.token).json(&body).send();
    tokio::spawn(async move {
        // Headers arrive at once; the body only when the backtest ends.
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    })
}

/// The Redis key of `client`'s one-backtest guard, once it is taken.
async fn wait_for_guard(redis: &RedisHandle, client: &Client<'_>) -> String {
    let me: Value = client.send(Method::GET, "/api/v1/auth/me", None).await.json().await.unwrap();
    let key = redis.config().key(&format!("backtest:{}", me["id"].as_str().unwrap()));
    wait::until("the backtest to start", Duration::from_secs(30), || async { guard(redis, &key).await.map(drop) })
        .await;
    key
}

/// The value of a backtest guard's key, if it is held.
async fn guard(redis: &RedisHandle, key: &str) -> Option<String> {
    let mut conn = redis.connection().await.unwrap();
    redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn one_backtest_at_a_time_per_user_and_a_client_that_leaves_stops_its_backtest() {
    let db = TestDb::new().await;
    // One event per query: a long backtest, whose answer keeps the connection alive.
    let limits = BacktestLimits { page_events: 1, keep_alive: Duration::from_millis(100), ..BacktestLimits::default() };
    let (app, redis) = start_with(&db, limits);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let values: Vec<(u64, i128)> = (1..=50_000).map(|b| (b, 1)).collect();
    store(&db, &feedbacks(&values)).await;
    let (from, to) = blocks(1, 50_000);
    let long = json!({"trigger": ema_below_50(0), "from": from, "to": to, "warm": false});

    let first = start_long(&app, &alice, long);
    let key = wait_for_guard(&redis, &alice).await;

    // A second one of the same user waits its turn; another user's runs.
    let (from_short, to_short) = blocks(1, 3);
    let short = json!({"trigger": ema_below_50(0), "from": from_short, "to": to_short, "warm": false});
    let (status, body) = backtest(&alice, short.clone()).await;
    assert_eq!((status, body["error"]["code"].clone()), (429, json!("backtest_running")), "{body}");
    let (status, body) = backtest(&bob, short.clone()).await;
    assert_eq!(status, 200, "{body}");

    // The client goes away: its backtest stops and frees the place long before it would have
    // ended (50,000 queries) or its guard expired (30 s).
    first.abort();
    wait::until("the backtest of a client that left to stop", Duration::from_secs(10), || async {
        guard(&redis, &key).await.is_none().then_some(())
    })
    .await;
    let (status, body) = backtest(&alice, short).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn logs_at_one_chain_position_are_each_scanned_once_across_page_boundaries() {
    let db = TestDb::new().await;
    let (app, _) = start_with(&db, BacktestLimits { page_events: 1, ..BacktestLimits::default() });
    let alice = user(&app, "alice@example.com").await;
    // A reorg deeper than the indexer remembers can leave two live logs at one position
    // (same block number and log index, other block hashes).
    let mut events = feedbacks(&[(1, 100), (2, 100), (2, 100), (3, 100)]);
    events[2].event.log.block_hash = testkit::fixtures::hash(999).parse().unwrap();
    store(&db, &events).await;
    let trigger = json!({
        "name": "every feedback",
        "scope": {"event_types": ["NewFeedback"]},
        "condition": {"field": "value", "op": "gte", "value": 0},
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    });
    let (from, to) = blocks(1, 3);
    let (status, result) = backtest(&alice, json!({"trigger": trigger, "from": from, "to": to})).await;
    assert_eq!(status, 200, "{result}");
    let mut fired: Vec<i64> = listed(&result, "none").into_iter().map(|f| f.0).collect();
    assert_eq!(result["events_scanned"], 4);
    fired.sort_unstable();
    fired.dedup();
    let mut all = event_ids(&db).await;
    all.sort_unstable();
    assert_eq!(fired, all, "each log once");
}

#[tokio::test]
async fn a_saved_trigger_that_no_longer_reads_is_said_so_not_answered_500() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created: Value =
        alice.send(Method::POST, "/api/v1/triggers", Some(ema_below_50(0))).await.json().await.unwrap();
    // A row edited by hand: the webhook lost its URL.
    sqlx::query("UPDATE trigger_actions SET config = config - 'url'").execute(&db.pool).await.unwrap();
    let (status, body) = backtest(&alice, json!({"trigger_id": created["id"]})).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("trigger_unreadable")), "{body}");
    let id = created["id"].as_str().unwrap();
    let response = alice
        .send(
            Method::POST,
            &format!("/api/v1/triggers/{id}/test"),
            Some(json!({"event": {"event_type": "NewFeedback", "agent_id": "7"}})),
        )
        .await;
    assert_eq!(response.status(), 409);
}
