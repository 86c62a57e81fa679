//! A registry log to the normalized event of SPEC 1.2, chosen by topic0 (the registries are
//! upgradeable proxies: the address says nothing about the layout).
//!
//! Text is read as the bytes the contract emitted and made storable here (SPEC 1.3): invalid
//! UTF-8 is decoded lossily, NUL becomes U+FFFD, and the bytes of every text that changed are
//! kept as hex in `args.original_bytes`, so the log as emitted can always be recovered.

use alloy::primitives::{B256, Log as PrimitiveLog, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::domain::{
    AgentId, ChainEvent, ChainId, EventData, FeedbackValue, Hash32, HexBytes, LogPosition, NewEvent, Text,
};

use crate::abi::{current, interim_hashed_tag, interim_text_tag, raw, unused, v04};

/// Why a log did not become an event. None stops indexing: unused and unknown logs are
/// counted and skipped, malformed ones are quarantined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} is not an event the product uses")]
    Unused(&'static str),
    #[error("no registry event has topic0 {0}")]
    UnknownTopic(B256),
    #[error("a log without topics")]
    NoTopics,
    #[error("{event} log does not decode: {reason}")]
    Malformed { event: &'static str, reason: String },
    #[error("the node left out {0} of a mined log")]
    Incomplete(&'static str),
}

fn malformed(event: &'static str, reason: impl ToString) -> DecodeError {
    DecodeError::Malformed { event, reason: reason.to_string() }
}

fn agent(id: U256) -> AgentId {
    AgentId::new(id)
}

fn hash(value: B256) -> Hash32 {
    Hash32(value)
}

/// A bytes32 of the October 2025 layout as text: without the trailing zeros, made storable
/// (the bytes themselves are in `args`).
fn bytes32_text(value: B256) -> Text {
    let bytes = value.as_slice();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    Text::from_bytes(&bytes[..end]).0
}

fn feedback_value(event: &'static str, raw: i128, decimals: u8) -> Result<FeedbackValue, DecodeError> {
    FeedbackValue::new(raw, decimals).ok_or_else(|| malformed(event, format!("valueDecimals {decimals} is over 18")))
}

/// Decodes `log` with the layout `Raw` (the `bytes` twin of `Named`, see [`crate::abi`]),
/// once topic0 has said the log is a `Named`.
fn typed<Named: SolEvent, Raw: SolEvent>(log: &PrimitiveLog) -> Result<Raw, DecodeError> {
    let topics = Raw::decode_topics(log.data.topics()).map_err(|e| malformed(Named::SIGNATURE, e))?;
    let body = Raw::abi_decode_data(&log.data.data).map_err(|e| malformed(Named::SIGNATURE, e))?;
    Ok(Raw::new(topics, body))
}

/// The text arguments of one log: each becomes a storable [`Text`]; those that had to change
/// keep the bytes as emitted, in hex, under `args.original_bytes.<argument>`.
#[derive(Default)]
struct Texts {
    originals: Map<String, Value>,
}

impl Texts {
    fn take(&mut self, argument: &str, bytes: &[u8]) -> Text {
        let (text, exact) = Text::from_bytes(bytes);
        if !exact {
            self.originals.insert(argument.to_owned(), Value::String(HexBytes(bytes.to_vec()).to_string()));
        }
        text
    }

    fn into_args(self, mut args: Value) -> Value {
        if !self.originals.is_empty()
            && let Value::Object(map) = &mut args
        {
            map.insert("original_bytes".to_owned(), Value::Object(self.originals));
        }
        args
    }
}

/// The name of an event the registries emit that the product does not use.
fn unused_event(topic0: B256) -> Option<&'static str> {
    [
        (unused::MetadataUpdate::SIGNATURE_HASH, unused::MetadataUpdate::SIGNATURE),
        (unused::BatchMetadataUpdate::SIGNATURE_HASH, unused::BatchMetadataUpdate::SIGNATURE),
        (unused::Approval::SIGNATURE_HASH, unused::Approval::SIGNATURE),
        (unused::ApprovalForAll::SIGNATURE_HASH, unused::ApprovalForAll::SIGNATURE),
        (unused::Upgraded::SIGNATURE_HASH, unused::Upgraded::SIGNATURE),
        (unused::AdminChanged::SIGNATURE_HASH, unused::AdminChanged::SIGNATURE),
        (unused::BeaconUpgraded::SIGNATURE_HASH, unused::BeaconUpgraded::SIGNATURE),
        (unused::Initialized::SIGNATURE_HASH, unused::Initialized::SIGNATURE),
        (unused::v4::Initialized::SIGNATURE_HASH, unused::v4::Initialized::SIGNATURE),
        (unused::OwnershipTransferred::SIGNATURE_HASH, unused::OwnershipTransferred::SIGNATURE),
    ]
    .into_iter()
    .find(|(topic, _)| *topic == topic0)
    .map(|(_, name)| name)
}

/// The agent id, the event-specific fields, and the arguments as they came (JSONB `args`).
fn decode_data(log: &PrimitiveLog) -> Result<(AgentId, EventData, Value), DecodeError> {
    let topic0 = *log.data.topics().first().ok_or(DecodeError::NoTopics)?;
    let mut texts = Texts::default();
    let (agent_id, data, args) = match topic0 {
        current::Registered::SIGNATURE_HASH => {
            let e: raw::current::Registered = typed::<current::Registered, _>(log)?;
            let uri = texts.take("agentURI", &e.agentURI);
            let args =
                json!({"agentId": e.agentId.to_string(), "agentURI": uri.as_str(), "owner": e.owner.to_string()});
            (agent(e.agentId), EventData::Registered { owner: e.owner.into(), agent_uri: uri }, args)
        }
        current::MetadataSet::SIGNATURE_HASH => {
            let e: raw::current::MetadataSet = typed::<current::MetadataSet, _>(log)?;
            let key = texts.take("metadataKey", &e.metadataKey);
            let args = json!({"agentId": e.agentId.to_string(), "indexedMetadataKey": e.indexedMetadataKey.to_string(),
                              "metadataKey": key.as_str(), "metadataValue": e.metadataValue.to_string()});
            let data = EventData::MetadataSet { metadata_key: key, metadata_value: HexBytes(e.metadataValue.to_vec()) };
            (agent(e.agentId), data, args)
        }
        current::URIUpdated::SIGNATURE_HASH => {
            let e: raw::current::URIUpdated = typed::<current::URIUpdated, _>(log)?;
            let uri = texts.take("newURI", &e.newURI);
            let args =
                json!({"agentId": e.agentId.to_string(), "newURI": uri.as_str(), "updatedBy": e.updatedBy.to_string()});
            (agent(e.agentId), EventData::UriUpdated { agent_uri: uri, updated_by: e.updatedBy.into() }, args)
        }
        v04::UriUpdated::SIGNATURE_HASH => {
            let e: raw::v04::UriUpdated = typed::<v04::UriUpdated, _>(log)?;
            let uri = texts.take("newUri", &e.newUri);
            let args =
                json!({"agentId": e.agentId.to_string(), "newUri": uri.as_str(), "updatedBy": e.updatedBy.to_string()});
            (agent(e.agentId), EventData::UriUpdated { agent_uri: uri, updated_by: e.updatedBy.into() }, args)
        }
        current::Transfer::SIGNATURE_HASH => {
            let e: current::Transfer = typed::<current::Transfer, _>(log)?;
            let args = json!({"from": e.from.to_string(), "to": e.to.to_string(), "tokenId": e.tokenId.to_string()});
            (agent(e.tokenId), EventData::Transfer { from: e.from.into(), to: e.to.into() }, args)
        }
        current::NewFeedback::SIGNATURE_HASH => {
            let e: raw::current::NewFeedback = typed::<current::NewFeedback, _>(log)?;
            let tag1 = texts.take("tag1", &e.tag1);
            let tag2 = texts.take("tag2", &e.tag2);
            let endpoint = texts.take("endpoint", &e.endpoint);
            let uri = texts.take("feedbackURI", &e.feedbackURI);
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "value": e.value.to_string(),
                              "valueDecimals": e.valueDecimals, "indexedTag1": e.indexedTag1.to_string(),
                              "tag1": tag1.as_str(), "tag2": tag2.as_str(), "endpoint": endpoint.as_str(),
                              "feedbackURI": uri.as_str(), "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(current::NewFeedback::SIGNATURE, e.value, e.valueDecimals)?,
                tag1: Some(tag1),
                tag1_hash: None,
                tag2,
                endpoint,
                feedback_uri: uri,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        v04::NewFeedback::SIGNATURE_HASH => {
            let e: raw::v04::NewFeedback = typed::<v04::NewFeedback, _>(log)?;
            let uri = texts.take("fileuri", &e.fileuri);
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "score": e.score, "tag1": e.tag1.to_string(), "tag2": e.tag2.to_string(),
                              "fileuri": uri.as_str(), "filehash": e.filehash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: None,
                value: feedback_value(v04::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: Some(bytes32_text(e.tag1)),
                tag1_hash: None,
                tag2: bytes32_text(e.tag2),
                endpoint: Text::default(),
                feedback_uri: uri,
                feedback_hash: hash(e.filehash),
            };
            (agent(e.agentId), data, args)
        }
        interim_hashed_tag::NewFeedback::SIGNATURE_HASH => {
            let e: raw::interim_hashed_tag::NewFeedback = typed::<interim_hashed_tag::NewFeedback, _>(log)?;
            let tag2 = texts.take("tag2", &e.tag2);
            let endpoint = texts.take("endpoint", &e.endpoint);
            let uri = texts.take("feedbackURI", &e.feedbackURI);
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "score": e.score, "tag1": e.tag1.to_string(),
                              "tag2": tag2.as_str(), "endpoint": endpoint.as_str(), "feedbackURI": uri.as_str(),
                              "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(interim_hashed_tag::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: None,
                tag1_hash: Some(hash(e.tag1)),
                tag2,
                endpoint,
                feedback_uri: uri,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        interim_text_tag::NewFeedback::SIGNATURE_HASH => {
            let e: raw::interim_text_tag::NewFeedback = typed::<interim_text_tag::NewFeedback, _>(log)?;
            let tag1 = texts.take("tag1", &e.tag1);
            let tag2 = texts.take("tag2", &e.tag2);
            let endpoint = texts.take("endpoint", &e.endpoint);
            let uri = texts.take("feedbackURI", &e.feedbackURI);
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "score": e.score,
                              "indexedTag1": e.indexedTag1.to_string(), "tag1": tag1.as_str(), "tag2": tag2.as_str(),
                              "endpoint": endpoint.as_str(), "feedbackURI": uri.as_str(),
                              "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(interim_text_tag::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: Some(tag1),
                tag1_hash: None,
                tag2,
                endpoint,
                feedback_uri: uri,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        current::FeedbackRevoked::SIGNATURE_HASH => {
            let e: current::FeedbackRevoked = typed::<current::FeedbackRevoked, _>(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string()});
            let data =
                EventData::FeedbackRevoked { client_address: e.clientAddress.into(), feedback_index: e.feedbackIndex };
            (agent(e.agentId), data, args)
        }
        current::ResponseAppended::SIGNATURE_HASH => {
            let e: raw::current::ResponseAppended = typed::<current::ResponseAppended, _>(log)?;
            let uri = texts.take("responseURI", &e.responseURI);
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "responder": e.responder.to_string(),
                              "responseURI": uri.as_str(), "responseHash": e.responseHash.to_string()});
            let data = EventData::ResponseAppended {
                client_address: e.clientAddress.into(),
                feedback_index: e.feedbackIndex,
                responder: e.responder.into(),
                response_uri: uri,
                response_hash: hash(e.responseHash),
            };
            (agent(e.agentId), data, args)
        }
        current::ValidationRequest::SIGNATURE_HASH => {
            let e: raw::current::ValidationRequest = typed::<current::ValidationRequest, _>(log)?;
            let uri = texts.take("requestURI", &e.requestURI);
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestURI": uri.as_str(), "requestHash": e.requestHash.to_string()});
            let data = EventData::ValidationRequest {
                validator_address: e.validatorAddress.into(),
                request_uri: uri,
                request_hash: hash(e.requestHash),
            };
            (agent(e.agentId), data, args)
        }
        current::ValidationResponse::SIGNATURE_HASH => {
            let e: raw::current::ValidationResponse = typed::<current::ValidationResponse, _>(log)?;
            let uri = texts.take("responseURI", &e.responseURI);
            let tag = texts.take("tag", &e.tag);
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestHash": e.requestHash.to_string(), "response": e.response,
                              "responseURI": uri.as_str(), "responseHash": e.responseHash.to_string(),
                              "tag": tag.as_str()});
            let data = EventData::ValidationResponse {
                validator_address: e.validatorAddress.into(),
                request_hash: hash(e.requestHash),
                response: e.response,
                response_uri: uri,
                response_hash: hash(e.responseHash),
                tag,
            };
            (agent(e.agentId), data, args)
        }
        v04::ValidationResponse::SIGNATURE_HASH => {
            let e: raw::v04::ValidationResponse = typed::<v04::ValidationResponse, _>(log)?;
            let uri = texts.take("responseUri", &e.responseUri);
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestHash": e.requestHash.to_string(), "response": e.response,
                              "responseUri": uri.as_str(), "responseHash": e.responseHash.to_string(),
                              "tag": e.tag.to_string()});
            let data = EventData::ValidationResponse {
                validator_address: e.validatorAddress.into(),
                request_hash: hash(e.requestHash),
                response: e.response,
                response_uri: uri,
                response_hash: hash(e.responseHash),
                tag: bytes32_text(e.tag),
            };
            (agent(e.agentId), data, args)
        }
        other => {
            return Err(unused_event(other).map_or(DecodeError::UnknownTopic(other), DecodeError::Unused));
        }
    };
    Ok((agent_id, data, texts.into_args(args)))
}

/// The normalized event of a mined log on `chain`. `block_time` is the log's block
/// timestamp (from the log, or from its block when the node leaves it out).
pub fn decode(chain: ChainId, log: &Log, block_time: DateTime<Utc>) -> Result<NewEvent, DecodeError> {
    let (agent_id, data, args) = decode_data(&log.inner)?;
    let position = LogPosition {
        chain_id: chain,
        contract_address: log.inner.address.into(),
        block_number: log.block_number.ok_or(DecodeError::Incomplete("the block number"))?,
        block_hash: hash(log.block_hash.ok_or(DecodeError::Incomplete("the block hash"))?),
        block_timestamp: block_time,
        tx_hash: hash(log.transaction_hash.ok_or(DecodeError::Incomplete("the transaction hash"))?),
        log_index: log.log_index.and_then(|i| u32::try_from(i).ok()).ok_or(DecodeError::Incomplete("the log index"))?,
    };
    Ok(NewEvent { event: ChainEvent { log: position, agent_id, data }, args })
}

/// Every topic0 the indexer decodes, for the `eth_getLogs` filter.
pub fn known_topics() -> Vec<B256> {
    vec![
        current::Registered::SIGNATURE_HASH,
        current::MetadataSet::SIGNATURE_HASH,
        current::URIUpdated::SIGNATURE_HASH,
        v04::UriUpdated::SIGNATURE_HASH,
        current::Transfer::SIGNATURE_HASH,
        current::NewFeedback::SIGNATURE_HASH,
        v04::NewFeedback::SIGNATURE_HASH,
        interim_hashed_tag::NewFeedback::SIGNATURE_HASH,
        interim_text_tag::NewFeedback::SIGNATURE_HASH,
        current::FeedbackRevoked::SIGNATURE_HASH,
        current::ResponseAppended::SIGNATURE_HASH,
        current::ValidationRequest::SIGNATURE_HASH,
        current::ValidationResponse::SIGNATURE_HASH,
        v04::ValidationResponse::SIGNATURE_HASH,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes32_tags_lose_their_trailing_zeros() {
        let mut raw = [0u8; 32];
        raw[..6].copy_from_slice(b"uptime");
        assert_eq!(bytes32_text(B256::from(raw)), "uptime");
        assert_eq!(bytes32_text(B256::ZERO), "");
    }

    #[test]
    fn every_layout_has_its_own_topic() {
        let topics = known_topics();
        let unique: std::collections::HashSet<_> = topics.iter().collect();
        assert_eq!(unique.len(), topics.len());
    }

    #[test]
    fn an_unknown_topic_is_named() {
        let log = PrimitiveLog::new_unchecked(Default::default(), vec![B256::repeat_byte(7)], Default::default());
        assert_eq!(decode_data(&log).unwrap_err(), DecodeError::UnknownTopic(B256::repeat_byte(7)));
    }

    fn feedback_log(tag1: &[u8], uri: &[u8]) -> PrimitiveLog {
        let event = raw::current::NewFeedback {
            agentId: U256::from(7),
            clientAddress: alloy::primitives::Address::repeat_byte(1),
            feedbackIndex: 1,
            value: -32,
            valueDecimals: 1,
            indexedTag1: B256::repeat_byte(2),
            tag1: tag1.to_vec().into(),
            tag2: b"tag2".to_vec().into(),
            endpoint: Default::default(),
            feedbackURI: uri.to_vec().into(),
            feedbackHash: B256::repeat_byte(3),
        };
        let mut data = event.encode_log_data();
        let mut topics = data.topics().to_vec();
        topics[0] = current::NewFeedback::SIGNATURE_HASH;
        data.set_topics_unchecked(topics);
        PrimitiveLog { address: Default::default(), data }
    }

    #[test]
    fn text_twins_encode_like_the_declared_layouts() {
        // Encoded as the contract declares it, read back through the `bytes` twin.
        let declared = current::NewFeedback {
            agentId: U256::from(9),
            clientAddress: alloy::primitives::Address::repeat_byte(4),
            feedbackIndex: 2,
            value: 9977,
            valueDecimals: 2,
            indexedTag1: B256::repeat_byte(5),
            tag1: "uptime".into(),
            tag2: "τ".into(),
            endpoint: "https://agent.example".into(),
            feedbackURI: "ipfs://x".into(),
            feedbackHash: B256::repeat_byte(6),
        };
        let log = PrimitiveLog { address: Default::default(), data: declared.encode_log_data() };
        let (agent_id, data, args) = decode_data(&log).unwrap();
        assert_eq!(agent_id, AgentId::new(U256::from(9)));
        let EventData::NewFeedback { tag1, tag2, endpoint, feedback_uri, value, .. } = data else { panic!("{data:?}") };
        assert_eq!((tag1.unwrap().as_str(), tag2.as_str()), ("uptime", "τ"));
        assert_eq!((endpoint.as_str(), feedback_uri.as_str()), ("https://agent.example", "ipfs://x"));
        assert_eq!(value.decimal().to_string(), "99.77");
        assert!(args.get("original_bytes").is_none(), "{args}");
    }

    #[test]
    fn hostile_text_is_stored_and_its_bytes_kept() {
        let log = feedback_log(b"a\0b", &[0xff, b'x', 0xfe]);
        let (_, data, args) = decode_data(&log).unwrap();
        let EventData::NewFeedback { tag1, feedback_uri, tag2, .. } = data else { panic!("{data:?}") };
        assert_eq!(tag1.unwrap().as_str(), "a\u{FFFD}b");
        assert_eq!(feedback_uri.as_str(), "\u{FFFD}x\u{FFFD}");
        assert_eq!(tag2.as_str(), "tag2");
        assert_eq!(args["tag1"], "a\u{FFFD}b");
        assert_eq!(args["original_bytes"], json!({"tag1": "0x610062", "feedbackURI": "0xff78fe"}));
        assert!(!args.to_string().contains("\\u0000"), "{args}");
    }

    #[test]
    fn garbage_under_a_known_topic_is_malformed() {
        let mut log = feedback_log(b"x", b"y");
        log.data = alloy::primitives::LogData::new_unchecked(log.data.topics().to_vec(), vec![0xab; 10].into());
        assert!(
            matches!(decode_data(&log), Err(DecodeError::Malformed { event, .. }) if event.starts_with("NewFeedback("))
        );
    }

    #[test]
    fn events_the_product_does_not_use_are_named() {
        let log = PrimitiveLog::new_unchecked(
            Default::default(),
            vec![unused::MetadataUpdate::SIGNATURE_HASH],
            U256::from(1).to_be_bytes_vec().into(),
        );
        assert_eq!(decode_data(&log).unwrap_err(), DecodeError::Unused("MetadataUpdate(uint256)"));
        let log = PrimitiveLog::new_unchecked(
            Default::default(),
            vec![unused::v4::Initialized::SIGNATURE_HASH],
            Default::default(),
        );
        assert_eq!(decode_data(&log).unwrap_err(), DecodeError::Unused("Initialized(uint8)"));
    }
}
