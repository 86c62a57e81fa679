//! Running the gateway in a test.

#![allow(dead_code)]

use std::time::Duration;

use api_gateway::auth::TokenKeys;
use api_gateway::{AppState, Application};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use testkit::net::listener;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub fn tokens(lifetime: Duration) -> TokenKeys {
    TokenKeys::new(&SecretString::from(JWT_SECRET.to_owned()), lifetime)
}

/// The gateway on a free port over `db` and a Redis prefix of its own.
pub fn start(db: &testkit::TestDb) -> Running {
    let redis = RedisHandle::new(&testkit::redis_config()).expect("redis handle");
    Running::start(AppState::new(db.pool.clone(), redis, tokens(Duration::from_secs(3600)), testkit::keyring()))
}

pub fn state(db: sqlx::PgPool, redis: RedisHandle) -> AppState {
    AppState::new(db, redis, tokens(Duration::from_secs(3600)), testkit::keyring())
}

pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
}

impl Running {
    pub fn start(state: AppState) -> Self {
        let app = Application::serve(state, listener()).expect("serve");
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped());
        Self { base, client: testkit::http_client() }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("request")
    }
}

/// A user's view of the API.
pub struct Client<'a> {
    pub app: &'a Running,
    pub token: String,
}

impl Client<'_> {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.app.client.request(method, format!("{}{path}", self.app.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }
}

/// Registers and logs in a user.
pub async fn user<'a>(app: &'a Running, email: &str) -> Client<'a> {
    let url = |path: &str| format!("{}{path}", app.base);
    let credentials = json!({"email": email, "password": "long enough"});
    app.client.post(url("/api/v1/auth/register")).json(&credentials).send().await.expect("request");
    let login: Value = app
        .client
        .post(url("/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("request");
    Client { app, token: login["token"].as_str().expect("request").to_owned() }
}

/// Links Telegram chat `chat` to the client's user, as `/start <code>` from the chat would.
pub async fn link_chat(pool: &sqlx::PgPool, client: &Client<'_>, chat: i64) {
    let me: Value = client.send(reqwest::Method::GET, "/api/v1/auth/me", None).await.json().await.expect("me");
    let user: shared::domain::UserId = me["id"].as_str().expect("an id").parse().expect("a user id");
    testkit::fixtures::link_telegram_chat(pool, user, chat).await;
}

/// The secrets of action `id` as a worker opens them.
pub async fn opened_secrets(pool: &sqlx::PgPool, id: &str) -> Value {
    let action: shared::domain::ActionId = id.parse().expect("an action id");
    let stored: shared::store::triggers::StoredSecrets =
        sqlx::query_as("SELECT sealed_secrets, secrets_key_id, plain_secrets FROM trigger_actions WHERE id = $1")
            .bind(action)
            .fetch_one(pool)
            .await
            .expect("the action's secrets");
    stored.open(&testkit::keyring(), action).expect("they open")
}
