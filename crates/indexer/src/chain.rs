//! One chain: backfill from the checkpoint, then follow the head behind the confirmation
//! depth, in ranges sized to what the node accepts; reorgs are found by block hash and
//! undone by marking the dropped events removed and reading the new branch.

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::Address as RawAddress;
use chrono::{DateTime, Utc};
use shared::domain::ChainId;
use shared::store::events::StoreError;
use sqlx::PgPool;

use crate::config::ChainConfig;
use crate::decode::{self, DecodeError};
use crate::quarantine::{Quarantined, RawLog, Stage};
use crate::rpc::{BlockRef, Rpc, RpcFailure};
use crate::store::{self, Range};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Blocks `from..=to` are stored, with `events` new events; `skipped` logs of the
    /// registries were events the product does not use (counted), and `quarantined` logs
    /// could not be decoded or stored (kept in `quarantined_logs`).
    Indexed { from: u64, to: u64, events: u64, skipped: u64, quarantined: u64 },
    /// The node refused a range; the next one is smaller.
    Shrunk { range: u64 },
    /// A reorg: the chain forked after block `fork` (`None`: after no remembered block);
    /// `removed` events were marked removed.
    Reorg { fork: Option<u64>, removed: u64 },
    /// Nothing new to read (the checkpoint is at the head minus the confirmations).
    Idle,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Rpc(#[from] RpcFailure),
    #[error("the event store failed")]
    Store(#[from] shared::store::events::StoreError),
    #[error("the indexer tables failed")]
    Database(#[from] sqlx::Error),
    #[error("the chain changed while a range was read; it is read again")]
    Moved,
    #[error("the chain forked deeper than the {0} remembered blocks")]
    ForkTooDeep(i64),
}

/// Ranges grow back by this factor after each accepted request.
const GROWTH: u64 = 2;

/// Times a range the store refuses almost whole is tried before its logs are set aside.
const MAX_RANGE_REFUSALS: u32 = 5;

pub struct ChainIndexer {
    config: ChainConfig,
    pool: PgPool,
    rpc: Rpc,
    addresses: Vec<RawAddress>,
    range: u64,
    label: String,
    /// Consecutive failures of the current range for being refused almost whole.
    refusals: u32,
}

impl ChainIndexer {
    pub fn new(config: ChainConfig, pool: PgPool) -> Self {
        let rpc = Rpc::new(config.chain_id, &config.rpc_urls);
        let addresses = config.registries.addresses().into_iter().map(|a| a.0).collect();
        let range = config.max_block_range;
        let label = config.chain_id.to_string();
        Self { config, pool, rpc, addresses, range, label, refusals: 0 }
    }

    pub fn chain(&self) -> ChainId {
        self.config.chain_id
    }

    /// The current size of a range, in blocks.
    pub fn range(&self) -> u64 {
        self.range
    }

    /// Does one unit of work: checks for a reorg, then reads and stores one range.
    pub async fn step(&mut self) -> Result<Step, IndexError> {
        let head = self.rpc.head().await?;
        metrics::gauge!("indexer_head_block", "chain" => self.label.clone()).set(head as f64);
        let target = head.saturating_sub(self.config.confirmations);
        let checkpoint = store::checkpoint(&self.pool, self.config.chain_id).await?;
        if let Some(checkpoint) = checkpoint
            && let Some(hash) = checkpoint.last_hash
        {
            let now = self.block_or_none(checkpoint.last_block).await?;
            if now.is_none_or(|b| b.hash != hash) {
                return self.undo_reorg(checkpoint.last_block).await;
            }
        }
        let next = checkpoint.map_or(self.config.start_block, |c| c.last_block + 1);
        if next > target {
            self.observe_lag(head, checkpoint.map(|c| c.last_block)).await;
            return Ok(Step::Idle);
        }
        let to = target.min(next.saturating_add(self.range - 1));
        let end = self.rpc.block(to).await?;
        let logs = match self.rpc.logs(next, to, &self.addresses).await {
            Ok(logs) => logs,
            Err(RpcFailure::Refused(reason)) if self.range > 1 => {
                self.range = (to - next).div_ceil(2).max(1);
                tracing::info!(chain = %self.config.chain_id, range = self.range, %reason, "range refused; shrinking");
                return Ok(Step::Shrunk { range: self.range });
            }
            Err(other) => return Err(other.into()),
        };
        // The range is consistent when its last block is still the one read before.
        if self.rpc.block(to).await?.hash != end.hash
            || logs.iter().any(|l| l.block_number == Some(to) && l.block_hash != Some(end.hash))
        {
            return Err(IndexError::Moved);
        }
        let (range, skipped) = self.decode(&logs, &end).await?;
        // A range refused almost whole is retried a few times (the store may be what is
        // wrong), then set aside like any refused log: no input stops a chain for good.
        let set_aside_any = self.refusals >= MAX_RANGE_REFUSALS;
        let committed = match store::commit_range(&self.pool, self.config.chain_id, range, &end, set_aside_any).await {
            Ok(committed) => committed,
            Err(error @ StoreError::MostRefused { .. }) => {
                self.refusals += 1;
                tracing::error!(chain = %self.config.chain_id, from = next, to, %error, attempts = self.refusals, "range refused");
                return Err(error.into());
            }
            Err(other) => return Err(other.into()),
        };
        self.refusals = 0;
        let inserted = committed.inserted;
        let quarantined = u64::try_from(committed.quarantined).unwrap_or(u64::MAX);
        metrics::counter!("indexer_events_inserted_total", "chain" => self.label.clone()).increment(inserted);
        if quarantined > 0 {
            tracing::warn!(chain = %self.config.chain_id, from = next, to, quarantined, "logs quarantined");
            metrics::counter!("indexer_quarantined_logs_total", "chain" => self.label.clone()).increment(quarantined);
        }
        self.range = self.range.saturating_mul(GROWTH).min(self.config.max_block_range);
        self.observe_lag(head, Some(to)).await;
        Ok(Step::Indexed { from: next, to, events: inserted, skipped, quarantined })
    }

    async fn block_or_none(&mut self, number: u64) -> Result<Option<BlockRef>, IndexError> {
        match self.rpc.block(number).await {
            Ok(block) => Ok(Some(block)),
            Err(RpcFailure::MissingBlock(_)) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Decodes the logs: events beside their logs; events the product does not use are
    /// counted and skipped (the number is returned); logs that do not decode are quarantined.
    async fn decode(&mut self, logs: &[alloy::rpc::types::Log], end: &BlockRef) -> Result<(Range, u64), IndexError> {
        let mut times: HashMap<u64, DateTime<Utc>> = HashMap::from([(end.number, end.time)]);
        let mut range = Range::with_capacity(logs.len());
        let mut skipped = 0;
        for log in logs {
            if log.removed {
                continue;
            }
            let Some(number) = log.block_number else {
                self.skip(&DecodeError::Incomplete("the block number"));
                skipped += 1;
                continue;
            };
            let time = match (times.get(&number), log.block_timestamp) {
                (Some(time), _) => *time,
                (None, Some(seconds)) => match i64::try_from(seconds).ok().and_then(|s| DateTime::from_timestamp(s, 0))
                {
                    Some(time) => time,
                    None => self.rpc.block(number).await?.time,
                },
                (None, None) => self.rpc.block(number).await?.time,
            };
            times.insert(number, time);
            let source = RawLog::of(log);
            match (decode::decode(self.config.chain_id, log, time), source) {
                (Ok(event), Some(source)) => range.push(event, source),
                (Err(error @ (DecodeError::Unused(_) | DecodeError::NoTopics)), _) => {
                    self.skip(&error);
                    skipped += 1;
                }
                (Err(error @ (DecodeError::UnknownTopic(_) | DecodeError::Malformed { .. })), Some(source)) => {
                    tracing::debug!(chain = %self.config.chain_id, %error, "log quarantined");
                    range.quarantine(Quarantined { log: source, stage: Stage::Decode, reason: error.to_string() });
                }
                (Err(error), _) => {
                    self.skip(&error);
                    skipped += 1;
                }
                (Ok(_), None) => {
                    self.skip(&DecodeError::Incomplete("the position"));
                    skipped += 1;
                }
            }
        }
        Ok((range, skipped))
    }

    fn skip(&self, error: &DecodeError) {
        let kind = match error {
            DecodeError::Unused(_) => "unused",
            DecodeError::UnknownTopic(_) | DecodeError::NoTopics => "unknown",
            DecodeError::Malformed { .. } | DecodeError::Incomplete(_) => "malformed",
        };
        if matches!(error, DecodeError::Incomplete(_)) {
            tracing::warn!(chain = %self.config.chain_id, %error, "log skipped");
        } else {
            tracing::debug!(chain = %self.config.chain_id, %error, "log skipped");
        }
        metrics::counter!("indexer_skipped_logs_total", "chain" => self.label.clone(), "reason" => kind).increment(1);
    }

    /// The block at `last` is no longer the one indexed: find the newest remembered block
    /// still on the chain (the fork point), mark removed the events of every stored block
    /// after it whose hash changed, and go back to the fork point.
    async fn undo_reorg(&mut self, last: u64) -> Result<Step, IndexError> {
        let remembered = store::remembered_blocks(&self.pool, self.config.chain_id, last).await?;
        let mut fork = None;
        for (number, hash) in &remembered {
            if self.block_or_none(*number).await?.is_some_and(|b| b.hash == *hash) {
                fork = Some((*number, *hash));
                break;
            }
        }
        // With nothing remembered still on the chain, indexing starts again from the
        // configured block; past the remembered depth, it stops and says so.
        if fork.is_none() && remembered.len() >= usize::try_from(store::KEPT_BLOCKS).unwrap_or(usize::MAX) {
            return Err(IndexError::ForkTooDeep(store::KEPT_BLOCKS));
        }
        let after = fork.map_or(self.config.start_block.saturating_sub(1), |(n, _)| n);
        let mut dropped = Vec::new();
        for (number, hash) in store::blocks_with_events(&self.pool, self.config.chain_id, after).await? {
            if self.block_or_none(number).await?.is_none_or(|b| b.hash != hash) {
                dropped.push((number, hash));
            }
        }
        let removed = store::rewind(&self.pool, self.config.chain_id, fork, &dropped).await?;
        metrics::counter!("indexer_reorgs_total", "chain" => self.label.clone()).increment(1);
        let fork = fork.map(|(n, _)| n);
        tracing::warn!(chain = %self.config.chain_id, ?fork, removed, "reorg: dropped events marked removed");
        Ok(Step::Reorg { fork, removed })
    }

    async fn observe_lag(&mut self, head: u64, indexed: Option<u64>) {
        let Some(indexed) = indexed else { return };
        metrics::gauge!("indexer_indexed_block", "chain" => self.label.clone()).set(indexed as f64);
        metrics::gauge!("indexer_lag_blocks", "chain" => self.label.clone()).set(head.saturating_sub(indexed) as f64);
        if let Ok(Some(time)) = sqlx::query_scalar::<_, DateTime<Utc>>(
            "SELECT block_time FROM indexer_blocks WHERE chain_id = $1 AND block_number = $2",
        )
        .bind(self.config.chain_id.as_i64().unwrap_or(i64::MAX))
        .bind(i64::try_from(indexed).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        {
            let lag = (Utc::now() - time).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!("indexer_lag_seconds", "chain" => self.label.clone()).set(lag);
        }
    }

    /// Steps until `shutdown` resolves: at once while there is a backlog, every poll
    /// interval at the head, and with growing pauses (up to 30 s) while the node or the
    /// database fails.
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let pause = match self.step().await {
                Ok(Step::Indexed { .. } | Step::Shrunk { .. } | Step::Reorg { .. }) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    self.config.poll_interval
                }
                Err(IndexError::Moved) => Duration::from_millis(100),
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(500)
                        .saturating_mul(2u32.saturating_pow(failures.min(6)))
                        .min(Duration::from_secs(30));
                    tracing::warn!(chain = %self.config.chain_id, error = %shared::startup::error_chain(&error), retry_in = ?pause, "indexing failed");
                    pause
                }
            };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}
