use serde_json::json;

use super::*;

fn log() -> LogPosition {
    LogPosition {
        chain_id: ChainId(11155111),
        contract_address: "0x8004B663056A597Dffe9eCcC1965A193B7388713".parse().unwrap(),
        block_number: 7,
        block_hash: format!("0x{}", "ab".repeat(32)).parse().unwrap(),
        block_timestamp: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        tx_hash: format!("0x{}", "cd".repeat(32)).parse().unwrap(),
        log_index: 3,
    }
}

fn feedback() -> StoredEvent {
    StoredEvent {
        id: EventId(12),
        removed: false,
        event: ChainEvent {
            log: log(),
            agent_id: AgentId::from(42),
            data: EventData::NewFeedback {
                client_address: "0x00000000000000000000000000000000000000AA".parse().unwrap(),
                feedback_index: Some(1),
                value: FeedbackValue::new(-32, 1).unwrap(),
                tag1: Some("uptime".into()),
                tag1_hash: None,
                tag2: "".into(),
                endpoint: "https://agent.example/".into(),
                feedback_uri: "ipfs://x".into(),
                feedback_hash: format!("0x{}", "00".repeat(32)).parse().unwrap(),
            },
        },
    }
}

#[test]
fn stored_event_serializes_flat_with_registry_and_exact_value() {
    let value = serde_json::to_value(feedback()).unwrap();
    assert_eq!(value["id"], json!(12));
    assert_eq!(value["registry"], json!("reputation"));
    assert_eq!(value["event_type"], json!("NewFeedback"));
    assert_eq!(value["agent_id"], json!("42"));
    assert_eq!(value["chain_id"], json!(11155111));
    assert_eq!(value["contract_address"], json!("0x8004b663056a597dffe9eccc1965a193b7388713"));
    assert_eq!(value["client_address"], json!("0x00000000000000000000000000000000000000aa"));
    assert_eq!(value["value"], json!("-3.2"));
    assert_eq!(value["value_raw"], json!("-32"));
    assert_eq!(value["value_decimals"], json!(1));
    assert_eq!(value["block_timestamp"], json!("2026-01-01T00:00:00Z"));
    assert!(value.get("tag1_hash").is_none());
}

#[test]
fn stored_event_round_trips_through_json() {
    let event = feedback();
    let text = serde_json::to_string(&event).unwrap();
    let back: StoredEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(back, event);
}

#[test]
fn every_event_type_names_its_registry() {
    assert_eq!(EventType::Transfer.registry(), Registry::Identity);
    assert_eq!(EventType::ResponseAppended.registry(), Registry::Reputation);
    assert_eq!(EventType::ValidationResponse.registry(), Registry::Validation);
    let identity: Vec<_> = Registry::Identity.event_types().map(EventType::as_str).collect();
    assert_eq!(identity, ["Registered", "MetadataSet", "URIUpdated", "Transfer"]);
    for t in EventType::ALL {
        assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
    }
    assert!("UriUpdated".parse::<EventType>().is_err());
}

#[test]
fn feedback_value_rejects_too_many_decimals() {
    assert!(FeedbackValue::new(1, 19).is_none());
    let bad = json!({"value_raw": "1", "value_decimals": 19});
    assert!(serde_json::from_value::<FeedbackValue>(bad).is_err());
}
