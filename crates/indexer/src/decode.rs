//! A registry log to the normalized event of SPEC 1.2, chosen by topic0 (the registries are
//! upgradeable proxies: the address says nothing about the layout).

use alloy::primitives::{B256, Log as PrimitiveLog, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::domain::{AgentId, ChainEvent, ChainId, EventData, FeedbackValue, Hash32, HexBytes, LogPosition, NewEvent};

use crate::abi::{current, interim_hashed_tag, interim_text_tag, v04};

/// Why a log did not become an event. Neither stops indexing: the log is counted and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
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

/// A bytes32 of the October 2025 layout as text: UTF-8 without the trailing zeros.
fn bytes32_text(value: B256) -> String {
    let bytes = value.as_slice();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn feedback_value(event: &'static str, raw: i128, decimals: u8) -> Result<FeedbackValue, DecodeError> {
    FeedbackValue::new(raw, decimals).ok_or_else(|| malformed(event, format!("valueDecimals {decimals} is over 18")))
}

/// Decodes `event` from `log`, or says why not.
fn typed<E: SolEvent>(log: &PrimitiveLog) -> Result<E, DecodeError> {
    E::decode_log_data(&log.data).map_err(|e| malformed(E::SIGNATURE, e))
}

/// The agent id, the event-specific fields, and the arguments as they came (JSONB `args`).
fn decode_data(log: &PrimitiveLog) -> Result<(AgentId, EventData, Value), DecodeError> {
    let topic0 = *log.data.topics().first().ok_or(DecodeError::NoTopics)?;
    Ok(match topic0 {
        current::Registered::SIGNATURE_HASH => {
            let e: current::Registered = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "agentURI": e.agentURI, "owner": e.owner.to_string()});
            (agent(e.agentId), EventData::Registered { owner: e.owner.into(), agent_uri: e.agentURI }, args)
        }
        current::MetadataSet::SIGNATURE_HASH => {
            let e: current::MetadataSet = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "indexedMetadataKey": e.indexedMetadataKey.to_string(),
                              "metadataKey": e.metadataKey, "metadataValue": e.metadataValue.to_string()});
            let data = EventData::MetadataSet {
                metadata_key: e.metadataKey,
                metadata_value: HexBytes(e.metadataValue.to_vec()),
            };
            (agent(e.agentId), data, args)
        }
        current::URIUpdated::SIGNATURE_HASH => {
            let e: current::URIUpdated = typed(log)?;
            let args =
                json!({"agentId": e.agentId.to_string(), "newURI": e.newURI, "updatedBy": e.updatedBy.to_string()});
            (agent(e.agentId), EventData::UriUpdated { agent_uri: e.newURI, updated_by: e.updatedBy.into() }, args)
        }
        v04::UriUpdated::SIGNATURE_HASH => {
            let e: v04::UriUpdated = typed(log)?;
            let args =
                json!({"agentId": e.agentId.to_string(), "newUri": e.newUri, "updatedBy": e.updatedBy.to_string()});
            (agent(e.agentId), EventData::UriUpdated { agent_uri: e.newUri, updated_by: e.updatedBy.into() }, args)
        }
        current::Transfer::SIGNATURE_HASH => {
            let e: current::Transfer = typed(log)?;
            let args = json!({"from": e.from.to_string(), "to": e.to.to_string(), "tokenId": e.tokenId.to_string()});
            (agent(e.tokenId), EventData::Transfer { from: e.from.into(), to: e.to.into() }, args)
        }
        current::NewFeedback::SIGNATURE_HASH => {
            let e: current::NewFeedback = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "value": e.value.to_string(),
                              "valueDecimals": e.valueDecimals, "indexedTag1": e.indexedTag1.to_string(), "tag1": e.tag1,
                              "tag2": e.tag2, "endpoint": e.endpoint, "feedbackURI": e.feedbackURI,
                              "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(current::NewFeedback::SIGNATURE, e.value, e.valueDecimals)?,
                tag1: Some(e.tag1),
                tag1_hash: None,
                tag2: e.tag2,
                endpoint: e.endpoint,
                feedback_uri: e.feedbackURI,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        v04::NewFeedback::SIGNATURE_HASH => {
            let e: v04::NewFeedback = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "score": e.score, "tag1": e.tag1.to_string(), "tag2": e.tag2.to_string(),
                              "fileuri": e.fileuri, "filehash": e.filehash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: None,
                value: feedback_value(v04::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: Some(bytes32_text(e.tag1)),
                tag1_hash: None,
                tag2: bytes32_text(e.tag2),
                endpoint: String::new(),
                feedback_uri: e.fileuri,
                feedback_hash: hash(e.filehash),
            };
            (agent(e.agentId), data, args)
        }
        interim_hashed_tag::NewFeedback::SIGNATURE_HASH => {
            let e: interim_hashed_tag::NewFeedback = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "score": e.score, "tag1": e.tag1.to_string(),
                              "tag2": e.tag2, "endpoint": e.endpoint, "feedbackURI": e.feedbackURI,
                              "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(interim_hashed_tag::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: None,
                tag1_hash: Some(hash(e.tag1)),
                tag2: e.tag2,
                endpoint: e.endpoint,
                feedback_uri: e.feedbackURI,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        interim_text_tag::NewFeedback::SIGNATURE_HASH => {
            let e: interim_text_tag::NewFeedback = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "score": e.score,
                              "indexedTag1": e.indexedTag1.to_string(), "tag1": e.tag1, "tag2": e.tag2,
                              "endpoint": e.endpoint, "feedbackURI": e.feedbackURI,
                              "feedbackHash": e.feedbackHash.to_string()});
            let data = EventData::NewFeedback {
                client_address: e.clientAddress.into(),
                feedback_index: Some(e.feedbackIndex),
                value: feedback_value(interim_text_tag::NewFeedback::SIGNATURE, i128::from(e.score), 0)?,
                tag1: Some(e.tag1),
                tag1_hash: None,
                tag2: e.tag2,
                endpoint: e.endpoint,
                feedback_uri: e.feedbackURI,
                feedback_hash: hash(e.feedbackHash),
            };
            (agent(e.agentId), data, args)
        }
        current::FeedbackRevoked::SIGNATURE_HASH => {
            let e: current::FeedbackRevoked = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string()});
            let data =
                EventData::FeedbackRevoked { client_address: e.clientAddress.into(), feedback_index: e.feedbackIndex };
            (agent(e.agentId), data, args)
        }
        current::ResponseAppended::SIGNATURE_HASH => {
            let e: current::ResponseAppended = typed(log)?;
            let args = json!({"agentId": e.agentId.to_string(), "clientAddress": e.clientAddress.to_string(),
                              "feedbackIndex": e.feedbackIndex.to_string(), "responder": e.responder.to_string(),
                              "responseURI": e.responseURI, "responseHash": e.responseHash.to_string()});
            let data = EventData::ResponseAppended {
                client_address: e.clientAddress.into(),
                feedback_index: e.feedbackIndex,
                responder: e.responder.into(),
                response_uri: e.responseURI,
                response_hash: hash(e.responseHash),
            };
            (agent(e.agentId), data, args)
        }
        current::ValidationRequest::SIGNATURE_HASH => {
            let e: current::ValidationRequest = typed(log)?;
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestURI": e.requestURI, "requestHash": e.requestHash.to_string()});
            let data = EventData::ValidationRequest {
                validator_address: e.validatorAddress.into(),
                request_uri: e.requestURI,
                request_hash: hash(e.requestHash),
            };
            (agent(e.agentId), data, args)
        }
        current::ValidationResponse::SIGNATURE_HASH => {
            let e: current::ValidationResponse = typed(log)?;
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestHash": e.requestHash.to_string(), "response": e.response,
                              "responseURI": e.responseURI, "responseHash": e.responseHash.to_string(), "tag": e.tag});
            let data = EventData::ValidationResponse {
                validator_address: e.validatorAddress.into(),
                request_hash: hash(e.requestHash),
                response: e.response,
                response_uri: e.responseURI,
                response_hash: hash(e.responseHash),
                tag: e.tag,
            };
            (agent(e.agentId), data, args)
        }
        v04::ValidationResponse::SIGNATURE_HASH => {
            let e: v04::ValidationResponse = typed(log)?;
            let args = json!({"validatorAddress": e.validatorAddress.to_string(), "agentId": e.agentId.to_string(),
                              "requestHash": e.requestHash.to_string(), "response": e.response,
                              "responseUri": e.responseUri, "responseHash": e.responseHash.to_string(),
                              "tag": e.tag.to_string()});
            let data = EventData::ValidationResponse {
                validator_address: e.validatorAddress.into(),
                request_hash: hash(e.requestHash),
                response: e.response,
                response_uri: e.responseUri,
                response_hash: hash(e.responseHash),
                tag: bytes32_text(e.tag),
            };
            (agent(e.agentId), data, args)
        }
        other => return Err(DecodeError::UnknownTopic(other)),
    })
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
}
