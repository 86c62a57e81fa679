//! `POST /triggers/{id}/test`: the verdict, the aggregates and the rendered actions for a
//! stored or a written event, from the current state, changing nothing and sending nothing.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, user};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::fixtures::feedback;

fn trigger() -> Value {
    json!({
        "name": "uptime falling",
        "scope": {"registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": ["7"]},
        "condition": {"all": [
            {"field": "tag1", "op": "eq", "value": "uptime"},
            {"ema": {"field": "value", "window": 3, "as": "uptime_ema"}, "op": "lt", "value": 95},
            {"count": {"window_secs": 3600, "as": "recent"}, "op": "gte", "value": 2}
        ]},
        "actions": [
            {"type": "telegram", "chat_id": "-100", "bot_token": "123456:SecretTokenValueForTheTest",
             "template": "EMA {{ aggregates.uptime_ema }} for <b>{{ event.agent_id }}</b> at {{ event.block_number }}"},
            {"type": "webhook", "url": "https://example.com/hook", "body_template": "{\"ema\": {{ aggregates.uptime_ema }}}"},
            {"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "notify",
             "arguments": {"agent": "{{ event.agent_id }}", "n": 5}}
        ]
    })
}

async fn create(client: &Client<'_>) -> String {
    let created: Value = client.send(Method::POST, "/api/v1/triggers", Some(trigger())).await.json().await.unwrap();
    created["id"].as_str().unwrap_or_else(|| panic!("not created: {created}")).to_owned()
}

async fn test(client: &Client<'_>, trigger: &str, body: Value) -> (u16, Value) {
    let response = client.send(Method::POST, &format!("/api/v1/triggers/{trigger}/test"), Some(body)).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Everything a preview must leave alone.
async fn written(db: &TestDb) -> (Vec<String>, i64, i64) {
    let states = sqlx::query_scalar("SELECT state::text FROM aggregate_state ORDER BY aggregate, key")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let outbox = sqlx::query_scalar("SELECT count(*) FROM action_outbox").fetch_one(&db.pool).await.unwrap();
    let deliveries = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&db.pool).await.unwrap();
    (states, outbox, deliveries)
}

#[tokio::test]
async fn a_stored_event_is_judged_from_the_current_state_and_its_actions_rendered() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let id = create(&alice).await;
    sqlx::query("UPDATE triggers SET fires_from = '2000-01-01'").execute(&db.pool).await.unwrap();

    // Two feedbacks of 100 pass through the real processor: EMA 100, two in the window.
    let mut conn = db.pool.acquire().await.unwrap();
    shared::store::events::insert(&mut conn, &[feedback(1, 0, 7, 100, 0, "uptime")]).await.unwrap();
    let first: i64 = sqlx::query_scalar("SELECT max(id) FROM events").fetch_one(&db.pool).await.unwrap();
    shared::store::events::insert(&mut conn, &[feedback(2, 0, 7, 100, 0, "uptime")]).await.unwrap();
    let mut processor = event_processor::Processor::new(db.pool.clone(), event_processor::Settings::default());
    processor.refresh_triggers().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut processed = 0;
    while processed < 2 {
        // Other tests' open transactions on the server may hold the events back a moment.
        assert!(tokio::time::Instant::now() < deadline, "the processor never took both events");
        processed += processor.catch_up().await.unwrap().events;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A third, stored but not processed yet.
    shared::store::events::insert(&mut conn, &[feedback(3, 0, 7, 50, 0, "uptime")]).await.unwrap();
    let third: i64 = sqlx::query_scalar("SELECT max(id) FROM events").fetch_one(&db.pool).await.unwrap();
    let before = written(&db).await;
    assert!(before.0.iter().any(|s| s.contains("\"samples\": 2")), "the EMA has state: {before:?}");

    let (status, preview) = test(&alice, &id, json!({"event_id": third})).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["fires"], true);
    assert_eq!(preview["outcome"], "fires");
    assert_eq!(preview["enabled"], true);
    // alpha = 2 / (3 + 1): 100 + 0.5 * (50 - 100).
    assert_eq!(preview["aggregates"], json!({"uptime_ema": "75", "recent": "3"}));
    assert_eq!(preview["event"]["id"], third);
    let actions = preview["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3);
    assert_eq!(actions[0]["type"], "telegram");
    assert_eq!(actions[0]["text"], "EMA 75 for <b>7</b> at 3");
    assert_eq!(actions[0]["chat_id"], "-100");
    assert_eq!(actions[1]["type"], "webhook");
    let body: Value = serde_json::from_str(actions[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"ema": "75"}));
    assert!(actions[1]["webhook_id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(actions[2]["arguments"], json!({"agent": "7", "n": 5}));
    let shown = preview.to_string();
    assert!(!shown.contains("SecretTokenValueForTheTest"), "the bot token stays write-only: {shown}");
    assert!(!shown.contains("whsec_"), "the signing secret stays write-only: {shown}");

    // An event the processor already counted is not counted twice.
    let (status, again) = test(&alice, &id, json!({"event_id": first})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["outcome"], "no_match");
    assert_eq!(again["aggregates"]["uptime_ema"], "100");

    assert_eq!(written(&db).await, before, "a test changes no state and queues nothing");
}

#[tokio::test]
async fn a_written_event_needs_only_its_type_and_agent() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let id = create(&alice).await;

    let event = json!({"event_type": "NewFeedback", "agent_id": "7", "value": "-3.2", "tag1": "uptime"});
    let (status, preview) = test(&alice, &id, json!({"event": event})).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["event"]["value"], "-3.2");
    assert_eq!(preview["event"]["value_raw"], "-32");
    // The first sample starts the EMA; one event in the window is not two.
    assert_eq!(preview["aggregates"], json!({"uptime_ema": "-3.2", "recent": "1"}));
    assert_eq!(preview["outcome"], "no_match");
    assert_eq!(preview["fires"], false);

    let elsewhere = json!({"event_type": "NewFeedback", "agent_id": "8", "value": 1, "tag1": "uptime"});
    let (_, preview) = test(&alice, &id, json!({"event": elsewhere})).await;
    assert_eq!(preview["outcome"], "out_of_scope");

    sqlx::query("UPDATE triggers SET enabled = false").execute(&db.pool).await.unwrap();
    let (status, preview) = test(&alice, &id, json!({"event": event})).await;
    assert_eq!(status, 200);
    assert_eq!(preview["enabled"], false, "a disabled trigger can be tested, and says it is disabled");
}

#[tokio::test]
async fn bad_requests_and_other_users_triggers_are_refused() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let id = create(&alice).await;
    let event = json!({"event_type": "NewFeedback", "agent_id": "7"});

    let (status, body) = test(&bob, &id, json!({"event": event})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = test(&alice, "not-a-uuid", json!({"event": event})).await;
    assert_eq!(status, 404);
    let (status, body) = test(&alice, &id, json!({"event_id": 999_999})).await;
    assert_eq!(status, 404, "{body}");

    for bad in [
        json!({}),
        json!({"event_id": 1, "event": event}),
        json!({"event_id": "seven"}),
        json!({"event_id": -1}),
        json!({"event": "NewFeedback"}),
        json!({"event": {"agent_id": "7"}}),
        json!({"event": {"event_type": "NoSuchEvent", "agent_id": "7"}}),
        json!({"event": {"event_type": "NewFeedback", "agent_id": "-7"}}),
        json!({"event": {"event_type": "NewFeedback", "agent_id": "7", "value": "1e3"}}),
        json!({"event": {"event_type": "NewFeedback", "agent_id": "7", "client_address": "0x12"}}),
        json!({"event_id": 1, "extra": true}),
    ] {
        let (status, body) = test(&alice, &id, bad.clone()).await;
        assert_eq!(status, 400, "{bad} gave {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{bad} gave {body}");
    }
}
