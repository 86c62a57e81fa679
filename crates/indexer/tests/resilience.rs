//! Restarts, reorgs, an unreachable node and refused ranges: the stored events end up
//! exactly those of the chain, with no gap and no duplicate.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use alloy::primitives::{B256, U256};
use common::{Chain, catch_up};
use indexer::chain::IndexError;
use indexer::rpc::RpcFailure;
use indexer::{ChainIndexer, Step};
use serde_json::{Value, json};
use shared::domain::EventData;
use testkit::chain::ReputationRegistry;
use testkit::proxy::TcpProxy;

/// `count` feedbacks (values 0..99) over 10 agents, in one transaction and block.
async fn feedback_batch(chain: &Chain, count: u64, tag: &str) {
    let call = ReputationRegistry::giveFeedbackBatchCall {
        firstAgentId: U256::ZERO,
        agents: U256::from(10),
        count: U256::from(count),
        tag1: tag.into(),
    };
    chain.registries.call(chain.registries.reputation, call).await;
}

async fn feedback(chain: &Chain, agent: u64, tag: &str) {
    let call = ReputationRegistry::giveFeedbackCall {
        agentId: U256::from(agent),
        value: 1,
        valueDecimals: 0,
        tag1: tag.into(),
        tag2: String::new(),
        endpoint: String::new(),
        feedbackURI: String::new(),
        feedbackHash: B256::ZERO,
    };
    chain.registries.call(chain.registries.reputation, call).await;
}

/// Every live feedback's index per agent is 1..=n with nothing missing or doubled.
async fn assert_complete(chain: &Chain, expected: usize) {
    let events = chain.events().await;
    let live: Vec<_> = events.iter().filter(|e| !e.removed).collect();
    assert_eq!(live.len(), expected, "stored events");
    let positions: BTreeSet<_> = live.iter().map(|e| (e.event.log.block_hash, e.event.log.log_index)).collect();
    assert_eq!(positions.len(), live.len(), "no log stored twice");
    let mut indexes: HashMap<String, Vec<u64>> = HashMap::new();
    for event in &live {
        if let EventData::NewFeedback { feedback_index: Some(i), .. } = &event.event.data {
            indexes.entry(event.event.agent_id.to_string()).or_default().push(*i);
        }
    }
    for (agent, mut seen) in indexes {
        seen.sort_unstable();
        let n = seen.len() as u64;
        assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "agent {agent} has a gap or a duplicate");
    }
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_backfill_leaves_no_gap_and_no_duplicate() {
    let chain = Chain::start().await;
    for _ in 0..6 {
        feedback_batch(&chain, 50, "bulk").await;
        chain.registries.mine(3).await;
    }
    let mut first = chain.indexer(2);
    for _ in 0..4 {
        assert!(matches!(first.step().await.unwrap(), Step::Indexed { .. }));
    }
    let part = chain.events().await.len();
    assert!(part > 0 && part < 300, "stopped in the middle: {part} of 300");
    drop(first);

    let mut second = chain.indexer(2);
    catch_up(&mut second).await;
    assert_complete(&chain, 300).await;

    // Reading a range again (a checkpoint set back by hand) adds nothing.
    sqlx::query("UPDATE indexer_checkpoints SET last_block = 3, last_block_hash = NULL")
        .execute(&chain.db.pool)
        .await
        .unwrap();
    let mut third = chain.indexer(4);
    let steps = catch_up(&mut third).await;
    assert!(steps.iter().any(|s| matches!(s, Step::Indexed { events: 0, .. })), "{steps:?}");
    assert_complete(&chain, 300).await;
}

#[tokio::test]
async fn a_reorg_marks_the_dropped_events_removed_and_indexes_the_new_branch() {
    let chain = Chain::start().await;
    let r = &chain.registries;
    feedback(&chain, 1, "before").await;
    let mut indexer = chain.indexer(100);
    catch_up(&mut indexer).await;
    let fork = r.head().await;

    let snapshot = r.snapshot().await;
    feedback(&chain, 1, "old branch").await;
    feedback(&chain, 2, "old branch").await;
    catch_up(&mut indexer).await;
    assert_eq!(chain.events().await.len(), 3);

    r.revert(snapshot).await;
    feedback(&chain, 3, "new branch").await;
    r.mine(3).await;
    let steps = catch_up(&mut indexer).await;
    assert!(steps.contains(&Step::Reorg { fork: Some(fork), removed: 2 }), "{steps:?}");

    let events = chain.events().await;
    let summary: Vec<(String, bool)> = events
        .iter()
        .map(|e| match &e.event.data {
            EventData::NewFeedback { tag1, .. } => (tag1.clone().unwrap().into_string(), e.removed),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("before".to_owned(), false),
            ("old branch".to_owned(), true),
            ("old branch".to_owned(), true),
            ("new branch".to_owned(), false)
        ],
        "dropped events stay, marked removed; the new branch is indexed"
    );
    let new_branch = &events[3].event.log;
    assert_eq!(new_branch.block_hash.0, r.block_hash(new_branch.block_number).await);
    let checkpoint = indexer::store::checkpoint(&chain.db.pool, indexer.chain()).await.unwrap().unwrap();
    assert_eq!(checkpoint.last_block, r.head().await);
}

#[tokio::test]
async fn an_unreachable_node_is_waited_for_and_a_second_url_takes_over() {
    let chain = Chain::start().await;
    let proxy = TcpProxy::start(([127, 0, 0, 1], chain.anvil.port()).into()).await;
    let through_proxy = format!("http://{}", proxy.address());
    feedback_batch(&chain, 20, "a").await;
    let mut indexer = ChainIndexer::new(chain.config_for(&through_proxy, 3), chain.db.pool.clone());
    catch_up(&mut indexer).await;

    proxy.cut();
    feedback_batch(&chain, 20, "b").await;
    chain.registries.mine(5).await;
    let error = indexer.step().await.unwrap_err();
    assert!(matches!(error, IndexError::Rpc(RpcFailure::Unavailable(_))), "{error:?}");
    assert_eq!(chain.events().await.len(), 20, "nothing is lost or half-written while the node is away");
    proxy.restore();
    catch_up(&mut indexer).await;
    assert_complete(&chain, 40).await;

    // A dead first URL: the second one serves.
    let dead = format!("http://127.0.0.1:{}", testkit::net::closed_port());
    let mut config = chain.config_for(&dead, 3);
    config.rpc_urls.push(chain.anvil.url().parse().unwrap());
    feedback_batch(&chain, 20, "c").await;
    let mut failover = ChainIndexer::new(config, chain.db.pool.clone());
    catch_up(&mut failover).await;
    assert_complete(&chain, 60).await;
}

/// A JSON-RPC front for anvil that refuses `eth_getLogs` over more than `limit` blocks,
/// as public nodes do.
async fn refusing_node(anvil: String, limit: u64, refused: Arc<AtomicUsize>) -> String {
    let listener = testkit::net::listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = testkit::http_client();
    let server = HttpServer::new(move || {
        let (client, anvil, refused) = (client.clone(), anvil.clone(), refused.clone());
        App::new().default_service(web::to(move |body: web::Json<Value>| {
            let (client, anvil, refused) = (client.clone(), anvil.clone(), refused.clone());
            async move {
                if body["method"] == "eth_getLogs" {
                    let block = |key: &str| {
                        u64::from_str_radix(body["params"][0][key].as_str().unwrap().trim_start_matches("0x"), 16)
                            .unwrap()
                    };
                    if block("toBlock") - block("fromBlock") + 1 > limit {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return HttpResponse::Ok().json(json!({
                            "jsonrpc": "2.0", "id": body["id"],
                            "error": {"code": -32005, "message": format!("block range is limited to {limit}")}
                        }));
                    }
                }
                let answer = client.post(&anvil).json(&body.into_inner()).send().await.unwrap().bytes().await.unwrap();
                HttpResponse::Ok().content_type("application/json").body(answer)
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

#[tokio::test]
async fn a_range_the_node_refuses_as_too_large_is_split_and_completed() {
    let chain = Chain::start().await;
    for _ in 0..10 {
        feedback_batch(&chain, 5, "x").await;
        chain.registries.mine(2).await;
    }
    let refused = Arc::new(AtomicUsize::new(0));
    let node = refusing_node(chain.anvil.url(), 4, refused.clone()).await;
    let mut indexer = ChainIndexer::new(chain.config_for(&node, 1_000), chain.db.pool.clone());
    let steps = catch_up(&mut indexer).await;
    assert!(steps.iter().any(|s| matches!(s, Step::Shrunk { .. })), "{steps:?}");
    assert!(refused.load(Ordering::SeqCst) > 0);
    for step in &steps {
        if let Step::Indexed { from, to, .. } = step {
            assert!(to - from < 4, "only ranges the node accepts are stored: {step:?}");
        }
    }
    assert_complete(&chain, 50).await;
}
