//! Running the gateway in a test.

#![allow(dead_code)]

use std::time::Duration;

use api_gateway::auth::TokenKeys;
use api_gateway::{AppState, Application};
use secrecy::SecretString;
use shared::redis::RedisHandle;
use testkit::net::listener;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub fn tokens(lifetime: Duration) -> TokenKeys {
    TokenKeys::new(&SecretString::from(JWT_SECRET.to_owned()), lifetime)
}

pub fn state(db: sqlx::PgPool, redis: RedisHandle) -> AppState {
    AppState::new(db, redis, tokens(Duration::from_secs(3600)))
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
