//! API keys: shown once, stored as a digest, usable as a bearer, revocable, private.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::user;
use serde_json::{Value, json};
use testkit::TestDb;

#[tokio::test]
async fn a_key_is_shown_once_works_as_a_bearer_and_dies_when_revoked() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;

    let created = alice.send(reqwest::Method::POST, "/api/v1/api-keys", Some(json!({"name": "ci"}))).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("erc8004_") && key.len() >= 8 + 43, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));

    // Only a digest is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_one(&db.pool).await.unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&key[8..]));

    // The key authenticates as Alice.
    let as_key = common::Client { app: &app, token: key.clone() };
    let me: Value = as_key.send(reqwest::Method::GET, "/api/v1/auth/me", None).await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");

    // Lists show the prefix and last use, never the key; Bob sees none of Alice's.
    let listed: Value = alice.send(reqwest::Method::GET, "/api/v1/api-keys", None).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&key));
    assert!(listed["items"][0]["last_used_at"].is_string());
    let bobs: Value = bob.send(reqwest::Method::GET, "/api/v1/api-keys", None).await.json().await.unwrap();
    assert_eq!(bobs["items"], json!([]));

    // Bob cannot revoke it; Alice can; then it is refused.
    let path = format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap());
    assert_eq!(bob.send(reqwest::Method::DELETE, &path, None).await.status(), 404);
    assert_eq!(as_key.send(reqwest::Method::GET, "/api/v1/auth/me", None).await.status(), 200);
    assert_eq!(alice.send(reqwest::Method::DELETE, &path, None).await.status(), 204);
    assert_eq!(as_key.send(reqwest::Method::GET, "/api/v1/auth/me", None).await.status(), 401);
    assert_eq!(alice.send(reqwest::Method::DELETE, &path, None).await.status(), 404, "already revoked");
    let garbage = common::Client { app: &app, token: "erc8004_not-a-key".to_owned() };
    assert_eq!(garbage.send(reqwest::Method::GET, "/api/v1/auth/me", None).await.status(), 401);
}
