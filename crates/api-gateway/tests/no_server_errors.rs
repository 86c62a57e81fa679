//! Property test: nothing a client sends makes the API answer 500. Trigger bodies (random
//! JSON, and the contract's example with one node replaced by random JSON), raw bodies that
//! are not JSON at all, written events for the trigger test, and event query strings.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use api_gateway::rate_limit::RateLimits;
use common::Running;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use shared::redis::RedisHandle;
use testkit::TestDb;

/// Names the API knows, so random objects often reach deep into the parsers.
const KEYS: &[&str] = &[
    "name",
    "description",
    "enabled",
    "scope",
    "condition",
    "cooldown_secs",
    "actions",
    "chain_ids",
    "registry",
    "event_types",
    "agent_ids",
    "all",
    "any",
    "not",
    "field",
    "op",
    "value",
    "ema",
    "count",
    "avg",
    "sum",
    "min",
    "max",
    "window",
    "window_secs",
    "alpha",
    "min_samples",
    "per",
    "where",
    "as",
    "type",
    "chat_id",
    "template",
    "parse_mode",
    "bot_token",
    "url",
    "method",
    "headers",
    "body_template",
    "timeout_ms",
    "server_url",
    "tool",
    "arguments",
    "event_type",
    "agent_id",
    "value_raw",
    "value_decimals",
    "block_timestamp",
    "tag1",
    "event_id",
];

/// Words the API knows as values.
const WORDS: &[&str] = &[
    "NewFeedback",
    "Registered",
    "reputation",
    "identity",
    "eq",
    "lt",
    "in",
    "exists",
    "contains",
    "webhook",
    "telegram",
    "mcp",
    "rest",
    "agent",
    "agent_client",
    "trigger",
    "value",
    "tag1",
    "https://example.com/h",
    "http://127.0.0.1:1/x",
    "ftp://x",
    "{{ event.value }}",
    "{% if %}",
    "{{",
    "99.77",
    "-3.2",
    "1e999",
    "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432",
    "115792089237316195423570985008687907853269984665640564039457584007913129639936",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e40f64..1e40).prop_map(|f| json!(f)),
        prop::sample::select(WORDS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "[a-z_]{0,12}"]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 80, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `base` with the node reached by following `route` (an index per level) replaced.
fn mutate(mut base: Value, route: &[usize], replacement: Value) -> Value {
    let mut node = &mut base;
    for step in route {
        let len = match node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        node = match node {
            Value::Object(map) => map.values_mut().nth(step % len).unwrap(),
            Value::Array(items) => &mut items[step % len],
            _ => unreachable!("only containers have children"),
        };
    }
    *node = replacement;
    base
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Running,
    token: String,
    trigger: String,
    _db: TestDb,
}

impl Harness {
    fn new() -> Arc<Self> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (db, app, token, trigger) = runtime.block_on(async {
            let db = TestDb::new().await;
            let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
            let limits = RateLimits { auth_per_minute: 1_000, per_minute: 1_000_000, ..RateLimits::default() };
            let app = Running::start(common::state(db.pool.clone(), redis).with_limits(limits));
            let client = common::user(&app, "fuzz@example.com").await;
            common::link_chat(&db.pool, &client, -1001234).await;
            let created: Value = client
                .send(Method::POST, "/api/v1/triggers", Some(testkit::fixtures::example_trigger()))
                .await
                .json()
                .await
                .unwrap();
            let trigger = created["id"].as_str().unwrap().to_owned();
            let token = client.token.clone();
            (db, app, token, trigger)
        });
        Arc::new(Self { runtime, app, token, trigger, _db: db })
    }

    /// Sends a request and checks the answer: never a 5xx, and every error in the error JSON.
    fn check(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(), TestCaseError> {
        let (status, text) = self.runtime.block_on(async {
            let mut request = self
                .app
                .client
                .request(method.clone(), format!("{}{path}", self.app.base))
                .bearer_auth(&self.token)
                .header("content-type", "application/json");
            if let Some(body) = body {
                request = request.body(body);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        });
        prop_assert!(status < 500, "{method} {path} answered {status}: {text}");
        if status >= 400 {
            let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            prop_assert!(
                error["error"]["code"].is_string(),
                "{method} {path} answered {status} without the error JSON: {text}"
            );
        }
        Ok(())
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

#[test]
fn no_input_makes_the_api_answer_500() {
    let h = Harness::new();
    let trigger_path = format!("/api/v1/triggers/{}", h.trigger);
    let test_path = format!("/api/v1/triggers/{}/test", h.trigger);

    runner(300)
        .run(&(vec(any::<usize>(), 0..6), any_json()), |(route, replacement)| {
            let body = mutate(testkit::fixtures::example_trigger(), &route, replacement);
            let bytes = serde_json::to_vec(&body).unwrap();
            h.check(Method::POST, "/api/v1/triggers", Some(bytes.clone()))?;
            h.check(Method::PUT, &trigger_path, Some(bytes))
        })
        .unwrap();

    runner(150)
        .run(&any_json(), |body| {
            let bytes = serde_json::to_vec(&body).unwrap();
            h.check(Method::POST, "/api/v1/triggers", Some(bytes.clone()))?;
            h.check(Method::PATCH, &trigger_path, Some(bytes.clone()))?;
            h.check(Method::POST, &test_path, Some(bytes))
        })
        .unwrap();

    let event = json!({"event": {"event_type": "NewFeedback", "agent_id": "42", "value": "91.5", "tag1": "uptime"}});
    runner(200)
        .run(&(vec(any::<usize>(), 0..4), any_json()), |(route, replacement)| {
            let body = mutate(event.clone(), &route, replacement);
            h.check(Method::POST, &test_path, Some(serde_json::to_vec(&body).unwrap()))
        })
        .unwrap();

    runner(150)
        .run(&vec(any::<u8>(), 0..200), |bytes| {
            h.check(Method::POST, "/api/v1/triggers", Some(bytes.clone()))?;
            h.check(Method::POST, "/api/v1/auth/register", Some(bytes))
        })
        .unwrap();

    runner(150)
        .run(&(prop::sample::select(KEYS), "[ -~]{0,30}"), |(name, value)| {
            let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair(name, &value).finish();
            h.check(Method::GET, &format!("/api/v1/events?{query}"), None)?;
            h.check(Method::GET, &format!("/api/v1/deliveries?{query}"), None)?;
            h.check(Method::GET, &format!("/api/v1/triggers?{query}"), None)
        })
        .unwrap();
}
