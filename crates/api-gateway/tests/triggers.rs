//! Triggers through the API: validation with JSON paths, write-only secrets, tenancy.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Running, user};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;

async fn gateway() -> (TestDb, Running) {
    let db = TestDb::new().await;
    let app = common::start(&db);
    (db, app)
}

/// The contract's example, with secrets on two actions.
fn example() -> Value {
    let mut body = testkit::fixtures::example_trigger();
    body["actions"][0]["bot_token"] = json!("123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345");
    body["actions"][2]["headers"] = json!({"Authorization": "Bearer mcp-secret-xyz"});
    body
}

async fn create(client: &Client<'_>, body: Value) -> Value {
    let response = client.send(Method::POST, "/api/v1/triggers", Some(body)).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn create_read_list_disable_delete_and_secrets_only_once() {
    let (_db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    let created = create(&alice, example()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "Uptime of agent 42 dropping");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["actions"].as_array().unwrap().len(), 3);
    let secret = created["actions"][1]["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let created_text = created.to_string();
    assert!(!created_text.contains("ABCdefGHI") && !created_text.contains("mcp-secret"), "{created_text}");

    let read: Value = alice.send(Method::GET, &format!("/api/v1/triggers/{id}"), None).await.json().await.unwrap();
    let read_text = read.to_string();
    assert_eq!(read["condition"], example()["condition"]);
    for hidden in [secret.as_str(), "ABCdefGHI", "mcp-secret"] {
        assert!(!read_text.contains(hidden), "{hidden} leaked in {read_text}");
    }

    let disabled = alice.send(Method::PATCH, &format!("/api/v1/triggers/{id}"), Some(json!({"enabled": false}))).await;
    assert_eq!(disabled.status(), 200);
    let disabled: Value = disabled.json().await.unwrap();
    assert_eq!(disabled["enabled"], false);
    assert!(disabled["version"].as_i64() > read["version"].as_i64());

    assert_eq!(alice.send(Method::DELETE, &format!("/api/v1/triggers/{id}"), None).await.status(), 204);
    assert_eq!(alice.send(Method::GET, &format!("/api/v1/triggers/{id}"), None).await.status(), 404);
}

#[tokio::test]
async fn another_users_triggers_are_404_and_never_listed() {
    let (_db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let id = create(&alice, example()).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/triggers/{id}");
    assert_eq!(bob.send(Method::GET, &path, None).await.status(), 404);
    assert_eq!(bob.send(Method::PATCH, &path, Some(json!({"enabled": false}))).await.status(), 404);
    assert_eq!(bob.send(Method::DELETE, &path, None).await.status(), 404);
    let listed: Value = bob.send(Method::GET, "/api/v1/triggers", None).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
    assert_eq!(alice.send(Method::GET, &path, None).await.status(), 200, "Bob's attempts changed nothing");
    assert_eq!(bob.send(Method::GET, "/api/v1/triggers/not-a-uuid", None).await.status(), 404);
}

#[tokio::test]
async fn lists_are_paginated_by_cursor() {
    let (_db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    for i in 0..5 {
        let mut body = example();
        body["name"] = json!(format!("t{i}"));
        create(&alice, body).await;
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/triggers?limit=2".to_owned();
    loop {
        let page: Value = alice.send(Method::GET, &path, None).await.json().await.unwrap();
        names.extend(page["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/triggers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(alice.send(Method::GET, "/api/v1/triggers?limit=101", None).await.status(), 400);
    assert_eq!(alice.send(Method::GET, "/api/v1/triggers?cursor=zzz", None).await.status(), 400);
}

#[tokio::test]
async fn malformed_triggers_are_400_with_the_path_of_the_fault() {
    let (_db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    let with = |key: &str, value: Value| {
        let mut body = example();
        body[key] = value;
        body
    };
    let action = |extra: Value| {
        let mut a = json!({"type": "webhook", "url": "https://example.com/h"});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        with("actions", json!([a]))
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("condition", json!({"field": "value", "op": "lessthan", "value": 1})), "condition.op"),
        (with("condition", json!({"field": "client_address", "op": "lt", "value": "0x01"})), "condition.op"),
        (with("condition", json!({"field": "value", "op": "in", "value": 1})), "condition.value"),
        (with("condition", json!({"field": "nope", "op": "eq", "value": 1})), "condition.field"),
        (with("condition", json!({"field": "owner", "op": "eq", "value": "0x00"})), "condition.field"),
        (with("scope", json!({"registry": "identity", "event_types": ["NewFeedback"]})), "scope.event_types[0]"),
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!(7)), "name"),
        (with("actions", json!([])), "actions"),
        (with("cooldown_secs", json!(-1)), "cooldown_secs"),
        (with("extra", json!(true)), "extra"),
        (action(json!({"url": "ftp://example.com/"})), "actions[0].url"),
        (action(json!({"url": "not a url"})), "actions[0].url"),
        (action(json!({"body_template": "{{ oops "})), "actions[0].body_template"),
        (action(json!({"method": "TRACE"})), "actions[0].method"),
        (action(json!({"headers": {"webhook-id": "x"}})), "actions[0].headers.webhook-id"),
        (with("actions", json!([{"type": "carrier-pigeon"}])), "actions[0].type"),
        (with("description", json!("a\u{0}b")), "description"),
    ];
    for (body, path) in &cases {
        let response = alice.send(Method::POST, "/api/v1/triggers", Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "validation_failed");
        let paths: Vec<&str> =
            error["error"]["details"].as_array().unwrap().iter().filter_map(|d| d["path"].as_str()).collect();
        assert!(paths.contains(path), "expected {path} among {paths:?}");
    }
    let listed: Value = alice.send(Method::GET, "/api/v1/triggers", None).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]), "nothing was saved");
}

#[tokio::test]
async fn replacing_a_trigger_keeps_matching_actions_and_their_secrets() {
    let (db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let created = create(&alice, example()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let webhook_id = created["actions"][1]["id"].as_str().unwrap().to_owned();
    let secret = created["actions"][1]["signing_secret"].as_str().unwrap().to_owned();

    let mut changed = example();
    changed["name"] = json!("renamed");
    changed["condition"] = json!({"field": "value", "op": "lt", "value": 10});
    // Position 0 becomes a webhook (new), position 1 stays a webhook (kept), the MCP action goes.
    changed["actions"] = json!([
        {"type": "webhook", "url": "https://example.com/new"},
        {"type": "webhook", "url": "https://example.com/changed"}
    ]);
    let path = format!("/api/v1/triggers/{id}");
    assert_eq!(bob.send(Method::PUT, &path, Some(changed.clone())).await.status(), 404);
    let replaced = alice.send(Method::PUT, &path, Some(changed)).await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["name"], "renamed");
    let actions = replaced["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert!(actions[0]["signing_secret"].as_str().unwrap().starts_with("whsec_"), "a new action shows its secret");
    assert_eq!(actions[1]["id"], json!(webhook_id), "a kept action keeps its id");
    assert_eq!(actions[1]["url"], "https://example.com/changed");
    assert!(actions[1].get("signing_secret").is_none(), "a kept secret is not shown again");
    let stored = common::opened_secrets(&db.pool, &webhook_id).await;
    assert_eq!(stored["signing_secret"], json!(secret), "and keeps its secret");
    let invalid = alice.send(Method::PUT, &path, Some(json!({"name": "x", "actions": []}))).await;
    assert_eq!(invalid.status(), 400);
}

#[tokio::test]
async fn a_webhook_secret_rotates_and_only_the_owner_can_rotate_it() {
    let (db, app) = gateway().await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let created = create(&alice, example()).await;
    let id = created["id"].as_str().unwrap();
    let telegram = created["actions"][0]["id"].as_str().unwrap();
    let webhook = created["actions"][1]["id"].as_str().unwrap();
    let old = created["actions"][1]["signing_secret"].as_str().unwrap().to_owned();
    let rotate = |action: &str| format!("/api/v1/triggers/{id}/actions/{action}/secret/rotate");

    assert_eq!(bob.send(Method::POST, &rotate(webhook), None).await.status(), 404);
    let refused = alice.send(Method::POST, &rotate(telegram), None).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "not_a_webhook");
    assert_eq!(alice.send(Method::POST, &rotate("not-an-id"), None).await.status(), 404);

    let rotated = alice.send(Method::POST, &rotate(webhook), None).await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new = rotated["signing_secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");
    assert_eq!(rotated["action_id"], webhook);
    let stored = common::opened_secrets(&db.pool, webhook).await;
    assert_eq!(stored["signing_secret"], new, "workers sign with the new secret from now on");
    let read: Value = alice.send(Method::GET, &format!("/api/v1/triggers/{id}"), None).await.json().await.unwrap();
    assert!(!read.to_string().contains(new), "the new secret is shown once");
}
