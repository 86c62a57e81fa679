//! No secret reaches the logs: a whole session of API use, logged at debug level, is
//! searched for every secret it handled.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::user;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .unwrap();

    let db = TestDb::new().await;
    let app = common::start(&db);
    let alice = user(&app, "alice@example.com").await;
    let bot_token = "987654:LOGtestTOKENLOGtestTOKEN12345";
    let mcp_header = "Bearer log-test-mcp-credential";
    let created: Value = alice
        .send(
            Method::POST,
            "/api/v1/triggers",
            Some(json!({
                "name": "secrets",
                "actions": [
                    {"type": "telegram", "chat_id": "-1", "bot_token": bot_token},
                    {"type": "webhook", "url": "https://example.com/h"},
                    {"type": "mcp", "server_url": "https://a.example/mcp", "tool": "t", "headers": {"Authorization": mcp_header}}
                ]
            })),
        )
        .await
        .json()
        .await
        .unwrap();
    let signing_secret = created["actions"][1]["signing_secret"].as_str().unwrap().to_owned();
    let key: Value =
        alice.send(Method::POST, "/api/v1/api-keys", Some(json!({"name": "k"}))).await.json().await.unwrap();
    let api_key = key["key"].as_str().unwrap().to_owned();
    let as_key = common::Client { app: &app, token: api_key.clone() };
    assert_eq!(as_key.send(Method::GET, "/api/v1/triggers", None).await.status(), 200);
    // A failed login with a password that must not be logged either.
    app.client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": "alice@example.com", "password": "wrong-password-in-logs?"}))
        .send()
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request finished"), "the capture works: {}", &logs[..logs.len().min(500)]);
    for secret in [
        bot_token,
        mcp_header,
        signing_secret.as_str(),
        api_key.as_str(),
        alice.token.as_str(),
        "long enough",
        "wrong-password-in-logs?",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}
