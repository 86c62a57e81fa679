//! Reading the stored history of a trigger's scope: the latest events of each key (to warm
//! aggregates), and every event of a period in chain order (to backtest).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{EventRow, SELECT_COLUMNS};
use crate::domain::StoredEvent;
use crate::trigger::Scope;

/// A scope as the history queries filter on it (an empty list admits any value). Events
/// that pass still go through [`Scope::matches`], which decides.
#[derive(Debug, Clone)]
pub struct ScopeFilter {
    pub chains: Vec<i64>,
    pub types: Vec<&'static str>,
    pub agents: Vec<String>,
}

impl ScopeFilter {
    pub fn of(scope: &Scope) -> Self {
        Self {
            chains: scope.chain_ids.iter().filter_map(|c| c.as_i64()).collect(),
            types: scope.event_types_in_scope().into_iter().map(|t| t.as_str()).collect(),
            agents: scope.agent_ids.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Where the history ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upto {
    /// At a position of the store order, `(tx_xid, id)`, included: what the processor has read.
    Position { xid: u64, id: i64 },
    /// Before a block time, excluded: what happened before a backtest's period.
    Before(DateTime<Utc>),
}

impl Upto {
    /// The order "latest" and "in order" follow: the store's for a position (what the
    /// processor has read, in the order it read it), the chains' for a block time.
    fn order(self, descending: bool) -> &'static str {
        match (self, descending) {
            (Upto::Position { .. }, false) => "tx_xid, id",
            (Upto::Position { .. }, true) => "tx_xid DESC, id DESC",
            (Upto::Before(_), false) => "block_timestamp, chain_id, block_number, log_index, id",
            (Upto::Before(_), true) => {
                "block_timestamp DESC, chain_id DESC, block_number DESC, log_index DESC, id DESC"
            }
        }
    }

    /// The three parameters the queries take: the position's xid (as text) and id, and the
    /// block time; the bound not used is NULL.
    fn params(self) -> (Option<String>, Option<i64>, Option<DateTime<Utc>>) {
        match self {
            Upto::Position { xid, id } => (Some(xid.to_string()), Some(id), None),
            Upto::Before(at) => (None, None, Some(at)),
        }
    }
}

/// The filter on the scope and the bound, shared by the queries below: parameters $1–$6.
const IN_SCOPE_UPTO: &str = "NOT removed
       AND ($1::text IS NULL OR (tx_xid, id) <= ($1::text::xid8, $2::int8))
       AND ($3::timestamptz IS NULL OR block_timestamp < $3)
       AND (cardinality($4::int8[]) = 0 OR chain_id = ANY($4))
       AND (cardinality($5::text[]) = 0 OR event_type = ANY($5))
       AND (cardinality($6::text[]) = 0 OR agent_id = ANY($6::text[]::numeric[]))";

/// Up to `limit` agent ids (as decimal text) after `after` that have events in the scope up
/// to `upto`, in id order.
pub async fn agents_page(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    upto: Upto,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, sqlx::Error> {
    let (xid, id, before) = upto.params();
    let sql = format!(
        "SELECT agent_id::text AS agent FROM events
         WHERE {IN_SCOPE_UPTO}
           AND ($7::text IS NULL OR agent_id > $7::text::numeric)
         GROUP BY agent_id
         ORDER BY events.agent_id -- numerically: the column, not its text
         LIMIT $8"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(xid)
        .bind(id)
        .bind(before)
        .bind(&filter.chains)
        .bind(&filter.types)
        .bind(&filter.agents)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
}

/// What the latest events are counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Each agent of each chain.
    Agent,
    /// The whole scope at once.
    Whole,
}

/// The latest `per_key` events of each partition of the scope's events up to `upto`,
/// restricted to `agents` when not empty, in order (see [`Upto`]: the store's up to a
/// position, the chains' before a block time), each with the id of the transaction that
/// stored it. Rows that do not read are skipped, with a warning.
pub async fn latest_per_key(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    agents: &[String],
    partition: Partition,
    upto: Upto,
    per_key: u32,
) -> Result<Vec<(u64, StoredEvent)>, sqlx::Error> {
    let (xid, id, before) = upto.params();
    let partition = match partition {
        Partition::Agent => "chain_id, agent_id",
        Partition::Whole => "0",
    };
    let (latest_first, in_order) = (upto.order(true), upto.order(false));
    let sql = format!(
        "SELECT tx_xid::text AS cursor_xid, {SELECT_COLUMNS} FROM (
            SELECT e.*, row_number() OVER (PARTITION BY {partition} ORDER BY {latest_first}) AS rn
            FROM events e
            WHERE {IN_SCOPE_UPTO}
         ) w
         WHERE rn <= $7
         ORDER BY {in_order}"
    );
    let rows: Vec<PositionedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(xid)
        .bind(id)
        .bind(before)
        .bind(&filter.chains)
        .bind(&filter.types)
        .bind(agents)
        .bind(i64::from(per_key))
        .fetch_all(&mut *conn)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(xid) = row.cursor_xid.parse::<u64>() else {
            tracing::warn!(xid = %row.cursor_xid, "skipping an event with an unreadable transaction id");
            continue;
        };
        match StoredEvent::try_from(row.event) {
            Ok(event) => events.push((xid, event)),
            Err(err) => tracing::warn!(error = %err, "skipping a malformed event of a trigger's history"),
        }
    }
    Ok(events)
}

#[derive(sqlx::FromRow)]
struct PositionedRow {
    cursor_xid: String,
    #[sqlx(flatten)]
    event: EventRow,
}

/// A place in chain order: block time, chain, block, log index, and the store id, which
/// breaks the ties a deep reorg can leave (two live logs at one position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChainPosition {
    pub block_timestamp: DateTime<Utc>,
    pub chain_id: i64,
    pub block_number: i64,
    pub log_index: i32,
    pub id: i64,
}

/// One page of a period: the events that read, and where the page ended (rows that do not
/// read are skipped, with a warning, but still move the page on).
#[derive(Debug, Default)]
pub struct PeriodPage {
    pub events: Vec<StoredEvent>,
    /// The position of the last row read; `None` for an empty page.
    pub last: Option<ChainPosition>,
    /// Rows read, events or not: fewer than asked means the period is over.
    pub rows: usize,
}

/// The filter on the scope and a period of block time `[from, to)`: parameters $1–$5.
const IN_SCOPE_PERIOD: &str = "NOT removed
       AND block_timestamp >= $1 AND block_timestamp < $2
       AND (cardinality($3::int8[]) = 0 OR chain_id = ANY($3))
       AND (cardinality($4::text[]) = 0 OR event_type = ANY($4))
       AND (cardinality($5::text[]) = 0 OR agent_id = ANY($5::text[]::numeric[]))";

/// How many events of the scope lie in `[from, to)`, counting no further than `cap`.
pub async fn count_in_period(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cap: u64,
) -> Result<u64, sqlx::Error> {
    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM events WHERE {IN_SCOPE_PERIOD} LIMIT $6) e");
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(&filter.chains)
        .bind(&filter.types)
        .bind(&filter.agents)
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_one(&mut *conn)
        .await?;
    Ok(count.unsigned_abs())
}

/// Up to `limit` events of the scope in `[from, to)` after `after`, in chain order. Each page
/// reads from its start on (the block time bounds an index range), so a period costs the
/// rows it holds, page after page.
pub async fn period_page(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<ChainPosition>,
    limit: u32,
) -> Result<PeriodPage, sqlx::Error> {
    // The first page starts before every log at `from`.
    let start = after.unwrap_or(ChainPosition {
        block_timestamp: from,
        chain_id: i64::MIN,
        block_number: i64::MIN,
        log_index: i32::MIN,
        id: i64::MIN,
    });
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events
         WHERE {IN_SCOPE_PERIOD}
           AND block_timestamp >= $6
           AND (block_timestamp, chain_id, block_number, log_index, id) > ($6, $7::int8, $8::int8, $9::int4, $10::int8)
         ORDER BY block_timestamp, chain_id, block_number, log_index, id
         LIMIT $11"
    );
    let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(&filter.chains)
        .bind(&filter.types)
        .bind(&filter.agents)
        .bind(start.block_timestamp)
        .bind(start.chain_id)
        .bind(start.block_number)
        .bind(start.log_index)
        .bind(start.id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    let mut page = PeriodPage { rows: rows.len(), ..PeriodPage::default() };
    page.last = rows.last().map(|row| ChainPosition {
        block_timestamp: row.block_timestamp,
        chain_id: row.chain_id,
        block_number: row.block_number,
        log_index: row.log_index,
        id: row.id,
    });
    for row in rows {
        let id = row.id;
        match StoredEvent::try_from(row) {
            Ok(event) => page.events.push(event),
            Err(err) => tracing::warn!(event.id = id, error = %err, "skipping a malformed event of a period"),
        }
    }
    Ok(page)
}
