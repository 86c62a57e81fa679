//! Secrets through the API: credential headers are write-only, nothing is stored in clear,
//! stored credentials never follow an action to another origin, and what was stored before
//! sealing is sealed at start.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, user};
use reqwest::Method;
use serde_json::{Value, json};
use shared::domain::ActionId;
use shared::store::triggers::StoredSecrets;
use testkit::TestDb;

const BOT_TOKEN: &str = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345";
const AUTHORIZATION: &str = "Bearer hookauth0a1b2c3d4e";
const API_KEY: &str = "hookapikey5f6a7b8c";
const CUSTOM: &str = "hookcustom9d0e1f";
const MCP_TOKEN: &str = "Bearer mcpauth2a3b4c5d";

fn trigger() -> Value {
    json!({
        "name": "credentials",
        "scope": {"event_types": ["NewFeedback"]},
        "actions": [
            {"type": "telegram", "chat_id": "-1001", "bot_token": BOT_TOKEN},
            {
                "type": "webhook",
                "url": "https://hooks.example.com/a",
                "headers": {"Authorization": AUTHORIZATION, "x-api-key": API_KEY, "X-Env": "prod"},
                "secret_headers": {"X-Custom-Token": CUSTOM}
            },
            {"type": "mcp", "server_url": "https://agent.example.com/mcp", "tool": "t", "headers": {"Authorization": MCP_TOKEN}}
        ]
    })
}

async fn create(client: &Client<'_>, body: Value) -> Value {
    let response = client.send(Method::POST, "/api/v1/triggers", Some(body)).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The secrets of action `id` as a worker opens them.
async fn opened(db: &TestDb, id: &Value) -> Value {
    common::opened_secrets(&db.pool, id.as_str().unwrap()).await
}

#[tokio::test]
async fn credentials_are_write_only_and_never_stored_in_clear() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created = create(&alice, trigger()).await;
    let (id, actions) = (created["id"].as_str().unwrap(), &created["actions"]);
    let first_signing = actions[1]["signing_secret"].as_str().unwrap().to_owned();
    let rotate = format!("/api/v1/triggers/{id}/actions/{}/secret/rotate", actions[1]["id"].as_str().unwrap());
    let rotated: Value = alice.send(Method::POST, &rotate, None).await.json().await.unwrap();
    let second_signing = rotated["signing_secret"].as_str().unwrap().to_owned();

    // Shown: public headers and the names of the secret ones; never a value.
    let read: Value = alice.send(Method::GET, &format!("/api/v1/triggers/{id}"), None).await.json().await.unwrap();
    let webhook = &read["actions"][1];
    assert_eq!(webhook["headers"], json!({"X-Env": "prod"}));
    assert_eq!(webhook["secret_header_names"], json!(["Authorization", "X-Custom-Token", "x-api-key"]));
    assert_eq!(read["actions"][2]["secret_header_names"], json!(["Authorization"]));
    let secrets = [BOT_TOKEN, AUTHORIZATION, API_KEY, CUSTOM, MCP_TOKEN, &first_signing, &second_signing];
    for secret in secrets {
        assert!(!read.to_string().contains(secret), "{secret} shown: {read}");
    }

    // Stored: nowhere in clear, in any table.
    let everything = db.dump().await;
    assert!(everything.contains("hooks.example.com"), "the dump reads the tables");
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} stored in clear");
    }
    // Yet the workers read them all.
    let webhook = opened(&db, &read["actions"][1]["id"]).await;
    assert_eq!(webhook["signing_secret"], json!(second_signing));
    assert_eq!(
        webhook["headers"],
        json!({"Authorization": AUTHORIZATION, "x-api-key": API_KEY, "X-Custom-Token": CUSTOM})
    );
    assert_eq!(opened(&db, &read["actions"][0]["id"]).await["bot_token"], json!(BOT_TOKEN));
    assert_eq!(opened(&db, &read["actions"][2]["id"]).await["headers"]["Authorization"], json!(MCP_TOKEN));

    // Copied onto another row, sealed secrets do not open.
    sqlx::query(
        "UPDATE trigger_actions SET sealed_secrets = (SELECT sealed_secrets FROM trigger_actions WHERE id = $1::uuid),
                                    secrets_key_id = (SELECT secrets_key_id FROM trigger_actions WHERE id = $1::uuid)
         WHERE id = $2::uuid",
    )
    .bind(read["actions"][1]["id"].as_str().unwrap())
    .bind(read["actions"][2]["id"].as_str().unwrap())
    .execute(&db.pool)
    .await
    .unwrap();
    let action: ActionId = read["actions"][2]["id"].as_str().unwrap().parse().unwrap();
    let moved: StoredSecrets =
        sqlx::query_as("SELECT sealed_secrets, secrets_key_id, plain_secrets FROM trigger_actions WHERE id = $1")
            .bind(action)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(moved.open(&testkit::keyring(), action).is_err());
}

#[tokio::test]
async fn stored_credentials_never_follow_an_action_to_a_new_origin() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created = create(&alice, trigger()).await;
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    let put = |body: Value| alice.send(Method::PUT, &path, Some(body));

    // Another host for both, credentials not sent again: refused, naming both, nothing written.
    let mut moved = trigger();
    moved["actions"][1] =
        json!({"type": "webhook", "url": "https://attacker.example.net/a", "headers": {"X-Env": "prod"}});
    moved["actions"][2] = json!({"type": "mcp", "server_url": "https://attacker.example.net/mcp", "tool": "t"});
    let refused = put(moved.clone()).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "credentials_stay");
    let paths: Vec<&str> =
        refused["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["actions[1].headers", "actions[2].headers"]);
    let read: Value = alice.send(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(read["actions"][1]["url"], "https://hooks.example.com/a", "nothing was written");

    // A port or a scheme is another origin too.
    let mut port = trigger();
    port["actions"][1] = json!({"type": "webhook", "url": "https://hooks.example.com:8443/a"});
    port["actions"][2] = json!({"type": "mcp", "server_url": "http://agent.example.com/mcp", "tool": "t"});
    assert_eq!(put(port).await.status(), 422);

    // Within the origin, stored credentials stay without being sent again.
    let mut same = trigger();
    same["actions"][1] = json!({"type": "webhook", "url": "https://hooks.example.com/other?x=1"});
    same["actions"][2] = json!({"type": "mcp", "server_url": "https://agent.example.com/v2", "tool": "t2"});
    assert_eq!(put(same).await.status(), 200);
    let webhook = opened(&db, &read["actions"][1]["id"]).await;
    assert_eq!(webhook["headers"]["Authorization"], json!(AUTHORIZATION));
    let read: Value = alice.send(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(read["actions"][1]["secret_header_names"], json!(["Authorization", "X-Custom-Token", "x-api-key"]));

    // Moving with new credentials replaces them all; with an empty set, drops them.
    let mut renewed = trigger();
    renewed["actions"][1] =
        json!({"type": "webhook", "url": "https://new.example.org/a", "headers": {"Authorization": "Bearer renewed"}});
    renewed["actions"][2] =
        json!({"type": "mcp", "server_url": "https://new.example.org/mcp", "tool": "t", "headers": {}});
    assert_eq!(put(renewed).await.status(), 200);
    assert_eq!(opened(&db, &read["actions"][1]["id"]).await["headers"], json!({"Authorization": "Bearer renewed"}));
    assert_eq!(opened(&db, &read["actions"][2]["id"]).await["headers"], json!({}));
    let read: Value = alice.send(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(read["actions"][1]["secret_header_names"], json!(["Authorization"]));
    assert!(read["actions"][2].get("secret_header_names").is_none(), "{read}");
    // With none stored, the action moves freely; its signing secret (the receiver's to check)
    // stays.
    let mut free = trigger();
    free["actions"][2] = json!({"type": "mcp", "server_url": "https://anywhere.example.com/mcp", "tool": "t"});
    free["actions"][1] = json!({"type": "webhook", "url": "https://new.example.org/b"});
    assert_eq!(put(free).await.status(), 200);
}

#[tokio::test]
async fn hostile_secret_headers_are_refused_by_path() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let hook = |extra: Value| {
        let mut action = json!({"type": "webhook", "url": "https://hooks.example.com/a"});
        for (k, v) in extra.as_object().unwrap() {
            action[k] = v.clone();
        }
        json!({"name": "h", "actions": [action]})
    };
    let many: serde_json::Map<String, Value> = (0..20).map(|i| (format!("X-S{i}"), json!("v"))).collect();
    let public: serde_json::Map<String, Value> = (0..20).map(|i| (format!("X-P{i}"), json!("v"))).collect();
    for (extra, path, words) in [
        (json!({"secret_headers": "Bearer x"}), "actions[0].secret_headers", "expected an object"),
        (json!({"secret_headers": {"X-A": "a\u{0}b"}}), "actions[0].secret_headers.X-A", "no line breaks"),
        (json!({"secret_headers": {"X-A": "a\r\nHost: evil"}}), "actions[0].secret_headers.X-A", "no line breaks"),
        (json!({"secret_headers": {"X-A": "x".repeat(8 * 1024)}}), "actions[0].secret_headers.X-A", "4096"),
        (json!({"secret_headers": {"bad name": "v"}}), "actions[0].secret_headers.bad name", "header name"),
        (
            json!({"secret_headers": {"webhook-signature": "v"}}),
            "actions[0].secret_headers.webhook-signature",
            "set by the server",
        ),
        (
            json!({"headers": {"authorization": "a"}, "secret_headers": {"Authorization": "b"}}),
            "actions[0].secret_headers.Authorization",
            "once",
        ),
        (json!({"secret_headers": {"X-A": {"deep": [[[1]]]}}}), "actions[0].secret_headers.X-A", "expected a string"),
        (json!({"headers": public, "secret_headers": many}), "actions[0].headers", "in all"),
    ] {
        let response = alice.send(Method::POST, "/api/v1/triggers", Some(hook(extra))).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        let details = body["error"]["details"].as_array().unwrap();
        assert!(
            details.iter().any(|d| d["path"] == path && d["message"].as_str().unwrap().contains(words)),
            "{path}: {body}"
        );
        assert!(!body.to_string().contains("Bearer x"), "a refused value is not echoed: {body}");
    }
}

#[tokio::test]
async fn secrets_stored_before_sealing_are_sealed_at_start() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created = create(&alice, trigger()).await;
    let id = created["actions"][0]["id"].as_str().unwrap().to_owned();
    // As a row written before sealing: secrets in clear, nothing sealed.
    sqlx::query(
        "UPDATE trigger_actions SET plain_secrets = $2, sealed_secrets = NULL, secrets_key_id = NULL WHERE id = $1::uuid",
    )
    .bind(&id)
    .bind(json!({"bot_token": BOT_TOKEN}))
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(db.dump().await.contains(BOT_TOKEN));

    let sealed = api_gateway::seal_plain_secrets(&db.pool, &testkit::keyring()).await.unwrap();
    assert_eq!(sealed, 1);
    assert!(!db.dump().await.contains(BOT_TOKEN));
    assert_eq!(opened(&db, &json!(id)).await, json!({"bot_token": BOT_TOKEN}));
    assert_eq!(api_gateway::seal_plain_secrets(&db.pool, &testkit::keyring()).await.unwrap(), 0);
}

#[tokio::test]
async fn credential_headers_stored_before_sealing_become_secrets_at_start() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let created = create(&alice, trigger()).await;
    let id = created["actions"][1]["id"].as_str().unwrap().to_owned();
    // As a webhook written before sealing: its credential header in the public config, its
    // signing secret in clear.
    sqlx::query(
        "UPDATE trigger_actions SET config = $2, plain_secrets = $3, sealed_secrets = NULL, secrets_key_id = NULL
         WHERE id = $1::uuid",
    )
    .bind(&id)
    .bind(json!({"type": "webhook", "url": "https://hooks.example.com/a", "method": "POST", "timeout_ms": 10000,
                 "headers": {"Authorization": AUTHORIZATION, "X-Env": "prod"}}))
    .bind(json!({"signing_secret": "whsec_legacy"}))
    .execute(&db.pool)
    .await
    .unwrap();

    assert_eq!(api_gateway::seal_plain_secrets(&db.pool, &testkit::keyring()).await.unwrap(), 1);
    let everything = db.dump().await;
    assert!(!everything.contains(AUTHORIZATION) && !everything.contains("whsec_legacy"), "nothing left in clear");
    let read: Value = alice
        .send(Method::GET, &format!("/api/v1/triggers/{}", created["id"].as_str().unwrap()), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["actions"][1]["headers"], json!({"X-Env": "prod"}));
    assert_eq!(read["actions"][1]["secret_header_names"], json!(["Authorization"]));
    let opened = opened(&db, &json!(id)).await;
    assert_eq!(opened, json!({"signing_secret": "whsec_legacy", "headers": {"Authorization": AUTHORIZATION}}));
}
