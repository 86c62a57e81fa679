//! API benchmark: with 1,000,000 events stored (1,000 agents), latency (p50/p99) and
//! requests/s of `GET /events?agent_id=..&limit=50`, and of `GET /triggers` for a user with
//! 1,000 triggers, under a Rust load generator on loopback. Each is set against the same
//! query run straight on the pool with the same concurrency (the limit of the path).
//!
//! `cargo bench -p api-gateway --bench api` (EVENTS and SECONDS may be set to shorten it)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api_gateway::auth::TokenKeys;
use api_gateway::rate_limit::RateLimits;
use api_gateway::{AppState, Application};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use shared::store::events::EventFilter;
use shared::store::{events, triggers, users};
use shared::trigger::TriggerDefinition;
use testkit::TestDb;

const AGENTS: u64 = 1_000;
const TRIGGERS: usize = 1_000;
const CONCURRENCY: usize = 16;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Latencies of a run, and how long it lasted.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }
}

/// Runs `request(i)` from `CONCURRENCY` tasks for `seconds`.
async fn load<F, Fut>(seconds: u64, request: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (request, counter) = (request.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    request(i).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    Run { latencies, elapsed: started.elapsed() }
}

fn report(name: &str, ours: &Run, limit: &Run) {
    println!(
        "| API: {name} | p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s | {:.0}/s (the query straight on the pool) | {:.2} |",
        ours.percentile(0.5).as_secs_f64() * 1e3,
        ours.percentile(0.99).as_secs_f64() * 1e3,
        ours.rps(),
        limit.rps(),
        ours.rps() / limit.rps(),
    );
    println!(
        "{name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms  {:>7.0} req/s | straight query: p50 {:>6.2} ms  p99 {:>6.2} ms  {:>7.0}/s | ratio {:.2}",
        ours.percentile(0.5).as_secs_f64() * 1e3,
        ours.percentile(0.99).as_secs_f64() * 1e3,
        ours.rps(),
        limit.percentile(0.5).as_secs_f64() * 1e3,
        limit.percentile(0.99).as_secs_f64() * 1e3,
        limit.rps(),
        ours.rps() / limit.rps(),
    );
}

/// Registers the bench user and logs in: its id and a JWT.
async fn sign_in(client: &reqwest::Client, base: &str, db: &TestDb) -> (shared::domain::UserId, String) {
    let credentials = json!({"email": "bench@example.com", "password": "long enough"});
    client.post(format!("{base}/api/v1/auth/register")).json(&credentials).send().await.expect("register");
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token");
    let user = users::find_by_email(&db.pool, "bench@example.com").await.expect("user").expect("registered");
    (user.id, login["token"].as_str().expect("token").to_owned())
}

/// A GET through the API that must succeed.
fn api_get(
    client: &reqwest::Client,
    token: &str,
    url: impl Fn(usize) -> String + Send + Sync + Clone + 'static,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync + Clone + 'static {
    let (client, token) = (client.clone(), token.to_owned());
    move |i| {
        let request = client.get(url(i)).bearer_auth(&token);
        Box::pin(async move {
            let response = request.send().await.expect("request");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.expect("body");
        })
    }
}

#[tokio::main]
async fn main() {
    shared::telemetry::init_telemetry("error", false);
    let event_count = env_number("EVENTS", 1_000_000);
    let seconds = env_number("SECONDS", 10);
    let db = TestDb::new().await;
    testkit::fixtures::store_feedback_history(&db.pool, event_count, AGENTS).await;

    let secret = SecretString::from("bench-secret-bench-secret-bench-secret-01".to_owned());
    let tokens = TokenKeys::new(&secret, Duration::from_secs(3600));
    let redis = RedisHandle::new(&testkit::redis_config()).expect("redis");
    let limits = RateLimits { auth_per_minute: 1_000, per_minute: u32::MAX, ..RateLimits::default() };
    let state = AppState::new(db.pool.clone(), redis, tokens, testkit::keyring()).with_limits(limits);
    let app = Application::serve(state, testkit::net::listener()).expect("serve");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    let client = testkit::http_client();
    let (user, token) = sign_in(&client, &base, &db).await;
    let definition = TriggerDefinition::parse(&testkit::fixtures::example_trigger()).expect("trigger");
    let mut conn = db.pool.acquire().await.expect("connection");
    for _ in 0..TRIGGERS {
        triggers::insert(&mut conn, &testkit::keyring(), user, &definition, None).await.expect("trigger");
    }
    drop(conn);
    println!("{TRIGGERS} triggers for one user; {CONCURRENCY} concurrent clients, {seconds} s per run");

    let events_base = base.clone();
    let events_api = load(
        seconds,
        api_get(&client, &token, move |i| {
            format!("{events_base}/api/v1/events?agent_id={}&limit=50", i as u64 % AGENTS)
        }),
    )
    .await;
    let pool = db.pool.clone();
    let events_db = load(seconds, move |i| {
        let pool = pool.clone();
        async move {
            let filter = EventFilter { agent_id: Some((i as u64 % AGENTS).to_string()), ..EventFilter::default() };
            let page = events::list(&pool, &filter, None, 51).await.expect("query");
            assert!(!page.is_empty());
        }
    })
    .await;
    report("GET /events?agent_id=..&limit=50", &events_api, &events_db);

    let triggers_base = base.clone();
    let triggers_api =
        load(seconds, api_get(&client, &token, move |_| format!("{triggers_base}/api/v1/triggers"))).await;
    let pool = db.pool.clone();
    let triggers_db = load(seconds, move |_| {
        let pool = pool.clone();
        async move {
            let page = triggers::list(&pool, user, None, 51).await.expect("query");
            assert_eq!(page.len(), 51);
        }
    })
    .await;
    report("GET /triggers (1,000 triggers)", &triggers_api, &triggers_db);
}
