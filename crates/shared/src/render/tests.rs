use serde_json::json;

use super::*;
use crate::domain::{EventType, StoredEvent};
use crate::trigger::TriggerDefinition;

fn context() -> Value {
    json!({"event": serde_json::to_value(sample_event(EventType::NewFeedback)).unwrap_or_default()})
}

fn budget(source: &str, max: usize) -> RenderError {
    let error = render(Escape::Plain, source, &context(), max).expect_err("over budget");
    assert!(error.is_budget(), "{source}: {error}");
    error
}

#[test]
fn an_ordinary_template_renders() {
    let text = render(Escape::Plain, "{{ event.tag1 }}: {{ event.value }}", &context(), 100).expect("renders");
    assert_eq!(text, "uptime: 99.77");
}

#[test]
fn a_loop_bomb_runs_out_of_fuel() {
    let error = budget("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", 1 << 30);
    assert!(error.to_string().contains("ran out of fuel"), "{error}");
}

#[test]
fn a_string_that_doubles_runs_out_of_fuel_before_it_costs_memory() {
    // Sixty doublings would be an exabyte; fuel charges for the bytes made.
    budget(
        "{% set s = namespace(v='x') %}{% for i in range(60) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v|length }}",
        1 << 30,
    );
    budget("{{ 'x' * 1000000000 }}", 1 << 30);
}

#[test]
fn a_recursion_bomb_stops_at_the_limit() {
    let error = budget("{% for i in [1] recursive %}{{ loop([i]) }}{% endfor %}", 1 << 30);
    assert!(error.to_string().contains("nests deeper"), "{error}");
}

#[test]
fn output_over_the_action_cap_is_refused() {
    let error = budget("{{ 'y' * 300000 }}", MAX_BODY_BYTES);
    assert!(error.to_string().contains("over the 262144"), "{error}");
}

#[test]
fn deep_nesting_in_the_source_is_a_parse_error_not_a_crash() {
    let source = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let error = render(Escape::Plain, &format!("{{{{ {source} }}}}"), &context(), 1 << 20).expect_err("refused");
    assert!(!error.is_budget(), "{error}");
}

fn trigger_with(action: Value) -> Value {
    json!({"name": "t", "scope": {"registry": "reputation"}, "actions": [action]})
}

#[test]
fn bombs_are_refused_at_save_time_at_their_path() {
    let cases = [
        (
            json!({"type": "telegram", "chat_id": "1", "template": "{% for i in range(100000) %}{{ i }}{% endfor %}"}),
            "actions[0].template",
        ),
        (
            json!({"type": "webhook", "url": "https://example.com/h", "body_template": "{{ 'y' * 300000 }}"}),
            "actions[0].body_template",
        ),
        (
            json!({"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "t",
                "arguments": {"a": "{{ 'z' * 200000 }}", "b": "{{ 'z' * 200000 }}"}}),
            "actions[0].arguments",
        ),
        (
            json!({"type": "webhook", "url": "https://example.com/h",
                "body_template": "{% for i in [1] recursive %}{{ loop([i]) }}{% endfor %}"}),
            "actions[0].body_template",
        ),
    ];
    for (action, path) in cases {
        let errors = TriggerDefinition::parse(&trigger_with(action.clone())).expect_err("refused");
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].path, path, "{errors}");
        assert!(errors.0[0].message.contains("exceeds its budget"), "{errors}");
    }
    // A template that merely fails on a sample is not judged here.
    let fine = json!({"type": "webhook", "url": "https://example.com/h", "body_template": "{{ event.value + 'x' }}"});
    assert!(TriggerDefinition::parse(&trigger_with(fine)).is_ok());
}

#[test]
fn long_telegram_output_is_cut_not_refused() {
    let action = json!({"type": "telegram", "chat_id": "1", "template": "{{ 'w' * 20000 }}"});
    let definition = TriggerDefinition::parse(&trigger_with(action)).expect("accepted");
    let crate::trigger::Action::Telegram(telegram) = &definition.actions[0] else { panic!("telegram") };
    let job = crate::job::Job {
        job_id: JobId::derive(
            crate::domain::EventId(1),
            TriggerId(uuid::Uuid::nil()),
            crate::domain::ActionId(uuid::Uuid::nil()),
        ),
        trigger: crate::job::JobTrigger {
            id: TriggerId(uuid::Uuid::nil()),
            name: "t".into(),
            user_id: crate::domain::UserId(uuid::Uuid::nil()),
        },
        action: crate::trigger::StoredAction {
            id: crate::domain::ActionId(uuid::Uuid::nil()),
            action: definition.actions[0].clone(),
        },
        event: sample_event(EventType::NewFeedback),
        aggregates: BTreeMap::new(),
        fired_at: Utc::now(),
    };
    let text = telegram_message(&job, telegram).expect("renders");
    assert_eq!(text.chars().count(), MAX_MESSAGE_CHARS);
}

fn job_with(event: StoredEvent) -> crate::job::Job {
    let nil = uuid::Uuid::nil();
    crate::job::Job {
        job_id: JobId::derive(event.id, TriggerId(nil), crate::domain::ActionId(nil)),
        trigger: crate::job::JobTrigger { id: TriggerId(nil), name: "t".into(), user_id: crate::domain::UserId(nil) },
        action: crate::trigger::StoredAction {
            id: crate::domain::ActionId(nil),
            action: crate::trigger::Action::Telegram(crate::trigger::TelegramAction {
                chat_id: "1".into(),
                template: None,
                parse_mode: crate::trigger::ParseMode::default(),
                bot_token: None,
                own_bot: false,
            }),
        },
        event,
        aggregates: BTreeMap::new(),
        fired_at: Utc::now(),
    }
}

#[test]
fn a_megabyte_of_chain_text_never_silences_a_telegram_alert() {
    let mut event = sample_event(EventType::NewFeedback);
    let crate::domain::EventData::NewFeedback { tag1, .. } = &mut event.event.data else { panic!("feedback") };
    *tag1 = Some("&<".repeat(600_000).into());
    let job = job_with(event);
    let cases = [
        ("HTML", None),
        ("MarkdownV2", None),
        ("plain", None),
        // Markup around the value: the cut falls between the opening and its closing.
        ("HTML", Some("<b>{{ event.tag1 }}</b> <i>end</i>")),
        ("MarkdownV2", Some("*{{ event.tag1 }}* _end_")),
    ];
    for (mode, template) in cases {
        let mut action = json!({"type": "telegram", "chat_id": "1", "parse_mode": mode});
        if let Some(template) = template {
            action["template"] = json!(template);
        }
        let definition = TriggerDefinition::parse(&trigger_with(action)).expect("accepted");
        let crate::trigger::Action::Telegram(telegram) = &definition.actions[0] else { panic!("telegram") };
        let text = telegram_message(&job, telegram).unwrap_or_else(|e| panic!("{mode}: {e}"));
        // Cut cleanly (never half an entity), not refused.
        let chars = text.chars().count();
        assert!((MAX_MESSAGE_CHARS - 8..=MAX_MESSAGE_CHARS).contains(&chars), "{mode}: {chars}");
        // Telegram accepts what is left: no tag left open, no mark left unclosed.
        match mode {
            "HTML" => assert!(!text.contains('<') && !text.contains('>'), "{mode}: a tag is left"),
            "MarkdownV2" => {
                let mut chars = text.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else {
                        assert!(!MARKDOWN_V2_SPECIAL.contains(c), "{mode}: an unescaped {c:?} is left");
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn the_strings_of_one_mcp_call_share_one_budget() {
    // Each loop alone fits a render's fuel; two of them in one call do not.
    let spin = "{% for i in range(30000) %}{% endfor %}";
    let one = json!({"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "t", "arguments": {"a": spin}});
    assert!(TriggerDefinition::parse(&trigger_with(one)).is_ok());
    let two = json!({"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "t",
                     "arguments": {"a": spin, "b": [spin]}});
    let errors = TriggerDefinition::parse(&trigger_with(two)).expect_err("refused");
    assert_eq!(errors.0[0].path, "actions[0].arguments", "{errors}");
    assert!(errors.0[0].message.contains("fuel"), "{errors}");

    let many: serde_json::Map<String, Value> = (0..=MAX_MCP_TEMPLATES).map(|i| (format!("k{i}"), json!("x"))).collect();
    let action = json!({"type": "mcp", "server_url": "https://agent.example/mcp", "tool": "t", "arguments": many});
    let errors = TriggerDefinition::parse(&trigger_with(action)).expect_err("refused");
    assert!(errors.0.iter().any(|e| e.path == "actions[0].arguments" && e.message.contains("at most 64")), "{errors}");
}

#[test]
fn templates_and_default_bodies_see_long_chain_text_cut() {
    let mut event = sample_event(EventType::NewFeedback);
    let crate::domain::EventData::NewFeedback { feedback_uri, tag1, .. } = &mut event.event.data else { panic!() };
    *feedback_uri = "ü".repeat(100_000).into();
    *tag1 = Some("short".into());
    let job = job_with(event);
    let uri = render(Escape::Plain, "{{ event.feedback_uri }}", &super::context(&job), usize::MAX).expect("renders");
    assert_eq!(uri.chars().count(), MAX_RENDERED_TEXT_CHARS + 1);
    assert!(uri.ends_with("ü…"));
    // Used many times, it stays within the budget: the length the chain chose costs nothing.
    let many = "{% for i in range(20) %}{{ event.feedback_uri|length }}{% endfor %}";
    assert!(render(Escape::Plain, many, &super::context(&job), usize::MAX).is_ok());
    let body: Value = serde_json::from_str(&webhook_body(&job, None).expect("a body")).expect("JSON");
    assert_eq!(body["event"]["feedback_uri"].as_str().expect("text").chars().count(), MAX_RENDERED_TEXT_CHARS + 1);
    assert_eq!(body["event"]["tag1"], "short");
}
