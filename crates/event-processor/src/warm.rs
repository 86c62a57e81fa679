//! Warming a trigger's new aggregates from the stored history of its scope, so that an EMA
//! over the last ten feedbacks is meaningful as soon as the trigger is saved.
//!
//! The history is read a page at a time, so a trigger whose scope is every agent of every
//! chain never holds more than one page in memory: see [`warm`].

use std::collections::HashMap;

use shared::domain::StoredEvent;
use shared::store::events::SELECT_COLUMNS;
use shared::trigger::{Aggregate, Per};
use sqlx::{PgConnection, PgPool};

use crate::aggregates::AggregateState;
use crate::catchup::Fence;
use crate::config::Settings;
use crate::cursor::{Cursor, CursorError, CursorRow};
use crate::state::{WARMED_MARKER, upsert_states};
use crate::triggers::LoadedTrigger;

/// About how many events one page of history holds (per chain an agent id appears on): a
/// page takes as many agents as fit at `per_key` events each, and at least one.
pub const PAGE_EVENTS: u32 = 10_000;

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
/// trigger) through `aggregates`, up to `cursor`: drops the state of aggregates the trigger
/// no longer has, stores the states, and marks the aggregates warmed. Returns the number of
/// events replayed.
///
/// Bounded in memory: agents are taken in pages of `max(1, PAGE_EVENTS / per_key)`, in
/// agent id order, and each page is read, replayed, written and dropped before the next,
/// so at most about `max(PAGE_EVENTS, per_key)` events per chain (an agent id names one
/// agent per chain) and their states are held at once. A trigger with a per-trigger
/// aggregate has one key, its latest `per_key` events, read in one page. Each page commits
/// on its own, so no transaction stays open for the whole history; the warm marker commits
/// last. Warming that stops half way (a crash) leaves no marker, and the next warming
/// writes every key again from the same history, so an aggregate ends warmed exactly once.
/// A trigger deleted meanwhile stops the warming at the next page. The pages stop once
/// `max_events` events were replayed: the keys of the agents after that start empty, so no
/// trigger's warming reads more than that much history. (`per_key`, `max_events`,
/// `max_window_entries` and the leader `fence` come from `settings`.)
pub async fn warm(
    pool: &PgPool,
    trigger: &LoadedTrigger,
    aggregates: &[&Aggregate],
    cursor: Cursor,
    settings: &Settings,
) -> Result<usize, CursorError> {
    let (per_key, max_events) = (settings.warm_events_per_key, settings.warm_max_events);
    let (max_window_entries, fence) = (settings.max_window_entries, settings.fence);
    let current: Vec<String> = trigger.rule.aggregates.iter().map(|a| a.id.clone()).collect();
    let Some(mut tx) = begin_if_live(pool, trigger, fence).await? else { return Ok(0) };
    sqlx::query("DELETE FROM aggregate_state WHERE trigger_id = $1 AND NOT (aggregate = ANY($2))")
        .bind(trigger.id)
        .bind(&current)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut replayed = Replayed::default();
    if !aggregates.is_empty() && cursor != Cursor::default() && per_key > 0 {
        let filter = ScopeFilter::of(trigger);
        if aggregates.iter().any(|a| a.per == Per::Trigger) {
            // One key for the whole trigger: its latest `per_key` events.
            let events =
                history(&mut *pool.acquire().await?, trigger, &filter, &filter.agents, "0", cursor, per_key).await?;
            let Some(mut tx) = begin_if_live(pool, trigger, fence).await? else { return Ok(replayed.events) };
            replay(&mut tx, trigger, aggregates, &events, max_window_entries, &mut replayed).await?;
            tx.commit().await?;
        } else {
            let agents_per_page = (PAGE_EVENTS / per_key).max(1);
            let mut after: Option<String> = None;
            loop {
                // Read outside the transaction that locks the trigger: a transaction holding a
                // row lock has an id, and while it runs no batch can pass it.
                let mut conn = pool.acquire().await?;
                let page = agents_page(&mut conn, &filter, cursor, after.as_deref(), agents_per_page).await?;
                let Some(last) = page.last().cloned() else { break };
                let events = history(&mut conn, trigger, &filter, &page, "chain_id, agent_id", cursor, per_key).await?;
                drop(conn);
                let Some(mut tx) = begin_if_live(pool, trigger, fence).await? else { return Ok(replayed.events) };
                replay(&mut tx, trigger, aggregates, &events, max_window_entries, &mut replayed).await?;
                tx.commit().await?;
                if page.len() < agents_per_page as usize {
                    break;
                }
                if replayed.events >= max_events {
                    // The agents after this page start with empty state.
                    tracing::info!(trigger.id = %trigger.id, events = replayed.events, "warming stopped at its limit");
                    break;
                }
                after = Some(last);
                tokio::task::yield_now().await;
            }
        }
    }

    let Some(mut tx) = begin_if_live(pool, trigger, fence).await? else { return Ok(replayed.events) };
    let n = aggregates.len();
    upsert_states(
        &mut tx,
        &vec![trigger.id.0; n],
        &aggregates.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        &vec![WARMED_MARKER.to_owned(); n],
        &vec![trigger.version; n],
        &vec!["{}".to_owned(); n],
        &vec![replayed.last.map_or(0, |(_, id)| id); n],
    )
    .await?;
    tx.commit().await?;
    Ok(replayed.events)
}

/// A transaction in which `trigger` is locked against deletion, or `None` when it was
/// deleted since it was read: then it has nothing more to warm, and no one's warming or
/// processing may fail for it.
async fn begin_if_live(
    pool: &PgPool,
    trigger: &LoadedTrigger,
    fence: Fence,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, CursorError> {
    let mut tx = pool.begin().await?;
    let (live, _) = shared::store::triggers::lock_existing(&mut tx, &[trigger.id.0], &[]).await?;
    if live.is_empty() {
        return Ok(None);
    }
    fence.check(&mut tx).await?;
    Ok(Some(tx))
}

/// What the pages replayed so far.
#[derive(Default)]
struct Replayed {
    events: usize,
    /// The position and id of the last event replayed, in store order.
    last: Option<(Cursor, i64)>,
}

/// Replays `events` (one page, in store order) through `aggregates` and stores the states
/// they make. Each state records the last event that fed it, as live processing does. The
/// keys of a page are in no other page, so each state is written once.
async fn replay(
    conn: &mut PgConnection,
    trigger: &LoadedTrigger,
    aggregates: &[&Aggregate],
    events: &[(Cursor, StoredEvent)],
    max_window_entries: usize,
    replayed: &mut Replayed,
) -> Result<(), sqlx::Error> {
    let mut states: HashMap<(String, String), (AggregateState, i64)> = HashMap::new();
    for (position, event) in events {
        let at = event.event.log.block_timestamp.timestamp();
        for aggregate in aggregates.iter().filter(|a| a.feeds(event)) {
            let sample = aggregate.kind.field().and_then(|f| f.read_number(event));
            let (state, last_event) = states
                .entry((aggregate.id.clone(), aggregate.per.key(event)))
                .or_insert_with(|| (AggregateState::new(&aggregate.kind), 0));
            state.update(&aggregate.kind, sample, at, max_window_entries);
            *last_event = event.id.0;
        }
        if replayed.last.is_none_or(|(last, _)| last < *position) {
            replayed.last = Some((*position, event.id.0));
        }
    }
    replayed.events += events.len();
    let n = states.len();
    let (mut ids, mut keys, mut values, mut last_events) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for ((aggregate, key), (state, last_event)) in states {
        ids.push(aggregate);
        keys.push(key);
        values.push(serde_json::to_string(&state).unwrap_or_default());
        last_events.push(last_event);
    }
    upsert_states(conn, &vec![trigger.id.0; n], &ids, &keys, &vec![trigger.version; n], &values, &last_events).await
}

/// A scope as the history queries filter on it.
pub(crate) struct ScopeFilter {
    pub chains: Vec<i64>,
    pub types: Vec<&'static str>,
    pub agents: Vec<String>,
}

impl ScopeFilter {
    pub fn of(trigger: &LoadedTrigger) -> Self {
        let scope = &trigger.rule.scope;
        Self {
            chains: scope.chain_ids.iter().filter_map(|c| c.as_i64()).collect(),
            types: scope.event_types_in_scope().into_iter().map(|t| t.as_str()).collect(),
            agents: scope.agent_ids.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Up to `limit` agent ids (as decimal text) after `after` that have events in the scope
/// up to `cursor`, in id order.
async fn agents_page(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    cursor: Cursor,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT agent_id::text AS agent FROM events
         WHERE NOT removed
           AND (tx_xid, id) <= ($1::text::xid8, $2)
           AND (cardinality($3::int8[]) = 0 OR chain_id = ANY($3))
           AND (cardinality($4::text[]) = 0 OR event_type = ANY($4))
           AND (cardinality($5::text[]) = 0 OR agent_id = ANY($5::text[]::numeric[]))
           AND ($6::text IS NULL OR agent_id > $6::text::numeric)
         GROUP BY agent_id
         ORDER BY events.agent_id -- numerically: the column, not its text
         LIMIT $7",
    )
    .bind(cursor.xid.to_string())
    .bind(cursor.id)
    .bind(&filter.chains)
    .bind(&filter.types)
    .bind(&filter.agents)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
}

/// The latest `per_key` events of each partition of the scope's events up to `cursor`,
/// restricted to `agents` when not empty, in store order with their positions.
async fn history(
    conn: &mut PgConnection,
    trigger: &LoadedTrigger,
    filter: &ScopeFilter,
    agents: &[String],
    partition: &str,
    cursor: Cursor,
    per_key: u32,
) -> Result<Vec<(Cursor, StoredEvent)>, sqlx::Error> {
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
    let rows: Vec<CursorRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cursor.xid.to_string())
        .bind(cursor.id)
        .bind(&filter.chains)
        .bind(&filter.types)
        .bind(agents)
        .bind(i64::from(per_key))
        .fetch_all(&mut *conn)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(xid) = row.cursor_xid.parse::<u64>() else {
            tracing::warn!(xid = %row.cursor_xid, "skipping an event with an unreadable transaction id while warming");
            continue;
        };
        let position = Cursor { xid, id: row.event.id() };
        match StoredEvent::try_from(row.event) {
            Ok(event) if trigger.rule.scope.matches(&event) => events.push((position, event)),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "skipping a malformed event while warming"),
        }
    }
    Ok(events)
}
