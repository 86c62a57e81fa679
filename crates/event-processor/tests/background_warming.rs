//! Warming in the background: a trigger whose aggregates warm stays out of live processing
//! while everyone else's events are processed, then catches up alone and fires every event
//! since exactly once, also across a restart, a deletion, or a catch-up cut in two.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Bench, long_ago, webhook};
use event_processor::catchup::{self, CatchUp, Fence};
use event_processor::cursor::{self, CursorError};
use event_processor::{Processor, Settings};
use serde_json::json;
use shared::domain::TriggerId;
use sqlx::{Connection, PgConnection};
use testkit::fixtures::{block_time, feedback};

fn background() -> Settings {
    Settings { warm_in_background: true, ..Bench::settings(100) }
}

/// Three feedbacks (10, 20, 30) for each of five agents, at blocks 1 to 3.
fn history() -> Vec<shared::domain::NewEvent> {
    (0..3u64)
        .flat_map(|k| (0..5u64).map(move |a| feedback(1 + k, a as u32, a, 10 * (i128::from(k) + 1), 0, "u")))
        .collect()
}

/// A feedback of 40 for each of the five agents, at `block`.
fn fresh(block: u64) -> Vec<shared::domain::NewEvent> {
    (0..5u64).map(|a| feedback(block, a as u32, a, 40, 0, "u")).collect()
}

/// A bench whose history is processed by a processor with `settings`, before any trigger.
async fn after_history(settings: Settings) -> (Bench, Processor) {
    let bench = Bench::new().await;
    bench.insert(&history()).await;
    let mut processor = Processor::new(bench.db.pool.clone(), settings);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;
    (bench, processor)
}

/// A bench with an EMA trigger that fires on every feedback, as the processor loads it.
async fn ema_trigger() -> (Bench, TriggerId, Arc<engine::LoadedTrigger>) {
    let bench = Bench::new().await;
    let ema = json!({"ema": {"field": "value", "window": 3, "as": "e"}, "op": "lt", "value": 1000});
    let (trigger, _) = bench.trigger(webhook("ema", json!({}), ema), long_ago()).await;
    let loaded = Arc::new(
        engine::LoadedTrigger::try_from(
            shared::store::triggers::rule(&bench.db.pool, bench.user, trigger).await.unwrap().expect("the trigger"),
        )
        .expect("it parses"),
    );
    (bench, trigger, loaded)
}

/// An EMA trigger that fires on every feedback from block 100 on, and a plain one that fires
/// on every feedback.
async fn two_triggers(bench: &Bench) -> (TriggerId, TriggerId) {
    let ema = json!({"ema": {"field": "value", "window": 3, "as": "e"}, "op": "lt", "value": 1000});
    let (warming, _) = bench.trigger(webhook("ema", json!({}), ema), block_time(100)).await;
    let plain = json!({"field": "tag1", "op": "eq", "value": "u"});
    let (other, _) = bench.trigger(webhook("plain", json!({}), plain), long_ago()).await;
    (warming, other)
}

/// Holds the lock of `trigger`'s way in, which stops its warming before its first step.
/// (An advisory lock takes no transaction id, so it holds no one's cursor back.)
async fn hold(bench: &Bench, trigger: TriggerId) -> PgConnection {
    let mut conn = PgConnection::connect_with(&bench.db.pool.connect_options()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2::text))")
        .bind(catchup::LOCK_SPACE)
        .bind(trigger)
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Refreshes until no trigger is warming any more.
async fn until_live(processor: &mut Processor) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        processor.refresh_triggers().await.unwrap();
        if processor.warming() == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the trigger never caught up");
        // Woken when a warming task ends; a task that failed starts again on a later refresh.
        let _ = tokio::time::timeout(Duration::from_millis(250), processor.warming_finished().notified()).await;
    }
}

/// Both triggers fired once for each fresh feedback (block 200), and each agent's EMA holds
/// its three historical feedbacks and the fresh one: 10, 15, 22.5, then 31.25.
async fn assert_fired_once_and_warmed(bench: &Bench, warming: TriggerId, other: TriggerId) {
    let fresh_ids = event_ids_from_block(bench, 200).await;
    assert_eq!(fired_by(bench).await, BTreeMap::from([(other, fresh_ids.clone()), (warming, fresh_ids)]));
    let states = bench.states().await;
    assert_eq!(states.len(), 5);
    assert!(states.values().all(|s| s == &json!({"t": "ema", "value": "31.25", "samples": 4})), "{states:?}");
}

/// Outbox rows per trigger, as sorted event ids.
async fn fired_by(bench: &Bench) -> BTreeMap<TriggerId, Vec<i64>> {
    let mut by = BTreeMap::<TriggerId, Vec<i64>>::new();
    for (trigger, event) in bench.fired().await {
        by.entry(trigger).or_default().push(event);
    }
    by
}

async fn event_ids_from_block(bench: &Bench, block: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM events WHERE block_number >= $1 ORDER BY id")
        .bind(block)
        .fetch_all(&bench.db.pool)
        .await
        .unwrap()
}

async fn catching_up(bench: &Bench) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM trigger_catch_up").fetch_one(&bench.db.pool).await.unwrap()
}

#[tokio::test]
async fn a_warming_trigger_holds_no_one_up_and_then_fires_every_event_since_once() {
    let (bench, mut processor) = after_history(background()).await;

    let (warming, other) = two_triggers(&bench).await;
    let held = hold(&bench, warming).await;
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.warming(), 1, "the EMA trigger warms on its own");

    // Processing goes on without it while it is stuck.
    bench.insert(&fresh(200)).await;
    bench.settle(&mut processor).await;
    let fresh_ids = event_ids_from_block(&bench, 200).await;
    assert_eq!(fired_by(&bench).await, BTreeMap::from([(other, fresh_ids.clone())]));

    held.close().await.unwrap();
    until_live(&mut processor).await;
    // Warmed from history, then fed the fresh feedback.
    assert_fired_once_and_warmed(&bench, warming, other).await;
    assert_eq!(catching_up(&bench).await, 0, "the catch-up ended");

    // Live from here: the next feedback fires it through the batches.
    bench.insert(&fresh(300)).await;
    bench.settle(&mut processor).await;
    let all_fresh = event_ids_from_block(&bench, 200).await;
    assert_eq!(fired_by(&bench).await, BTreeMap::from([(other, all_fresh.clone()), (warming, all_fresh)]));
}

#[tokio::test]
async fn a_processor_stopped_while_a_trigger_warms_leaves_the_next_one_to_finish_it() {
    let (bench, mut first) = after_history(background()).await;

    let (warming, other) = two_triggers(&bench).await;
    let held = hold(&bench, warming).await;
    first.refresh_triggers().await.unwrap();
    bench.insert(&fresh(200)).await;
    bench.settle(&mut first).await;
    // The processor goes away with its warming task.
    drop(first);
    held.close().await.unwrap();

    let mut next = Processor::new(bench.db.pool.clone(), background());
    next.refresh_triggers().await.unwrap();
    until_live(&mut next).await;
    bench.settle(&mut next).await;
    assert_fired_once_and_warmed(&bench, warming, other).await;
}

#[tokio::test]
async fn events_committed_after_its_task_ends_are_replayed_before_the_trigger_goes_live() {
    let (bench, mut processor) = after_history(background()).await;

    let (warming, other) = two_triggers(&bench).await;
    processor.refresh_triggers().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), processor.warming_finished().notified()).await.unwrap();
    // The task is done, but the trigger is not filed yet: these pass it by.
    bench.insert(&fresh(200)).await;
    bench.settle(&mut processor).await;
    assert_eq!(processor.warming(), 1);

    // Filing it replays them first.
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.warming(), 0);
    assert_fired_once_and_warmed(&bench, warming, other).await;
}

#[tokio::test]
async fn events_streaming_while_a_trigger_catches_up_each_feed_it_once() {
    // Small batches: the catch-up takes several chunks and passes while the batches go on.
    let (bench, mut processor) = after_history(Settings { batch_size: 2, ..background() }).await;

    let (warming, _) = two_triggers(&bench).await;
    let held = hold(&bench, warming).await;
    processor.refresh_triggers().await.unwrap();
    for block in 200..203 {
        bench.insert(&fresh(block)).await;
        bench.settle(&mut processor).await;
    }
    held.close().await.unwrap();
    let mut block = 203;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while processor.warming() > 0 {
        bench.insert(&fresh(block)).await;
        block += 1;
        bench.settle(&mut processor).await;
        processor.refresh_triggers().await.unwrap();
        assert!(tokio::time::Instant::now() < deadline, "the trigger never caught up");
    }
    // And a few more once it is live.
    for extra in 0..2 {
        bench.insert(&fresh(block + extra)).await;
    }
    bench.settle(&mut processor).await;

    let fresh_ids = event_ids_from_block(&bench, 200).await;
    assert_eq!(fired_by(&bench).await.get(&warming), Some(&fresh_ids), "every fresh feedback fired it");
    // Each agent's EMA saw its three historical feedbacks and each fresh one exactly once.
    let per_agent = 3 + fresh_ids.len() / 5;
    let states = bench.states().await;
    assert_eq!(states.len(), 5);
    for state in states.values() {
        assert_eq!(state["samples"], json!(per_agent), "{state}");
    }
}

#[tokio::test]
async fn a_trigger_deleted_while_it_warms_just_goes_away() {
    let (bench, mut processor) = after_history(background()).await;

    let (warming, other) = two_triggers(&bench).await;
    let held = hold(&bench, warming).await;
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.warming(), 1);
    sqlx::query("DELETE FROM triggers WHERE id = $1").bind(warming).execute(&bench.db.pool).await.unwrap();
    held.close().await.unwrap();

    bench.insert(&fresh(200)).await;
    until_live(&mut processor).await;
    bench.settle(&mut processor).await;
    let fresh_ids = event_ids_from_block(&bench, 200).await;
    assert_eq!(fired_by(&bench).await, BTreeMap::from([(other, fresh_ids)]));
    assert_eq!(catching_up(&bench).await, 0);
    assert!(bench.states().await.is_empty(), "nothing was written for the deleted trigger");
}

#[tokio::test]
async fn a_catch_up_cut_in_two_resumes_where_its_last_chunk_committed() {
    let (bench, trigger, loaded) = ema_trigger().await;
    // The trigger catches up from the start of the store.
    let start = cursor::load(&bench.db.pool).await.unwrap();
    assert_eq!(catchup::begin(&bench.db.pool, trigger, start, Fence::default()).await.unwrap(), Some(start));
    bench.insert(&history()).await;
    let mut processor = Processor::new(bench.db.pool.clone(), Bench::settings(100));
    bench.settle(&mut processor).await;
    let end = processor.position().unwrap();
    let middle: (String, i64) =
        sqlx::query_as("SELECT tx_xid::text, id FROM events WHERE block_number = 2 ORDER BY id DESC LIMIT 1")
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
    let middle = cursor::Cursor { xid: middle.0.parse().unwrap(), id: middle.1 };

    // Chunks of four events: the first part commits three chunks, then the task "crashes".
    let mut jobs = Vec::new();
    let first = CatchUp::new(loaded.clone(), 4, 100, Fence::default())
        .to(&bench.db.pool, start, middle, usize::MAX, |committed| jobs.push(committed.len()))
        .await
        .unwrap();
    assert_eq!((first.events, first.fires, first.live, first.reached), (10, 10, true, middle));
    assert_eq!(jobs, [4, 4, 2], "one job per firing, handed over chunk by chunk");
    // A stale catch-up from the old position can no longer commit.
    let stale =
        CatchUp::new(loaded.clone(), 4, 100, Fence::default()).to(&bench.db.pool, start, end, usize::MAX, drop).await;
    assert!(matches!(stale, Err(CursorError::Moved)), "{stale:?}");
    let position = catchup::position(&mut bench.db.pool.acquire().await.unwrap(), trigger).await.unwrap();
    assert_eq!(position, Some(middle));

    let second =
        CatchUp::new(loaded, 4, 100, Fence::default()).to(&bench.db.pool, middle, end, usize::MAX, drop).await.unwrap();
    assert_eq!((second.events, second.fires), (5, 5));
    catchup::finish(&bench.db.pool, trigger, end, Fence::default()).await.unwrap();
    assert_eq!(catching_up(&bench).await, 0);

    // Every event fired once, and each agent's EMA saw each of its feedbacks once.
    let all: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(fired_by(&bench).await, BTreeMap::from([(trigger, all)]));
    let states = bench.states().await;
    assert_eq!(states.len(), 5);
    assert!(states.values().all(|s| s == &json!({"t": "ema", "value": "22.5", "samples": 3})), "{states:?}");
}

#[tokio::test]
async fn a_processor_that_lost_the_lead_commits_no_catch_up() {
    let (bench, trigger, loaded) = ema_trigger().await;
    let start = cursor::load(&bench.db.pool).await.unwrap();
    catchup::begin(&bench.db.pool, trigger, start, Fence::default()).await.unwrap();
    bench.insert(&history()).await;
    let mut processor = Processor::new(bench.db.pool.clone(), Bench::settings(100));
    bench.settle(&mut processor).await;
    let end = processor.position().unwrap();

    // The leader's lock, held on a connection of its own as the service holds it.
    let mut lock = PgConnection::connect_with(&bench.db.pool.connect_options()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(event_processor::service::LEADER_LOCK)
        .execute(&mut lock)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut lock).await.unwrap();
    let fence = Fence(Some(pid));
    let mut catch_up = CatchUp::new(loaded.clone(), 4, 100, fence);
    let first = catch_up.to(&bench.db.pool, start, end, 1, drop).await.unwrap();
    assert_eq!(first.events, 4, "one chunk while it leads");

    // The lock connection is gone: the lead is lost, and nothing more commits.
    lock.close().await.unwrap();
    let lost = CatchUp::new(loaded, 4, 100, fence).to(&bench.db.pool, first.reached, end, usize::MAX, drop).await;
    assert!(matches!(lost, Err(CursorError::Moved)), "{lost:?}");
    let position = catchup::position(&mut bench.db.pool.acquire().await.unwrap(), trigger).await.unwrap();
    assert_eq!(position, Some(first.reached));
    assert_eq!(bench.fired().await.len(), 4, "only the first chunk fired");
    assert!(catchup::finish(&bench.db.pool, trigger, end, fence).await.is_err());
}
