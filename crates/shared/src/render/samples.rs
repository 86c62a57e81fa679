//! Templates tried at save time: every action of a trigger is rendered for a sample event of
//! each event type its scope admits, so a template that cannot stay within its budget on an
//! ordinary event is refused then, rather than found out at its first firing.

use std::collections::BTreeMap;

use alloy_primitives::U256;
use chrono::{DateTime, Utc};

use super::{RenderError, mcp_arguments, telegram_message, webhook_body};
use crate::domain::{
    ActionId, Address, AgentId, ChainEvent, ChainId, Decimal, EventData, EventId, EventType, FeedbackValue, Hash32,
    HexBytes, JobId, LogPosition, StoredEvent, Text, TriggerId, UserId,
};
use crate::job::{Job, JobTrigger};
use crate::trigger::{Action, StoredAction, TriggerDefinition};

fn address(byte: u8) -> Address {
    Address(alloy_primitives::Address::repeat_byte(byte))
}

fn hash(byte: u8) -> Hash32 {
    Hash32(alloy_primitives::B256::repeat_byte(byte))
}

/// An ordinary event of `event_type`, with every field set.
pub fn sample_event(event_type: EventType) -> StoredEvent {
    let uri = || Text::new("ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi");
    let data = match event_type {
        EventType::Registered => EventData::Registered { owner: address(1), agent_uri: uri() },
        EventType::MetadataSet => {
            EventData::MetadataSet { metadata_key: "agentWallet".into(), metadata_value: HexBytes(vec![0xab; 20]) }
        }
        EventType::UriUpdated => EventData::UriUpdated { agent_uri: uri(), updated_by: address(1) },
        EventType::Transfer => EventData::Transfer { from: address(1), to: address(2) },
        EventType::NewFeedback => EventData::NewFeedback {
            client_address: address(3),
            feedback_index: Some(1),
            value: FeedbackValue::new(9_977, 2).expect("two decimals are within the limit"),
            tag1: Some("uptime".into()),
            tag1_hash: None,
            tag2: "latency".into(),
            endpoint: "https://agent.example/mcp".into(),
            feedback_uri: uri(),
            feedback_hash: hash(4),
        },
        EventType::FeedbackRevoked => EventData::FeedbackRevoked { client_address: address(3), feedback_index: 1 },
        EventType::ResponseAppended => EventData::ResponseAppended {
            client_address: address(3),
            feedback_index: 1,
            responder: address(1),
            response_uri: uri(),
            response_hash: hash(5),
        },
        EventType::ValidationRequest => {
            EventData::ValidationRequest { validator_address: address(6), request_uri: uri(), request_hash: hash(7) }
        }
        EventType::ValidationResponse => EventData::ValidationResponse {
            validator_address: address(6),
            request_hash: hash(7),
            response: 95,
            response_uri: uri(),
            response_hash: hash(8),
            tag: "zk-proof".into(),
        },
    };
    let log = LogPosition {
        chain_id: ChainId(11_155_111),
        contract_address: address(0x80),
        block_number: 9_000_000,
        block_hash: hash(9),
        block_timestamp: DateTime::<Utc>::UNIX_EPOCH,
        tx_hash: hash(10),
        log_index: 3,
    };
    StoredEvent {
        id: EventId(1),
        removed: false,
        event: ChainEvent { log, agent_id: AgentId::new(U256::from(42)), data },
    }
}

/// The templates of `definition` that exceed their budget on a sample event of its scope:
/// (action index, the action's template key, why).
pub fn trial_errors(definition: &TriggerDefinition) -> Vec<(usize, &'static str, RenderError)> {
    let aggregates: BTreeMap<String, Option<Decimal>> =
        definition.rule.aggregates.iter().map(|a| (a.display_name(), Some(Decimal::from_scaled(12_345, 2)))).collect();
    let mut faults = Vec::new();
    for (index, action) in definition.actions.iter().enumerate() {
        let fault = definition.rule.scope.event_types_in_scope().into_iter().find_map(|event_type| {
            let job = Job {
                job_id: JobId::derive(EventId(1), TriggerId(uuid::Uuid::nil()), ActionId(uuid::Uuid::nil())),
                trigger: JobTrigger {
                    id: TriggerId(uuid::Uuid::nil()),
                    name: definition.name.clone(),
                    user_id: UserId(uuid::Uuid::nil()),
                },
                action: StoredAction { id: ActionId(uuid::Uuid::nil()), action: action.clone() },
                event: sample_event(event_type),
                aggregates: aggregates.clone(),
                fired_at: DateTime::<Utc>::UNIX_EPOCH,
            };
            let (key, outcome) = match action {
                Action::Telegram(telegram) => ("template", telegram_message(&job, telegram).map(drop)),
                Action::Webhook(webhook) => {
                    ("body_template", webhook_body(&job, webhook.body_template.as_deref()).map(drop))
                }
                Action::Mcp(mcp) => ("arguments", mcp_arguments(&job, &mcp.arguments).map(drop)),
            };
            // Only the budget is judged here: a template may rightly fail on a sample whose
            // values it does not expect.
            outcome.err().filter(RenderError::is_budget).map(|error| (index, key, error))
        });
        faults.extend(fault);
    }
    faults
}
