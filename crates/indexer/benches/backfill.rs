//! Backfill benchmark: 100,000 registry events on anvil (feedback batches of 1,000 per
//! transaction), indexed from block 0 into PostgreSQL; then, over the very ranges the
//! indexer read, the same `eth_getLogs` calls alone (no decoding, no storing): the limit of
//! the path. Prints both rates and their ratio.
//!
//! `cargo bench -p indexer --bench backfill` (EVENTS may be set to shorten it)

use std::time::Instant;

use alloy::primitives::U256;
use indexer::config::{ChainConfig, Registries as RegistryAddresses};
use indexer::rpc::Rpc;
use indexer::{ChainIndexer, Step};
use testkit::TestDb;
use testkit::chain::{Anvil, Registries, ReputationRegistry};

const PER_TRANSACTION: u64 = 1_000;
const MAX_BLOCK_RANGE: u64 = 20;

#[tokio::main]
async fn main() {
    shared::telemetry::init_telemetry("error", false);
    let total: u64 = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let anvil = Anvil::start_with(&["--disable-block-gas-limit"]).await;
    let registries = Registries::deploy(&anvil).await;
    let started = Instant::now();
    for _ in 0..total.div_ceil(PER_TRANSACTION) {
        let call = ReputationRegistry::giveFeedbackBatchCall {
            firstAgentId: U256::ZERO,
            agents: U256::from(1_000),
            count: U256::from(PER_TRANSACTION),
            tag1: "bench".into(),
        };
        registries.call(registries.reputation, call).await;
        registries.mine(1).await;
    }
    println!(
        "emitted {total} events in {} blocks in {:.1} s",
        registries.head().await,
        started.elapsed().as_secs_f64()
    );

    let db = TestDb::new().await;
    let config = ChainConfig::local(
        anvil.url().parse().expect("url"),
        RegistryAddresses {
            identity: registries.identity.into(),
            reputation: registries.reputation.into(),
            validation: Some(registries.validation.into()),
        },
        MAX_BLOCK_RANGE,
    );
    let mut indexer = ChainIndexer::new(config.clone(), db.pool.clone());
    let mut ranges = Vec::new();
    let mut stored = 0;
    let started = Instant::now();
    loop {
        match indexer.step().await.expect("step") {
            Step::Indexed { from, to, events, .. } => {
                ranges.push((from, to));
                stored += events;
            }
            Step::Idle => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let indexed = started.elapsed();
    assert_eq!(stored, total, "every event stored");

    let addresses: Vec<_> = config.registries.addresses().into_iter().map(|a| a.0).collect();
    let mut rpc = Rpc::new(config.chain_id, &config.rpc_urls);
    let started = Instant::now();
    let mut fetched = 0;
    for (from, to) in &ranges {
        fetched += rpc.logs(*from, *to, &addresses).await.expect("logs").len() as u64;
    }
    let raw = started.elapsed();
    assert_eq!(fetched, total);

    let ours = total as f64 / indexed.as_secs_f64();
    let limit = total as f64 / raw.as_secs_f64();
    println!(
        "backfill: {total} events in {} ranges of up to {MAX_BLOCK_RANGE} blocks: {:.2} s, {ours:.0} events/s",
        ranges.len(),
        indexed.as_secs_f64()
    );
    println!("eth_getLogs alone over the same ranges: {:.2} s, {limit:.0} logs/s", raw.as_secs_f64());
    println!("ratio: {:.2}", ours / limit);
    println!(
        "| indexer: backfill of {total} events from anvil | {ours:.0} events/s | {limit:.0} logs/s (eth_getLogs alone) | {:.2} |",
        ours / limit
    );
}
