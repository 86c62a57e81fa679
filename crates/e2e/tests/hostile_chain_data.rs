//! Hostile text on chain, end to end: feedback whose tag holds a NUL and whose URI is 100 KB
//! is indexed, matched by a condition on the stored text, rendered into a webhook (the URI
//! cut, as everything rendered is bounded) and shown by the API whole; the chain's ordinary
//! events go on around it.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use action_workers::ssrf::AddressPolicy;
use alloy::primitives::{B256, U256};
use serde_json::{Value, json};
use testkit::chain::{Anvil, IdentityRegistry, Registries, ReputationRegistry};
use testkit::outside::receiver::Receiver;
use testkit::{TestDb, wait};

const DEADLINE: Duration = Duration::from_secs(60);

async fn feedback(registries: &Registries, tag1: &str, uri: String) {
    let call = ReputationRegistry::giveFeedbackCall {
        agentId: U256::ZERO,
        value: 1,
        valueDecimals: 0,
        tag1: tag1.into(),
        tag2: "\0".into(),
        endpoint: String::new(),
        feedbackURI: uri,
        feedbackHash: B256::ZERO,
    };
    registries.call(registries.reputation, call).await;
}

#[tokio::test]
async fn hostile_text_is_indexed_matched_rendered_and_shown() {
    let db = TestDb::new().await;
    let anvil = Anvil::start().await;
    let registries = Registries::deploy(&anvil).await;
    let webhook = Receiver::start().await;
    let workers = action_workers::Settings {
        address_policy: AddressPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] },
        keyring: testkit::keyring(),
        ..action_workers::Settings::default()
    };
    let system = common::System::start(&db, &anvil, &registries, workers).await;
    registries.call(registries.identity, IdentityRegistry::registerCall { agentURI: "ipfs://a\0".into() }).await;

    let trigger = json!({
        "name": "tags starting with a",
        "scope": {"registry": "reputation", "event_types": ["NewFeedback"]},
        "condition": {"field": "tag1", "op": "starts_with", "value": "a\u{FFFD}"},
        "actions": [{"type": "webhook", "url": webhook.url(),
                     "body_template": "{\"tag\": {{ event.tag1 }}, \"tag2\": {{ event.tag2 }}, \"uri\": {{ event.feedback_uri|length }}}"}]
    });
    let created = system.post("/triggers", &trigger).await;
    assert_eq!(created.status(), 201);

    feedback(&registries, "a\0", "ipfs://x".into()).await;
    feedback(&registries, "a\0b", "u".repeat(100_000)).await;
    feedback(&registries, "ordinary", "ipfs://y".into()).await;

    common::every_job_delivered(&db.pool, DEADLINE).await;
    let bodies = wait::until("two webhooks", DEADLINE, || async {
        let requests = webhook.requests();
        (requests.len() >= 2).then_some(requests)
    })
    .await;
    let mut bodies: Vec<Value> = bodies.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    bodies.sort_by_key(|b| b["uri"].as_u64());
    assert_eq!(
        bodies,
        [
            json!({"tag": "a\u{FFFD}", "tag2": "\u{FFFD}", "uri": 8}),
            // Templates see long text cut to 16 KiB characters and an ellipsis.
            json!({"tag": "a\u{FFFD}b", "tag2": "\u{FFFD}", "uri": 16 * 1024 + 1})
        ]
    );

    // The ordinary event after them is indexed too.
    let events = wait::until("the three feedbacks indexed", DEADLINE, || async {
        let events = system.get("/events?event_type=NewFeedback").await;
        (events["items"].as_array()?.len() == 3).then_some(events)
    })
    .await;
    let tags: Vec<&str> = events["items"].as_array().unwrap().iter().map(|e| e["tag1"].as_str().unwrap()).collect();
    assert_eq!(tags, ["ordinary", "a\u{FFFD}b", "a\u{FFFD}"], "newest first");
    let long_id = events["items"][1]["id"].as_i64().unwrap();
    let whole = system.get(&format!("/events/{long_id}")).await;
    assert_eq!(whole["feedback_uri"].as_str().unwrap().len(), 100_000, "the store keeps it whole");
    let registered = system.get("/events?event_type=Registered").await;
    assert_eq!(registered["items"][0]["agent_uri"], "ipfs://a\u{FFFD}");
}
