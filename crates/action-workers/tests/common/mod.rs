//! A bench for the workers: a database and Redis prefix of their own, a webhook receiver on
//! loopback whose answers the test scripts, and the real processor and relay to make jobs.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use action_workers::Settings;
use action_workers::ssrf::AddressPolicy;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use event_processor::{Processor, Relay};
use serde_json::Value;
use shared::config::RedisConfig;
use shared::domain::{ActionId, NewEvent, TriggerId, UserId};
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::TriggerDefinition;
use testkit::TestDb;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP server that records requests and answers the scripted statuses in order (200
/// once the script is empty).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    /// The answer once the script is used up.
    default_status: Arc<Mutex<u16>>,
    delay: Duration,
}

async fn receive(req: HttpRequest, body: web::Bytes, receiver: web::Data<Receiver>) -> HttpResponse {
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    receiver.received.lock().unwrap().push(Received { headers, body: String::from_utf8_lossy(&body).into_owned() });
    if !receiver.delay.is_zero() {
        tokio::time::sleep(receiver.delay).await;
    }
    let fallback = *receiver.default_status.lock().unwrap();
    let status = receiver.script.lock().unwrap().pop_front().unwrap_or(fallback);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(format!("answered {status}"))
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_slow(Duration::ZERO).await
    }

    /// A receiver that takes `delay` to answer each request.
    pub async fn start_slow(delay: Duration) -> Self {
        let listener = testkit::net::listener();
        let port = listener.local_addr().unwrap().port();
        let receiver = Self {
            port,
            received: Arc::default(),
            script: Arc::default(),
            default_status: Arc::new(Mutex::new(200)),
            delay,
        };
        let data = web::Data::new(receiver.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(receive)))
            .workers(2)
            .listen(listener)
            .unwrap()
            .run();
        tokio::spawn(server);
        receiver
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    /// Answers `status` to everything not scripted, from now on.
    pub fn answer_always(&self, status: u16) {
        *self.default_status.lock().unwrap() = status;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
}

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
        let definition = TriggerDefinition::parse(&serde_json::json!({
            "name": name,
            "scope": {"event_types": ["NewFeedback"]},
            "actions": [action]
        }))
        .unwrap();
        let mut conn = self.db.pool.acquire().await.unwrap();
        let from = chrono::DateTime::from_timestamp(946_684_800, 0);
        let (trigger, actions) = store::triggers::insert(&mut conn, self.user, &definition, from).await.unwrap();
        (trigger, actions[0])
    }

    pub async fn signing_secret(&self, action: ActionId) -> String {
        let mut conn = self.db.pool.acquire().await.unwrap();
        let secrets = store::triggers::action_secrets(&mut conn, self.user, action).await.unwrap().unwrap();
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
