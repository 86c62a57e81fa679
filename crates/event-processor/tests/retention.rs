//! Retention against the real PostgreSQL: what a round deletes, and what it must keep.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use common::{Bench, long_ago};
use event_processor::Retention;
use event_processor::retention::{Pruned, run_once};
use serde_json::{Value, json};
use shared::domain::{ActionId, TriggerId};
use shared::trigger::TriggerDefinition;
use testkit::fixtures::feedback;

/// Thirty days for jobs and attempts, a week for events when `events` is set, and two rows
/// per statement so that every table is pruned in several batches.
fn retention(events: bool) -> Retention {
    Retention { days: 30, events_days: events.then_some(7), interval: Duration::from_secs(3_600), batch: 2 }
}

/// A trigger on chain 1, where no fixture event is, so processing leaves its state alone: a
/// count over a minute, an EMA and a count over two days, and a ten-minute cooldown.
fn windows_trigger() -> Value {
    json!({
        "name": "windows",
        "scope": {"chain_ids": [1], "registry": "reputation", "event_types": ["NewFeedback"]},
        "condition": {"all": [
            {"count": {"window_secs": 60, "as": "minute"}, "op": "gte", "value": 1},
            {"ema": {"field": "value", "window": 10, "as": "ema"}, "op": "gt", "value": 0},
            {"count": {"window_secs": 172_800, "as": "two_days"}, "op": "gte", "value": 1}
        ]},
        "cooldown_secs": 600,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    })
}

/// The state id of each aggregate of `definition`, by its `as`.
fn aggregate_ids(definition: &Value) -> BTreeMap<String, String> {
    let parsed = TriggerDefinition::parse(definition).unwrap();
    parsed.rule.aggregates.iter().map(|a| (a.alias.clone().unwrap(), a.id.clone())).collect()
}

/// Stores a `NewFeedback` in block `block` of chain 31337, one statement per event so that
/// ids follow blocks, stored and mined `age_days` ago.
async fn old_event(bench: &Bench, block: u64, age_days: i32) -> i64 {
    bench.insert(&[feedback(block, 0, 5, 1, 0, "a")]).await;
    sqlx::query_scalar(
        "UPDATE events SET block_timestamp = now() - make_interval(days => $2),
                           inserted_at = now() - make_interval(days => $2)
         WHERE block_number = $1 RETURNING id",
    )
    .bind(i64::try_from(block).unwrap())
    .bind(age_days)
    .fetch_one(&bench.db.pool)
    .await
    .unwrap()
}

/// An outbox row in `status`, created (and, when finished, finished) `age_days` ago.
async fn job(
    bench: &Bench,
    trigger: TriggerId,
    action: ActionId,
    event: i64,
    status: &str,
    age_days: i32,
) -> uuid::Uuid {
    let job = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO action_outbox
            (job_id, trigger_id, action_id, event_id, kind, payload, status, finished_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'webhook', '{}'::jsonb, $5,
                 CASE WHEN $5 IN ('delivered', 'failed', 'dead') THEN now() - make_interval(days => $6) END,
                 now() - make_interval(days => $6), now() - make_interval(days => $6))",
    )
    .bind(job)
    .bind(trigger)
    .bind(action)
    .bind(event)
    .bind(status)
    .bind(age_days)
    .execute(&bench.db.pool)
    .await
    .unwrap();
    job
}

/// A delivery attempt recorded `age_days` ago.
async fn attempt(bench: &Bench, trigger: TriggerId, action: ActionId, age_days: i32) {
    sqlx::query(
        "INSERT INTO deliveries (job_id, trigger_id, action_id, event_id, kind, attempt, outcome, created_at)
         VALUES ($1, $2, $3, 0, 'webhook', 1, 'retry', now() - make_interval(days => $4))",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(trigger)
    .bind(action)
    .bind(age_days)
    .execute(&bench.db.pool)
    .await
    .unwrap();
}

/// A window state holding one sample per entry of `sample_ages_secs`, seconds before now.
fn window(sample_ages_secs: &[i64]) -> Value {
    let now = Utc::now().timestamp();
    let entries: Vec<Value> = sample_ages_secs.iter().map(|age| json!([now - age, "1"])).collect();
    json!({"t": "window", "entries": entries})
}

/// A state row of `trigger`'s `aggregate` for `key`, last written `updated_hours_ago`.
async fn state(bench: &Bench, trigger: TriggerId, aggregate: &str, key: &str, state: Value, updated_hours_ago: i32) {
    sqlx::query(
        "INSERT INTO aggregate_state (trigger_id, aggregate, key, trigger_version, state, last_event_id, updated_at)
         VALUES ($1, $2, $3, 1, $4, 0, now() - make_interval(hours => $5))",
    )
    .bind(trigger)
    .bind(aggregate)
    .bind(key)
    .bind(state)
    .bind(updated_hours_ago)
    .execute(&bench.db.pool)
    .await
    .unwrap();
}

/// A cooldown of `trigger` for `agent_key` that started `fired_hours_ago`.
async fn cooldown(bench: &Bench, trigger: TriggerId, agent_key: &str, fired_hours_ago: i32) {
    sqlx::query(
        "INSERT INTO cooldowns (trigger_id, agent_key, last_fired_at, last_event_id, suppressed_count)
         VALUES ($1, $2, now() - make_interval(hours => $3), 0, 2)",
    )
    .bind(trigger)
    .bind(agent_key)
    .bind(fired_hours_ago)
    .execute(&bench.db.pool)
    .await
    .unwrap();
}

/// The state rows left, as (aggregate's `as`, key), warm markers apart; and the markers.
async fn states_left(bench: &Bench, ids: &BTreeMap<String, String>) -> (BTreeSet<(String, String)>, usize) {
    let alias: BTreeMap<String, String> = ids.iter().map(|(alias, id)| (id.clone(), alias.clone())).collect();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT aggregate, key FROM aggregate_state").fetch_all(&bench.db.pool).await.unwrap();
    let markers = rows.iter().filter(|(_, key)| key == "#warmed").count();
    let states = rows
        .into_iter()
        .filter(|(_, key)| key != "#warmed")
        .map(|(aggregate, key)| (alias[&aggregate].clone(), key))
        .collect();
    (states, markers)
}

async fn strings(bench: &Bench, sql: &'static str) -> BTreeSet<String> {
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&bench.db.pool).await.unwrap();
    rows.into_iter().collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[tokio::test]
async fn a_round_prunes_what_is_past_retention_and_keeps_the_rest() {
    let bench = Bench::new().await;
    let definition = windows_trigger();
    let ids = aggregate_ids(&definition);
    let (trigger, actions) = bench.trigger(definition, long_ago()).await;
    let action = actions[0];

    // Events 1 to 3 are 40 days old, event 4 is new; the processor passes all four (none
    // is on chain 1) and marks the trigger's aggregates warmed.
    let mut events = Vec::new();
    for (block, age) in [(1, 40), (2, 40), (3, 40), (4, 0)] {
        events.push(old_event(&bench, block, age).await);
    }
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    // Old finished jobs go, unfinished jobs stay however old, a recent finished job stays.
    job(&bench, trigger, action, events[1], "delivered", 40).await;
    job(&bench, trigger, action, events[1], "dead", 40).await;
    job(&bench, trigger, action, events[2], "failed", 40).await;
    let pending = job(&bench, trigger, action, events[0], "pending", 40).await;
    let dispatched = job(&bench, trigger, action, events[0], "dispatched", 40).await;
    let recent = job(&bench, trigger, action, events[3], "delivered", 1).await;

    for age in [40, 40, 40, 1, 1] {
        attempt(&bench, trigger, action, age).await;
    }

    let two_days = 48 * 3_600;
    // Not fed for two days, samples two days old, in a one-minute window: gone.
    for key in ["1:1", "1:5", "1:6"] {
        state(&bench, trigger, &ids["minute"], key, window(&[two_days + 30, two_days]), 48).await;
    }
    // Fed just now.
    state(&bench, trigger, &ids["minute"], "1:2", window(&[10]), 0).await;
    // Old samples, but fed just now (a backfill): it stays until it has been idle.
    state(&bench, trigger, &ids["minute"], "1:3", window(&[two_days]), 0).await;
    // An EMA has no window: it stays, however old.
    state(&bench, trigger, &ids["ema"], "1:1", json!({"t": "ema", "value": "1", "samples": 3}), 48).await;
    // A two-day window two days after its last sample has not passed the one-day margin.
    state(&bench, trigger, &ids["two_days"], "1:1", window(&[two_days]), 48).await;

    // Over for a day and more: gone. Over for less than the margin, or still running: kept.
    cooldown(&bench, trigger, "1:1", 48).await;
    cooldown(&bench, trigger, "1:2", 20).await;
    cooldown(&bench, trigger, "1:3", 0).await;

    let pruned = run_once(&bench.db.pool, &retention(true), Utc::now()).await.unwrap();
    assert_eq!(pruned, Pruned { deliveries: 3, outbox: 3, aggregate_keys: 3, cooldowns: 1, events: 2 });

    let attempts: Vec<bool> =
        sqlx::query_scalar("SELECT created_at > now() - interval '2 days' FROM deliveries ORDER BY id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(attempts, [true, true], "only the recent attempts are left");

    let jobs: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(BTreeSet::from_iter(jobs), BTreeSet::from([pending, dispatched, recent]));

    let (states, markers) = states_left(&bench, &ids).await;
    assert_eq!(states, set(&[("minute", "1:2"), ("minute", "1:3"), ("ema", "1:1"), ("two_days", "1:1")]));
    assert_eq!(markers, 3, "warm markers are never pruned");

    let cooldowns = strings(&bench, "SELECT agent_key FROM cooldowns").await;
    assert_eq!(cooldowns, BTreeSet::from(["1:2".to_owned(), "1:3".to_owned()]));

    // Event 1 is still referenced by unfinished jobs, event 4 is recent; events 2 and 3 lost
    // their jobs in this same round.
    let blocks: Vec<i64> =
        sqlx::query_scalar("SELECT block_number FROM events ORDER BY id").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(blocks, [1, 4]);

    // Nothing is left to prune.
    let again = run_once(&bench.db.pool, &retention(true), Utc::now()).await.unwrap();
    assert_eq!(again, Pruned::default());
}

#[tokio::test]
async fn events_are_kept_when_no_events_retention_is_set() {
    let bench = Bench::new().await;
    for block in 1..=3 {
        old_event(&bench, block, 400).await;
    }
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    let pruned = run_once(&bench.db.pool, &retention(false), Utc::now()).await.unwrap();
    assert_eq!(pruned.events, 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(stored, 3, "events are the audit trail");

    // The same events go once a retention is set: the processor has passed them.
    let pruned = run_once(&bench.db.pool, &retention(true), Utc::now()).await.unwrap();
    assert_eq!(pruned.events, 3);
}

#[tokio::test]
async fn nothing_the_processor_has_yet_to_read_is_pruned() {
    let bench = Bench::new().await;
    let definition = windows_trigger();
    let ids = aggregate_ids(&definition);
    let (trigger, _) = bench.trigger(definition, long_ago()).await;
    // Stored 40 days ago and not processed yet: a processor far behind.
    old_event(&bench, 1, 40).await;
    state(&bench, trigger, &ids["minute"], "1:1", window(&[48 * 3_600]), 48).await;
    cooldown(&bench, trigger, "1:1", 48).await;

    let pruned = run_once(&bench.db.pool, &retention(true), Utc::now()).await.unwrap();
    // The event has not been processed; and it will see the window and the cooldown as they
    // were at its block time, 40 days ago, when they were not over.
    assert_eq!(pruned, Pruned::default());
    let (states, _) = states_left(&bench, &ids).await;
    assert_eq!(states, set(&[("minute", "1:1")]));
    assert_eq!(strings(&bench, "SELECT agent_key FROM cooldowns").await.len(), 1);

    // Once the processor has read it, they go.
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;
    let later = run_once(&bench.db.pool, &retention(true), Utc::now()).await.unwrap();
    assert_eq!(later, Pruned { aggregate_keys: 1, cooldowns: 1, events: 1, ..Pruned::default() });
}
