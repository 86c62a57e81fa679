//! What the end-to-end tests share.

#![allow(dead_code)]

use std::time::Duration;

use sqlx::PgPool;
use testkit::wait;

/// Waits until every job in the outbox is recorded as delivered: nothing more can be sent.
pub async fn every_job_delivered(pool: &PgPool, timeout: Duration) {
    wait::until("every job recorded as delivered", timeout, || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status <> 'delivered'")
            .fetch_one(pool)
            .await
            .ok()?;
        (open == 0).then_some(())
    })
    .await;
}

/// Every service in this process: the indexer over `registries` on `anvil`, the processor,
/// the workers with `workers`, and the API; and a signed-up user's token.
pub struct System {
    pub api: String,
    pub token: String,
    pub client: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl System {
    pub async fn start(
        db: &testkit::TestDb,
        anvil: &testkit::chain::Anvil,
        registries: &testkit::chain::Registries,
        workers: action_workers::Settings,
    ) -> Self {
        use indexer::config::{ChainConfig, Registries as RegistryAddresses};
        use secrecy::SecretString;
        use shared::redis::RedisHandle;

        testkit::init_telemetry();
        let redis = RedisHandle::new(&testkit::redis_config()).expect("redis handle");
        let chain = ChainConfig::local(
            anvil.url().parse().expect("anvil URL"),
            RegistryAddresses {
                identity: registries.identity.into(),
                reputation: registries.reputation.into(),
                validation: Some(registries.validation.into()),
            },
            100,
        );
        let pool = db.pool.clone();
        let processor_settings = event_processor::Settings {
            poll_interval: Duration::from_millis(50),
            ..event_processor::Settings::default()
        };
        let mut tasks = vec![
            tokio::spawn(indexer::ChainIndexer::new(chain, pool.clone()).run()),
            tokio::spawn(event_processor::service::run(pool.clone(), redis.clone(), processor_settings)),
        ];
        let (worker_pool, worker_redis) = (pool.clone(), redis.clone());
        tasks.push(tokio::spawn(async move {
            let _ = action_workers::worker::run(worker_pool, worker_redis, workers).await;
        }));
        let tokens = api_gateway::auth::TokenKeys::new(
            &SecretString::from("end-to-end-secret-end-to-end-secret-0123".to_owned()),
            Duration::from_secs(3600),
        );
        let state = api_gateway::AppState::new(pool, redis, tokens, testkit::keyring());
        let app = api_gateway::Application::serve(state, testkit::net::listener()).expect("the API starts");
        let api = format!("http://{}/api/v1", app.local_addr());
        tasks.push(tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        }));

        let client = testkit::http_client();
        let credentials = serde_json::json!({"email": "operator@example.com", "password": "a long password"});
        let registered = client.post(format!("{api}/auth/register")).json(&credentials).send().await.expect("register");
        assert_eq!(registered.status(), 201);
        let login: serde_json::Value = client
            .post(format!("{api}/auth/login"))
            .json(&credentials)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("a token");
        let token = login["token"].as_str().expect("a token").to_owned();
        Self { api, token, client, tasks }
    }

    /// `path` under the API with the user's token.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let response = self.client.get(format!("{}{path}", self.api)).bearer_auth(&self.token).send().await;
        response.expect("GET").json().await.expect("JSON")
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.api)).bearer_auth(&self.token).json(body).send().await.expect("POST")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
