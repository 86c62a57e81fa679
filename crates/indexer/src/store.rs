//! The indexer's tables: a checkpoint per chain and the hashes of recently indexed blocks,
//! written in the same transaction as the events they account for.

use alloy::primitives::B256;
use shared::domain::{ChainId, NewEvent};
use shared::store::events::{self, StoreError};
use sqlx::{PgConnection, PgPool};

use crate::quarantine::{self, Quarantined, RawLog, Stage};
use crate::rpc::BlockRef;

/// How many range-end blocks per chain are kept to find a fork point.
pub const KEPT_BLOCKS: i64 = 1_000;

/// Where a chain's indexing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last block whose logs are all stored.
    pub last_block: u64,
    pub last_hash: Option<B256>,
}

fn chain_key(chain: ChainId) -> i64 {
    chain.as_i64().unwrap_or(i64::MAX)
}

fn parse_hash(text: &str) -> Option<B256> {
    text.parse().ok()
}

pub async fn checkpoint(pool: &PgPool, chain: ChainId) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT last_block, last_block_hash FROM indexer_checkpoints WHERE chain_id = $1")
            .bind(chain_key(chain))
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(last, hash)| {
        Some(Checkpoint { last_block: u64::try_from(last).ok()?, last_hash: hash.as_deref().and_then(parse_hash) })
    }))
}

/// Refused rows a range may set aside; past this and half the range, the range fails
/// instead (see [`StoreError::MostRefused`]), unless the caller says to set aside anyway.
const MAX_REFUSED: usize = 16;

/// What a range's transaction stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Events that were new.
    pub inserted: u64,
    /// Logs kept in quarantine, those the store refused included.
    pub quarantined: usize,
}

/// The decoded logs of one range: each event beside the log it came from, and the logs
/// set aside.
#[derive(Debug, Default)]
pub struct Range {
    /// Stored column by column, so `events` and `sources` always have the same length.
    events: Vec<NewEvent>,
    sources: Vec<RawLog>,
    quarantined: Vec<Quarantined>,
}

impl Range {
    pub fn with_capacity(logs: usize) -> Self {
        Self { events: Vec::with_capacity(logs), sources: Vec::with_capacity(logs), quarantined: Vec::new() }
    }

    /// An event to store, decoded from `source`.
    pub fn push(&mut self, event: NewEvent, source: RawLog) {
        self.events.push(event);
        self.sources.push(source);
    }

    /// A log set aside.
    pub fn quarantine(&mut self, entry: Quarantined) {
        self.quarantined.push(entry);
    }
}

/// Stores the events of blocks up to `end`, keeps the quarantined logs, and moves the
/// checkpoint to `end`, atomically. An event the store refuses does not fail the range: the
/// rows are tried in halves until the refused ones are isolated, and those go to quarantine.
pub async fn commit_range(
    pool: &PgPool,
    chain: ChainId,
    mut range: Range,
    end: &BlockRef,
    set_aside_any: bool,
) -> Result<Committed, StoreError> {
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    // Parts still to store, the next one last.
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..range.events.len());
    while let Some(part) = pending.pop() {
        if part.is_empty() {
            continue;
        }
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match events::insert(&mut savepoint, &range.events[part.clone()]).await {
            Ok(n) => {
                savepoint.commit().await?;
                inserted += n;
            }
            Err(error) if error.is_row_fault() => {
                savepoint.rollback().await?;
                if part.len() == 1 {
                    let log = range.sources[part.start].clone();
                    let reason = shared::startup::error_chain(&error);
                    range.quarantined.push(Quarantined { log, stage: Stage::Store, reason });
                } else {
                    let middle = part.start + part.len() / 2;
                    pending.push(middle..part.end);
                    pending.push(part.start..middle);
                }
            }
            Err(error) => return Err(error),
        }
    }
    let refused = range.quarantined.iter().filter(|q| q.stage == Stage::Store).count();
    if refused > MAX_REFUSED.max(range.events.len() / 2) && !set_aside_any {
        // Rolled back: the range is read again once the store takes its rows.
        return Err(StoreError::MostRefused { refused, of: range.events.len() });
    }
    quarantine::keep(&mut tx, chain, &range.quarantined).await?;
    remember_block(&mut tx, chain, end).await?;
    sqlx::query(
        "INSERT INTO indexer_checkpoints (chain_id, last_block, last_block_hash) VALUES ($1, $2, $3)
         ON CONFLICT (chain_id) DO UPDATE SET last_block = $2, last_block_hash = $3, updated_at = now()",
    )
    .bind(chain_key(chain))
    .bind(i64::try_from(end.number).unwrap_or(i64::MAX))
    .bind(end.hash.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Committed { inserted, quarantined: range.quarantined.len() })
}

async fn remember_block(conn: &mut PgConnection, chain: ChainId, block: &BlockRef) -> Result<(), sqlx::Error> {
    let number = i64::try_from(block.number).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO indexer_blocks (chain_id, block_number, block_hash, parent_hash, block_time)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (chain_id, block_number) DO UPDATE
         SET block_hash = $3, parent_hash = $4, block_time = $5",
    )
    .bind(chain_key(chain))
    .bind(number)
    .bind(block.hash.to_string())
    .bind(block.parent_hash.to_string())
    .bind(block.time)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM indexer_blocks WHERE chain_id = $1 AND block_number < $2")
        .bind(chain_key(chain))
        .bind(number - KEPT_BLOCKS)
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembered blocks at or below `below`, newest first: (number, hash).
pub async fn remembered_blocks(pool: &PgPool, chain: ChainId, below: u64) -> Result<Vec<(u64, B256)>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT block_number, block_hash FROM indexer_blocks
         WHERE chain_id = $1 AND block_number <= $2 ORDER BY block_number DESC",
    )
    .bind(chain_key(chain))
    .bind(i64::try_from(below).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(number, hash)| Some((u64::try_from(number).ok()?, parse_hash(&hash)?))).collect())
}

/// The blocks after `after` that hold live events: (number, hash).
pub async fn blocks_with_events(pool: &PgPool, chain: ChainId, after: u64) -> Result<Vec<(u64, B256)>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT DISTINCT block_number, block_hash FROM events
         WHERE chain_id = $1 AND block_number > $2 AND NOT removed ORDER BY block_number",
    )
    .bind(chain_key(chain))
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(number, hash)| Some((u64::try_from(number).ok()?, parse_hash(&hash)?))).collect())
}

/// After a reorg: the events of `dropped` blocks are marked removed (they stay, for the
/// audit trail), blocks after the fork are forgotten, and the checkpoint goes back to the
/// fork block (or away, when no remembered block is still on the chain), all in one
/// transaction. Returns how many events were marked.
pub async fn rewind(
    pool: &PgPool,
    chain: ChainId,
    fork: Option<(u64, B256)>,
    dropped: &[(u64, B256)],
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let numbers: Vec<i64> = dropped.iter().map(|(n, _)| i64::try_from(*n).unwrap_or(i64::MAX)).collect();
    let hashes: Vec<String> = dropped.iter().map(|(_, h)| h.to_string()).collect();
    let marked = sqlx::query(
        "UPDATE events e SET removed = true
         FROM UNNEST($2::int8[], $3::text[]) AS d(block_number, block_hash)
         WHERE e.chain_id = $1 AND e.block_number = d.block_number AND e.block_hash = d.block_hash
           AND NOT e.removed",
    )
    .bind(chain_key(chain))
    .bind(&numbers)
    .bind(&hashes)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let fork_number = fork.map_or(-1, |(n, _)| i64::try_from(n).unwrap_or(i64::MAX));
    sqlx::query("DELETE FROM indexer_blocks WHERE chain_id = $1 AND block_number > $2")
        .bind(chain_key(chain))
        .bind(fork_number)
        .execute(&mut *tx)
        .await?;
    match fork {
        Some((_, hash)) => {
            sqlx::query(
                "UPDATE indexer_checkpoints SET last_block = $2, last_block_hash = $3, updated_at = now()
                 WHERE chain_id = $1",
            )
            .bind(chain_key(chain))
            .bind(fork_number)
            .bind(hash.to_string())
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM indexer_checkpoints WHERE chain_id = $1")
                .bind(chain_key(chain))
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(marked)
}
