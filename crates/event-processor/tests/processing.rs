//! The processor against the real PostgreSQL and Redis: what fires, exactly once, in what
//! order of commits, with what state.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Bench, long_ago, webhook};
use serde_json::json;
use shared::domain::{EventId, JobId};
use shared::trigger::ActionKind;
use testkit::fixtures::{block_time, feedback};

#[tokio::test]
async fn matching_events_fire_one_job_per_action_and_reach_the_stream() {
    let bench = Bench::new().await;
    let definition = json!({
        "name": "low",
        "scope": {"registry": "reputation"},
        "condition": {"field": "value", "op": "lt", "value": "50"},
        "actions": [
            {"type": "webhook", "url": "https://example.com/a"},
            {"type": "telegram", "chat_id": "-100"}
        ]
    });
    let (trigger, actions) = bench.trigger(definition, long_ago()).await;
    bench
        .insert(&[
            feedback(1, 0, 42, 4999, 2, "uptime"),
            feedback(1, 1, 42, 50, 0, "uptime"),
            feedback(2, 0, 7, -1, 0, "x"),
        ])
        .await;

    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    let report = bench.settle(&mut processor).await;
    assert_eq!((report.events, report.fires, report.jobs), (3, 2, 4));

    let fired = bench.fired().await;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(fired, vec![(trigger, ids[0]), (trigger, ids[0]), (trigger, ids[2]), (trigger, ids[2])]);

    let pushed = bench.relay().run_once().await.unwrap();
    assert_eq!(pushed, 4);
    let webhooks = bench.stream(ActionKind::Webhook).await;
    let telegrams = bench.stream(ActionKind::Telegram).await;
    assert_eq!(webhooks.len(), 2);
    assert_eq!(telegrams.len(), 2);
    let job = webhooks.iter().find(|j| j.event.id == EventId(ids[0])).expect("a webhook job for the first event");
    assert_eq!(job.job_id, JobId::derive(EventId(ids[0]), trigger, actions[0]));
    assert_eq!(job.trigger.id, trigger);
    assert_eq!(job.trigger.name, "low");
    assert_eq!(job.action.id, actions[0]);
    assert_eq!(job.event.id, EventId(ids[0]));
    assert_eq!(job.event.event.agent_id.to_string(), "42");
    let status: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT status FROM action_outbox").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(status, ["dispatched"]);

    // Nothing new: a second pass pushes nothing again.
    assert_eq!(bench.relay().run_once().await.unwrap(), 0);
    assert_eq!(bench.stream(ActionKind::Webhook).await.len(), 2);
}

#[tokio::test]
async fn removed_events_never_fire_nor_feed() {
    let bench = Bench::new().await;
    bench
        .trigger(
            webhook("count", json!({}), json!({"count": {"window_secs": 100000, "as": "n"}, "op": "gte", "value": 1})),
            long_ago(),
        )
        .await;
    bench.insert(&[feedback(1, 0, 1, 1, 0, "a"), feedback(1, 1, 1, 1, 0, "a")]).await;
    sqlx::query("UPDATE events SET removed = true WHERE log_index = 0").execute(&bench.db.pool).await.unwrap();
    let mut processor = bench.processor(10);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;
    let jobs = bench.fired().await;
    assert_eq!(jobs.len(), 1, "only the event still on the chain fires");
    let states = bench.states().await;
    let state = states.values().next().unwrap();
    assert_eq!(state["entries"].as_array().unwrap().len(), 1, "the removed event did not feed the count");
}

#[tokio::test]
async fn cooldown_suppresses_and_counts_on_block_time() {
    let bench = Bench::new().await;
    let mut definition = webhook("any", json!({}), json!({"field": "value", "op": "gt", "value": 0}));
    definition["cooldown_secs"] = json!(30);
    let (trigger, _) = bench.trigger(definition, long_ago()).await;
    // Blocks are 12 s apart: blocks 1, 2, 3 are within 30 s of block 1; block 4 is 36 s later.
    bench
        .insert(&[
            feedback(1, 0, 5, 1, 0, "a"),
            feedback(2, 0, 5, 1, 0, "a"),
            feedback(3, 0, 5, 1, 0, "a"),
            feedback(4, 0, 5, 1, 0, "a"),
            feedback(2, 1, 6, 1, 0, "a"),
        ])
        .await;
    let mut processor = bench.processor(2);
    processor.refresh_triggers().await.unwrap();
    let report = bench.settle(&mut processor).await;
    assert_eq!((report.fires, report.suppressed), (3, 2));
    let blocks: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.agent_id::text, e.block_number FROM action_outbox o JOIN events e ON e.id = o.event_id ORDER BY 1, 2",
    )
    .fetch_all(&bench.db.pool)
    .await
    .unwrap();
    assert_eq!(blocks, vec![("5".into(), 1), ("5".into(), 4), ("6".into(), 2)]);
    let suppressed: i64 =
        sqlx::query_scalar("SELECT suppressed_count FROM cooldowns WHERE trigger_id = $1 AND agent_key = '31337:5'")
            .bind(trigger)
            .fetch_one(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(suppressed, 2);
}

#[tokio::test]
async fn two_aggregates_on_one_trigger_and_per_keys_keep_their_own_state() {
    let bench = Bench::new().await;
    let condition = json!({"all": [
        {"ema": {"field": "value", "window": 3, "as": "fast"}, "op": "lt", "value": 1000},
        {"ema": {"field": "value", "window": 3, "where": {"field": "tag1", "op": "eq", "value": "uptime"}, "as": "uptime"}, "op": "lt", "value": 1000},
        {"count": {"window_secs": 100000, "per": "trigger", "as": "all"}, "op": "gte", "value": 0}
    ]});
    let (trigger, _) = bench.trigger(webhook("ema", json!({}), condition), long_ago()).await;
    bench
        .insert(&[
            feedback(1, 0, 1, 100, 0, "uptime"),
            feedback(2, 0, 1, 50, 0, "latency"),
            feedback(3, 0, 2, 10, 0, "uptime"),
            feedback(4, 0, 1, 20, 0, "uptime"),
        ])
        .await;
    let mut processor = bench.processor(1);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    let states = bench.states().await;
    let agg_id =
        |prefix: &str| states.keys().find(|(_, a, _)| a.starts_with(prefix)).map(|(_, a, _)| a.clone()).unwrap();
    let (fast, uptime, all) = (agg_id("0:"), agg_id("1:"), agg_id("2:"));
    let state = |aggregate: &str, key: &str| states[&(trigger, aggregate.to_owned(), key.to_owned())].clone();
    // Agent 1, all events: 100 -> 75 -> 47.5
    assert_eq!(state(&fast, "31337:1"), json!({"t": "ema", "value": "47.5", "samples": 3}));
    // Agent 1, uptime only: 100 -> 60
    assert_eq!(state(&uptime, "31337:1"), json!({"t": "ema", "value": "60", "samples": 2}));
    assert_eq!(state(&fast, "31337:2"), json!({"t": "ema", "value": "10", "samples": 1}));
    assert_eq!(state(&all, "*")["entries"].as_array().unwrap().len(), 4);

    // The last job shows every aggregate by name.
    bench.relay().run_once().await.unwrap();
    let jobs = bench.stream(ActionKind::Webhook).await;
    let last = jobs.iter().find(|j| j.event.event.log.block_number == 4).unwrap();
    assert_eq!(last.aggregates["fast"].as_ref().unwrap().to_string(), "47.5");
    assert_eq!(last.aggregates["uptime"].as_ref().unwrap().to_string(), "60");
    assert_eq!(last.aggregates["all"].as_ref().unwrap().to_string(), "4");
}

/// Runs the same events through a fresh bench in batches of `batch`, restarting the
/// processor after `restart_after` batches when given; returns (states, job ids).
async fn run_scenario(
    batch: usize,
    restart_after: Option<usize>,
    pipelined: bool,
) -> (Vec<(String, String, serde_json::Value)>, BTreeSet<(i64, usize)>) {
    let bench = Bench::new().await;
    let mut with_cooldown = webhook(
        "ema",
        json!({"event_types": ["NewFeedback"]}),
        json!({"ema": {"field": "value", "window": 4, "min_samples": 2}, "op": "lt", "value": "60"}),
    );
    with_cooldown["cooldown_secs"] = json!(24);
    let (t1, _) = bench.trigger(with_cooldown, long_ago()).await;
    let (t2, _) = bench
        .trigger(
            webhook(
                "burst",
                json!({}),
                json!({"count": {"window_secs": 60, "per": "agent_client"}, "op": "gte", "value": 3}),
            ),
            long_ago(),
        )
        .await;
    let (t3, _) = bench
        .trigger(
            webhook(
                "avg",
                json!({"agent_ids": ["1", "2"]}),
                json!({"avg": {"field": "value", "window_secs": 48}, "op": "gt", "value": "40.5"}),
            ),
            long_ago(),
        )
        .await;
    let events: Vec<_> = (0..60u64)
        .map(|i| feedback(1 + i / 3, (i % 3) as u32, 1 + i % 4, ((i * 37) % 101) as i128 - 5, (i % 3) as u8, "t"))
        .collect();
    bench.insert(&events).await;

    let mut processor = bench.processor(batch);
    processor.refresh_triggers().await.unwrap();
    let mut batches = 0;
    if pipelined {
        bench.settle(&mut processor).await;
    }
    loop {
        if Some(batches) == restart_after {
            processor = bench.processor(batch);
            processor.refresh_triggers().await.unwrap();
        }
        let report = processor.process_batch().await.unwrap();
        if report.events == 0 {
            if bench.is_settled(&processor).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        batches += 1;
    }
    // Names of triggers differ between benches (random ids): compare by creation order.
    let order = [t1, t2, t3];
    let mut states: Vec<_> = bench
        .states()
        .await
        .into_iter()
        .map(|((t, a, k), s)| (format!("t{}", order.iter().position(|x| *x == t).unwrap()), format!("{a}/{k}"), s))
        .collect();
    states.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let fired: Vec<(shared::domain::TriggerId, i64)> = bench.fired().await;
    let first_id: i64 = sqlx::query_scalar("SELECT min(id) FROM events").fetch_one(&bench.db.pool).await.unwrap();
    let jobs = fired.into_iter().map(|(t, e)| (e - first_id, order.iter().position(|x| *x == t).unwrap())).collect();
    (states, jobs)
}

#[tokio::test]
async fn one_batch_batches_of_one_and_a_restart_decide_the_same() {
    let (states_one, jobs_one) = run_scenario(1_000, None, false).await;
    let (states_single, jobs_single) = run_scenario(1, None, false).await;
    let (states_restart, jobs_restart) = run_scenario(7, Some(4), false).await;
    // catch_up keeps three batches in flight (read, evaluate, commit).
    let (states_pipelined, jobs_pipelined) = run_scenario(7, None, true).await;
    assert_eq!(jobs_pipelined, jobs_one);
    assert_eq!(states_pipelined, states_one);
    assert!(!jobs_one.is_empty(), "the scenario fires something");
    assert!(jobs_one.len() < 180, "the scenario does not fire on everything");
    assert_eq!(jobs_single, jobs_one);
    assert_eq!(jobs_restart, jobs_one);
    assert_eq!(states_single, states_one);
    assert_eq!(states_restart, states_one);
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_not_skipped() {
    let bench = Bench::new().await;
    bench.trigger(webhook("all", json!({}), json!({"field": "value", "op": "gte", "value": 0})), long_ago()).await;
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();

    // The first writer draws the lower id and stays open; the second commits first.
    let mut early = bench.db.pool.begin().await.unwrap();
    shared::store::events::insert(&mut early, &[feedback(1, 0, 1, 1, 0, "early")]).await.unwrap();
    bench.insert(&[feedback(2, 0, 1, 2, 0, "late")]).await;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(ids.len(), 1, "only the committed row is visible");

    let report = processor.catch_up().await.unwrap();
    assert_eq!(report.events, 0, "rows behind an open transaction wait for it");
    assert_eq!(bench.fired().await.len(), 0);
    early.commit().await.unwrap();
    let report = bench.settle(&mut processor).await;
    assert_eq!(report.events, 2);
    assert_eq!(bench.fired().await.len(), 2, "both commits fired");
}

#[tokio::test]
async fn history_feeds_aggregates_but_never_fires() {
    let bench = Bench::new().await;
    // Stored before the trigger exists: blocks 1..=3.
    bench.insert(&[feedback(1, 0, 9, 100, 0, "u"), feedback(2, 0, 9, 50, 0, "u"), feedback(3, 0, 9, 0, 0, "u")]).await;
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    // The trigger exists from block 10 on; EMA (window 3, alpha 0.5) warmed: 100, 75, 37.5.
    let (trigger, _) = bench
        .trigger(
            webhook(
                "ema",
                json!({}),
                json!({"ema": {"field": "value", "window": 3, "min_samples": 3, "as": "e"}, "op": "lt", "value": 40}),
            ),
            block_time(10),
        )
        .await;
    processor.refresh_triggers().await.unwrap();
    let warmed = bench.states().await;
    let state =
        warmed.iter().find(|((t, _, k), _)| *t == trigger && k == "31337:9").unwrap_or_else(|| panic!("{warmed:?}")).1;
    assert_eq!(state, &json!({"t": "ema", "value": "37.5", "samples": 3}));
    assert!(bench.fired().await.is_empty(), "warming never fires");

    // A backfilled old event (block 5) feeds the EMA but does not fire though it matches.
    bench.insert(&[feedback(5, 0, 9, 10, 0, "u")]).await;
    bench.settle(&mut processor).await;
    assert!(bench.fired().await.is_empty());
    // A new event (block 11): EMA = (23.75 + 20) / 2 = 21.875 < 40: fires.
    bench.insert(&[feedback(11, 0, 9, 20, 0, "u")]).await;
    bench.settle(&mut processor).await;
    assert_eq!(bench.fired().await.len(), 1);
    bench.relay().run_once().await.unwrap();
    let jobs = bench.stream(ActionKind::Webhook).await;
    assert_eq!(jobs[0].aggregates["e"].as_ref().unwrap().to_string(), "21.875");
}

#[tokio::test]
async fn a_malformed_row_is_skipped_and_the_rest_processed() {
    let bench = Bench::new().await;
    bench.trigger(webhook("all", json!({}), json!({"field": "value", "op": "gte", "value": 0})), long_ago()).await;
    bench.insert(&[feedback(1, 0, 1, 1, 0, "a"), feedback(2, 0, 1, 1, 0, "b"), feedback(3, 0, 1, 1, 0, "c")]).await;
    sqlx::query("UPDATE events SET client_address = 'garbage' WHERE block_number = 2")
        .execute(&bench.db.pool)
        .await
        .unwrap();
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    let report = bench.settle(&mut processor).await;
    assert_eq!((report.events, report.malformed, report.fires), (3, 1, 2));
}

#[tokio::test]
async fn changed_aggregates_start_over_and_are_warmed_again() {
    let bench = Bench::new().await;
    bench.insert(&[feedback(1, 0, 3, 10, 0, "u"), feedback(2, 0, 3, 30, 0, "u")]).await;
    let mut processor = bench.processor(100);
    let (trigger, _) = bench
        .trigger(
            webhook(
                "sum",
                json!({}),
                json!({"sum": {"field": "value", "window_secs": 1000}, "op": "gt", "value": 1000}),
            ),
            block_time(100),
        )
        .await;
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;
    let before = bench.states().await;
    assert_eq!(before.len(), 1);

    let changed = shared::trigger::TriggerDefinition::parse(&webhook(
        "sum",
        json!({}),
        json!({"max": {"field": "value", "window_secs": 1000}, "op": "gt", "value": 1000}),
    ))
    .unwrap();
    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(shared::store::triggers::update_rule(&mut conn, bench.user, trigger, &changed).await.unwrap());
    processor.refresh_triggers().await.unwrap();
    let after = bench.states().await;
    assert_eq!(after.len(), 1, "the old aggregate's state is gone");
    let (key, state) = after.into_iter().next().unwrap();
    assert!(!before.contains_key(&key), "a new aggregate id");
    assert_eq!(state["entries"].as_array().unwrap().len(), 2, "warmed from both stored events");
}
