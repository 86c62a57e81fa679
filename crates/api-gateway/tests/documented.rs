//! What the API answers is what its OpenAPI document says: real requests to key routes,
//! each answer checked against the schema documented for its route and status (every field
//! documented, every required field present, every value of the documented type).

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, user};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::fixtures::{block_time, feedback};

/// Checks `value` against `schema` (resolving `$ref` in `document`), collecting each
/// mismatch with its path. Covers what the document uses: `$ref`, `allOf`, `oneOf`,
/// `type` (one or a list), `properties`, `required`, `items`, `additionalProperties`.
fn check(document: &Value, schema: &Value, value: &Value, path: &str, faults: &mut Vec<String>) {
    check_part(document, schema, value, path, false, faults);
}

/// [`check`], where `part` says the schema is one part of an `allOf`: fields the other
/// parts document are not its faults.
fn check_part(document: &Value, schema: &Value, value: &Value, path: &str, part: bool, faults: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return check_part(document, &document["components"]["schemas"][name], value, path, part, faults);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        // Each part sees the fields it documents; together they must document them all.
        let mut documented = std::collections::BTreeSet::new();
        for each in parts {
            documented.extend(properties(document, each));
            check_part(document, each, value, path, true, faults);
        }
        if let Some(object) = value.as_object() {
            for key in object.keys().filter(|k| !documented.contains(*k)) {
                faults.push(format!("{path}.{key}: answered but not documented"));
            }
        }
        return;
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let fits = choices.iter().any(|choice| {
            let mut inner = Vec::new();
            check(document, choice, value, path, &mut inner);
            inner.is_empty()
        });
        if !fits {
            faults.push(format!("{path}: {value} fits none of the documented choices"));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty() || types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
    if !fits {
        faults.push(format!("{path}: documented as {types:?}, answered {actual} ({value})"));
        return;
    }
    match value {
        Value::Object(object) => {
            let documented = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !object.contains_key(required) {
                    faults.push(format!("{path}.{required}: documented as required, not answered"));
                }
            }
            for (key, item) in object {
                match documented.and_then(|d| d.get(key)) {
                    Some(property) => check(document, property, item, &format!("{path}.{key}"), faults),
                    None => match &schema["additionalProperties"] {
                        Value::Object(_) => {
                            check(document, &schema["additionalProperties"], item, &format!("{path}.{key}"), faults)
                        }
                        Value::Bool(true) => {}
                        _ if documented.is_none() || part => {}
                        _ => faults.push(format!("{path}.{key}: answered but not documented")),
                    },
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(document, &schema["items"], item, &format!("{path}[{i}]"), faults);
            }
        }
        _ => {}
    }
}

/// The properties a schema documents (through `$ref` and `allOf`).
fn properties(document: &Value, schema: &Value) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return properties(document, &document["components"]["schemas"][name]);
    }
    let mut names: Vec<String> =
        schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(document, part));
    }
    names
}

/// The schema documented for `method path` answering `status`.
fn documented<'a>(document: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let schema =
        &document["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} documents no {status} body");
    schema
}

async fn answer(client: &Client<'_>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = client.send(method, path, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(text.trim_start()).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

fn assert_documented(document: &Value, method: &str, path: &str, status: u16, value: &Value) {
    let mut faults = Vec::new();
    check(document, documented(document, method, path, status), value, "", &mut faults);
    assert!(
        faults.is_empty(),
        "{} {path} {status} differs from its document:\n{}\n{value}",
        method.to_uppercase(),
        faults.join("\n")
    );
}

#[tokio::test]
async fn key_routes_answer_what_their_document_says() {
    let db = TestDb::new().await;
    let app = common::start(&db);
    let document: Value = serde_json::from_str(&api_gateway::openapi::document()).unwrap();
    let alice = user(&app, "alice@example.com").await;
    let mut conn = db.pool.acquire().await.unwrap();
    let history: Vec<_> = (1..=4).map(|b| feedback(b, 0, 7, 100 - 30 * i128::from(b as u8), 0, "uptime")).collect();
    shared::store::events::insert(&mut conn, &history).await.unwrap();

    let trigger = json!({
        "name": "uptime falling",
        "scope": {"event_types": ["NewFeedback"], "agent_ids": ["7"]},
        "condition": {"ema": {"field": "value", "window": 3, "as": "ema"}, "op": "lt", "value": "50"},
        "cooldown_secs": 60,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"},
                    {"type": "telegram", "chat_id": "-100", "bot_token": "123456:SecretTokenValueForTheTest"}]
    });
    let (status, created) = answer(&alice, Method::POST, "/api/v1/triggers", Some(trigger.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_documented(&document, "post", "/api/v1/triggers", 201, &created);
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, page) = answer(&alice, Method::GET, "/api/v1/triggers", None).await;
    assert_documented(&document, "get", "/api/v1/triggers", status, &page);
    let (status, one) = answer(&alice, Method::GET, &format!("/api/v1/triggers/{id}"), None).await;
    assert_documented(&document, "get", "/api/v1/triggers/{id}", status, &one);
    let (status, events) = answer(&alice, Method::GET, "/api/v1/events?agent_id=7", None).await;
    assert_documented(&document, "get", "/api/v1/events", status, &events);

    let event_id = events["items"][0]["id"].clone();
    let (status, tested) =
        answer(&alice, Method::POST, &format!("/api/v1/triggers/{id}/test"), Some(json!({"event_id": event_id}))).await;
    assert_documented(&document, "post", "/api/v1/triggers/{id}/test", status, &tested);

    let period = json!({"from": block_time(1), "to": block_time(5)});
    let mut body = period.clone();
    body["trigger_id"] = json!(id);
    let (status, backtest) = answer(&alice, Method::POST, "/api/v1/triggers/backtest", Some(body)).await;
    assert_eq!(status, 200, "{backtest}");
    assert!(backtest["fire_count"].as_u64().unwrap() >= 1, "the history fires the trigger: {backtest}");
    assert_documented(&document, "post", "/api/v1/triggers/backtest", 200, &backtest);

    let mut bad = trigger;
    bad["condition"]["op"] = json!("sideways");
    let (status, refused) =
        answer(&alice, Method::POST, "/api/v1/triggers/backtest", Some(json!({"trigger": bad}))).await;
    assert_documented(&document, "post", "/api/v1/triggers/backtest", status, &refused);
    let (status, missing) = answer(&alice, Method::GET, "/api/v1/triggers/not-a-trigger", None).await;
    assert_documented(&document, "get", "/api/v1/triggers/{id}", status, &missing);
}

#[test]
fn the_check_finds_an_undocumented_field_a_missing_one_and_a_wrong_type() {
    let document =
        json!({"components": {"schemas": {"Inner": {"type": "object", "properties": {"n": {"type": "integer"}}}}}});
    let schema = json!({"type": "object", "required": ["a", "gone"],
                        "properties": {"a": {"type": ["string", "null"]}, "inner": {"$ref": "#/components/schemas/Inner"}}});
    let mut faults = Vec::new();
    check(&document, &schema, &json!({"a": null, "inner": {"n": 1}}), "", &mut faults);
    assert_eq!(faults, vec![".gone: documented as required, not answered".to_owned()]);
    let mut faults = Vec::new();
    check(&document, &schema, &json!({"a": 1, "gone": 0, "extra": true, "inner": {"n": "1"}}), "", &mut faults);
    assert_eq!(faults.len(), 4, "a, extra, gone (required but not a documented property), inner.n: {faults:?}");
}
