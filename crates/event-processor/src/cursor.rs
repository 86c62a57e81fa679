//! The processor's durable position in the event store.
//!
//! Events are read in `(tx_xid, id)` order and only from transactions older than every
//! transaction still running (`pg_snapshot_xmin`). A row whose id was drawn early but whose
//! transaction committed late therefore appears after the cursor, never behind it.

use chrono::{DateTime, Utc};
use shared::store::events::{EventRow, SELECT_COLUMNS};
use sqlx::{PgConnection, PgPool};

/// The partition this processor owns. One partition today; the column allows more.
pub const PARTITION: i32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// The inserting transaction's id (xid8).
    pub xid: u64,
    pub id: i64,
}

#[derive(sqlx::FromRow)]
pub struct CursorRow {
    pub cursor_xid: String,
    #[sqlx(flatten)]
    pub event: EventRow,
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("the stored cursor is not a transaction id: {0:?}")]
    Malformed(String),
    #[error("another processor moved the cursor")]
    Moved,
}

fn parse_xid(text: &str) -> Result<u64, CursorError> {
    text.parse().map_err(|_| CursorError::Malformed(text.to_owned()))
}

/// The committed cursor, created at the start of the store when absent.
pub async fn load(pool: &PgPool) -> Result<Cursor, CursorError> {
    sqlx::query("INSERT INTO processor_cursor (partition) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(PARTITION)
        .execute(pool)
        .await?;
    let (xid, id): (String, i64) =
        sqlx::query_as("SELECT last_xid::text, last_id FROM processor_cursor WHERE partition = $1")
            .bind(PARTITION)
            .fetch_one(pool)
            .await?;
    Ok(Cursor { xid: parse_xid(&xid)?, id })
}

/// Up to `limit` events after `cursor` whose transactions are settled.
pub async fn read_batch(pool: &PgPool, cursor: Cursor, limit: usize) -> Result<Vec<(Cursor, EventRow)>, CursorError> {
    let sql = format!(
        "SELECT tx_xid::text AS cursor_xid, {SELECT_COLUMNS} FROM events
         WHERE (tx_xid, id) > ($1::text::xid8, $2)
           AND tx_xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
         ORDER BY tx_xid, id
         LIMIT $3"
    );
    let rows: Vec<CursorRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cursor.xid.to_string())
        .bind(cursor.id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|row| {
            let position = Cursor { xid: parse_xid(&row.cursor_xid)?, id: row.event.id() };
            Ok((position, row.event))
        })
        .collect()
}

/// Moves the cursor from `from` to `to` inside the batch's transaction; fails when another
/// processor moved it meanwhile, so two processors can never both commit the same batch.
pub async fn advance(conn: &mut PgConnection, from: Cursor, to: Cursor) -> Result<(), CursorError> {
    let moved = sqlx::query(
        "UPDATE processor_cursor SET last_xid = $2::text::xid8, last_id = $3, updated_at = now()
         WHERE partition = $1 AND last_xid = $4::text::xid8 AND last_id = $5",
    )
    .bind(PARTITION)
    .bind(to.xid.to_string())
    .bind(to.id)
    .bind(from.xid.to_string())
    .bind(from.id)
    .execute(conn)
    .await?;
    if moved.rows_affected() == 1 { Ok(()) } else { Err(CursorError::Moved) }
}

/// The block time of the first stored event after `cursor` (in the order the processor reads
/// them, settled or not), `None` when there is none: how far back in block time the events
/// still to be processed begin.
pub async fn next_block_time(pool: &PgPool, cursor: Cursor) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT block_timestamp FROM events WHERE (tx_xid, id) > ($1::text::xid8, $2) ORDER BY tx_xid, id LIMIT 1",
    )
    .bind(cursor.xid.to_string())
    .bind(cursor.id)
    .fetch_optional(pool)
    .await
}
