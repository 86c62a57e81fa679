//! The fields of the normalized event that conditions can name, their types, and how to
//! read them from an event.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::domain::{Decimal, EventData, EventType, StoredEvent};

/// How a field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Exact decimal comparison.
    Number,
    /// 0x hex, compared case-insensitively.
    Hex,
    /// Compared exactly.
    Text,
    Bool,
    Timestamp,
}

impl FieldKind {
    pub fn describe(self) -> &'static str {
        match self {
            FieldKind::Number => "a number",
            FieldKind::Hex => "an address or hash",
            FieldKind::Text => "text",
            FieldKind::Bool => "a boolean",
            FieldKind::Timestamp => "a timestamp",
        }
    }
}

macro_rules! fields {
    ($($variant:ident => $name:literal, $kind:ident;)*) => {
        /// A field of the normalized event (SPEC 1.2).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field {
            $($variant,)*
        }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }

            pub fn kind(self) -> FieldKind {
                match self {
                    $(Field::$variant => FieldKind::$kind,)*
                }
            }
        }
    };
}

fields! {
    Id => "id", Number;
    ChainId => "chain_id", Number;
    Registry => "registry", Text;
    EventType => "event_type", Text;
    ContractAddress => "contract_address", Hex;
    BlockNumber => "block_number", Number;
    BlockHash => "block_hash", Hex;
    BlockTimestamp => "block_timestamp", Timestamp;
    TxHash => "tx_hash", Hex;
    LogIndex => "log_index", Number;
    Removed => "removed", Bool;
    AgentId => "agent_id", Number;
    Owner => "owner", Hex;
    AgentUri => "agent_uri", Text;
    UpdatedBy => "updated_by", Hex;
    MetadataKey => "metadata_key", Text;
    MetadataValue => "metadata_value", Hex;
    From => "from", Hex;
    To => "to", Hex;
    ClientAddress => "client_address", Hex;
    FeedbackIndex => "feedback_index", Number;
    Value => "value", Number;
    ValueRaw => "value_raw", Number;
    ValueDecimals => "value_decimals", Number;
    Tag1 => "tag1", Text;
    Tag2 => "tag2", Text;
    Endpoint => "endpoint", Text;
    FeedbackUri => "feedback_uri", Text;
    FeedbackHash => "feedback_hash", Hex;
    Responder => "responder", Hex;
    ResponseUri => "response_uri", Text;
    ResponseHash => "response_hash", Hex;
    ValidatorAddress => "validator_address", Hex;
    RequestUri => "request_uri", Text;
    RequestHash => "request_hash", Hex;
    Response => "response", Number;
    Tag => "tag", Text;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown field {0:?}")]
pub struct UnknownField(pub String);

impl FromStr for Field {
    type Err = UnknownField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Field::ALL.iter().copied().find(|f| f.name() == s).ok_or_else(|| UnknownField(s.to_owned()))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field's value in one event.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Number(Decimal),
    /// Lower-case 0x hex.
    Hex(String),
    Text(&'a str),
    Bool(bool),
    Timestamp(DateTime<Utc>),
}

impl Field {
    /// Whether events of this type carry the field.
    pub fn carried_by(self, event_type: EventType) -> bool {
        use EventType as T;
        match self {
            Field::Id
            | Field::ChainId
            | Field::Registry
            | Field::EventType
            | Field::ContractAddress
            | Field::BlockNumber
            | Field::BlockHash
            | Field::BlockTimestamp
            | Field::TxHash
            | Field::LogIndex
            | Field::Removed
            | Field::AgentId => true,
            Field::Owner => event_type == T::Registered,
            Field::AgentUri => matches!(event_type, T::Registered | T::UriUpdated),
            Field::UpdatedBy => event_type == T::UriUpdated,
            Field::MetadataKey | Field::MetadataValue => event_type == T::MetadataSet,
            Field::From | Field::To => event_type == T::Transfer,
            Field::ClientAddress | Field::FeedbackIndex => {
                matches!(event_type, T::NewFeedback | T::FeedbackRevoked | T::ResponseAppended)
            }
            Field::Value
            | Field::ValueRaw
            | Field::ValueDecimals
            | Field::Tag1
            | Field::Tag2
            | Field::Endpoint
            | Field::FeedbackUri
            | Field::FeedbackHash => event_type == T::NewFeedback,
            Field::Responder => event_type == T::ResponseAppended,
            Field::ResponseUri | Field::ResponseHash => {
                matches!(event_type, T::ResponseAppended | T::ValidationResponse)
            }
            Field::ValidatorAddress | Field::RequestHash => {
                matches!(event_type, T::ValidationRequest | T::ValidationResponse)
            }
            Field::RequestUri => event_type == T::ValidationRequest,
            Field::Response | Field::Tag => event_type == T::ValidationResponse,
        }
    }

    /// The field's value in `event`, or `None` when the event does not carry it (or carries
    /// it as unknown, like the tag of a layout that only logged its hash).
    pub fn read(self, event: &StoredEvent) -> Option<FieldValue<'_>> {
        use FieldValue as V;
        let e = &event.event;
        let num = |n: u64| Some(V::Number(Decimal::from_big_decimal(n.into())));
        let hex = |h: &dyn ToString| Some(V::Hex(h.to_string()));
        match (self, &e.data) {
            (Field::Id, _) => Some(V::Number(Decimal::from(event.id.0))),
            (Field::ChainId, _) => num(e.log.chain_id.0),
            (Field::Registry, _) => Some(V::Text(e.registry().as_str())),
            (Field::EventType, _) => Some(V::Text(e.event_type().as_str())),
            (Field::ContractAddress, _) => hex(&e.log.contract_address),
            (Field::BlockNumber, _) => num(e.log.block_number),
            (Field::BlockHash, _) => hex(&e.log.block_hash),
            (Field::BlockTimestamp, _) => Some(V::Timestamp(e.log.block_timestamp)),
            (Field::TxHash, _) => hex(&e.log.tx_hash),
            (Field::LogIndex, _) => num(u64::from(e.log.log_index)),
            (Field::Removed, _) => Some(V::Bool(event.removed)),
            (Field::AgentId, _) => Some(V::Number(e.agent_id.to_decimal())),
            (Field::Owner, EventData::Registered { owner, .. }) => hex(owner),
            (Field::AgentUri, EventData::Registered { agent_uri, .. } | EventData::UriUpdated { agent_uri, .. }) => {
                Some(V::Text(agent_uri))
            }
            (Field::UpdatedBy, EventData::UriUpdated { updated_by, .. }) => hex(updated_by),
            (Field::MetadataKey, EventData::MetadataSet { metadata_key, .. }) => Some(V::Text(metadata_key)),
            (Field::MetadataValue, EventData::MetadataSet { metadata_value, .. }) => hex(metadata_value),
            (Field::From, EventData::Transfer { from, .. }) => hex(from),
            (Field::To, EventData::Transfer { to, .. }) => hex(to),
            (
                Field::ClientAddress,
                EventData::NewFeedback { client_address, .. }
                | EventData::FeedbackRevoked { client_address, .. }
                | EventData::ResponseAppended { client_address, .. },
            ) => hex(client_address),
            (Field::FeedbackIndex, EventData::NewFeedback { feedback_index, .. }) => feedback_index.and_then(num),
            (
                Field::FeedbackIndex,
                EventData::FeedbackRevoked { feedback_index, .. } | EventData::ResponseAppended { feedback_index, .. },
            ) => num(*feedback_index),
            (Field::Value, EventData::NewFeedback { value, .. }) => Some(V::Number(value.decimal())),
            (Field::ValueRaw, EventData::NewFeedback { value, .. }) => {
                Some(V::Number(Decimal::from_big_decimal(value.raw().into())))
            }
            (Field::ValueDecimals, EventData::NewFeedback { value, .. }) => num(u64::from(value.decimals())),
            (Field::Tag1, EventData::NewFeedback { tag1, .. }) => tag1.as_deref().map(V::Text),
            (Field::Tag2, EventData::NewFeedback { tag2, .. }) => Some(V::Text(tag2)),
            (Field::Endpoint, EventData::NewFeedback { endpoint, .. }) => Some(V::Text(endpoint)),
            (Field::FeedbackUri, EventData::NewFeedback { feedback_uri, .. }) => Some(V::Text(feedback_uri)),
            (Field::FeedbackHash, EventData::NewFeedback { feedback_hash, .. }) => hex(feedback_hash),
            (Field::Responder, EventData::ResponseAppended { responder, .. }) => hex(responder),
            (
                Field::ResponseUri,
                EventData::ResponseAppended { response_uri, .. } | EventData::ValidationResponse { response_uri, .. },
            ) => Some(V::Text(response_uri)),
            (
                Field::ResponseHash,
                EventData::ResponseAppended { response_hash, .. } | EventData::ValidationResponse { response_hash, .. },
            ) => hex(response_hash),
            (
                Field::ValidatorAddress,
                EventData::ValidationRequest { validator_address, .. }
                | EventData::ValidationResponse { validator_address, .. },
            ) => hex(validator_address),
            (Field::RequestUri, EventData::ValidationRequest { request_uri, .. }) => Some(V::Text(request_uri)),
            (
                Field::RequestHash,
                EventData::ValidationRequest { request_hash, .. } | EventData::ValidationResponse { request_hash, .. },
            ) => hex(request_hash),
            (Field::Response, EventData::ValidationResponse { response, .. }) => num(u64::from(*response)),
            (Field::Tag, EventData::ValidationResponse { tag, .. }) => Some(V::Text(tag)),
            _ => None,
        }
    }

    /// The numeric value of this field in `event`, for aggregates.
    pub fn read_number(self, event: &StoredEvent) -> Option<Decimal> {
        match self.read(event)? {
            FieldValue::Number(n) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_carried_by_some_event_type_and_parses_by_name() {
        for field in Field::ALL {
            assert!(EventType::ALL.iter().any(|t| field.carried_by(*t)), "{field} is carried by nothing");
            assert_eq!(field.name().parse::<Field>().unwrap(), *field);
        }
        assert_eq!("valu".parse::<Field>(), Err(UnknownField("valu".into())));
    }
}
