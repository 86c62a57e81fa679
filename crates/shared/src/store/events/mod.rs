//! The `events` table: idempotent inserts and reads back into [`StoredEvent`].

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::pages;
use crate::domain::{
    Address, AgentId, ChainEvent, ChainId, EventData, EventId, EventType, FeedbackValue, Hash32, HexBytes, LogPosition,
    NewEvent, StoredEvent, Text,
};

pub mod history;

/// Rows per INSERT statement (each column travels as one array).
const ROWS_PER_STATEMENT: usize = 5_000;

/// The columns read back; NUMERIC columns as text so that uint256 and int128 stay exact.
pub const SELECT_COLUMNS: &str = "id, removed, chain_id, event_type, contract_address, block_number, \
     block_hash, block_timestamp, tx_hash, log_index, agent_id::text AS agent_id, owner, agent_uri, \
     updated_by, metadata_key, metadata_value, from_address, to_address, client_address, \
     feedback_index::text AS feedback_index, value::text AS value, value_raw::text AS value_raw, value_decimals, tag1, \
     tag1_hash, tag2, endpoint, feedback_uri, feedback_hash, responder, response_uri, response_hash, \
     validator_address, request_uri, request_hash, response, tag";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("event {id} cannot be read back: {reason}")]
    Malformed { id: i64, reason: String },
    #[error("chain id {0} does not fit the store (at most 2^63-1)")]
    ChainIdTooLarge(ChainId),
    #[error("block number {0} does not fit the store (at most 2^63-1)")]
    BlockNumberTooLarge(u64),
    /// So many rows of one batch were refused that the fault is likelier in the store (a
    /// schema this version does not expect) than in the rows: nothing is set aside.
    #[error("the store refused {refused} of {of} events at once; the schema and this version may disagree")]
    MostRefused { refused: usize, of: usize },
}

impl StoreError {
    /// Whether the failure lies in the rows themselves (a value out of range, a refused
    /// constraint) rather than in the database being unavailable: storing the same rows
    /// again would fail again.
    pub fn is_row_fault(&self) -> bool {
        match self {
            StoreError::BlockNumberTooLarge(_) | StoreError::ChainIdTooLarge(_) => true,
            StoreError::Database(err) => super::refused_data(err),
            StoreError::Malformed { .. } | StoreError::MostRefused { .. } => false,
        }
    }
}

/// The per-type columns of one event, all optional, in table order.
#[derive(Default, sqlx::FromRow)]
struct TypedColumns {
    owner: Option<String>,
    agent_uri: Option<Text>,
    updated_by: Option<String>,
    metadata_key: Option<Text>,
    metadata_value: Option<String>,
    from_address: Option<String>,
    to_address: Option<String>,
    client_address: Option<String>,
    feedback_index: Option<String>,
    value: Option<String>,
    value_raw: Option<String>,
    value_decimals: Option<i16>,
    tag1: Option<Text>,
    tag1_hash: Option<String>,
    tag2: Option<Text>,
    endpoint: Option<Text>,
    feedback_uri: Option<Text>,
    feedback_hash: Option<String>,
    responder: Option<String>,
    response_uri: Option<Text>,
    response_hash: Option<String>,
    validator_address: Option<String>,
    request_uri: Option<Text>,
    request_hash: Option<String>,
    response: Option<i16>,
    tag: Option<Text>,
}

impl TypedColumns {
    fn of(data: &EventData) -> Self {
        let s = |v: &dyn ToString| Some(v.to_string());
        match data {
            EventData::Registered { owner, agent_uri } => {
                Self { owner: s(owner), agent_uri: Some(agent_uri.clone()), ..Self::default() }
            }
            EventData::MetadataSet { metadata_key, metadata_value } => {
                Self { metadata_key: Some(metadata_key.clone()), metadata_value: s(metadata_value), ..Self::default() }
            }
            EventData::UriUpdated { agent_uri, updated_by } => {
                Self { agent_uri: Some(agent_uri.clone()), updated_by: s(updated_by), ..Self::default() }
            }
            EventData::Transfer { from, to } => Self { from_address: s(from), to_address: s(to), ..Self::default() },
            EventData::NewFeedback {
                client_address,
                feedback_index,
                value,
                tag1,
                tag1_hash,
                tag2,
                endpoint,
                feedback_uri,
                feedback_hash,
            } => Self {
                client_address: s(client_address),
                feedback_index: feedback_index.map(|i| i.to_string()),
                value: s(&value.decimal()),
                value_raw: s(&value.raw()),
                value_decimals: Some(i16::from(value.decimals())),
                tag1: tag1.clone(),
                tag1_hash: tag1_hash.map(|h| h.to_string()),
                tag2: Some(tag2.clone()),
                endpoint: Some(endpoint.clone()),
                feedback_uri: Some(feedback_uri.clone()),
                feedback_hash: s(feedback_hash),
                ..Self::default()
            },
            EventData::FeedbackRevoked { client_address, feedback_index } => {
                Self { client_address: s(client_address), feedback_index: s(feedback_index), ..Self::default() }
            }
            EventData::ResponseAppended { client_address, feedback_index, responder, response_uri, response_hash } => {
                Self {
                    client_address: s(client_address),
                    feedback_index: s(feedback_index),
                    responder: s(responder),
                    response_uri: Some(response_uri.clone()),
                    response_hash: s(response_hash),
                    ..Self::default()
                }
            }
            EventData::ValidationRequest { validator_address, request_uri, request_hash } => Self {
                validator_address: s(validator_address),
                request_uri: Some(request_uri.clone()),
                request_hash: s(request_hash),
                ..Self::default()
            },
            EventData::ValidationResponse {
                validator_address,
                request_hash,
                response,
                response_uri,
                response_hash,
                tag,
            } => Self {
                validator_address: s(validator_address),
                request_hash: s(request_hash),
                response: Some(i16::from(*response)),
                response_uri: Some(response_uri.clone()),
                response_hash: s(response_hash),
                tag: Some(tag.clone()),
                ..Self::default()
            },
        }
    }
}

/// Inserts events; a log already stored (same chain, block hash and log index) is skipped.
/// Returns how many rows were new. Run it inside the caller's transaction to advance a
/// checkpoint atomically with the rows; listeners of `new_event` hear once per transaction.
pub async fn insert(conn: &mut PgConnection, events: &[NewEvent]) -> Result<u64, StoreError> {
    let mut inserted = 0;
    let mut start = 0;
    while start < events.len() {
        // Up to ROWS_PER_STATEMENT rows, and fewer when their text is long: a chain can put
        // 100 KB in every string, and a statement must stay far below PostgreSQL's limits.
        let mut end = start;
        let mut bytes = 0;
        while end < events.len() && end - start < ROWS_PER_STATEMENT && (end == start || bytes < BYTES_PER_STATEMENT) {
            bytes += approximate_bytes(&events[end]);
            end += 1;
        }
        inserted += insert_chunk(&mut *conn, &events[start..end]).await?;
        start = end;
    }
    Ok(inserted)
}

/// Most text (about) one INSERT statement carries.
const BYTES_PER_STATEMENT: usize = 32 * 1024 * 1024;

/// About how many bytes an event takes in a statement: its text travels in its column and
/// in `args` (and in hex there when it had to be changed).
fn approximate_bytes(event: &NewEvent) -> usize {
    let data = &event.event.data;
    let text: usize = data.texts().iter().map(|t| t.len()).sum();
    let bytes = if let EventData::MetadataSet { metadata_value, .. } = data { 2 * metadata_value.0.len() } else { 0 };
    1_024 + 4 * text + 2 * bytes
}

/// The rows of one statement, column by column: one array per column, bound once, so a
/// statement costs 37 binds whatever its number of rows.
#[derive(Default)]
struct ColumnBatch {
    chain_id: Vec<i64>,
    registry: Vec<&'static str>,
    event_type: Vec<&'static str>,
    contract_address: Vec<String>,
    block_number: Vec<i64>,
    block_hash: Vec<String>,
    block_timestamp: Vec<DateTime<Utc>>,
    tx_hash: Vec<String>,
    log_index: Vec<i64>,
    agent_id: Vec<String>,
    owner: Vec<Option<String>>,
    agent_uri: Vec<Option<Text>>,
    updated_by: Vec<Option<String>>,
    metadata_key: Vec<Option<Text>>,
    metadata_value: Vec<Option<String>>,
    from_address: Vec<Option<String>>,
    to_address: Vec<Option<String>>,
    client_address: Vec<Option<String>>,
    feedback_index: Vec<Option<String>>,
    value: Vec<Option<String>>,
    value_raw: Vec<Option<String>>,
    value_decimals: Vec<Option<i16>>,
    tag1: Vec<Option<Text>>,
    tag1_hash: Vec<Option<String>>,
    tag2: Vec<Option<Text>>,
    endpoint: Vec<Option<Text>>,
    feedback_uri: Vec<Option<Text>>,
    feedback_hash: Vec<Option<String>>,
    responder: Vec<Option<String>>,
    response_uri: Vec<Option<Text>>,
    response_hash: Vec<Option<String>>,
    validator_address: Vec<Option<String>>,
    request_uri: Vec<Option<Text>>,
    request_hash: Vec<Option<String>>,
    response: Vec<Option<i16>>,
    tag: Vec<Option<Text>>,
    args: Vec<serde_json::Value>,
}

impl ColumnBatch {
    fn push(&mut self, new: &NewEvent) -> Result<(), StoreError> {
        let event = &new.event;
        let log = &event.log;
        self.chain_id.push(log.chain_id.as_i64().ok_or(StoreError::ChainIdTooLarge(log.chain_id))?);
        self.block_number
            .push(i64::try_from(log.block_number).map_err(|_| StoreError::BlockNumberTooLarge(log.block_number))?);
        self.registry.push(event.registry().as_str());
        self.event_type.push(event.event_type().as_str());
        self.contract_address.push(log.contract_address.to_string());
        self.block_hash.push(log.block_hash.to_string());
        self.block_timestamp.push(log.block_timestamp);
        self.tx_hash.push(log.tx_hash.to_string());
        self.log_index.push(i64::from(log.log_index));
        self.agent_id.push(event.agent_id.to_string());
        let t = TypedColumns::of(&event.data);
        self.owner.push(t.owner);
        self.agent_uri.push(t.agent_uri);
        self.updated_by.push(t.updated_by);
        self.metadata_key.push(t.metadata_key);
        self.metadata_value.push(t.metadata_value);
        self.from_address.push(t.from_address);
        self.to_address.push(t.to_address);
        self.client_address.push(t.client_address);
        self.feedback_index.push(t.feedback_index);
        self.value.push(t.value);
        self.value_raw.push(t.value_raw);
        self.value_decimals.push(t.value_decimals);
        self.tag1.push(t.tag1);
        self.tag1_hash.push(t.tag1_hash);
        self.tag2.push(t.tag2);
        self.endpoint.push(t.endpoint);
        self.feedback_uri.push(t.feedback_uri);
        self.feedback_hash.push(t.feedback_hash);
        self.responder.push(t.responder);
        self.response_uri.push(t.response_uri);
        self.response_hash.push(t.response_hash);
        self.validator_address.push(t.validator_address);
        self.request_uri.push(t.request_uri);
        self.request_hash.push(t.request_hash);
        self.response.push(t.response);
        self.tag.push(t.tag);
        self.args.push(new.args.clone());
        Ok(())
    }
}

const INSERT_UNNEST: &str =
    "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number, block_hash, \
     block_timestamp, tx_hash, log_index, agent_id, owner, agent_uri, updated_by, metadata_key, \
     metadata_value, from_address, to_address, client_address, feedback_index, value, value_raw, \
     value_decimals, tag1, tag1_hash, tag2, endpoint, feedback_uri, feedback_hash, responder, \
     response_uri, response_hash, validator_address, request_uri, request_hash, response, tag, args)
     SELECT chain_id, registry, event_type, contract_address, block_number, block_hash, block_timestamp, tx_hash,
            log_index, agent_id::numeric, owner, agent_uri, updated_by, metadata_key, metadata_value, from_address,
            to_address, client_address, feedback_index::numeric, value::numeric, value_raw::numeric, value_decimals,
            tag1, tag1_hash, tag2, endpoint, feedback_uri, feedback_hash, responder, response_uri, response_hash,
            validator_address, request_uri, request_hash, response, tag, args
     FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::timestamptz[],
                 $8::text[], $9::int8[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                 $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::int2[], $23::text[],
                 $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::text[], $31::text[],
                 $32::text[], $33::text[], $34::text[], $35::int2[], $36::text[], $37::jsonb[])
          AS u(chain_id, registry, event_type, contract_address, block_number, block_hash, block_timestamp, tx_hash,
               log_index, agent_id, owner, agent_uri, updated_by, metadata_key, metadata_value, from_address,
               to_address, client_address, feedback_index, value, value_raw, value_decimals, tag1, tag1_hash, tag2,
               endpoint, feedback_uri, feedback_hash, responder, response_uri, response_hash, validator_address,
               request_uri, request_hash, response, tag, args)
     ON CONFLICT (chain_id, block_hash, log_index) DO NOTHING";

async fn insert_chunk<'e>(executor: impl PgExecutor<'e>, events: &[NewEvent]) -> Result<u64, StoreError> {
    let mut c = ColumnBatch::default();
    for new in events {
        c.push(new)?;
    }
    let result = sqlx::query(INSERT_UNNEST)
        .bind(c.chain_id)
        .bind(c.registry)
        .bind(c.event_type)
        .bind(c.contract_address)
        .bind(c.block_number)
        .bind(c.block_hash)
        .bind(c.block_timestamp)
        .bind(c.tx_hash)
        .bind(c.log_index)
        .bind(c.agent_id)
        .bind(c.owner)
        .bind(c.agent_uri)
        .bind(c.updated_by)
        .bind(c.metadata_key)
        .bind(c.metadata_value)
        .bind(c.from_address)
        .bind(c.to_address)
        .bind(c.client_address)
        .bind(c.feedback_index)
        .bind(c.value)
        .bind(c.value_raw)
        .bind(c.value_decimals)
        .bind(c.tag1)
        .bind(c.tag1_hash)
        .bind(c.tag2)
        .bind(c.endpoint)
        .bind(c.feedback_uri)
        .bind(c.feedback_hash)
        .bind(c.responder)
        .bind(c.response_uri)
        .bind(c.response_hash)
        .bind(c.validator_address)
        .bind(c.request_uri)
        .bind(c.request_hash)
        .bind(c.response)
        .bind(c.tag)
        .bind(c.args)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}

/// One event by store id.
pub async fn get<'e>(executor: impl PgExecutor<'e>, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {SELECT_COLUMNS} FROM events WHERE id = $1");
    let row: Option<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(executor).await?;
    row.map(StoredEvent::try_from).transpose()
}

/// A row of `events` as read with [`SELECT_COLUMNS`].
#[derive(sqlx::FromRow)]
pub struct EventRow {
    id: i64,
    removed: bool,
    chain_id: i64,
    event_type: String,
    contract_address: String,
    block_number: i64,
    block_hash: String,
    block_timestamp: DateTime<Utc>,
    tx_hash: String,
    log_index: i32,
    agent_id: String,
    #[sqlx(flatten)]
    typed: TypedColumns,
}

impl EventRow {
    /// The row's store id, readable before the row is parsed.
    pub fn id(&self) -> i64 {
        self.id
    }
}

/// Reads one column of a row, naming it when it is missing or unparseable.
struct Columns {
    id: i64,
}

impl Columns {
    fn fail(&self, reason: String) -> StoreError {
        StoreError::Malformed { id: self.id, reason }
    }

    fn required<T>(&self, name: &str, value: Option<T>) -> Result<T, StoreError> {
        value.ok_or_else(|| self.fail(format!("{name} is missing")))
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, value: Option<String>) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.required(name, value)?;
        text.parse().map_err(|err| self.fail(format!("{name}: {err}")))
    }

    fn number<T: TryFrom<i16>>(&self, name: &str, value: Option<i16>) -> Result<T, StoreError> {
        let n = self.required(name, value)?;
        T::try_from(n).map_err(|_| self.fail(format!("{name} is out of range")))
    }
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        let c = Columns { id: row.id };
        let event_type: EventType = c.parse("event_type", Some(row.event_type))?;
        let data = match event_type {
            EventType::Registered => EventData::Registered {
                owner: c.parse("owner", row.typed.owner)?,
                agent_uri: c.required("agent_uri", row.typed.agent_uri)?,
            },
            EventType::MetadataSet => EventData::MetadataSet {
                metadata_key: c.required("metadata_key", row.typed.metadata_key)?,
                metadata_value: c.parse::<HexBytes>("metadata_value", row.typed.metadata_value)?,
            },
            EventType::UriUpdated => EventData::UriUpdated {
                agent_uri: c.required("agent_uri", row.typed.agent_uri)?,
                updated_by: c.parse("updated_by", row.typed.updated_by)?,
            },
            EventType::Transfer => EventData::Transfer {
                from: c.parse("from_address", row.typed.from_address)?,
                to: c.parse("to_address", row.typed.to_address)?,
            },
            EventType::NewFeedback => {
                let raw: i128 = c.parse("value_raw", row.typed.value_raw)?;
                let decimals: u8 = c.number("value_decimals", row.typed.value_decimals)?;
                EventData::NewFeedback {
                    client_address: c.parse("client_address", row.typed.client_address)?,
                    feedback_index: row.typed.feedback_index.map(|i| c.parse("feedback_index", Some(i))).transpose()?,
                    value: FeedbackValue::new(raw, decimals)
                        .ok_or_else(|| c.fail("value_decimals is above 18".to_owned()))?,
                    tag1: row.typed.tag1,
                    tag1_hash: row.typed.tag1_hash.map(|h| c.parse::<Hash32>("tag1_hash", Some(h))).transpose()?,
                    tag2: c.required("tag2", row.typed.tag2)?,
                    endpoint: c.required("endpoint", row.typed.endpoint)?,
                    feedback_uri: c.required("feedback_uri", row.typed.feedback_uri)?,
                    feedback_hash: c.parse("feedback_hash", row.typed.feedback_hash)?,
                }
            }
            EventType::FeedbackRevoked => EventData::FeedbackRevoked {
                client_address: c.parse("client_address", row.typed.client_address)?,
                feedback_index: c.parse("feedback_index", row.typed.feedback_index)?,
            },
            EventType::ResponseAppended => EventData::ResponseAppended {
                client_address: c.parse("client_address", row.typed.client_address)?,
                feedback_index: c.parse("feedback_index", row.typed.feedback_index)?,
                responder: c.parse("responder", row.typed.responder)?,
                response_uri: c.required("response_uri", row.typed.response_uri)?,
                response_hash: c.parse("response_hash", row.typed.response_hash)?,
            },
            EventType::ValidationRequest => EventData::ValidationRequest {
                validator_address: c.parse("validator_address", row.typed.validator_address)?,
                request_uri: c.required("request_uri", row.typed.request_uri)?,
                request_hash: c.parse("request_hash", row.typed.request_hash)?,
            },
            EventType::ValidationResponse => EventData::ValidationResponse {
                validator_address: c.parse("validator_address", row.typed.validator_address)?,
                request_hash: c.parse("request_hash", row.typed.request_hash)?,
                response: c.number("response", row.typed.response)?,
                response_uri: c.required("response_uri", row.typed.response_uri)?,
                response_hash: c.parse("response_hash", row.typed.response_hash)?,
                tag: c.required("tag", row.typed.tag)?,
            },
        };
        let log = LogPosition {
            chain_id: ChainId(u64::try_from(row.chain_id).map_err(|_| c.fail("chain_id is negative".to_owned()))?),
            contract_address: c.parse::<Address>("contract_address", Some(row.contract_address))?,
            block_number: u64::try_from(row.block_number).map_err(|_| c.fail("block_number is negative".to_owned()))?,
            block_hash: c.parse("block_hash", Some(row.block_hash))?,
            block_timestamp: row.block_timestamp,
            tx_hash: c.parse("tx_hash", Some(row.tx_hash))?,
            log_index: u32::try_from(row.log_index).map_err(|_| c.fail("log_index is negative".to_owned()))?,
        };
        Ok(StoredEvent {
            id: EventId(row.id),
            removed: row.removed,
            event: ChainEvent { log, agent_id: c.parse::<AgentId>("agent_id", Some(row.agent_id))?, data },
        })
    }
}

/// What `GET /events` can filter on; every part optional.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub chain_id: Option<i64>,
    pub registry: Option<String>,
    pub event_type: Option<String>,
    pub agent_id: Option<String>,
    pub from_block: Option<i64>,
    pub to_block: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Events matching `filter`, newest first, `limit` of them with ids below `before`.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    filter: &EventFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events
         WHERE ($1::int8 IS NULL OR chain_id = $1)
           AND ($2::text IS NULL OR registry = $2)
           AND ($3::text IS NULL OR event_type = $3)
           AND ($4::text IS NULL OR agent_id = $4::numeric)
           AND ($5::int8 IS NULL OR block_number >= $5)
           AND ($6::int8 IS NULL OR block_number <= $6)
           AND ($7::timestamptz IS NULL OR block_timestamp >= $7)
           AND ($8::timestamptz IS NULL OR block_timestamp <= $8)
           AND ($9::int8 IS NULL OR id < $9)
         ORDER BY id DESC
         LIMIT $10"
    );
    let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.chain_id)
        .bind(&filter.registry)
        .bind(&filter.event_type)
        .bind(&filter.agent_id)
        .bind(filter.from_block)
        .bind(filter.to_block)
        .bind(filter.since)
        .bind(filter.until)
        .bind(before)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(StoredEvent::try_from).collect()
}

/// Deletes the events stored and mined before `cutoff` that the processor has read (at or
/// before its cursor, `(processed_xid, processed_id)` in `(tx_xid, id)` order) and that no
/// outbox row references, looking at `batch` events per statement; how many went.
///
/// Events are stored in id order, each stamped with the time of its transaction, so those
/// stored before the cutoff are the first ids (to within the length of a transaction). Each
/// statement takes the next `batch` ids and deletes those that qualify; a page that holds an
/// event stored after the cutoff (or is the last) ends the pruning. Requiring the storage
/// time as well as the block time keeps a backfill of old blocks for the whole period.
pub async fn prune_processed_before(
    pool: &sqlx::PgPool,
    cutoff: DateTime<Utc>,
    processed_xid: u64,
    processed_id: i64,
    batch: usize,
) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    pages::delete_page_by_page(0_i64, |after| async move {
        let (deleted, last, more): (i64, Option<i64>, bool) = sqlx::query_as(
            "WITH page AS (SELECT id, inserted_at FROM events WHERE id > $1 ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED),
                      gone AS (DELETE FROM events e USING page
                               WHERE e.id = page.id
                                 AND e.inserted_at < $2 AND e.block_timestamp < $2
                                 AND (e.tx_xid, e.id) <= ($3::text::xid8, $4)
                                 AND NOT EXISTS (SELECT 1 FROM action_outbox o WHERE o.event_id = e.id)
                               RETURNING e.id)
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT max(id) FROM page),
                        (SELECT count(*) FROM page) = $5 AND NOT EXISTS (SELECT 1 FROM page WHERE inserted_at >= $2)",
        )
        .bind(after)
        .bind(cutoff)
        .bind(processed_xid.to_string())
        .bind(processed_id)
        .bind(limit)
        .fetch_one(pool)
        .await?;
        Ok((deleted, last.filter(|_| more)))
    })
    .await
}
