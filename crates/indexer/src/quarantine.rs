//! The `quarantined_logs` table: registry logs that could not become events, kept raw with
//! the reason, so that no log can make a chain retry one range forever (SPEC 1.3).

use alloy::primitives::{Address as RawAddress, B256, Bytes};
use alloy::rpc::types::Log;
use shared::domain::{ChainId, Text};
use sqlx::PgConnection;

/// Where a log was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// It does not fit the layout its topic0 names, or no layout has its topic0.
    Decode,
    /// The event store refused the decoded row.
    Store,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Store => "store",
        }
    }
}

/// A mined log as the node gave it, with the position that identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLog {
    pub address: RawAddress,
    pub block_number: u64,
    pub block_hash: B256,
    pub tx_hash: Option<B256>,
    pub log_index: u64,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

impl RawLog {
    /// `None` when the node left out where the log is (nothing could identify it).
    pub fn of(log: &Log) -> Option<Self> {
        Some(Self {
            address: log.inner.address,
            block_number: log.block_number?,
            block_hash: log.block_hash?,
            tx_hash: log.transaction_hash,
            log_index: log.log_index?,
            topics: log.inner.data.topics().to_vec(),
            data: log.inner.data.data.clone(),
        })
    }
}

/// A log set aside, and why.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub log: RawLog,
    pub stage: Stage,
    pub reason: String,
}

fn int8(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Keeps `logs` of `chain`, in one statement; a log already kept (the same range read
/// again) is left as it is.
pub async fn keep(conn: &mut PgConnection, chain: ChainId, logs: &[Quarantined]) -> Result<(), sqlx::Error> {
    if logs.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Quarantined) -> String| logs.iter().map(f).collect::<Vec<String>>();
    let addresses = column(&|q| q.log.address.to_string().to_lowercase());
    let hashes = column(&|q| q.log.block_hash.to_string());
    let topics = column(&|q| q.log.topics.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    let reasons = column(&|q| Text::new(q.reason.as_str()).into_string());
    let stages: Vec<&str> = logs.iter().map(|q| q.stage.as_str()).collect();
    let numbers: Vec<i64> = logs.iter().map(|q| int8(q.log.block_number)).collect();
    let indexes: Vec<i64> = logs.iter().map(|q| int8(q.log.log_index)).collect();
    let txs: Vec<Option<String>> = logs.iter().map(|q| q.log.tx_hash.map(|h| h.to_string())).collect();
    let data: Vec<&[u8]> = logs.iter().map(|q| q.log.data.as_ref()).collect();
    sqlx::query(
        "INSERT INTO quarantined_logs
             (chain_id, contract_address, block_number, block_hash, tx_hash, log_index, topics, data, stage, reason)
         SELECT $1, a, n, h, t, i, CASE WHEN p = '' THEN '{}'::text[] ELSE string_to_array(p, ',') END, d, s, r
         FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::bytea[],
                     $9::text[], $10::text[]) AS u(a, n, h, t, i, p, d, s, r)
         ON CONFLICT (chain_id, block_hash, log_index) DO NOTHING",
    )
    .bind(chain.as_i64().unwrap_or(i64::MAX))
    .bind(&addresses)
    .bind(&numbers)
    .bind(&hashes)
    .bind(&txs)
    .bind(&indexes)
    .bind(&topics)
    .bind(&data)
    .bind(&stages)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(())
}

/// A quarantined log as an operator reads it back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuarantineRow {
    pub chain_id: i64,
    pub block_number: i64,
    pub log_index: i64,
    pub stage: String,
    pub reason: String,
    pub data: Vec<u8>,
    pub topics: Vec<String>,
}

/// The quarantined logs of `chain`, in chain order.
pub async fn list(pool: &sqlx::PgPool, chain: ChainId) -> Result<Vec<QuarantineRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chain_id, block_number, log_index, stage, reason, data, topics FROM quarantined_logs
         WHERE chain_id = $1 ORDER BY block_number, log_index",
    )
    .bind(chain.as_i64().unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
}
