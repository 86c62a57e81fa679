//! Browsing stored events.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::user;
use reqwest::Method;
use serde_json::Value;
use testkit::TestDb;
use testkit::fixtures::{feedback, registered};

#[tokio::test]
async fn events_are_filtered_paginated_newest_first_and_read_one_by_one() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let big: shared::domain::AgentId =
        "115792089237316195423570985008687907853269984665640564039457584007913129639935".parse().unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let mut events: Vec<_> = (0..5).map(|i| feedback(10 + i, 0, 42, 9977, 2, "uptime")).collect();
    events.push(feedback(20, 0, 7, 1, 0, "x"));
    events.push(registered(21, 0, big, testkit::fixtures::CLIENT));
    shared::store::events::insert(&mut conn, &events).await.unwrap();
    let alice = user(&app, "alice@example.com").await;

    let page: Value = alice.send(Method::GET, "/api/v1/events?agent_id=42&limit=2", None).await.json().await.unwrap();
    let blocks: Vec<i64> =
        page["items"].as_array().unwrap().iter().map(|e| e["block_number"].as_i64().unwrap()).collect();
    assert_eq!(blocks, [14, 13], "newest first");
    assert_eq!(page["items"][0]["value"], "99.77");
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = alice
        .send(Method::GET, &format!("/api/v1/events?agent_id=42&limit=2&cursor={cursor}"), None)
        .await
        .json()
        .await
        .unwrap();
    let blocks: Vec<i64> =
        next["items"].as_array().unwrap().iter().map(|e| e["block_number"].as_i64().unwrap()).collect();
    assert_eq!(blocks, [12, 11]);

    let identity: Value = alice.send(Method::GET, "/api/v1/events?registry=identity", None).await.json().await.unwrap();
    assert_eq!(identity["items"].as_array().unwrap().len(), 1);
    assert_eq!(identity["items"][0]["agent_id"], big.to_string());
    let by_uint256: Value =
        alice.send(Method::GET, &format!("/api/v1/events?agent_id={big}"), None).await.json().await.unwrap();
    assert_eq!(by_uint256["items"].as_array().unwrap().len(), 1);
    let ranged: Value = alice
        .send(Method::GET, "/api/v1/events?from_block=12&to_block=20&event_type=NewFeedback", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ranged["items"].as_array().unwrap().len(), 4);
    assert!(ranged["next_cursor"].is_null());

    let id = identity["items"][0]["id"].as_i64().unwrap();
    let one: Value = alice.send(Method::GET, &format!("/api/v1/events/{id}"), None).await.json().await.unwrap();
    assert_eq!(one["event_type"], "Registered");
    assert_eq!(alice.send(Method::GET, "/api/v1/events/999999", None).await.status(), 404);

    let bad = alice.send(Method::GET, "/api/v1/events?chain_id=abc&registry=nope&limit=1000", None).await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    let paths: Vec<&str> =
        error["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["chain_id", "registry", "limit"]);
    assert_eq!(app.get("/api/v1/events").await.status(), 401, "authentication is required");
}

#[tokio::test]
async fn lists_cut_long_chain_text_and_the_event_by_id_has_it_whole() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let mut long = feedback(1, 0, 42, 1, 0, "a\0b");
    let shared::domain::EventData::NewFeedback { feedback_uri, .. } = &mut long.event.data else { panic!() };
    *feedback_uri = "é".repeat(100_000).into();
    let mut conn = db.pool.acquire().await.unwrap();
    shared::store::events::insert(&mut conn, &[long, feedback(2, 0, 42, 1, 0, "short")]).await.unwrap();
    let alice = user(&app, "alice@example.com").await;

    let page: Value = alice.send(Method::GET, "/api/v1/events", None).await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(items[0].get("truncated").is_none(), "{}", items[0]);
    let listed = &items[1];
    assert_eq!(listed["truncated"], serde_json::json!(["feedback_uri"]));
    let uri = listed["feedback_uri"].as_str().unwrap();
    assert_eq!(uri.chars().count(), 1_025);
    assert!(uri.ends_with("é…"));
    assert_eq!(listed["tag1"], "a\u{FFFD}b", "NUL is stored and shown as U+FFFD");

    let id = listed["id"].as_i64().unwrap();
    let whole: Value = alice.send(Method::GET, &format!("/api/v1/events/{id}"), None).await.json().await.unwrap();
    assert_eq!(whole["feedback_uri"].as_str().unwrap().chars().count(), 100_000);
    assert!(whole.get("truncated").is_none());
}
