//! An anvil with the registries deployed, and an indexer over it.

#![allow(dead_code)]

use std::time::Duration;

use indexer::config::{ChainConfig, Registries as RegistryAddresses};
use indexer::{ChainIndexer, Step};
use shared::domain::StoredEvent;
use shared::store::events::{self, EventFilter};
use testkit::TestDb;
use testkit::chain::{Anvil, Registries};

pub struct Chain {
    pub db: TestDb,
    pub anvil: Anvil,
    pub registries: Registries,
}

impl Chain {
    pub async fn start() -> Self {
        let db = TestDb::new().await;
        let anvil = Anvil::start().await;
        let registries = Registries::deploy(&anvil).await;
        Self { db, anvil, registries }
    }

    /// The chain as the indexer sees it: every block final (no confirmations).
    pub fn config(&self, max_block_range: u64) -> ChainConfig {
        self.config_for(&self.anvil.url(), max_block_range)
    }

    pub fn config_for(&self, url: &str, max_block_range: u64) -> ChainConfig {
        ChainConfig::local(url.parse().unwrap(), self.addresses(), max_block_range)
    }

    pub fn addresses(&self) -> RegistryAddresses {
        RegistryAddresses {
            identity: self.registries.identity.into(),
            reputation: self.registries.reputation.into(),
            validation: Some(self.registries.validation.into()),
        }
    }

    pub fn indexer(&self, max_block_range: u64) -> ChainIndexer {
        ChainIndexer::new(self.config(max_block_range), self.db.pool.clone())
    }

    /// Every stored event, oldest first.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let mut all = events::list(&self.db.pool, &EventFilter::default(), None, 100_000).await.unwrap();
        all.reverse();
        all
    }
}

/// Steps until the indexer has caught up with the head; every step it took.
pub async fn catch_up(indexer: &mut ChainIndexer) -> Vec<Step> {
    let mut steps = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the indexer did not catch up: {steps:?}");
        let step = indexer.step().await.unwrap();
        if step == Step::Idle {
            return steps;
        }
        steps.push(step);
    }
}
