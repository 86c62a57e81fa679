//! Whatever a registry emits, the chain moves on (SPEC 1.3): NUL in every text field of every
//! event type, text that is not UTF-8, a 100 KB string, logs that do not decode and logs of
//! unknown events are stored, quarantined or counted, and the events after them are indexed.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use alloy::primitives::{Address, B256, Bytes, LogData, U256};
use alloy::sol_types::SolEvent;
use chrono::Utc;
use common::{Chain, catch_up};
use indexer::abi::{current, raw, unused};
use indexer::quarantine::{self, RawLog, Stage};
use indexer::rpc::BlockRef;
use indexer::store::{self, Range};
use indexer::{ChainIndexer, Step};
use serde_json::{Value, json};
use shared::domain::{ChainId, EventData, StoredEvent};
use testkit::chain::{IdentityRegistry, LogEmitter, Registries, ReputationRegistry};

/// Sends a log with exactly these topics and data from the emitter.
async fn emit(r: &Registries, emitter: Address, data: LogData) {
    let call = LogEmitter::emitLogCall { topics: data.topics().to_vec(), data: data.data.clone() };
    r.call(emitter, call).await;
}

async fn args_of(chain: &Chain, event: &StoredEvent) -> Value {
    sqlx::query_scalar("SELECT args FROM events WHERE id = $1")
        .bind(event.id.0)
        .fetch_one(&chain.db.pool)
        .await
        .unwrap()
}

/// Every text field of an event, by name.
fn texts(event: &StoredEvent) -> Vec<(&'static str, String)> {
    let t = |name, value: &shared::domain::Text| (name, value.to_string());
    match &event.event.data {
        EventData::Registered { agent_uri, .. } => vec![t("agent_uri", agent_uri)],
        EventData::MetadataSet { metadata_key, .. } => vec![t("metadata_key", metadata_key)],
        EventData::UriUpdated { agent_uri, .. } => vec![t("agent_uri", agent_uri)],
        EventData::NewFeedback { tag1, tag2, endpoint, feedback_uri, .. } => {
            let mut all = vec![t("tag2", tag2), t("endpoint", endpoint), t("feedback_uri", feedback_uri)];
            all.extend(tag1.as_ref().map(|tag| t("tag1", tag)));
            all
        }
        EventData::ResponseAppended { response_uri, .. } => vec![t("response_uri", response_uri)],
        EventData::ValidationRequest { request_uri, .. } => vec![t("request_uri", request_uri)],
        EventData::ValidationResponse { response_uri, tag, .. } => vec![t("response_uri", response_uri), t("tag", tag)],
        EventData::Transfer { .. } | EventData::FeedbackRevoked { .. } => Vec::new(),
    }
}

fn feedback(tag1: &str, uri: String) -> ReputationRegistry::giveFeedbackCall {
    ReputationRegistry::giveFeedbackCall {
        agentId: U256::ZERO,
        value: 5,
        valueDecimals: 0,
        tag1: tag1.into(),
        tag2: "b\0".into(),
        endpoint: "c\0".into(),
        feedbackURI: uri,
        feedbackHash: B256::repeat_byte(1),
    }
}

#[tokio::test]
async fn hostile_logs_never_stop_a_chain() {
    let chain = Chain::start().await;
    let r = &chain.registries;
    let owner = r.accounts().await[0];
    // The emitter stands in for the validation registry: the indexer decodes by topic0, so
    // whatever it emits is read as a registry log.
    let emitter = r.deploy_contract("LogEmitter").await;
    let mut config = chain.config(100);
    config.registries.validation = Some(emitter.into());

    // NUL in every text field, through the project's identity and reputation registries.
    r.call(r.identity, IdentityRegistry::registerCall { agentURI: "ipfs://a\0b".into() }).await;
    let key = IdentityRegistry::setMetadataCall { agentId: U256::ZERO, key: "k\0".into(), value: Bytes::from(vec![0]) };
    r.call(r.identity, key).await;
    r.call(r.identity, IdentityRegistry::setAgentURICall { agentId: U256::ZERO, newURI: "\0".into() }).await;
    r.call(r.reputation, feedback("a\0", "d\0".into())).await;
    let response = ReputationRegistry::appendResponseCall {
        agentId: U256::ZERO,
        clientAddress: owner,
        feedbackIndex: 1,
        responseURI: "r\0".into(),
        responseHash: B256::ZERO,
    };
    r.call(r.reputation, response).await;
    // ... and in the validation events' text, in their exact layouts.
    let request = current::ValidationRequest {
        validatorAddress: owner,
        agentId: U256::ZERO,
        requestURI: "q\0".into(),
        requestHash: B256::repeat_byte(2),
    };
    emit(r, emitter, request.encode_log_data()).await;
    let verdict = current::ValidationResponse {
        validatorAddress: owner,
        agentId: U256::ZERO,
        requestHash: B256::repeat_byte(2),
        response: 90,
        responseURI: "s\0".into(),
        responseHash: B256::ZERO,
        tag: "t\0".into(),
    };
    emit(r, emitter, verdict.encode_log_data()).await;
    // Text that is not UTF-8, under the real NewFeedback topic.
    let not_utf8 = raw::current::NewFeedback {
        agentId: U256::ZERO,
        clientAddress: owner,
        feedbackIndex: 2,
        value: 1,
        valueDecimals: 0,
        indexedTag1: B256::ZERO,
        tag1: Bytes::from(vec![0xff, 0xfe, b'!']),
        tag2: Bytes::new(),
        endpoint: Bytes::new(),
        feedbackURI: Bytes::new(),
        feedbackHash: B256::ZERO,
    };
    let mut data = not_utf8.encode_log_data();
    let mut topics = data.topics().to_vec();
    topics[0] = current::NewFeedback::SIGNATURE_HASH;
    data.set_topics_unchecked(topics.clone());
    emit(r, emitter, data).await;
    // A 100 KB URI.
    r.call(r.reputation, feedback("long", "u".repeat(100_000))).await;
    // A NewFeedback that does not decode, an event of no registry, an unused one.
    emit(r, emitter, LogData::new_unchecked(topics, Bytes::from(vec![0xab; 7]))).await;
    emit(r, emitter, LogData::new_unchecked(vec![B256::repeat_byte(0x77)], Bytes::new())).await;
    let unused = unused::MetadataUpdate { tokenId: U256::ZERO };
    emit(r, emitter, unused.encode_log_data()).await;
    // And after all of it, an ordinary feedback.
    r.call(r.reputation, feedback("ordinary", "ipfs://fine".into())).await;

    let mut indexer = ChainIndexer::new(config.clone(), chain.db.pool.clone());
    let steps = catch_up(&mut indexer).await;
    let (skipped, quarantined) = steps.iter().fold((0, 0), |(s, q), step| match step {
        Step::Indexed { skipped, quarantined, .. } => (s + skipped, q + quarantined),
        _ => (s, q),
    });
    assert_eq!((skipped, quarantined), (1, 2), "{steps:?}");

    let events = chain.events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type().as_str()).collect();
    assert_eq!(
        types,
        [
            "Transfer",
            "Registered",
            "MetadataSet",
            "URIUpdated",
            "NewFeedback",
            "ResponseAppended",
            "ValidationRequest",
            "ValidationResponse",
            "NewFeedback",
            "NewFeedback",
            "NewFeedback"
        ]
    );

    // Every text field with a NUL is stored with U+FFFD, and its bytes are in `args`.
    let with_nul: Vec<&StoredEvent> = events[1..8].iter().collect();
    let mut fields = 0;
    for event in with_nul {
        let args = args_of(&chain, event).await;
        let originals = args["original_bytes"].as_object().unwrap_or_else(|| panic!("no original bytes: {args}"));
        for (name, text) in texts(event) {
            assert!(!text.contains('\0'), "{name} holds NUL");
            assert!(text.contains('\u{FFFD}'), "{name} = {text:?}");
            fields += 1;
        }
        assert!(!originals.is_empty());
        let bytes = |hex: &Value| hex.as_str().unwrap().parse::<shared::domain::HexBytes>().unwrap().0;
        assert!(originals.values().all(|hex| bytes(hex).contains(&0)), "{originals:?}");
    }
    assert_eq!(fields, 11, "every text field of every event type");
    let args = args_of(&chain, &events[1]).await;
    assert_eq!(args["agentURI"], "ipfs://a\u{FFFD}b");
    assert_eq!(args["original_bytes"], json!({"agentURI": "0x697066733a2f2f610062"}));

    let EventData::NewFeedback { tag1, .. } = &events[8].event.data else { panic!() };
    assert_eq!(tag1.as_deref(), Some("\u{FFFD}\u{FFFD}!"));
    assert_eq!(args_of(&chain, &events[8]).await["original_bytes"], json!({"tag1": "0xfffe21"}));

    let EventData::NewFeedback { feedback_uri, .. } = &events[9].event.data else { panic!() };
    assert_eq!(feedback_uri.len(), 100_000, "long strings are stored whole");

    let EventData::NewFeedback { tag1, .. } = &events[10].event.data else { panic!() };
    assert_eq!(tag1.as_deref(), Some("ordinary"));

    let kept = quarantine::list(&chain.db.pool, ChainId(31337)).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|q| q.stage == "decode"));
    assert!(kept[0].reason.starts_with("NewFeedback(uint256,"), "{}", kept[0].reason);
    assert_eq!(kept[0].data, vec![0xab; 7], "the raw data is kept");
    assert!(kept[1].reason.contains("no registry event has topic0"), "{}", kept[1].reason);
    assert_eq!(kept[1].topics, [B256::repeat_byte(0x77).to_string()], "the topics are kept");

    // Reading the same blocks again adds nothing, to the events or to the quarantine.
    sqlx::query("DELETE FROM indexer_checkpoints").execute(&chain.db.pool).await.unwrap();
    let mut again = ChainIndexer::new(config, chain.db.pool.clone());
    catch_up(&mut again).await;
    assert_eq!(chain.events().await.len(), events.len());
    assert_eq!(quarantine::list(&chain.db.pool, ChainId(31337)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn rows_the_store_refuses_are_quarantined_and_the_range_commits() {
    let chain = Chain::start().await;
    let block = |n: u64| testkit::fixtures::feedback(n, 0, 1, 10, 0, "fine");
    let mut refused = block(2);
    refused.event.log.log_index = u32::MAX; // over the store's INTEGER column
    let mut too_far = block(3);
    too_far.event.log.block_number = u64::MAX;
    let events = vec![block(1), refused, too_far, block(4)];
    let sources: Vec<RawLog> = events
        .iter()
        .map(|e| RawLog {
            address: Address::ZERO,
            block_number: e.event.log.block_number,
            block_hash: e.event.log.block_hash.0,
            tx_hash: None,
            log_index: u64::from(e.event.log.log_index),
            topics: vec![current::NewFeedback::SIGNATURE_HASH],
            data: Bytes::from(vec![1, 2, 3]),
        })
        .collect();
    let end = BlockRef { number: 4, hash: B256::repeat_byte(4), parent_hash: B256::repeat_byte(3), time: Utc::now() };
    let mut range = Range::default();
    for (event, source) in events.into_iter().zip(sources) {
        range.push(event, source);
    }

    let committed = store::commit_range(&chain.db.pool, ChainId(31337), range, &end, false).await.unwrap();

    assert_eq!((committed.inserted, committed.quarantined), (2, 2));
    let stored: Vec<u64> = chain.events().await.iter().map(|e| e.event.log.block_number).collect();
    assert_eq!(stored, [1, 4]);
    let kept = quarantine::list(&chain.db.pool, ChainId(31337)).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|q| q.stage == Stage::Store.as_str()));
    assert!(kept.iter().any(|q| q.reason.contains("out of range")), "{kept:?}");
    assert!(kept.iter().any(|q| q.reason.contains("block number")), "{kept:?}");
    let checkpoint = store::checkpoint(&chain.db.pool, ChainId(31337)).await.unwrap().unwrap();
    assert_eq!(checkpoint.last_block, 4, "the range is committed without the refused rows");
}

/// Twenty events the store refuses (a log index over its INTEGER column).
fn refused_range() -> Range {
    let mut range = Range::default();
    for n in 1..=20 {
        let mut event = testkit::fixtures::feedback(n, 0, 1, 10, 0, "x");
        event.event.log.log_index = u32::MAX;
        let source = RawLog {
            address: Address::ZERO,
            block_number: n,
            block_hash: event.event.log.block_hash.0,
            tx_hash: None,
            log_index: u64::from(u32::MAX),
            topics: Vec::new(),
            data: Bytes::new(),
        };
        range.push(event, source);
    }
    range
}

#[tokio::test]
async fn a_range_the_store_refuses_almost_whole_fails_before_it_is_set_aside() {
    let chain = Chain::start().await;
    let end = BlockRef { number: 20, hash: B256::repeat_byte(4), parent_hash: B256::repeat_byte(3), time: Utc::now() };

    let error =
        store::commit_range(&chain.db.pool, ChainId(31337), refused_range(), &end, false).await.expect_err("refused");
    assert!(matches!(error, shared::store::events::StoreError::MostRefused { refused: 20, of: 20 }), "{error}");
    assert!(store::checkpoint(&chain.db.pool, ChainId(31337)).await.unwrap().is_none(), "nothing moved");
    assert!(quarantine::list(&chain.db.pool, ChainId(31337)).await.unwrap().is_empty());

    // After a few attempts the indexer sets such a range aside too: no input stops a chain.
    let committed =
        store::commit_range(&chain.db.pool, ChainId(31337), refused_range(), &end, true).await.expect("set aside");
    assert_eq!((committed.inserted, committed.quarantined), (0, 20));
    assert_eq!(store::checkpoint(&chain.db.pool, ChainId(31337)).await.unwrap().unwrap().last_block, 20);
}
