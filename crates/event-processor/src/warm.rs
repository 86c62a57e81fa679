//! Warming a trigger's new aggregates from the stored history of its scope, so that an EMA
//! over the last ten feedbacks is meaningful as soon as the trigger is saved.

use std::collections::HashMap;

use shared::domain::StoredEvent;
use shared::store::events::SELECT_COLUMNS;
use shared::trigger::{Aggregate, Per};
use sqlx::PgPool;

use crate::aggregates::AggregateState;
use crate::cursor::{Cursor, CursorRow};
use crate::state::{WARMED_MARKER, upsert_states};
use crate::triggers::LoadedTrigger;

/// The ids of `trigger`'s aggregates that have not been warmed yet.
pub async fn unwarmed<'t>(pool: &PgPool, trigger: &'t LoadedTrigger) -> Result<Vec<&'t Aggregate>, sqlx::Error> {
    if trigger.rule.aggregates.is_empty() {
        return Ok(Vec::new());
    }
    let warmed: Vec<String> =
        sqlx::query_scalar("SELECT aggregate FROM aggregate_state WHERE trigger_id = $1 AND key = $2")
            .bind(trigger.id)
            .bind(WARMED_MARKER)
            .fetch_all(pool)
            .await?;
    Ok(trigger.rule.aggregates.iter().filter(|a| !warmed.contains(&a.id)).collect())
}

/// Replays up to `per_key` of the latest stored events of each key (agent, or the whole
/// trigger) through `aggregates`, up to `cursor`, then stores the states, drops the state
/// of aggregates the trigger no longer has, and marks the aggregates warmed, in one
/// transaction.
pub async fn warm(
    pool: &PgPool,
    trigger: &LoadedTrigger,
    aggregates: &[&Aggregate],
    cursor: Cursor,
    per_key: u32,
    max_window_entries: usize,
) -> Result<usize, sqlx::Error> {
    let history = if aggregates.is_empty() || cursor == Cursor::default() {
        Vec::new()
    } else {
        history(pool, trigger, aggregates, cursor, per_key).await?
    };
    let mut states: HashMap<(String, String), AggregateState> = HashMap::new();
    for event in &history {
        let at = event.event.log.block_timestamp.timestamp();
        for aggregate in aggregates.iter().filter(|a| a.feeds(event)) {
            let sample = aggregate.kind.field().and_then(|f| f.read_number(event));
            states
                .entry((aggregate.id.clone(), aggregate.per.key(event)))
                .or_insert_with(|| AggregateState::new(&aggregate.kind))
                .update(&aggregate.kind, sample, at, max_window_entries);
        }
    }
    let last_event = history.last().map_or(0, |e| e.id.0);
    let mut rows: Vec<(String, String, String)> = states
        .into_iter()
        .map(|((aggregate, key), state)| (aggregate, key, serde_json::to_string(&state).unwrap_or_default()))
        .collect();
    rows.extend(aggregates.iter().map(|a| (a.id.clone(), WARMED_MARKER.to_owned(), "{}".to_owned())));

    let current: Vec<String> = trigger.rule.aggregates.iter().map(|a| a.id.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM aggregate_state WHERE trigger_id = $1 AND NOT (aggregate = ANY($2))")
        .bind(trigger.id)
        .bind(&current)
        .execute(&mut *tx)
        .await?;
    let n = rows.len();
    upsert_states(
        &mut tx,
        &vec![trigger.id.0; n],
        &rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        &vec![trigger.version; n],
        &rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        &vec![last_event; n],
    )
    .await?;
    tx.commit().await?;
    Ok(history.len())
}

async fn history(
    pool: &PgPool,
    trigger: &LoadedTrigger,
    aggregates: &[&Aggregate],
    cursor: Cursor,
    per_key: u32,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let scope = &trigger.rule.scope;
    // Bound the replay per agent, unless some aggregate spans the whole trigger.
    let partition = if aggregates.iter().any(|a| a.per == Per::Trigger) { "0" } else { "chain_id, agent_id" };
    let sql = format!(
        "SELECT tx_xid::text AS cursor_xid, {SELECT_COLUMNS} FROM (
            SELECT e.*, row_number() OVER (PARTITION BY {partition} ORDER BY tx_xid DESC, id DESC) AS rn
            FROM events e
            WHERE NOT removed
              AND (tx_xid, id) <= ($1::text::xid8, $2)
              AND (cardinality($3::int8[]) = 0 OR chain_id = ANY($3))
              AND (cardinality($4::text[]) = 0 OR event_type = ANY($4))
              AND (cardinality($5::text[]) = 0 OR agent_id = ANY($5::text[]::numeric[]))
         ) w
         WHERE rn <= $6
         ORDER BY tx_xid, id"
    );
    let chains: Vec<i64> = scope.chain_ids.iter().filter_map(|c| c.as_i64()).collect();
    let types: Vec<&str> = scope.event_types_in_scope().into_iter().map(|t| t.as_str()).collect();
    let agents: Vec<String> = scope.agent_ids.iter().map(ToString::to_string).collect();
    let rows: Vec<CursorRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cursor.xid.to_string())
        .bind(cursor.id)
        .bind(&chains)
        .bind(&types)
        .bind(&agents)
        .bind(i64::from(per_key))
        .fetch_all(pool)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        match StoredEvent::try_from(row.event) {
            Ok(event) if trigger.rule.scope.matches(&event) => events.push(event),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "skipping a malformed event while warming"),
        }
    }
    Ok(events)
}
