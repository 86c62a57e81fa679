//! Accounts and login tokens.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use api_gateway::AppState;
use common::Running;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use testkit::TestDb;

async fn gateway(lifetime: Duration) -> (TestDb, Running) {
    testkit::init_telemetry();
    let db = TestDb::new().await;
    let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
    let app = Running::start(AppState::new(db.pool.clone(), redis, common::tokens(lifetime), testkit::keyring()));
    (db, app)
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap()
    }

    async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap()
    }

    async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/api/v1/auth/login", json!({"email": email, "password": password})).await
    }
}

#[tokio::test]
async fn register_login_and_me() {
    let (_db, app) = gateway(Duration::from_secs(3600)).await;
    let created =
        app.post("/api/v1/auth/register", json!({"email": "Ada@Example.com", "password": "correct horse"})).await;
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.unwrap();
    assert_eq!(user["email"], "Ada@Example.com");
    assert!(user.get("password_hash").is_none());

    let login = app.login("ada@example.com", "correct horse").await;
    assert_eq!(login.status(), 200);
    let token: Value = login.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let me = app.get_as("/api/v1/auth/me", token["token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], user["id"]);
}

#[tokio::test]
async fn a_second_account_with_the_same_email_conflicts() {
    let (_db, app) = gateway(Duration::from_secs(3600)).await;
    let body = json!({"email": "bob@example.com", "password": "12345678"});
    assert_eq!(app.post("/api/v1/auth/register", body).await.status(), 201);
    let again = app.post("/api/v1/auth/register", json!({"email": "BOB@example.com", "password": "87654321"})).await;
    assert_eq!(again.status(), 409);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "conflict");
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let (_db, app) = gateway(Duration::from_secs(3600)).await;
    for (body, path) in [
        (json!({"email": "not-an-email", "password": "12345678"}), "email"),
        (json!({"email": "c@example.com", "password": "short"}), "password"),
    ] {
        let response = app.post("/api/v1/auth/register", body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "validation_failed");
        assert_eq!(error["error"]["details"][0]["path"], path);
    }
    let malformed = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_json");
    let plain = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .header("content-type", "text/plain")
        .body(r#"{"email": "c@example.com", "password": "12345678"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let error: Value = plain.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_content_type");
    let huge =
        app.post("/api/v1/auth/register", json!({"email": "x".repeat(300 * 1024), "password": "12345678"})).await;
    assert_eq!(huge.status(), 413);
}

#[tokio::test]
async fn wrong_credentials_and_bad_tokens_are_401() {
    let (_db, app) = gateway(Duration::from_secs(1)).await;
    app.post("/api/v1/auth/register", json!({"email": "eve@example.com", "password": "a good password"})).await;
    let wrong_password = app.login("eve@example.com", "a bad password").await;
    assert_eq!(wrong_password.status(), 401);
    let unknown = app.login("nobody@example.com", "a good password").await;
    assert_eq!(unknown.status(), 401);
    let (a, b): (Value, Value) = (wrong_password.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(a, b, "no hint which part was wrong");

    assert_eq!(app.get("/api/v1/auth/me").await.status(), 401, "no token");
    let token: Value = app.login("eve@example.com", "a good password").await.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(app.get_as("/api/v1/auth/me", &tampered).await.status(), 401, "tampered");
    let forged = common::tokens(Duration::from_secs(60));
    let other_secret = api_gateway::auth::TokenKeys::new(
        &secrecy::SecretString::from("another-secret-another-secret-another".to_owned()),
        Duration::from_secs(60),
    );
    let user: Value = app.get_as("/api/v1/auth/me", &token).await.json().await.unwrap();
    let id: shared::domain::UserId = user["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.get_as("/api/v1/auth/me", &forged.issue(id).unwrap()).await.status(), 200);
    assert_eq!(app.get_as("/api/v1/auth/me", &other_secret.issue(id).unwrap()).await.status(), 401, "other key");
    // The token lives one second.
    testkit::wait::until("the token to expire", Duration::from_secs(10), || async {
        (app.get_as("/api/v1/auth/me", &token).await.status() == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_value_the_database_cannot_store_is_400_not_500() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let response = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .json(&json!({"email": "nul\u{0}@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}
