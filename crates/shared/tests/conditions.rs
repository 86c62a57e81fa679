//! Conditions: parsing (with JSON paths for every fault) and exact evaluation.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use shared::domain::{AgentId, Decimal, EventData, StoredEvent};
use shared::trigger::{AggregateKind, Per, Rule, TriggerDefinition};
use testkit::fixtures::{CLIENT, feedback, registered, stored};

const UINT256_MAX: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639935";

fn rule(condition: Value) -> Rule {
    Rule::parse(None, Some(&condition)).unwrap_or_else(|e| panic!("{condition} does not parse: {e}"))
}

fn holds(condition: Value, event: &StoredEvent) -> bool {
    rule(condition).condition_holds(event, &[])
}

fn uptime_9977() -> StoredEvent {
    stored(1, feedback(10, 0, 42, 9977, 2, "uptime"))
}

fn negative() -> StoredEvent {
    stored(2, feedback(10, 1, 42, -32, 1, "latency"))
}

fn huge_agent() -> StoredEvent {
    stored(3, registered(11, 0, UINT256_MAX.parse().expect("uint256 max"), CLIENT))
}

fn unknown_tag() -> StoredEvent {
    let mut event = feedback(12, 0, 7, 80, 0, "x");
    if let EventData::NewFeedback { tag1, .. } = &mut event.event.data {
        *tag1 = None;
    }
    stored(4, event)
}

#[test]
fn every_operator_compares_exactly() {
    let f = uptime_9977();
    let n = negative();
    let r = huge_agent();
    let u = unknown_tag();
    let cases: Vec<(Value, &StoredEvent, bool)> = vec![
        // eq / ne over decimals written in different ways
        (json!({"field": "value", "op": "eq", "value": "99.770"}), &f, true),
        (json!({"field": "value", "op": "eq", "value": 99.77}), &f, true),
        (json!({"field": "value", "op": "ne", "value": "99.77"}), &f, false),
        (json!({"field": "value", "op": "ne", "value": "99.7700001"}), &f, true),
        (json!({"field": "value_raw", "op": "eq", "value": 9977}), &f, true),
        (json!({"field": "value_decimals", "op": "eq", "value": "2"}), &f, true),
        // ordering
        (json!({"field": "value", "op": "lt", "value": 100}), &f, true),
        (json!({"field": "value", "op": "lt", "value": "99.77"}), &f, false),
        (json!({"field": "value", "op": "lte", "value": "99.77"}), &f, true),
        (json!({"field": "value", "op": "gt", "value": "99.769999999999999999"}), &f, true),
        (json!({"field": "value", "op": "gte", "value": "99.78"}), &f, false),
        // negative values
        (json!({"field": "value", "op": "lt", "value": 0}), &n, true),
        (json!({"field": "value", "op": "eq", "value": "-3.20"}), &n, true),
        (json!({"field": "value", "op": "gt", "value": "-3.21"}), &n, true),
        (json!({"field": "value", "op": "gte", "value": "-3.19"}), &n, false),
        // lists
        (json!({"field": "value", "op": "in", "value": [1, "99.77"]}), &f, true),
        (json!({"field": "value", "op": "in", "value": ["99.7"]}), &f, false),
        (json!({"field": "value", "op": "not_in", "value": [1, 2]}), &f, true),
        (json!({"field": "tag1", "op": "in", "value": ["uptime", "latency"]}), &n, true),
        (json!({"field": "tag1", "op": "not_in", "value": ["uptime"]}), &f, false),
        // text
        (json!({"field": "tag1", "op": "eq", "value": "uptime"}), &f, true),
        (json!({"field": "tag1", "op": "eq", "value": "Uptime"}), &f, false),
        (json!({"field": "tag1", "op": "contains", "value": "time"}), &f, true),
        (json!({"field": "tag1", "op": "starts_with", "value": "up"}), &f, true),
        (json!({"field": "tag1", "op": "ends_with", "value": "up"}), &f, false),
        (json!({"field": "event_type", "op": "eq", "value": "NewFeedback"}), &f, true),
        (json!({"field": "registry", "op": "eq", "value": "identity"}), &r, true),
        // hex: case-insensitive
        (json!({"field": "client_address", "op": "eq", "value": CLIENT.to_uppercase().replace("0X", "0x")}), &f, true),
        (
            json!({"field": "client_address", "op": "in", "value": ["0x00000000000000000000000000000000000000C1"]}),
            &f,
            true,
        ),
        (json!({"field": "client_address", "op": "ends_with", "value": "C1"}), &f, true),
        (json!({"field": "owner", "op": "ne", "value": CLIENT}), &r, false),
        // uint256 agent ids
        (json!({"field": "agent_id", "op": "eq", "value": UINT256_MAX}), &r, true),
        (
            json!({"field": "agent_id", "op": "gt", "value": "115792089237316195423570985008687907853269984665640564039457584007913129639934"}),
            &r,
            true,
        ),
        (json!({"field": "agent_id", "op": "lt", "value": UINT256_MAX}), &f, true),
        (json!({"field": "agent_id", "op": "eq", "value": 42}), &f, true),
        // fields an event does not carry: every comparison false, exists tells
        (json!({"field": "value", "op": "lt", "value": 100}), &r, false),
        (json!({"field": "value", "op": "ne", "value": 5}), &r, false),
        (json!({"field": "tag1", "op": "not_in", "value": ["a"]}), &r, false),
        (json!({"field": "value", "op": "exists", "value": false}), &r, true),
        (json!({"field": "value", "op": "exists", "value": true}), &r, false),
        (json!({"field": "value", "op": "exists", "value": true}), &f, true),
        // a tag known only by its hash is absent
        (json!({"field": "tag1", "op": "exists", "value": true}), &u, false),
        (json!({"field": "tag1", "op": "ne", "value": "x"}), &u, false),
        // common fields
        (json!({"field": "removed", "op": "eq", "value": false}), &f, true),
        (json!({"field": "block_timestamp", "op": "gte", "value": "2026-01-01T00:02:00Z"}), &f, true),
        (json!({"field": "block_timestamp", "op": "lt", "value": 1767225720}), &f, false),
        (json!({"field": "chain_id", "op": "eq", "value": 31337}), &f, true),
        (json!({"field": "block_number", "op": "in", "value": [9, 10]}), &f, true),
        (json!({"field": "id", "op": "eq", "value": 1}), &f, true),
        // nesting
        (
            json!({"all": [{"field": "tag1", "op": "eq", "value": "uptime"}, {"field": "value", "op": "gt", "value": 99}]}),
            &f,
            true,
        ),
        (
            json!({"all": [{"field": "tag1", "op": "eq", "value": "uptime"}, {"field": "value", "op": "gt", "value": 100}]}),
            &f,
            false,
        ),
        (
            json!({"any": [{"field": "tag1", "op": "eq", "value": "x"}, {"field": "value", "op": "gt", "value": 99}]}),
            &f,
            true,
        ),
        (
            json!({"not": {"any": [{"field": "tag1", "op": "eq", "value": "x"}, {"field": "value", "op": "gt", "value": 1000}]}}),
            &f,
            true,
        ),
        (json!({"not": {"all": [{"not": {"field": "tag1", "op": "eq", "value": "uptime"}}]}}), &f, true),
    ];
    let mut failures = Vec::new();
    for (condition, event, expected) in &cases {
        if holds(condition.clone(), event) != *expected {
            failures.push(format!("{condition} on event {} should be {expected}", event.id));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn no_condition_matches_every_event_in_scope() {
    let rule = Rule::parse(Some(&json!({"registry": "reputation"})), None).unwrap();
    assert!(rule.condition_holds(&uptime_9977(), &[]));
    assert!(rule.scope.matches(&uptime_9977()));
    assert!(!rule.scope.matches(&huge_agent()));
}

#[test]
fn scope_matches_on_every_key() {
    let rule = Rule::parse(
        Some(&json!({"chain_ids": [31337], "registry": "reputation", "event_types": ["NewFeedback"], "agent_ids": ["42"]})),
        None,
    )
    .unwrap();
    assert!(rule.scope.matches(&uptime_9977()));
    assert!(!rule.scope.matches(&unknown_tag()), "agent 7 is out of scope");
    let other_chain = Rule::parse(Some(&json!({"chain_ids": [1]})), None).unwrap();
    assert!(!other_chain.scope.matches(&uptime_9977()));
}

#[test]
fn aggregate_comparisons_are_false_without_a_value() {
    let rule = rule(json!({"ema": {"field": "value", "window": 10}, "op": "lt", "value": 95}));
    let event = uptime_9977();
    assert!(!rule.condition_holds(&event, &[None]));
    assert!(rule.condition_holds(&event, &[Some("94.5".parse().unwrap())]));
    assert!(!rule.condition_holds(&event, &[Some("95".parse().unwrap())]));
}

#[test]
fn aggregates_are_parsed_with_their_options_and_defaults() {
    let rule = rule(json!({"all": [
        {"ema": {"field": "value", "window": 9, "min_samples": 3, "as": "uptime_ema"}, "op": "lt", "value": "95"},
        {"count": {"window_secs": 3600, "per": "trigger", "where": {"field": "tag1", "op": "eq", "value": "uptime"}}, "op": "gte", "value": 3},
        {"max": {"field": "value", "window_secs": 60, "per": "agent_client"}, "op": "gt", "value": 0}
    ]}));
    assert_eq!(rule.aggregates.len(), 3);
    let ema = &rule.aggregates[0];
    assert_eq!(ema.display_name(), "uptime_ema");
    assert_eq!(ema.per, Per::Agent);
    assert_eq!(ema.min_samples(), 3);
    match &ema.kind {
        AggregateKind::Ema { alpha, window, .. } => {
            assert_eq!(*window, 9);
            assert_eq!(*alpha, "0.2".parse::<Decimal>().unwrap(), "alpha defaults to 2/(N+1)");
        }
        other => panic!("expected ema, got {other:?}"),
    }
    let count = &rule.aggregates[1];
    assert_eq!(count.display_name(), "count_1");
    assert_eq!(count.per, Per::Trigger);
    assert!(count.feeds(&uptime_9977()));
    assert!(!count.feeds(&negative()));
    assert_eq!(rule.aggregates[2].per, Per::AgentClient);
    let ids: std::collections::HashSet<_> = rule.aggregates.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids.len(), 3, "each aggregate has its own state id");
}

#[test]
fn an_aggregate_id_changes_with_its_spec_or_scope_only() {
    let spec = json!({"ema": {"field": "value", "window": 10}, "op": "lt", "value": 95});
    let a = Rule::parse(None, Some(&spec)).unwrap();
    let same =
        Rule::parse(None, Some(&json!({"ema": {"field": "value", "window": 10}, "op": "gt", "value": 1}))).unwrap();
    let other_window =
        Rule::parse(None, Some(&json!({"ema": {"field": "value", "window": 11}, "op": "lt", "value": 95}))).unwrap();
    let other_scope = Rule::parse(Some(&json!({"agent_ids": ["1"]})), Some(&spec)).unwrap();
    assert_eq!(a.aggregates[0].id, same.aggregates[0].id, "the threshold is not part of the state");
    assert_ne!(a.aggregates[0].id, other_window.aggregates[0].id);
    assert_ne!(a.aggregates[0].id, other_scope.aggregates[0].id);
}

fn trigger(overrides: Value) -> Value {
    let mut base = json!({
        "name": "t",
        "scope": {"registry": "reputation", "event_types": ["NewFeedback"]},
        "condition": {"field": "value", "op": "lt", "value": 50},
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    });
    let (Value::Object(base_map), Value::Object(over)) = (&mut base, overrides) else { unreachable!() };
    for (k, v) in over {
        base_map.insert(k, v);
    }
    base
}

/// Parses and returns the (path, message) of every fault.
fn faults(value: Value) -> Vec<(String, String)> {
    match TriggerDefinition::parse(&value) {
        Ok(_) => panic!("{value} was accepted"),
        Err(errors) => errors.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn assert_fault(value: Value, path: &str, message_part: &str) {
    let found = faults(value.clone());
    assert!(
        found.iter().any(|(p, m)| p == path && m.contains(message_part)),
        "expected {path}: ...{message_part}... for {value}, got {found:?}"
    );
}

#[test]
fn the_example_trigger_of_the_contract_parses() {
    let value = testkit::fixtures::example_trigger();
    let definition = TriggerDefinition::parse(&value).unwrap();
    assert_eq!(definition.name, "Uptime of agent 42 dropping");
    assert_eq!(definition.cooldown_secs, 600);
    assert_eq!(definition.rule.scope.agent_ids, vec![AgentId::from(42)]);
    assert_eq!(definition.actions.len(), 3);
    assert_eq!(definition.actions[1].public_config()["method"], "POST");
    assert_eq!(definition.actions[1].public_config()["timeout_ms"], 10000);
    assert_eq!(definition.actions[0].public_config()["parse_mode"], "HTML");
}

#[test]
fn malformed_triggers_are_rejected_with_the_path_of_each_fault() {
    let hook = |extra: Value| {
        let mut action = json!({"type": "webhook", "url": "https://example.com/hook"});
        for (k, v) in extra.as_object().unwrap() {
            action[k] = v.clone();
        }
        trigger(json!({"actions": [action]}))
    };
    assert_fault(
        trigger(
            json!({"condition": {"all": [{"field": "tag1", "op": "eq", "value": "x"}, {"field": "value", "op": "lessthan", "value": 1}]}}),
        ),
        "condition.all[1].op",
        "unknown operator \"lessthan\"",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "client_address", "op": "lt", "value": "0x01"}})),
        "condition.op",
        "lt cannot be applied to client_address",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "value", "op": "in", "value": 5}})),
        "condition.value",
        "in takes a list",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "valu", "op": "eq", "value": 5}})),
        "condition.field",
        "unknown field \"valu\"",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "owner", "op": "eq", "value": CLIENT}})),
        "condition.field",
        "owner is not carried by any event type in scope",
    );
    assert_fault(
        trigger(json!({"scope": {"registry": "identity", "event_types": ["NewFeedback"]}})),
        "scope.event_types[0]",
        "belongs to the reputation registry",
    );
    assert_fault(trigger(json!({"scope": {"registry": "reputations"}})), "scope.registry", "unknown registry");
    assert_fault(trigger(json!({"scope": {"agent_ids": ["-1"]}})), "scope.agent_ids[0]", "expected an agent id");
    assert_fault(
        trigger(json!({"condition": {"field": "value", "op": "lt", "value": "ninety"}})),
        "condition.value",
        "expected a number",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "value", "op": "exists", "value": "yes"}})),
        "condition.value",
        "exists takes true or false",
    );
    assert_fault(
        trigger(json!({"condition": {"field": "client_address", "op": "eq", "value": "alice"}})),
        "condition.value",
        "expected 0x-prefixed hex",
    );
    assert_fault(trigger(json!({"condition": {"any": []}})), "condition.any", "at least one condition");
    assert_fault(
        trigger(json!({"condition": {"ema": {"field": "tag1", "window": 3}, "op": "lt", "value": 1}})),
        "condition.ema.field",
        "needs a numeric field",
    );
    assert_fault(
        trigger(json!({"condition": {"ema": {"field": "value", "window": 0}, "op": "lt", "value": 1}})),
        "condition.ema.window",
        "at least 1",
    );
    assert_fault(
        trigger(json!({"condition": {"count": {"window_secs": 60}, "op": "contains", "value": 1}})),
        "condition.op",
        "cannot compare an aggregate",
    );
    assert_fault(
        trigger(
            json!({"condition": {"count": {"window_secs": 60, "where": {"count": {"window_secs": 5}, "op": "gt", "value": 1}}, "op": "gt", "value": 1}}),
        ),
        "condition.count.where.count",
        "aggregates cannot be used inside `where`",
    );
    assert_fault(
        trigger(json!({"condition": {"all": [
            {"count": {"window_secs": 60, "as": "n"}, "op": "gt", "value": 1},
            {"sum": {"field": "value", "window_secs": 60, "as": "n"}, "op": "gt", "value": 1}]}})),
        "condition.all[1].sum.as",
        "already named \"n\"",
    );
    assert_fault(trigger(json!({"condition": {"bogus": 1}})), "condition", "expected one of");
    assert_fault(trigger(json!({"cooldown_secs": -5})), "cooldown_secs", "whole number");
    assert_fault(trigger(json!({"name": "x".repeat(201)})), "name", "1 to 200 characters");
    assert_fault(trigger(json!({"name": 5})), "name", "expected a string");
    assert_fault(trigger(json!({"colour": "red"})), "colour", "unknown field");
    assert_fault(trigger(json!({"actions": []})), "actions", "1 to 10 actions");
    assert_fault(hook(json!({"url": "ftp://example.com/x"})), "actions[0].url", "scheme \"ftp\" is not allowed");
    assert_fault(hook(json!({"url": "not a url"})), "actions[0].url", "not a valid URL");
    assert_fault(hook(json!({"url": "https://user:pw@example.com/"})), "actions[0].url", "credentials in the URL");
    assert_fault(hook(json!({"method": "TRACE"})), "actions[0].method", "unsupported method");
    assert_fault(
        hook(json!({"body_template": "{{ event.value "})),
        "actions[0].body_template",
        "template does not parse",
    );
    assert_fault(
        hook(json!({"headers": {"webhook-signature": "x"}})),
        "actions[0].headers.webhook-signature",
        "set by the server",
    );
    assert_fault(hook(json!({"timeout_ms": 5})), "actions[0].timeout_ms", "at least 100");
    assert_fault(trigger(json!({"actions": [{"type": "sms"}]})), "actions[0].type", "unknown action type \"sms\"");
    assert_fault(
        trigger(json!({"actions": [{"type": "telegram", "chat_id": "not a chat"}]})),
        "actions[0].chat_id",
        "numeric chat id",
    );
    assert_fault(
        trigger(json!({"actions": [{"type": "telegram", "chat_id": 5, "parse_mode": "Markdown"}]})),
        "actions[0].parse_mode",
        "HTML, MarkdownV2 or plain",
    );
    assert_fault(
        trigger(
            json!({"actions": [{"type": "mcp", "server_url": "https://a.example/mcp", "tool": "t", "arguments": {"x": {"y": "{% if %}"}}}]}),
        ),
        "actions[0].arguments.x.y",
        "template does not parse",
    );
}

#[test]
fn every_fault_is_reported_not_only_the_first() {
    let found = faults(json!({
        "name": "",
        "condition": {"field": "nope", "op": "eq", "value": 1},
        "actions": [{"type": "webhook", "url": "gopher://x"}]
    }));
    let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["name", "condition.field", "actions[0].url"], "{found:?}");
}

#[test]
fn secrets_stay_out_of_the_public_config() {
    let definition = TriggerDefinition::parse(&trigger(json!({"actions": [
        {"type": "telegram", "chat_id": "@alerts_channel", "bot_token": "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345"},
        {"type": "mcp", "server_url": "https://a.example/mcp", "tool": "t", "headers": {"Authorization": "Bearer s3cr3t-value"}}
    ]})))
    .unwrap();
    for action in &definition.actions {
        let public = action.public_config().to_string();
        assert!(!public.contains("ABCdefGHI"), "{public}");
        assert!(!public.contains("s3cr3t"), "{public}");
        let debug = format!("{action:?}");
        assert!(!debug.contains("ABCdefGHI") && !debug.contains("s3cr3t"), "{debug}");
    }
    assert_eq!(definition.actions[0].secrets()["bot_token"], "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345");
    assert_eq!(definition.actions[1].secrets()["headers"]["Authorization"], "Bearer s3cr3t-value");
    assert_eq!(definition.actions[1].public_config()["type"], "mcp");
}

#[test]
fn hostile_nesting_is_bounded() {
    let mut deep = json!({"field": "value", "op": "gt", "value": 1});
    for _ in 0..40 {
        deep = json!({"not": deep});
    }
    let found = faults(trigger(json!({"condition": deep})));
    assert!(found.iter().any(|(_, m)| m.contains("nest at most")), "{found:?}");
}
