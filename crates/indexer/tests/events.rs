//! Every event type, sent as a real transaction to the project's registry contracts on
//! anvil, is stored with every field right; the older layouts decode to the same types.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use alloy::primitives::{B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use common::{Chain, catch_up};
use serde_json::{Value, json};
use shared::domain::StoredEvent;
use testkit::chain::{
    IdentityRegistry, LegacyFeedbackInterim, LegacyFeedbackV04, ReputationRegistry, ValidationRegistry,
};

fn view(event: &StoredEvent) -> Value {
    serde_json::to_value(event).unwrap()
}

fn hex(value: impl ToString) -> String {
    value.to_string().to_lowercase()
}

#[tokio::test]
async fn every_event_type_is_stored_with_every_field() {
    let chain = Chain::start().await;
    let r = &chain.registries;
    let accounts = r.accounts().await;
    let (owner, other) = (accounts[0], accounts[1]);
    let max_agent = U256::MAX;
    let feedback_hash = B256::repeat_byte(0xfb);
    let request_hash = B256::repeat_byte(0xaa);

    let register = r.call(r.identity, IdentityRegistry::registerCall { agentURI: "ipfs://agent-0".into() }).await;
    r.call(
        r.identity,
        IdentityRegistry::setMetadataCall {
            agentId: U256::ZERO,
            key: "ключ 🔑".into(),
            value: Bytes::from(vec![1, 2, 255]),
        },
    )
    .await;
    r.call(r.identity, IdentityRegistry::setAgentURICall { agentId: U256::ZERO, newURI: String::new() }).await;
    // Not a registry event: read, counted, skipped.
    r.call(r.identity, IdentityRegistry::approveCall { approved: other, agentId: U256::ZERO }).await;
    r.call(r.identity, IdentityRegistry::transferFromCall { from: owner, to: other, agentId: U256::ZERO }).await;
    let feedback = r
        .call(
            r.reputation,
            ReputationRegistry::giveFeedbackCall {
                agentId: max_agent,
                value: -32,
                valueDecimals: 1,
                tag1: "uptime ✓".into(),
                tag2: String::new(),
                endpoint: "https://agent.example/mcp".into(),
                feedbackURI: "ipfs://feedback".into(),
                feedbackHash: feedback_hash,
            },
        )
        .await;
    r.call(r.reputation, ReputationRegistry::revokeFeedbackCall { agentId: max_agent, feedbackIndex: 1 }).await;
    r.call_from(
        other,
        r.reputation,
        ReputationRegistry::appendResponseCall {
            agentId: max_agent,
            clientAddress: owner,
            feedbackIndex: 1,
            responseURI: "ipfs://response".into(),
            responseHash: B256::repeat_byte(0x11),
        },
    )
    .await;
    r.call(
        r.validation,
        ValidationRegistry::validationRequestCall {
            validatorAddress: other,
            agentId: U256::from(7),
            requestURI: "ipfs://request".into(),
            requestHash: request_hash,
        },
    )
    .await;
    r.call_from(
        other,
        r.validation,
        ValidationRegistry::validationResponseCall {
            requestHash: request_hash,
            response: 87,
            responseURI: String::new(),
            responseHash: B256::repeat_byte(0x22),
            tag: "zk".into(),
        },
    )
    .await;

    let mut indexer = chain.indexer(5);
    let steps = catch_up(&mut indexer).await;
    let skipped: u64 =
        steps.iter().map(|s| if let indexer::Step::Indexed { skipped, .. } = s { *skipped } else { 0 }).sum();
    assert_eq!(skipped, 1, "the Approval log is counted and skipped: {steps:?}");
    let events = chain.events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type().as_str()).collect();
    assert_eq!(
        types,
        [
            "Transfer",
            "Registered",
            "MetadataSet",
            "URIUpdated",
            "Transfer",
            "NewFeedback",
            "FeedbackRevoked",
            "ResponseAppended",
            "ValidationRequest",
            "ValidationResponse"
        ]
    );

    // Where each came from, exactly as the node says.
    let log = &register.inner.logs()[1];
    let registered = view(&events[1]);
    assert_eq!(registered["chain_id"], 31337);
    assert_eq!(registered["registry"], "identity");
    assert_eq!(registered["contract_address"], hex(r.identity));
    assert_eq!(registered["block_number"], register.block_number.unwrap());
    assert_eq!(registered["block_hash"], hex(register.block_hash.unwrap()));
    assert_eq!(registered["tx_hash"], hex(register.transaction_hash));
    assert_eq!(registered["log_index"], log.log_index.unwrap());
    let block = r.provider.get_block_by_number(register.block_number.unwrap().into()).await.unwrap().unwrap();
    let stored_time = events[1].event.log.block_timestamp.timestamp();
    assert_eq!(u64::try_from(stored_time).unwrap(), block.header.inner.timestamp);
    assert_eq!(registered["removed"], false);
    assert_eq!(registered["agent_id"], "0");
    assert_eq!(registered["owner"], hex(owner));
    assert_eq!(registered["agent_uri"], "ipfs://agent-0");

    let mint = view(&events[0]);
    assert_eq!(
        (mint["from"].clone(), mint["to"].clone()),
        (json!(hex(alloy::primitives::Address::ZERO)), json!(hex(owner)))
    );
    let metadata = view(&events[2]);
    assert_eq!(metadata["metadata_key"], "ключ 🔑");
    assert_eq!(metadata["metadata_value"], "0x0102ff");
    let uri = view(&events[3]);
    assert_eq!((uri["agent_uri"].clone(), uri["updated_by"].clone()), (json!(""), json!(hex(owner))));
    assert_eq!(view(&events[4])["to"], hex(other));

    let fb = view(&events[5]);
    assert_eq!(fb["tx_hash"], hex(feedback.transaction_hash));
    assert_eq!(fb["registry"], "reputation");
    assert_eq!(fb["agent_id"], max_agent.to_string());
    assert_eq!(fb["client_address"], hex(owner));
    assert_eq!(fb["feedback_index"], 1);
    assert_eq!(
        (fb["value"].clone(), fb["value_raw"].clone(), fb["value_decimals"].clone()),
        (json!("-3.2"), json!("-32"), json!(1))
    );
    assert_eq!(fb["tag1"], "uptime ✓");
    assert_eq!(fb["tag2"], "");
    assert_eq!(fb["endpoint"], "https://agent.example/mcp");
    assert_eq!(fb["feedback_uri"], "ipfs://feedback");
    assert_eq!(fb["feedback_hash"], hex(feedback_hash));

    let revoked = view(&events[6]);
    assert_eq!((revoked["feedback_index"].clone(), revoked["client_address"].clone()), (json!(1), json!(hex(owner))));
    let response = view(&events[7]);
    assert_eq!(response["responder"], hex(other));
    assert_eq!(response["response_uri"], "ipfs://response");
    assert_eq!(response["response_hash"], hex(B256::repeat_byte(0x11)));

    let request = view(&events[8]);
    assert_eq!(request["registry"], "validation");
    assert_eq!(request["validator_address"], hex(other));
    assert_eq!(request["agent_id"], "7");
    assert_eq!(request["request_uri"], "ipfs://request");
    assert_eq!(request["request_hash"], hex(request_hash));
    let answer = view(&events[9]);
    assert_eq!(answer["response"], 87);
    assert_eq!(answer["response_uri"], "");
    assert_eq!(answer["tag"], "zk");
    assert_eq!(answer["agent_id"], "7");

    // The decoded arguments are kept as they came.
    let args: Value = sqlx::query_scalar("SELECT args FROM events WHERE event_type = 'NewFeedback'")
        .fetch_one(&chain.db.pool)
        .await
        .unwrap();
    assert_eq!(args["value"], "-32");
    assert_eq!(args["indexedTag1"], hex(keccak256("uptime ✓")));
}

#[tokio::test]
async fn older_feedback_layouts_decode_to_new_feedback_with_value_equal_to_score() {
    let chain = Chain::start().await;
    let r = &chain.registries;
    let v04 = r.deploy_contract("LegacyFeedbackV04").await;
    let hashed = r.deploy_contract("LegacyFeedbackHashedTag").await;
    let text = r.deploy_contract("LegacyFeedbackTextTag").await;
    let mut tag = [0u8; 32];
    tag[..6].copy_from_slice(b"uptime");
    r.call(
        v04,
        LegacyFeedbackV04::feedbackCall {
            agentId: U256::from(3),
            score: 97,
            tag1: B256::from(tag),
            tag2: B256::ZERO,
            fileuri: "ipfs://old".into(),
            filehash: B256::repeat_byte(1),
        },
    )
    .await;
    let interim = |score| LegacyFeedbackInterim::feedbackCall {
        agentId: U256::from(3),
        feedbackIndex: 2,
        score,
        tag1: "latency".into(),
        tag2: "p99".into(),
        endpoint: "https://e".into(),
        feedbackURI: "ipfs://interim".into(),
        feedbackHash: B256::repeat_byte(2),
    };
    r.call(hashed, interim(55)).await;
    r.call(text, interim(66)).await;
    r.call(
        v04,
        LegacyFeedbackV04::validationResponseCall {
            validator: r.account,
            agentId: U256::from(3),
            requestHash: B256::repeat_byte(3),
            response: 40,
            uri: "ipfs://v".into(),
            responseHash: B256::repeat_byte(4),
            tag: B256::from(tag),
        },
    )
    .await;
    r.call(v04, LegacyFeedbackV04::uriUpdatedCall { agentId: U256::from(3), newUri: "ipfs://new".into() }).await;

    // The legacy contracts sit at other addresses: watch them as registries.
    let mut config = chain.config(100);
    config.registries.identity = v04.into();
    config.registries.reputation = hashed.into();
    config.registries.validation = Some(text.into());
    let mut indexer = indexer::ChainIndexer::new(config, chain.db.pool.clone());
    catch_up(&mut indexer).await;
    let events: Vec<Value> = chain.events().await.iter().map(view).collect();
    assert_eq!(events.len(), 5, "{events:#?}");

    let old = &events[0];
    assert_eq!(old["event_type"], "NewFeedback");
    assert_eq!((old["value"].clone(), old["value_decimals"].clone()), (json!("97"), json!(0)));
    assert_eq!(old["tag1"], "uptime");
    assert_eq!(old["tag2"], "");
    assert_eq!(old["feedback_uri"], "ipfs://old");
    assert_eq!(old["feedback_index"], Value::Null, "the October 2025 layout has no index");

    let only_hash = &events[1];
    assert_eq!(only_hash["value"], "55");
    assert_eq!(only_hash["tag1"], Value::Null, "only the hash of tag1 reached the logs");
    assert_eq!(only_hash["tag1_hash"], hex(keccak256("latency")));
    assert_eq!(only_hash["tag2"], "p99");
    assert_eq!(only_hash["feedback_index"], 2);

    let with_text = &events[2];
    assert_eq!((with_text["value"].clone(), with_text["tag1"].clone()), (json!("66"), json!("latency")));

    let validation = &events[3];
    assert_eq!(validation["event_type"], "ValidationResponse");
    assert_eq!((validation["response"].clone(), validation["tag"].clone()), (json!(40), json!("uptime")));
    assert_eq!(validation["response_uri"], "ipfs://v");
    let uri = &events[4];
    assert_eq!((uri["event_type"].clone(), uri["agent_uri"].clone()), (json!("URIUpdated"), json!("ipfs://new")));
}
