//! The normalized event of SPEC 1.2: what the store, the API, conditions and templates see.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Address, AgentId, ChainId, Decimal, EventId, Hash32, HexBytes, Text};

/// The three ERC-8004 registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Identity,
    Reputation,
    Validation,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown registry {0:?} (expected identity, reputation or validation)")]
pub struct UnknownRegistry(pub String);

impl Registry {
    pub const ALL: [Registry; 3] = [Registry::Identity, Registry::Reputation, Registry::Validation];

    pub fn as_str(self) -> &'static str {
        match self {
            Registry::Identity => "identity",
            Registry::Reputation => "reputation",
            Registry::Validation => "validation",
        }
    }

    /// The event types this registry emits.
    pub fn event_types(self) -> impl Iterator<Item = EventType> {
        EventType::ALL.into_iter().filter(move |t| t.registry() == self)
    }
}

impl FromStr for Registry {
    type Err = UnknownRegistry;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Registry::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRegistry(s.to_owned()))
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The normalized event types. Older contract layouts decode to these too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    Registered,
    MetadataSet,
    #[serde(rename = "URIUpdated")]
    UriUpdated,
    Transfer,
    NewFeedback,
    FeedbackRevoked,
    ResponseAppended,
    ValidationRequest,
    ValidationResponse,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::Registered,
        EventType::MetadataSet,
        EventType::UriUpdated,
        EventType::Transfer,
        EventType::NewFeedback,
        EventType::FeedbackRevoked,
        EventType::ResponseAppended,
        EventType::ValidationRequest,
        EventType::ValidationResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Registered => "Registered",
            EventType::MetadataSet => "MetadataSet",
            EventType::UriUpdated => "URIUpdated",
            EventType::Transfer => "Transfer",
            EventType::NewFeedback => "NewFeedback",
            EventType::FeedbackRevoked => "FeedbackRevoked",
            EventType::ResponseAppended => "ResponseAppended",
            EventType::ValidationRequest => "ValidationRequest",
            EventType::ValidationResponse => "ValidationResponse",
        }
    }

    pub fn registry(self) -> Registry {
        match self {
            EventType::Registered | EventType::MetadataSet | EventType::UriUpdated | EventType::Transfer => {
                Registry::Identity
            }
            EventType::NewFeedback | EventType::FeedbackRevoked | EventType::ResponseAppended => Registry::Reputation,
            EventType::ValidationRequest | EventType::ValidationResponse => Registry::Validation,
        }
    }
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feedback value: `raw / 10^decimals`. Written out as three fields: `value` (exact,
/// normalized decimal string), `value_raw` (the int128 as a string) and `value_decimals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackValue {
    raw: i128,
    decimals: u8,
}

impl FeedbackValue {
    pub const MAX_DECIMALS: u8 = 18;

    /// `None` when `decimals` exceeds 18.
    pub fn new(raw: i128, decimals: u8) -> Option<Self> {
        (decimals <= Self::MAX_DECIMALS).then_some(Self { raw, decimals })
    }

    pub fn raw(&self) -> i128 {
        self.raw
    }

    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    pub fn decimal(&self) -> Decimal {
        Decimal::from_scaled(self.raw, self.decimals)
    }
}

impl Serialize for FeedbackValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("value", &self.decimal())?;
        map.serialize_entry("value_raw", &self.raw.to_string())?;
        map.serialize_entry("value_decimals", &self.decimals)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for FeedbackValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            value_raw: String,
            value_decimals: u8,
        }
        let raw = Raw::deserialize(deserializer)?;
        let value = raw
            .value_raw
            .parse::<i128>()
            .map_err(|_| serde::de::Error::custom("value_raw must be an int128 written as a decimal string"))?;
        FeedbackValue::new(value, raw.value_decimals)
            .ok_or_else(|| serde::de::Error::custom("value_decimals must be between 0 and 18"))
    }
}

/// The fields particular to each event type. Serialized flat, tagged by `event_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum EventData {
    Registered {
        owner: Address,
        agent_uri: Text,
    },
    MetadataSet {
        metadata_key: Text,
        metadata_value: HexBytes,
    },
    #[serde(rename = "URIUpdated")]
    UriUpdated {
        agent_uri: Text,
        updated_by: Address,
    },
    Transfer {
        from: Address,
        to: Address,
    },
    NewFeedback {
        client_address: Address,
        /// Unknown (`None`) in the October 2025 layout, which had no index.
        feedback_index: Option<u64>,
        #[serde(flatten)]
        value: FeedbackValue,
        /// `None` when only the keccak of the tag reached the logs (one interim layout).
        tag1: Option<Text>,
        /// keccak256 of tag1 as it stood in the topic, kept when the text is unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag1_hash: Option<Hash32>,
        tag2: Text,
        endpoint: Text,
        feedback_uri: Text,
        feedback_hash: Hash32,
    },
    FeedbackRevoked {
        client_address: Address,
        feedback_index: u64,
    },
    ResponseAppended {
        client_address: Address,
        feedback_index: u64,
        responder: Address,
        response_uri: Text,
        response_hash: Hash32,
    },
    ValidationRequest {
        validator_address: Address,
        request_uri: Text,
        request_hash: Hash32,
    },
    ValidationResponse {
        validator_address: Address,
        request_hash: Hash32,
        response: u8,
        response_uri: Text,
        response_hash: Hash32,
        tag: Text,
    },
}

impl EventData {
    /// Every text field the chain filled.
    pub fn texts(&self) -> Vec<&Text> {
        match self {
            EventData::Registered { agent_uri, .. } | EventData::UriUpdated { agent_uri, .. } => vec![agent_uri],
            EventData::MetadataSet { metadata_key, .. } => vec![metadata_key],
            EventData::NewFeedback { tag1, tag2, endpoint, feedback_uri, .. } => {
                let mut texts = vec![tag2, endpoint, feedback_uri];
                texts.extend(tag1.as_ref());
                texts
            }
            EventData::ResponseAppended { response_uri, .. } => vec![response_uri],
            EventData::ValidationRequest { request_uri, .. } => vec![request_uri],
            EventData::ValidationResponse { response_uri, tag, .. } => vec![response_uri, tag],
            EventData::Transfer { .. } | EventData::FeedbackRevoked { .. } => Vec::new(),
        }
    }

    /// Every text field the chain filled, to change in place.
    pub fn texts_mut(&mut self) -> Vec<&mut Text> {
        match self {
            EventData::Registered { agent_uri, .. } | EventData::UriUpdated { agent_uri, .. } => vec![agent_uri],
            EventData::MetadataSet { metadata_key, .. } => vec![metadata_key],
            EventData::NewFeedback { tag1, tag2, endpoint, feedback_uri, .. } => {
                let mut texts = vec![tag2, endpoint, feedback_uri];
                texts.extend(tag1.as_mut());
                texts
            }
            EventData::ResponseAppended { response_uri, .. } => vec![response_uri],
            EventData::ValidationRequest { request_uri, .. } => vec![request_uri],
            EventData::ValidationResponse { response_uri, tag, .. } => vec![response_uri, tag],
            EventData::Transfer { .. } | EventData::FeedbackRevoked { .. } => Vec::new(),
        }
    }

    pub fn event_type(&self) -> EventType {
        match self {
            EventData::Registered { .. } => EventType::Registered,
            EventData::MetadataSet { .. } => EventType::MetadataSet,
            EventData::UriUpdated { .. } => EventType::UriUpdated,
            EventData::Transfer { .. } => EventType::Transfer,
            EventData::NewFeedback { .. } => EventType::NewFeedback,
            EventData::FeedbackRevoked { .. } => EventType::FeedbackRevoked,
            EventData::ResponseAppended { .. } => EventType::ResponseAppended,
            EventData::ValidationRequest { .. } => EventType::ValidationRequest,
            EventData::ValidationResponse { .. } => EventType::ValidationResponse,
        }
    }
}

/// Where a log came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub chain_id: ChainId,
    pub contract_address: Address,
    pub block_number: u64,
    pub block_hash: Hash32,
    pub block_timestamp: DateTime<Utc>,
    pub tx_hash: Hash32,
    pub log_index: u32,
}

/// A decoded registry event, before or apart from its place in the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChainEvent {
    #[serde(flatten)]
    pub log: LogPosition,
    pub agent_id: AgentId,
    #[serde(flatten)]
    pub data: EventData,
}

impl ChainEvent {
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    pub fn registry(&self) -> Registry {
        self.event_type().registry()
    }
}

/// Written with the registry, which follows from the event type.
impl Serialize for ChainEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            log: &'a LogPosition,
            registry: Registry,
            agent_id: &'a AgentId,
            #[serde(flatten)]
            data: &'a EventData,
        }
        View { log: &self.log, registry: self.registry(), agent_id: &self.agent_id, data: &self.data }
            .serialize(serializer)
    }
}

/// An event to insert, with the decoded log arguments kept as they came (JSONB `args`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event: ChainEvent,
    pub args: serde_json::Value,
}

/// An event as stored: the normalized event with its store id and reorg flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: EventId,
    pub removed: bool,
    #[serde(flatten)]
    pub event: ChainEvent,
}

#[cfg(test)]
mod tests;
