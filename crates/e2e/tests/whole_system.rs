//! A trigger made through the API fires on feedback given on anvil: the indexer stores it,
//! the processor decides, the workers deliver a signed webhook, a Telegram message and an
//! MCP tool call, each exactly once, and the API's delivery log shows them.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use action_workers::ssrf::AddressPolicy;
use alloy::primitives::{B256, U256};
use secrecy::SecretString;
use serde_json::{Value, json};
use testkit::chain::{Anvil, IdentityRegistry, Registries, ReputationRegistry};
use testkit::outside::bot_api::BotApi;
use testkit::outside::mcp_server::start_server;
use testkit::outside::receiver::Receiver;
use testkit::{TestDb, wait};

const BOT_TOKEN: &str = "123456:EndToEndTokenEndToEndToken";
const DEADLINE: Duration = Duration::from_secs(60);

async fn feedback(registries: &Registries, agent: u64, value: i128) {
    let call = ReputationRegistry::giveFeedbackCall {
        agentId: U256::from(agent),
        value,
        valueDecimals: 0,
        tag1: "uptime".into(),
        tag2: String::new(),
        endpoint: String::new(),
        feedbackURI: String::new(),
        feedbackHash: B256::ZERO,
    };
    registries.call(registries.reputation, call).await;
}

#[tokio::test]
async fn feedback_on_chain_fires_a_trigger_made_through_the_api_to_three_targets_once_each() {
    testkit::init_telemetry();
    let db = TestDb::new().await;
    let anvil = Anvil::start().await;
    let registries = Registries::deploy(&anvil).await;
    let (webhook, (bot, bot_url), (agent, agent_url)) =
        (Receiver::start().await, BotApi::start().await, start_server().await);

    // Every service, in-process, and a user signed up.
    let mut worker_settings = action_workers::Settings {
        address_policy: AddressPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] },
        keyring: testkit::keyring(),
        ..action_workers::Settings::default()
    };
    worker_settings.telegram.api_url = bot_url;
    worker_settings.telegram.bot_token = Some(SecretString::from(BOT_TOKEN.to_owned()));
    let system = common::System::start(&db, &anvil, &registries, worker_settings).await;
    let (client, api, token) = (&system.client, &system.api, &system.token);

    // The user links chat -100 to the shared bot: a code from the API, sent to the bot from
    // the chat, read from the bot's updates by the workers.
    let issued: Value = client
        .post(format!("{api}/telegram/link-codes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bot.push_message(-100, "ops", issued["command"].as_str().unwrap());
    wait::until("the chat to be linked", DEADLINE, || async {
        let chats: Value =
            client.get(format!("{api}/telegram/chats")).bearer_auth(token).send().await.ok()?.json().await.ok()?;
        (chats["items"][0]["chat_id"] == -100).then_some(())
    })
    .await;

    registries.call(registries.identity, IdentityRegistry::registerCall { agentURI: "ipfs://agent".into() }).await;
    let trigger = json!({
        "name": "Agent 0 uptime falling",
        "scope": {"chain_ids": [31337], "registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": ["0"]},
        "condition": {"all": [
            {"ema": {"field": "value", "window": 3, "min_samples": 2, "as": "ema"}, "op": "lt", "value": 80},
            {"count": {"window_secs": 3600, "as": "recent"}, "op": "gte", "value": 3}
        ]},
        "actions": [
            {"type": "webhook", "url": webhook.url()},
            {"type": "telegram", "chat_id": "-100", "template": "Agent {{ event.agent_id }}: EMA {{ aggregates.ema }}"},
            {"type": "mcp", "server_url": agent_url, "tool": "notify_feedback",
             "arguments": {"agent": "{{ event.agent_id }}", "ema": "{{ aggregates.ema }}"}}
        ]
    });
    let created = client.post(format!("{api}/triggers")).bearer_auth(token).json(&trigger).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let trigger_id = created["id"].as_str().unwrap().to_owned();

    // EMA (alpha 0.5): 90, 87.5, then 63.75 with three in the window: one firing. A low
    // value for another agent is out of scope.
    for value in [90, 85, 40] {
        feedback(&registries, 0, value).await;
    }
    feedback(&registries, 1, 10).await;

    let deliveries_url = format!("{api}/triggers/{trigger_id}/deliveries");
    let log: Value = wait::until("three successful deliveries in the API's log", DEADLINE, || async {
        let log: Value = client.get(&deliveries_url).bearer_auth(token).send().await.ok()?.json().await.ok()?;
        let successes = log["items"].as_array()?.iter().filter(|d| d["outcome"] == "success").count();
        (successes == 3).then_some(log)
    })
    .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "no failed attempt: {log}");
    let mut kinds: Vec<&str> = items.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["mcp", "telegram", "webhook"]);
    let job_of = |kind: &str| items.iter().find(|d| d["kind"] == kind).unwrap()["job_id"].as_str().unwrap().to_owned();

    // Every job is finished: nothing more can be sent.
    common::every_job_delivered(&db.pool, DEADLINE).await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox").fetch_one(&db.pool).await.unwrap();
    assert_eq!(jobs, 3, "one firing, three actions");

    let requests = webhook.requests();
    assert_eq!(requests.len(), 1, "one webhook");
    assert_eq!(requests[0].header("webhook-id"), Some(job_of("webhook").as_str()));
    assert!(requests[0].header("webhook-signature").unwrap().starts_with("v1,"));
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["event"]["value"], "40");
    assert_eq!(body["event"]["agent_id"], "0");
    assert_eq!(body["aggregates"], json!({"ema": "63.75", "recent": "3"}));

    let messages = bot.sent();
    assert_eq!(messages.len(), 2, "the link's confirmation, then one alert");
    assert_eq!(messages[0].body["chat_id"], -100);
    assert_eq!(messages[1].token, BOT_TOKEN);
    assert_eq!(messages[1].body["chat_id"], "-100");
    assert_eq!(messages[1].body["text"], "Agent 0: EMA 63.75");

    let calls = agent.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one tool call");
    assert_eq!(calls[0].tool, "notify_feedback");
    assert_eq!(calls[0].arguments, json!({"agent": "0", "ema": "63.75"}));
    assert!(calls[0].meta.to_string().contains(&job_of("mcp")), "the job id travels in _meta: {}", calls[0].meta);

    // The event that fired is visible through the API too.
    let events: Value = client
        .get(format!("{api}/events?agent_id=0&event_type=NewFeedback"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["items"].as_array().unwrap().len(), 3);
}
