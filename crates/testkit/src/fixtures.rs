//! Events for tests, built field by field.

use chrono::{DateTime, Utc};
use serde_json::json;
use shared::domain::{AgentId, ChainEvent, ChainId, EventData, FeedbackValue, LogPosition, NewEvent, Text};

pub const REPUTATION: &str = "0x8004b663056a597dffe9eccc1965a193b7388713";
pub const CLIENT: &str = "0x00000000000000000000000000000000000000c1";

/// A 32-byte hash made from a number, so tests can name blocks and transactions.
pub fn hash(n: u64) -> String {
    format!("0x{n:064x}")
}

/// A log position on chain 31337 in block `block`, with its timestamp `block * 12` seconds
/// after 2026-01-01.
pub fn position(block: u64, log_index: u32) -> LogPosition {
    LogPosition {
        chain_id: ChainId(31337),
        contract_address: REPUTATION.parse().expect("valid address"),
        block_number: block,
        block_hash: hash(block).parse().expect("valid hash"),
        block_timestamp: block_time(block),
        tx_hash: hash(1_000_000 + block).parse().expect("valid hash"),
        log_index,
    }
}

pub fn block_time(block: u64) -> DateTime<Utc> {
    let seconds = 1_767_225_600 + i64::try_from(block).expect("small block number") * 12;
    DateTime::from_timestamp(seconds, 0).expect("valid timestamp")
}

/// A `NewFeedback` of `value_raw / 10^decimals` for `agent`, tagged `tag1`.
pub fn feedback(block: u64, log_index: u32, agent: u64, value_raw: i128, decimals: u8, tag1: &str) -> NewEvent {
    let data = EventData::NewFeedback {
        client_address: CLIENT.parse().expect("valid address"),
        feedback_index: Some(u64::from(log_index) + 1),
        value: FeedbackValue::new(value_raw, decimals).expect("at most 18 decimals"),
        tag1: Some(tag1.into()),
        tag1_hash: None,
        tag2: Text::default(),
        endpoint: Text::default(),
        feedback_uri: Text::default(),
        feedback_hash: hash(7).parse().expect("valid hash"),
    };
    event(position(block, log_index), AgentId::from(agent), data)
}

pub fn event(log: LogPosition, agent_id: AgentId, data: EventData) -> NewEvent {
    let args = json!({ "agentId": agent_id.to_string() });
    NewEvent { event: ChainEvent { log, agent_id, data }, args }
}

/// A stored view of `new` with the given id, as the processor and API see events.
pub fn stored(id: i64, new: NewEvent) -> shared::domain::StoredEvent {
    shared::domain::StoredEvent { id: shared::domain::EventId(id), removed: false, event: new.event }
}

/// A `Registered` event for `agent`, owned by `owner`.
pub fn registered(block: u64, log_index: u32, agent: AgentId, owner: &str) -> NewEvent {
    let data = EventData::Registered { owner: owner.parse().expect("valid address"), agent_uri: "ipfs://agent".into() };
    event(position(block, log_index), agent, data)
}

/// The example trigger of the product contract: an EMA of agent 42's uptime feedback, with
/// one action of each kind.
pub fn example_trigger() -> serde_json::Value {
    json!({
        "name": "Uptime of agent 42 dropping",
        "description": "optional",
        "enabled": true,
        "scope": {"chain_ids": [11155111], "registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": ["42"]},
        "condition": {"all": [
            {"field": "tag1", "op": "eq", "value": "uptime"},
            {"ema": {"field": "value", "window": 10, "min_samples": 3, "as": "uptime_ema"}, "op": "lt", "value": "95"}
        ]},
        "cooldown_secs": 600,
        "actions": [
            {"type": "telegram", "chat_id": "-1001234", "template": "Agent {{ event.agent_id }}: uptime EMA {{ aggregates.uptime_ema }}"},
            {"type": "webhook", "url": "https://example.com/hooks/8004", "method": "POST", "headers": {"X-Env": "prod"}},
            {"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "notify_feedback", "arguments": {"agent": "{{ event.agent_id }}", "value": "{{ event.value }}"}}
        ]
    })
}

/// Links Telegram chat `chat` to `user` for the shared bot, as a `/start <code>` sent from
/// the chat would.
pub async fn link_telegram_chat(pool: &sqlx::PgPool, user: shared::domain::UserId, chat: i64) {
    use shared::store::telegram;
    let mut conn = pool.acquire().await.expect("a connection");
    let (code, _) = telegram::issue_code(&mut conn, user).await.expect("a link code");
    let chat = telegram::Chat { id: chat, username: None, title: "test chat".into() };
    let linked = telegram::redeem(&mut conn, &code, &chat).await.expect("redeem the code");
    assert_eq!(linked, telegram::Redeemed::Linked(user));
}

/// Stores `count` `NewFeedback` events spread over `agents` agents (100 per block, value
/// `i % 100`, tag `uptime`) from four writers, then analyzes the table: a history for
/// benchmarks. Prints how long it took.
pub async fn store_feedback_history(pool: &sqlx::PgPool, count: u64, agents: u64) {
    let started = std::time::Instant::now();
    let writers = 4;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.expect("connection");
                let mut batch = Vec::with_capacity(5_000);
                for i in (w..count).step_by(writers as usize) {
                    let (block, log_index) = (1 + i / 100, u32::try_from(i % 100).expect("small"));
                    batch.push(feedback(block, log_index, i % agents, i128::from(i % 100), 0, "uptime"));
                    if batch.len() == 5_000 {
                        shared::store::events::insert(&mut conn, &batch).await.expect("insert");
                        batch.clear();
                    }
                }
                shared::store::events::insert(&mut conn, &batch).await.expect("insert");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    sqlx::query("VACUUM ANALYZE events").execute(pool).await.expect("analyze");
    println!("stored {count} events in {:.1} s", started.elapsed().as_secs_f64());
}
