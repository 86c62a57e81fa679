//! The indexer (DESIGN "Data flow" 1): ERC-8004 registry logs of many EVM chains into the
//! event store, one task per chain, with a checkpoint per chain advanced in the same
//! transaction as the events, and reorgs undone by marking dropped events removed.

pub mod abi;
pub mod chain;
pub mod config;
pub mod decode;
pub mod quarantine;
pub mod rpc;
pub mod store;

pub use chain::{ChainIndexer, Step};
pub use config::{ChainConfig, IndexerConfig};

/// Every chain on its own task, until the process stops.
pub async fn run(pool: sqlx::PgPool, chains: Vec<ChainConfig>) {
    if chains.is_empty() {
        tracing::warn!("no chain configured (INDEXER_CHAINS_FILE, config/chains.toml or CHAIN_ID): nothing to index");
        std::future::pending::<()>().await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chain in chains {
        tracing::info!(chain = %chain.chain_id, name = %chain.name, urls = chain.rpc_urls.len(), "indexing");
        tasks.spawn(ChainIndexer::new(chain, pool.clone()).run());
    }
    while tasks.join_next().await.is_some() {}
}

/// Installs the TLS provider that `https` RPC URLs use.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
