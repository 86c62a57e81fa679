//! A bench for the workers: a database and Redis prefix of their own, a webhook receiver on
//! loopback whose answers the test scripts, and the real processor and relay to make jobs.

#![allow(dead_code)]

use std::time::Duration;

use action_workers::Settings;
use action_workers::ssrf::AddressPolicy;
use event_processor::{Processor, Relay};
use serde_json::Value;
use shared::config::RedisConfig;
use shared::domain::{ActionId, NewEvent, TriggerId, UserId};
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::TriggerDefinition;
use testkit::TestDb;
#[allow(unused_imports)]
pub use testkit::outside::receiver::{Received, Receiver};

pub struct Bench {
    pub db: TestDb,
    pub redis: RedisConfig,
    pub user: UserId,
}

impl Bench {
    pub async fn new() -> Self {
        testkit::init_telemetry();
        action_workers::install_tls_provider();
        let db = TestDb::new().await;
        let mut conn = db.pool.acquire().await.unwrap();
        let user = store::users::insert(&mut conn, "w@example.com", "x").await.unwrap();
        Self { db, redis: testkit::redis_config(), user }
    }

    /// A trigger named "hook" firing on every feedback, with one webhook action.
    pub async fn webhook_trigger(&self, action: Value) -> (TriggerId, ActionId) {
        self.trigger("hook", action).await
    }

    /// A trigger firing on every feedback, with one action.
    pub async fn trigger(&self, name: &str, action: Value) -> (TriggerId, ActionId) {
        let (trigger, actions) = self.trigger_of(self.user, name, vec![action]).await;
        (trigger, actions[0])
    }

    /// A trigger of `user` firing on every feedback, with `actions`.
    pub async fn trigger_of(&self, user: UserId, name: &str, actions: Vec<Value>) -> (TriggerId, Vec<ActionId>) {
        let definition = TriggerDefinition::parse(&serde_json::json!({
            "name": name,
            "scope": {"event_types": ["NewFeedback"]},
            "actions": actions
        }))
        .unwrap();
        let mut conn = self.db.pool.acquire().await.unwrap();
        let from = chrono::DateTime::from_timestamp(946_684_800, 0);
        store::triggers::insert(&mut conn, &testkit::keyring(), user, &definition, from).await.unwrap()
    }

    /// Links Telegram chat `chat` to the bench's user for the shared bot.
    pub async fn link_chat(&self, chat: i64) {
        testkit::fixtures::link_telegram_chat(&self.db.pool, self.user, chat).await;
    }

    pub async fn signing_secret(&self, action: ActionId) -> String {
        let mut conn = self.db.pool.acquire().await.unwrap();
        let secrets =
            store::triggers::action_secrets(&mut conn, &testkit::keyring(), self.user, action).await.unwrap().unwrap();
        secrets["signing_secret"].as_str().unwrap().to_owned()
    }

    /// Stores events and runs them through the real processor and relay into Redis.
    pub async fn fire(&self, events: &[NewEvent]) {
        let mut conn = self.db.pool.acquire().await.unwrap();
        store::events::insert(&mut conn, events).await.unwrap();
        drop(conn);
        let mut processor = Processor::new(self.db.pool.clone(), event_processor::Settings::default());
        processor.refresh_triggers().await.unwrap();
        let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.db.pool).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            processor.catch_up().await.unwrap();
            if processor.position().is_some_and(|p| p.id >= expected) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the processor did not take every event");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.relay().run_once().await.unwrap();
    }

    pub fn relay(&self) -> Relay {
        Relay::new(self.db.pool.clone(), RedisHandle::new(&self.redis).unwrap(), 100)
    }

    pub fn settings(allow_loopback: bool) -> Settings {
        Settings {
            concurrency: 2,
            claim_idle: Duration::from_millis(500),
            retry_schedule: vec![Duration::from_millis(50)],
            max_attempts: 3,
            address_policy: AddressPolicy {
                allowed: if allow_loopback { vec!["127.0.0.0/8".parse().unwrap()] } else { Vec::new() },
            },
            keyring: testkit::keyring(),
            ..Settings::default()
        }
    }

    pub fn start_workers(&self, settings: Settings) -> tokio::task::JoinHandle<()> {
        let (pool, redis) = (self.db.pool.clone(), RedisHandle::new(&self.redis).unwrap());
        tokio::spawn(async move {
            action_workers::worker::run(pool, redis, settings).await.unwrap();
        })
    }

    /// (attempt, outcome, status) of every attempt of the only job, in order.
    pub async fn attempts(&self) -> Vec<(i32, String, Option<i32>)> {
        sqlx::query_as("SELECT attempt, outcome, status_code FROM deliveries ORDER BY id")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn job_status(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT status FROM action_outbox ORDER BY created_at")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }
}
