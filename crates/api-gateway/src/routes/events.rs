use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::{AgentId, EventId, EventType, Registry};
use shared::store::events::{self, EventFilter, StoreError};

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorDetail};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Query {
    chain_id: Option<String>,
    registry: Option<String>,
    event_type: Option<String>,
    agent_id: Option<String>,
    from_block: Option<String>,
    to_block: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn store_error(err: StoreError) -> ApiError {
    ApiError::internal(&err)
}

/// Collects every bad query parameter, like the trigger parser does for bodies.
struct Checks(Vec<ErrorDetail>);

impl Checks {
    fn parse<T>(
        &mut self,
        name: &str,
        raw: Option<&str>,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = raw?;
        let parsed = parse(raw);
        if parsed.is_none() {
            self.0.push(ErrorDetail { path: name.to_owned(), message: format!("expected {expected}") });
        }
        parsed
    }
}

/// `GET /api/v1/events`: stored events, newest first (chain data is public to every user).
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events", operation_id = "listEvents",
    security(("bearer" = [])),
    params(
        ("chain_id" = Option<u64>, Query, description = "only this chain"),
        ("registry" = Option<String>, Query, description = "identity, reputation or validation"),
        ("event_type" = Option<String>, Query, description = "for example NewFeedback"),
        ("agent_id" = Option<String>, Query, description = "a decimal agent id"),
        ("from_block" = Option<u64>, Query, description = "at or after this block"),
        ("to_block" = Option<u64>, Query, description = "at or before this block"),
        ("since" = Option<String>, Query, description = "block time at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "block time before (RFC 3339)"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "events, newest first", body = crate::openapi::schemas::EventPage),
        (status = 400, description = "the request is not valid", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    _user: AuthUser,
    query: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let mut checks = Checks(Vec::new());
    let time = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&chrono::Utc));
    let filter = EventFilter {
        chain_id: checks.parse("chain_id", q.chain_id.as_deref(), "a positive chain id", |s| {
            s.parse().ok().filter(|n: &i64| *n > 0)
        }),
        registry: checks.parse("registry", q.registry.as_deref(), "identity, reputation or validation", |s| {
            s.parse::<Registry>().ok().map(|r| r.as_str().to_owned())
        }),
        event_type: checks.parse("event_type", q.event_type.as_deref(), "an event type such as NewFeedback", |s| {
            s.parse::<EventType>().ok().map(|t| t.as_str().to_owned())
        }),
        agent_id: checks.parse("agent_id", q.agent_id.as_deref(), "a decimal agent id", |s| {
            s.parse::<AgentId>().ok().map(|a| a.to_string())
        }),
        from_block: checks.parse("from_block", q.from_block.as_deref(), "a block number", |s| {
            s.parse().ok().filter(|n: &i64| *n >= 0)
        }),
        to_block: checks
            .parse("to_block", q.to_block.as_deref(), "a block number", |s| s.parse().ok().filter(|n: &i64| *n >= 0)),
        since: checks.parse("since", q.since.as_deref(), "an RFC 3339 time", time),
        until: checks.parse("until", q.until.as_deref(), "an RFC 3339 time", time),
    };
    let limit = checks
        .parse("limit", q.limit.as_deref(), "a number from 1 to 100", |s| {
            s.parse().ok().filter(|n: &i64| (1..=100).contains(n))
        })
        .unwrap_or(50);
    let before = checks.parse("cursor", q.cursor.as_deref(), "a cursor from this API", |s| s.parse().ok());
    if !checks.0.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "the query is not valid")
            .with_details(checks.0));
    }
    let mut items = events::list(&state.db, &filter, before, limit + 1).await.map_err(store_error)?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(50));
    let next_cursor = if more { items.last().map(|e| e.id.0.to_string()) } else { None };
    let items: Vec<Value> = items.iter().map(listed).collect();
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next_cursor})))
}

/// Longest text of a field in a list of events, in characters.
const MAX_LISTED_CHARS: usize = 1_024;

/// The fields a chain fills with text or bytes of any length.
const LONG_FIELDS: [&str; 10] = [
    "agent_uri",
    "metadata_key",
    "metadata_value",
    "tag1",
    "tag2",
    "endpoint",
    "feedback_uri",
    "response_uri",
    "request_uri",
    "tag",
];

/// An event as a list shows it: anyone can put a megabyte in a URI, so a page of events stays
/// small by cutting long fields, named in `truncated`; `GET /events/{id}` has them whole.
fn listed(event: &shared::domain::StoredEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    let Some(fields) = value.as_object_mut() else { return value };
    let mut truncated = Vec::new();
    for name in LONG_FIELDS {
        if let Some(Value::String(text)) = fields.get_mut(name)
            && let Some((cut, _)) = text.char_indices().nth(MAX_LISTED_CHARS)
        {
            text.truncate(cut);
            text.push('…');
            truncated.push(name);
        }
    }
    if !truncated.is_empty() {
        fields.insert("truncated".to_owned(), json!(truncated));
    }
    value
}

/// `GET /api/v1/events/{id}`
#[utoipa::path(
    get, path = "/api/v1/events/{id}", tag = "events", operation_id = "getEvent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the event's id")),
    responses(
        (status = 200, description = "the event", body = crate::openapi::schemas::Event),
        (status = 401, description = "no valid token or API key", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "not found (or another user's)", body = crate::openapi::schemas::ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub async fn get(state: web::Data<AppState>, _user: AuthUser, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::not_found("no such event");
    let id: i64 = id.parse().map_err(|_| missing())?;
    let event = events::get(&state.db, EventId(id)).await.map_err(store_error)?.ok_or_else(missing)?;
    Ok(HttpResponse::Ok().json(event))
}
