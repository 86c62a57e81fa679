//! A test bench for the processor: a database of its own, a Redis key prefix of its own, a
//! user, and helpers to create triggers, insert events and read what came out.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use event_processor::cursor::Cursor;
use event_processor::{BatchReport, Processor, Relay, Settings};
use redis::AsyncCommands;
use serde_json::Value;
use shared::config::RedisConfig;
use shared::domain::{ActionId, NewEvent, TriggerId, UserId};
use shared::job::{Job, STREAM_FIELD, stream_key};
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::{ActionKind, TriggerDefinition};
use testkit::TestDb;

pub struct Bench {
    pub db: TestDb,
    pub redis: RedisConfig,
    pub user: UserId,
}

/// A moment before every fixture event: triggers created "then" fire on all of them.
pub fn long_ago() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).expect("2000-01-01")
}

pub fn webhook(name: &str, scope: Value, condition: Value) -> Value {
    serde_json::json!({
        "name": name,
        "scope": scope,
        "condition": condition,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    })
}

impl Bench {
    pub async fn new() -> Self {
        testkit::init_telemetry();
        let db = TestDb::new().await;
        let redis = testkit::redis_config();
        let mut conn = db.pool.acquire().await.expect("connection");
        let user =
            store::users::insert(&mut conn, &format!("{}@example.com", uuid::Uuid::new_v4()), "x").await.expect("user");
        Self { db, redis, user }
    }

    pub fn settings(batch_size: usize) -> Settings {
        Settings { batch_size, ..Settings::default() }
    }

    pub fn processor(&self, batch_size: usize) -> Processor {
        Processor::new(self.db.pool.clone(), Self::settings(batch_size))
    }

    pub fn relay(&self) -> Relay {
        Relay::new(self.db.pool.clone(), RedisHandle::new(&self.redis).expect("redis handle"), 100)
    }

    pub async fn trigger(&self, json: Value, fires_from: DateTime<Utc>) -> (TriggerId, Vec<ActionId>) {
        let definition = TriggerDefinition::parse(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let mut conn = self.db.pool.acquire().await.expect("connection");
        store::triggers::insert(&mut conn, &testkit::keyring(), self.user, &definition, Some(fires_from))
            .await
            .expect("insert trigger")
    }

    /// Processes until every stored event is behind the cursor. Other tests' transactions on
    /// the same server can hold rows back for a moment (the cursor only passes settled
    /// transactions), so one `catch_up` is not always enough.
    pub async fn settle(&self, processor: &mut Processor) -> BatchReport {
        let mut total = BatchReport::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let report = processor.catch_up().await.expect("processing");
            total.events += report.events;
            total.malformed += report.malformed;
            total.fires += report.fires;
            total.suppressed += report.suppressed;
            total.jobs += report.jobs;
            if self.is_settled(processor).await {
                return total;
            }
            assert!(tokio::time::Instant::now() < deadline, "the processor did not catch up");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Whether the processor's cursor is at or past every committed event.
    pub async fn is_settled(&self, processor: &Processor) -> bool {
        let newest: Option<(String, i64)> =
            sqlx::query_as("SELECT tx_xid::text AS xid, id FROM events ORDER BY events.tx_xid DESC, id DESC LIMIT 1")
                .fetch_optional(&self.db.pool)
                .await
                .expect("newest event");
        match (newest, processor.position()) {
            (None, _) => true,
            (Some((xid, id)), Some(cursor)) => cursor >= Cursor { xid: xid.parse().expect("xid"), id },
            (Some(_), None) => false,
        }
    }

    pub async fn insert(&self, events: &[NewEvent]) {
        let mut conn = self.db.pool.acquire().await.expect("connection");
        store::events::insert(&mut conn, events).await.expect("insert events");
    }

    /// Outbox rows as (trigger, event id), sorted.
    pub async fn fired(&self) -> Vec<(TriggerId, i64)> {
        sqlx::query_as("SELECT trigger_id, event_id FROM action_outbox ORDER BY trigger_id, event_id")
            .fetch_all(&self.db.pool)
            .await
            .expect("read outbox")
    }

    pub async fn job_ids(&self) -> Vec<uuid::Uuid> {
        sqlx::query_scalar("SELECT job_id FROM action_outbox ORDER BY job_id")
            .fetch_all(&self.db.pool)
            .await
            .expect("read outbox")
    }

    /// Every aggregate state row except warm markers, as (trigger, aggregate, key) -> state.
    pub async fn states(&self) -> BTreeMap<(TriggerId, String, String), Value> {
        let rows: Vec<(TriggerId, String, String, Value)> =
            sqlx::query_as("SELECT trigger_id, aggregate, key, state FROM aggregate_state WHERE key <> '#warmed'")
                .fetch_all(&self.db.pool)
                .await
                .expect("read state");
        rows.into_iter().map(|(t, a, k, s)| ((t, a, k), s)).collect()
    }

    /// The jobs in the stream of `kind`, in stream order.
    pub async fn stream(&self, kind: ActionKind) -> Vec<Job> {
        stream_jobs(&self.redis, kind).await
    }
}

pub async fn stream_jobs(redis: &RedisConfig, kind: ActionKind) -> Vec<Job> {
    let client = redis.client().expect("redis client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    let entries: Vec<(String, Vec<(String, String)>)> = conn.xrange_all(stream_key(redis, kind)).await.expect("XRANGE");
    entries
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == STREAM_FIELD))
        .map(|(_, json)| serde_json::from_str(&json).expect("a job"))
        .collect()
}
