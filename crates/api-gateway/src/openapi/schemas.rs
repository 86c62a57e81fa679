//! The shapes of request and response bodies, as the OpenAPI document describes them. The
//! handlers build the same shapes; the API tests check the handlers' side.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::store::deliveries::AttemptRow;
use shared::store::outbox::JobRow;
use utoipa::ToSchema;
use uuid::Uuid;

/// Every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInner,
}

#[derive(ToSchema)]
pub struct ErrorInner {
    /// A stable, machine-readable code: `validation_failed`, `unauthorized`, `not_found`,
    /// `conflict`, `payload_too_large`, `rate_limited`, ...
    #[schema(example = "validation_failed")]
    pub code: String,
    pub message: String,
    /// Present when the body had faults: one per fault, located by JSON path.
    pub details: Option<Vec<crate::error::ErrorDetail>>,
}

/// A normalized ERC-8004 event (SPEC 1.2). Fields particular to an event type appear only
/// on events of that type.
#[derive(ToSchema)]
pub struct Event {
    pub id: i64,
    pub removed: bool,
    pub chain_id: u64,
    /// `identity`, `reputation` or `validation`.
    pub registry: String,
    /// `Registered`, `MetadataSet`, `URIUpdated`, `Transfer`, `NewFeedback`,
    /// `FeedbackRevoked`, `ResponseAppended`, `ValidationRequest`, `ValidationResponse`.
    pub event_type: String,
    pub contract_address: String,
    pub block_number: u64,
    pub block_hash: String,
    pub block_timestamp: DateTime<Utc>,
    pub tx_hash: String,
    pub log_index: u32,
    /// uint256, as a decimal string.
    #[schema(example = "42")]
    pub agent_id: String,
    pub owner: Option<String>,
    pub agent_uri: Option<String>,
    pub updated_by: Option<String>,
    pub metadata_key: Option<String>,
    pub metadata_value: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub client_address: Option<String>,
    pub feedback_index: Option<u64>,
    /// Exact decimal: `value_raw / 10^value_decimals`.
    #[schema(example = "99.77")]
    pub value: Option<String>,
    pub value_raw: Option<String>,
    pub value_decimals: Option<u8>,
    pub tag1: Option<String>,
    pub tag2: Option<String>,
    pub endpoint: Option<String>,
    pub feedback_uri: Option<String>,
    pub feedback_hash: Option<String>,
    pub responder: Option<String>,
    pub response_uri: Option<String>,
    pub response_hash: Option<String>,
    pub validator_address: Option<String>,
    pub request_uri: Option<String>,
    pub request_hash: Option<String>,
    pub response: Option<u8>,
    pub tag: Option<String>,
    /// In lists only: the text fields cut to 1,024 characters (ending with `…`); the event
    /// by id has them whole.
    pub truncated: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_cursor: Option<String>,
}

/// Which events reach a trigger. Every key is optional; absent or empty means any.
#[derive(ToSchema)]
pub struct Scope {
    pub chain_ids: Option<Vec<u64>>,
    pub registry: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub agent_ids: Option<Vec<String>>,
}

/// A trigger as written (SPEC 2).
#[derive(ToSchema)]
#[schema(example = json!({
    "name": "Uptime of agent 42 dropping",
    "scope": {"registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": ["42"]},
    "condition": {"all": [
        {"field": "tag1", "op": "eq", "value": "uptime"},
        {"ema": {"field": "value", "window": 10, "min_samples": 3, "as": "uptime_ema"}, "op": "lt", "value": "95"}
    ]},
    "cooldown_secs": 600,
    "actions": [{"type": "webhook", "url": "https://example.com/hooks/8004"}]
}))]
pub struct TriggerInput {
    /// 1 to 200 characters.
    pub name: String,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    pub scope: Option<Scope>,
    /// A condition tree: `{"all": [..]}`, `{"any": [..]}`, `{"not": node}`, a comparison
    /// `{"field", "op", "value"}`, or an aggregate comparison (`ema`, `count`, `avg`, `sum`,
    /// `min`, `max`).
    pub condition: Option<Value>,
    /// Default 0; at most 30 days.
    pub cooldown_secs: Option<u64>,
    /// 1 to 10 actions.
    pub actions: Vec<ActionInput>,
}

/// One action. Secrets are write-only and sealed at rest: `bot_token`, MCP `headers`, webhook
/// `secret_headers` and the webhook headers Authorization, Proxy-Authorization, Cookie and
/// X-Api-Key. Sent again (even empty) they replace the stored ones; left out they stay,
/// unless the URL moves to another origin (then 422 `credentials_stay`).
#[derive(ToSchema)]
#[schema(example = json!({"type": "telegram", "chat_id": "-1001234", "parse_mode": "HTML"}))]
pub struct ActionInput {
    /// `telegram`, `webhook` (or `rest`), `mcp`.
    #[schema(rename = "type")]
    pub kind: String,
    pub chat_id: Option<String>,
    pub template: Option<String>,
    /// `HTML` (default), `MarkdownV2` or `plain`.
    pub parse_mode: Option<String>,
    pub bot_token: Option<String>,
    pub url: Option<String>,
    /// `POST` (default), `GET`, `PUT`, `PATCH`, `DELETE`.
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    /// Webhooks: headers kept write-only whatever their name.
    pub secret_headers: Option<BTreeMap<String, String>>,
    pub body_template: Option<String>,
    /// Webhooks: the request's timeout (default 10,000); MCP: the handshake's and the
    /// call's, each (default 30,000). 100 to 60,000 ms.
    pub timeout_ms: Option<u64>,
    pub server_url: Option<String>,
    pub tool: Option<String>,
    pub arguments: Option<Value>,
}

#[derive(ToSchema, serde::Serialize)]
pub struct Breaker {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    pub consecutive_failures: i32,
    pub trips: i32,
    pub open_until: Option<DateTime<Utc>>,
}

#[derive(ToSchema, serde::Serialize)]
pub struct LastDelivery {
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub attempt: i32,
    pub at: DateTime<Utc>,
}

/// An action's public configuration as stored (no secrets): the fields of its kind.
#[derive(ToSchema, serde::Serialize)]
pub struct ActionConfig {
    pub chat_id: Option<String>,
    pub template: Option<String>,
    /// `HTML`, `MarkdownV2` or `plain`.
    pub parse_mode: Option<String>,
    /// Telegram actions: whether a bot token of their own is stored (never the token).
    pub own_bot: Option<bool>,
    pub url: Option<String>,
    pub method: Option<String>,
    /// Webhooks: headers that are not secret.
    pub headers: Option<BTreeMap<String, String>>,
    pub body_template: Option<String>,
    pub timeout_ms: Option<u64>,
    pub server_url: Option<String>,
    pub tool: Option<String>,
    pub arguments: Option<Value>,
}

/// An action as stored: its public configuration, its breaker and its last delivery.
#[derive(ToSchema, serde::Serialize)]
pub struct ActionView {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub breaker: Breaker,
    pub last_delivery: Option<LastDelivery>,
    /// Webhook actions: the signing secret, only in the answer that created the action.
    pub signing_secret: Option<String>,
    /// Webhook and MCP actions: the names of the stored secret headers (never their values).
    pub secret_header_names: Option<Vec<String>>,
    #[serde(flatten)]
    pub config: ActionConfig,
}

#[derive(ToSchema)]
pub struct Trigger {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub scope: Scope,
    pub condition: Option<Value>,
    pub cooldown_secs: i64,
    pub actions: Vec<ActionView>,
    /// Bumped by every change.
    pub version: i64,
    /// Events with an earlier block time never fire the trigger.
    pub fires_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(ToSchema)]
pub struct TriggerPage {
    pub items: Vec<Trigger>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct TriggerPatch {
    pub enabled: Option<bool>,
}

/// Either `event_id` (a stored event) or `event` (an event written out: `event_type` and
/// `agent_id` are required, other fields take neutral values; a feedback `value` may be a
/// decimal).
#[derive(ToSchema)]
#[schema(example = json!({"event": {"event_type": "NewFeedback", "agent_id": "42", "value": "91.5", "tag1": "uptime"}}))]
pub struct TriggerTestRequest {
    pub event_id: Option<i64>,
    pub event: Option<Value>,
}

/// A backtest: a trigger definition (as for `POST /triggers`) or a saved trigger's id, and
/// the period of block time `[from, to)` (RFC 3339; default: the 7 days before `to`, which
/// defaults to now). With `warm` (default true) the aggregates first take the history before
/// `from`, as a trigger saved at `from` would.
#[derive(ToSchema)]
#[schema(example = json!({"trigger_id": "0b7f4bd6-4a43-4e6d-9d41-3b8a1e5b8a11", "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "warm": true}))]
pub struct BacktestRequest {
    pub trigger: Option<Value>,
    pub trigger_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub warm: Option<bool>,
}

#[derive(ToSchema)]
pub struct RotatedSecret {
    pub action_id: Uuid,
    /// `whsec_...`: shown in this answer only.
    pub signing_secret: String,
}

#[derive(ToSchema)]
pub struct AttemptPage {
    pub items: Vec<AttemptRow>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct JobPage {
    pub items: Vec<JobRow>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct Replayed {
    pub job_id: Uuid,
    #[schema(example = "pending")]
    pub status: String,
}
