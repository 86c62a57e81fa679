//! Quotas per user: triggers, actions per trigger, API keys and scope lists, answered 409 or
//! 422 with the error JSON naming the quota, per user, and never passed by racing requests.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use api_gateway::quotas::Quotas;
use common::{Client, Running, user};
use reqwest::Method;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use testkit::TestDb;

/// Three triggers, two actions, two API keys, five entries per scope list.
fn small() -> Quotas {
    Quotas { triggers_per_user: 3, actions_per_trigger: 2, api_keys_per_user: 2, scope_list_len: 5 }
}

async fn gateway(quotas: Quotas) -> (TestDb, Running) {
    let db = TestDb::new().await;
    let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
    let app = Running::start(common::state(db.pool.clone(), redis).with_quotas(quotas));
    (db, app)
}

/// A valid trigger with `actions` webhook actions and `agents` agents in its scope.
fn trigger(name: &str, actions: usize, agents: usize) -> Value {
    let webhooks: Vec<Value> =
        (0..actions).map(|i| json!({"type": "webhook", "url": format!("https://example.com/h{i}")})).collect();
    let agent_ids: Vec<String> = (0..agents).map(|i| i.to_string()).collect();
    json!({"name": name, "scope": {"registry": "reputation", "agent_ids": agent_ids}, "actions": webhooks})
}

/// Creates a trigger that fits the quotas; its id.
async fn create(client: &Client<'_>, name: &str) -> String {
    let response = client.send(Method::POST, "/api/v1/triggers", Some(trigger(name, 1, 1))).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn new_key(client: &Client<'_>, name: &str) -> reqwest::Response {
    client.send(Method::POST, "/api/v1/api-keys", Some(json!({"name": name}))).await
}

/// The `error` object of a `quota_exceeded` answer with this status.
async fn quota_error(response: reqwest::Response, status: u16) -> Value {
    let got = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    body["error"].clone()
}

/// Sends every body to `path` at once, as `client`; the statuses, sorted.
async fn race(client: &Client<'_>, path: &str, bodies: Vec<Value>) -> Vec<u16> {
    let mut racing = tokio::task::JoinSet::new();
    for body in bodies {
        let url = format!("{}{path}", client.app.base);
        let request = client.app.client.post(url).bearer_auth(&client.token).json(&body);
        racing.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = racing.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    statuses
}

#[tokio::test]
async fn the_triggers_quota_is_409_per_user_until_one_is_deleted() {
    let (_db, app) = gateway(small()).await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(create(&alice, &format!("t{i}")).await);
    }

    let refused = alice.send(Method::POST, "/api/v1/triggers", Some(trigger("t3", 1, 1))).await;
    let error = quota_error(refused, 409).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("\"triggers_per_user\"") && message.contains("at most 3"), "{message}");
    let listed: Value = alice.send(Method::GET, "/api/v1/triggers", None).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "nothing was saved");
    // A full account is refused before its templates are tried: a template bomb costs nothing.
    let mut bomb = trigger("bomb", 1, 1);
    bomb["actions"][0]["body_template"] = json!("{% for i in range(100000) %}{{ i }}{% endfor %}");
    quota_error(alice.send(Method::POST, "/api/v1/triggers", Some(bomb)).await, 409).await;

    // Bob's triggers are counted apart from Alice's.
    create(&bob, "bob's").await;

    // Deleting a trigger frees its place, and only one.
    assert_eq!(alice.send(Method::DELETE, &format!("/api/v1/triggers/{}", ids[0]), None).await.status(), 204);
    create(&alice, "t3").await;
    let refused = alice.send(Method::POST, "/api/v1/triggers", Some(trigger("t4", 1, 1))).await;
    quota_error(refused, 409).await;
}

#[tokio::test]
async fn a_trigger_over_the_size_quotas_is_422_with_the_path_and_is_not_saved() {
    let (_db, app) = gateway(small()).await;
    let alice = user(&app, "alice@example.com").await;

    let response = alice.send(Method::POST, "/api/v1/triggers", Some(trigger("three actions", 3, 1))).await;
    let error = quota_error(response, 422).await;
    assert!(error["message"].as_str().unwrap().contains("\"actions_per_trigger\""), "{error}");
    assert_eq!(error["details"][0]["path"], "actions", "{error}");

    let response = alice.send(Method::POST, "/api/v1/triggers", Some(trigger("six agents", 1, 6))).await;
    let error = quota_error(response, 422).await;
    assert!(error["message"].as_str().unwrap().contains("\"scope_list_length\""), "{error}");
    assert_eq!(error["details"][0]["path"], "scope.agent_ids", "{error}");
    let listed: Value = alice.send(Method::GET, "/api/v1/triggers", None).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]), "nothing was saved");

    // At the limits a trigger is saved; replacing it with a larger one is refused and changes nothing.
    let created = alice.send(Method::POST, "/api/v1/triggers", Some(trigger("at the limits", 2, 5))).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    let error = quota_error(alice.send(Method::PUT, &path, Some(trigger("larger", 3, 1))).await, 422).await;
    assert_eq!(error["details"][0]["path"], "actions", "{error}");
    let error = quota_error(alice.send(Method::PUT, &path, Some(trigger("larger", 1, 6))).await, 422).await;
    assert_eq!(error["details"][0]["path"], "scope.agent_ids", "{error}");
    let read: Value = alice.send(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(read["name"], "at the limits");
    assert_eq!(read["actions"].as_array().unwrap().len(), 2);
    assert_eq!(read["scope"]["agent_ids"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_api_keys_quota_counts_live_keys_per_user() {
    let (_db, app) = gateway(small()).await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let created = new_key(&alice, name).await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    let error = quota_error(new_key(&alice, "three").await, 409).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("\"api_keys_per_user\"") && message.contains("at most 2"), "{message}");
    assert_eq!(new_key(&bob, "bob's").await.status(), 201, "Bob's keys are counted apart from Alice's");

    // A revoked key no longer counts.
    assert_eq!(alice.send(Method::DELETE, &format!("/api/v1/api-keys/{}", ids[0]), None).await.status(), 204);
    assert_eq!(new_key(&alice, "three").await.status(), 201);
    quota_error(new_key(&alice, "four").await, 409).await;
}

#[tokio::test]
async fn racing_requests_for_the_last_place_leave_exactly_the_quota() {
    let (db, app) = gateway(small()).await;
    let alice = user(&app, "alice@example.com").await;
    create(&alice, "t0").await;
    create(&alice, "t1").await;
    let bodies = (0..10).map(|i| trigger(&format!("race {i}"), 1, 1)).collect();
    let statuses = race(&alice, "/api/v1/triggers", bodies).await;
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM triggers").fetch_one(&db.pool).await.unwrap();
    assert_eq!(stored, 3);

    assert_eq!(new_key(&alice, "one").await.status(), 201);
    let bodies = (0..10).map(|i| json!({"name": format!("race {i}")})).collect();
    let statuses = race(&alice, "/api/v1/api-keys", bodies).await;
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    let sql = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL";
    let live: i64 = sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap();
    assert_eq!(live, 2);
}
