//! Warming a trigger's new aggregates from the stored history of its scope, so that an EMA
//! over the last ten feedbacks is meaningful as soon as the trigger is saved.
//!
//! The history is read a page at a time, so a trigger whose scope is every agent of every
//! chain never holds more than one page in memory: see [`warm`].

use engine::LoadedTrigger;
use engine::warm::Replay;
use shared::domain::StoredEvent;
use shared::store::aggregate_state::{self, StateRows, WARMED_MARKER};
use shared::store::events::history::{self, Partition, ScopeFilter, Upto};
use shared::trigger::{Aggregate, Per};
use sqlx::{PgConnection, PgPool};

use crate::catchup::Fence;
use crate::config::Settings;
use crate::cursor::{Cursor, CursorError};

pub use engine::warm::PAGE_EVENTS;

/// The ids of `trigger`'s aggregates that have not been warmed yet.
pub async fn unwarmed<'t>(pool: &PgPool, trigger: &'t LoadedTrigger) -> Result<Vec<&'t Aggregate>, sqlx::Error> {
    if trigger.rule.aggregates.is_empty() {
        return Ok(Vec::new());
    }
    let warmed = aggregate_state::warmed(pool, trigger.id).await?;
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
    aggregate_state::delete_other_aggregates(&mut tx, trigger.id, &current).await?;
    tx.commit().await?;

    let mut replayed = Replayed::default();
    if !aggregates.is_empty() && cursor != Cursor::default() && per_key > 0 {
        let filter = ScopeFilter::of(&trigger.rule.scope);
        if aggregates.iter().any(|a| a.per == Per::Trigger) {
            // One key for the whole trigger: its latest `per_key` events.
            let mut conn = pool.acquire().await?;
            let events = latest(&mut conn, trigger, &filter, &filter.agents, Partition::Whole, cursor, per_key).await?;
            drop(conn);
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
                let page =
                    history::agents_page(&mut conn, &filter, upto(cursor), after.as_deref(), agents_per_page).await?;
                let Some(last) = page.last().cloned() else { break };
                let events = latest(&mut conn, trigger, &filter, &page, Partition::Agent, cursor, per_key).await?;
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
    let mut markers = StateRows::default();
    for aggregate in aggregates {
        let key = (trigger.id, aggregate.id.clone(), WARMED_MARKER.to_owned());
        markers.push(key, trigger.version, "{}".to_owned(), replayed.last.map_or(0, |(_, id)| id));
    }
    markers.write(&mut tx).await?;
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
    let mut replay = Replay::default();
    for (position, event) in events {
        replay.feed(aggregates, event, max_window_entries);
        if replayed.last.is_none_or(|(last, _)| last < *position) {
            replayed.last = Some((*position, event.id.0));
        }
    }
    replayed.events += events.len();
    replay.take_rows(trigger).write(conn).await
}

fn upto(cursor: Cursor) -> Upto {
    Upto::Position { xid: cursor.xid, id: cursor.id }
}

/// The latest `per_key` events of each partition of the trigger's scope up to `cursor`, in
/// store order with their positions.
async fn latest(
    conn: &mut PgConnection,
    trigger: &LoadedTrigger,
    filter: &ScopeFilter,
    agents: &[String],
    partition: Partition,
    cursor: Cursor,
    per_key: u32,
) -> Result<Vec<(Cursor, StoredEvent)>, sqlx::Error> {
    let events = history::latest_per_key(conn, filter, agents, partition, upto(cursor), per_key).await?;
    Ok(events
        .into_iter()
        .filter(|(_, event)| trigger.rule.scope.matches(event))
        .map(|(xid, event)| (Cursor { xid, id: event.id.0 }, event))
        .collect())
}
