//! `POST /api/v1/triggers/{id}/test`: what a trigger would make of one event (a stored one,
//! or one written in the request), from its current state, and what its actions would send.
//! Nothing is written and nothing is sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use engine::LoadedTrigger;
use engine::preview;
use engine::state::{CooldownCache, StateCache};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use shared::domain::{EventId, StoredEvent, TriggerId, UserId};
use shared::job::Job;
use shared::render;
use shared::store::{aggregate_state, cooldowns, events, triggers};
use shared::trigger::Action;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    event_id: Option<Value>,
    event: Option<Value>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message)
}

/// `POST /api/v1/triggers/{id}/test` with `{"event_id": N}` or `{"event": {...}}`.
#[utoipa::path(
    post, path = "/api/v1/triggers/{id}/test", tag = "triggers", operation_id = "testTrigger",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the trigger's id")),
    request_body = crate::openapi::schemas::TriggerTestRequest,
    responses(
        (status = 200, description = "what the trigger would do; nothing is written or sent", body = Tested),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "trigger_unreadable: the stored trigger no longer reads (a row edited by hand)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn test(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<TestRequest>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such trigger");
    let id: TriggerId = id.parse().map_err(|_| missing())?;
    let trigger = load(&state, user.0, id).await?.ok_or_else(missing)?;
    let body = body.into_inner();
    let event = match (body.event_id, body.event) {
        (Some(id), None) => stored_event(&state, &id).await?,
        (None, Some(event)) => given_event(event, &trigger)?,
        _ => return Err(invalid("give either event_id (a stored event) or event (an event written out)")),
    };
    let (state_keys, cooldown_keys) = preview::keys(&trigger, &event);
    let (mut states, mut cooldown_cache) = (StateCache::default(), CooldownCache::default());
    let missing = states.missing(state_keys);
    let rows = aggregate_state::fetch(&state.db, &missing).await?;
    states.fill(missing, rows);
    let missing = cooldown_cache.missing(cooldown_keys);
    let rows = cooldowns::fetch(&state.db, &missing).await?;
    cooldown_cache.fill(missing, rows);
    let preview =
        preview::preview(&trigger, &event, &mut states, &mut cooldown_cache, engine::DEFAULT_MAX_WINDOW_ENTRIES);
    let jobs: Vec<Job> = trigger
        .actions
        .iter()
        .map(|action| engine::evaluate::job(&trigger, action, &event, preview.aggregates.clone()))
        .collect();
    let actions: Vec<Value> = render::off_thread(move || jobs.iter().map(rendered).collect()).await;
    Ok(HttpResponse::Ok().json(Tested {
        fires: preview.fires(),
        outcome: preview.outcome,
        enabled: trigger.enabled,
        aggregates: preview.aggregates,
        event,
        actions,
    }))
}

// The answer and its schema in the OpenAPI document are this one type.
/// What the trigger would do with the event.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = TriggerTestResult)]
pub struct Tested {
    /// Whether it would fire (if enabled).
    fires: bool,
    /// `fires`, `no_match`, `out_of_scope`, `removed`, `before_history` or `cooling_down`.
    #[schema(value_type = String)]
    outcome: preview::Outcome,
    enabled: bool,
    /// Each aggregate by its name, as the condition would see it; null while it has no value.
    #[schema(value_type = std::collections::BTreeMap<String, Option<String>>)]
    aggregates: engine::Aggregates,
    #[schema(value_type = crate::openapi::schemas::Event)]
    event: StoredEvent,
    /// Per action: `id`, `type` and what it would send (`text`, `body`, or `arguments`), or
    /// `error` when its template cannot be rendered.
    actions: Vec<Value>,
}

/// One of `user`'s triggers as the engine evaluates it, enabled or not.
pub(crate) async fn load(state: &AppState, user: UserId, id: TriggerId) -> Result<Option<LoadedTrigger>, ApiError> {
    let row = triggers::rule(&state.db, user, id).await?;
    Ok(row.map(LoadedTrigger::try_from).transpose()?)
}

async fn stored_event(state: &AppState, id: &Value) -> Result<StoredEvent, ApiError> {
    let id = match id {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
    .ok_or_else(|| invalid("event_id must be the id of a stored event"))?;
    events::get(&state.db, EventId(id)).await?.ok_or_else(|| ApiError::not_found(format!("no event with id {id}")))
}

/// An event written in the request: the normalized event of SPEC 1.2, where only
/// `event_type` and `agent_id` are required. Missing fields take neutral values (zero
/// addresses and hashes, empty strings, block time now, the first chain of the scope), and a
/// feedback `value` may be given as a decimal instead of `value_raw` + `value_decimals`.
fn given_event(event: Value, trigger: &LoadedTrigger) -> Result<StoredEvent, ApiError> {
    let Value::Object(given) = event else {
        return Err(invalid("event must be an object with at least event_type and agent_id"));
    };
    const ADDRESS: &str = "0x0000000000000000000000000000000000000000";
    const HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";
    let chain_id = trigger.rule.scope.chain_ids.first().map_or(1, |c| c.0);
    let mut event: Map<String, Value> = json!({
        "id": 0, "removed": false, "chain_id": chain_id, "contract_address": ADDRESS,
        "block_number": 0, "block_hash": HASH, "block_timestamp": Utc::now(), "tx_hash": HASH, "log_index": 0,
        "owner": ADDRESS, "agent_uri": "", "updated_by": ADDRESS, "metadata_key": "", "metadata_value": "0x",
        "from": ADDRESS, "to": ADDRESS, "client_address": ADDRESS, "feedback_index": 1, "tag1": "", "tag2": "",
        "endpoint": "", "feedback_uri": "", "feedback_hash": HASH, "responder": ADDRESS, "response_uri": "",
        "response_hash": HASH, "validator_address": ADDRESS, "request_uri": "", "request_hash": HASH,
        "response": 0, "tag": "", "value_raw": "0", "value_decimals": 0,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if !given.contains_key("value_raw")
        && let Some(value) = given.get("value")
    {
        let (raw, decimals) = split_decimal(value).ok_or_else(|| {
            invalid("event.value must be a decimal number with at most 18 decimals, such as \"-3.2\"")
        })?;
        event.insert("value_raw".into(), json!(raw));
        event.insert("value_decimals".into(), json!(decimals));
    }
    for (key, value) in given {
        if key != "value" {
            event.insert(key, value);
        }
    }
    serde_json::from_value(Value::Object(event)).map_err(|e| invalid(format!("event is not a valid event: {e}")))
}

/// `"-3.2"` → (`"-32"`, 1).
fn split_decimal(value: &Value) -> Option<(String, u8)> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (sign, digits) = text.strip_prefix('-').map_or(("", text.as_str()), |rest| ("-", rest));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 18;
    if !valid {
        return None;
    }
    let raw = format!("{sign}{whole}{fraction}");
    raw.parse::<i128>().ok()?;
    Some((raw, u8::try_from(fraction.len()).ok()?))
}

/// What one action would send for this event.
pub(crate) fn rendered(job: &Job) -> Value {
    let action = &job.action;
    let head = json!({"id": action.id, "type": action.kind().as_str()});
    let body = match &action.action {
        Action::Telegram(telegram) => render::telegram_message(job, telegram)
            .map(|text| json!({"chat_id": telegram.chat_id, "parse_mode": telegram.parse_mode, "text": text})),
        Action::Webhook(webhook) => render::webhook_body(job, webhook.body_template.as_deref())
            .map(|body| json!({"method": webhook.method, "url": webhook.url, "webhook_id": job.job_id, "body": body})),
        Action::Mcp(mcp) => render::mcp_arguments(job, &mcp.arguments)
            .map(|arguments| json!({"server_url": mcp.server_url, "tool": mcp.tool, "arguments": arguments})),
    };
    merge(head, body.unwrap_or_else(|err| json!({"error": err.to_string()})))
}

fn merge(mut head: Value, tail: Value) -> Value {
    if let (Some(head), Value::Object(tail)) = (head.as_object_mut(), tail) {
        head.extend(tail);
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_split_into_raw_and_scale() {
        assert_eq!(split_decimal(&json!("-3.2")), Some(("-32".into(), 1)));
        assert_eq!(split_decimal(&json!("99.77")), Some(("9977".into(), 2)));
        assert_eq!(split_decimal(&json!(42)), Some(("42".into(), 0)));
        assert_eq!(split_decimal(&json!("1e5")), None);
        assert_eq!(split_decimal(&json!(".5")), None);
        assert_eq!(split_decimal(&json!("1.0000000000000000001")), None);
        assert_eq!(split_decimal(&json!(true)), None);
    }
}
