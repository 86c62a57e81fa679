//! Rate limits: per address on login and register, per user elsewhere, with 429 and
//! Retry-After.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use api_gateway::rate_limit::RateLimits;
use common::{Running, user};
use reqwest::Method;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use testkit::TestDb;

fn start(db: &TestDb, limits: RateLimits) -> Running {
    let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
    Running::start(common::state(db.pool.clone(), redis).with_limits(limits))
}

#[tokio::test]
async fn login_attempts_are_limited_per_address() {
    let db = TestDb::new().await;
    let app = start(&db, RateLimits { auth_per_minute: 4, per_minute: 1_000, ..RateLimits::default() });
    let url = format!("{}/api/v1/auth/login", app.base);
    let guess = json!({"email": "victim@example.com", "password": "guess guess"});
    // A minute boundary may open a fresh window once: 4 + 4 + 1 requests always reach a 429.
    let mut statuses = Vec::new();
    for i in 0..9 {
        // A forwarded-for header from an untrusted peer changes nothing.
        let forged = format!("198.51.100.{i}");
        let response = app.client.post(&url).header("x-forwarded-for", forged).json(&guess).send().await.unwrap();
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry_after), "{retry_after}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let first_refusal = statuses.iter().position(|s| *s == 429).expect("a 429");
    assert!(first_refusal >= 4, "refused before the limit: {statuses:?}");
    assert!(statuses[..first_refusal].iter().all(|s| *s == 401), "{statuses:?}");
}

#[tokio::test]
async fn each_user_has_a_budget_of_their_own() {
    let db = TestDb::new().await;
    let app = start(&db, RateLimits { auth_per_minute: 100, per_minute: 3, ..RateLimits::default() });
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let mut alice_statuses = Vec::new();
    for _ in 0..7 {
        alice_statuses.push(alice.send(Method::GET, "/api/v1/auth/me", None).await.status().as_u16());
    }
    let first_refusal = alice_statuses.iter().position(|s| *s == 429).expect("a 429");
    assert!(first_refusal >= 3, "refused before the limit: {alice_statuses:?}");
    assert_eq!(bob.send(Method::GET, "/api/v1/auth/me", None).await.status(), 200, "Bob is not slowed by Alice");
}
