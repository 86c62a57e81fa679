//! The `events` table: idempotent inserts and reads back into [`StoredEvent`].

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::domain::{
    Address, AgentId, ChainEvent, ChainId, EventData, EventId, EventType, FeedbackValue, Hash32, HexBytes, LogPosition,
    NewEvent, StoredEvent,
};

/// Rows per INSERT statement: 40 binds a row stays well under PostgreSQL's 65,535 limit.
const ROWS_PER_STATEMENT: usize = 500;

const COLUMNS: &str = "chain_id, registry, event_type, contract_address, block_number, block_hash, \
     block_timestamp, tx_hash, log_index, agent_id, owner, agent_uri, updated_by, metadata_key, \
     metadata_value, from_address, to_address, client_address, feedback_index, value, value_raw, \
     value_decimals, tag1, tag1_hash, tag2, endpoint, feedback_uri, feedback_hash, responder, \
     response_uri, response_hash, validator_address, request_uri, request_hash, response, tag, args";

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
}

/// The per-type columns of one event, all optional, in table order.
#[derive(Default, sqlx::FromRow)]
struct TypedColumns {
    owner: Option<String>,
    agent_uri: Option<String>,
    updated_by: Option<String>,
    metadata_key: Option<String>,
    metadata_value: Option<String>,
    from_address: Option<String>,
    to_address: Option<String>,
    client_address: Option<String>,
    feedback_index: Option<String>,
    value: Option<String>,
    value_raw: Option<String>,
    value_decimals: Option<i16>,
    tag1: Option<String>,
    tag1_hash: Option<String>,
    tag2: Option<String>,
    endpoint: Option<String>,
    feedback_uri: Option<String>,
    feedback_hash: Option<String>,
    responder: Option<String>,
    response_uri: Option<String>,
    response_hash: Option<String>,
    validator_address: Option<String>,
    request_uri: Option<String>,
    request_hash: Option<String>,
    response: Option<i16>,
    tag: Option<String>,
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
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        inserted += insert_chunk(&mut *conn, chunk).await?;
    }
    Ok(inserted)
}

async fn insert_chunk<'e>(executor: impl PgExecutor<'e>, events: &[NewEvent]) -> Result<u64, StoreError> {
    let mut rows = Vec::with_capacity(events.len());
    for new in events {
        let log = &new.event.log;
        let chain_id = log.chain_id.as_i64().ok_or(StoreError::ChainIdTooLarge(log.chain_id))?;
        let block_number =
            i64::try_from(log.block_number).map_err(|_| StoreError::BlockNumberTooLarge(log.block_number))?;
        rows.push((chain_id, block_number, new, TypedColumns::of(&new.event.data)));
    }
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO events ({COLUMNS}) "));
    query.push_values(rows, |mut row, (chain_id, block_number, new, typed)| {
        let event = &new.event;
        row.push_bind(chain_id)
            .push_bind(event.registry().as_str())
            .push_bind(event.event_type().as_str())
            .push_bind(event.log.contract_address.to_string())
            .push_bind(block_number)
            .push_bind(event.log.block_hash.to_string())
            .push_bind(event.log.block_timestamp)
            .push_bind(event.log.tx_hash.to_string())
            .push_bind(i64::from(event.log.log_index))
            .push_bind(event.agent_id.to_string())
            .push_unseparated("::numeric")
            .push_bind(typed.owner)
            .push_bind(typed.agent_uri)
            .push_bind(typed.updated_by)
            .push_bind(typed.metadata_key)
            .push_bind(typed.metadata_value)
            .push_bind(typed.from_address)
            .push_bind(typed.to_address)
            .push_bind(typed.client_address)
            .push_bind(typed.feedback_index)
            .push_unseparated("::numeric")
            .push_bind(typed.value)
            .push_unseparated("::numeric")
            .push_bind(typed.value_raw)
            .push_unseparated("::numeric")
            .push_bind(typed.value_decimals)
            .push_bind(typed.tag1)
            .push_bind(typed.tag1_hash)
            .push_bind(typed.tag2)
            .push_bind(typed.endpoint)
            .push_bind(typed.feedback_uri)
            .push_bind(typed.feedback_hash)
            .push_bind(typed.responder)
            .push_bind(typed.response_uri)
            .push_bind(typed.response_hash)
            .push_bind(typed.validator_address)
            .push_bind(typed.request_uri)
            .push_bind(typed.request_hash)
            .push_bind(typed.response)
            .push_bind(typed.tag)
            .push_bind(&new.args);
    });
    query.push(" ON CONFLICT (chain_id, block_hash, log_index) DO NOTHING");
    let result = query.build().execute(executor).await?;
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
