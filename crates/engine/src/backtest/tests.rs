use serde_json::{Value, json};
use shared::domain::{Decimal, TriggerId, UserId};
use shared::trigger::Rule;
use testkit::fixtures::{block_time, feedback, stored};

use super::*;

fn trigger(condition: Value, cooldown_secs: u64) -> LoadedTrigger {
    let scope = json!({"event_types": ["NewFeedback"]});
    LoadedTrigger {
        id: TriggerId::new_random(),
        user_id: UserId::new_random(),
        name: "backtested".into(),
        enabled: true,
        version: 1,
        rule: Rule::parse(Some(&scope), Some(&condition)).expect("a valid rule"),
        cooldown_secs,
        // A saved trigger's own start of history: a backtest looks before it.
        fires_from: Utc::now(),
        actions: Vec::new(),
    }
}

/// A feedback of `value` for agent 42 in `block` (block times are 12 s apart).
fn event(id: i64, block: u64, value: i128) -> StoredEvent {
    stored(id, feedback(block, 0, 42, value, 0, "uptime"))
}

fn run(backtest: &mut Backtest, events: &[StoredEvent]) {
    for event in events {
        backtest.feed(event);
    }
}

fn d(text: &str) -> Option<Decimal> {
    Some(text.parse().expect("a decimal"))
}

fn ema_below_50() -> LoadedTrigger {
    // window 3: alpha = 2 / (3 + 1) = 0.5
    trigger(json!({"ema": {"field": "value", "window": 3, "as": "ema"}, "op": "lt", "value": "50"}), 0)
}

#[test]
fn an_ema_fires_where_the_hand_computed_average_crosses() {
    let mut backtest = Backtest::new(ema_below_50(), 100);
    // EMA: 100, 70, 45 (fires), 62.5, 31.25 (fires)
    let events = [event(1, 1, 100), event(2, 2, 40), event(3, 3, 20), event(4, 4, 80), event(5, 5, 0)];
    run(&mut backtest, &events);
    let report = backtest.finish().report;
    assert_eq!(report.events_scanned, 5);
    assert_eq!((report.fire_count, report.suppressed_count), (2, 0));
    let fired: Vec<_> = report.fires.iter().map(|f| (f.event_id.0, f.aggregates["ema"].clone())).collect();
    assert_eq!(fired, vec![(3, d("45")), (5, d("31.25"))]);
    assert_eq!(report.first_fire, Some(block_time(3)));
    assert_eq!(report.last_fire, Some(block_time(5)));
    assert!(!report.truncated);
}

#[test]
fn a_count_window_fires_on_the_third_event_within_the_hour() {
    let trigger = trigger(json!({"count": {"window_secs": 3600, "as": "n"}, "op": "gte", "value": 3}), 0);
    let mut backtest = Backtest::new(trigger, 100);
    // 300 blocks are an hour. Block 330 sees 50, 100 and itself (block 0 is 3,960 s old);
    // block 700 sees only itself.
    let events = [event(1, 0, 1), event(2, 50, 1), event(3, 100, 1), event(4, 330, 1), event(5, 700, 1)];
    run(&mut backtest, &events);
    let report = backtest.finish().report;
    let fired: Vec<_> = report.fires.iter().map(|f| (f.event_id.0, f.aggregates["n"].clone())).collect();
    assert_eq!(fired, vec![(3, d("3")), (4, d("3"))]);
}

#[test]
fn the_cooldown_suppresses_what_fires_too_soon_and_counts_it() {
    let trigger = trigger(json!({"field": "value", "op": "gte", "value": 0}), 1_000);
    let mut backtest = Backtest::new(trigger, 100);
    // 1,000 s are 83⅓ blocks: block 50 comes 600 s after block 0, block 100 1,200 s after it.
    let events = [event(1, 0, 1), event(2, 50, 1), event(3, 100, 1), event(4, 150, 1), event(5, 200, 1)];
    run(&mut backtest, &events);
    let report = backtest.finish().report;
    let listed: Vec<_> = report.fires.iter().map(|f| (f.event_id.0, f.suppressed_by_cooldown)).collect();
    assert_eq!(listed, vec![(1, false), (2, true), (3, false), (4, true), (5, false)]);
    assert_eq!((report.fire_count, report.suppressed_count), (3, 2));
    assert_eq!((report.first_fire, report.last_fire), (Some(block_time(0)), Some(block_time(200))));
}

#[test]
fn warming_starts_the_aggregates_from_the_history_before_the_period() {
    let history = [event(1, 1, 10), event(2, 2, 10)];
    let period = [event(3, 3, 60)];
    // Cold: the EMA starts at 60, not below 50. Warm: 10, 10, then 35: it fires.
    let mut cold = Backtest::new(ema_below_50(), 100);
    run(&mut cold, &period);
    assert_eq!(cold.finish().report.fire_count, 0);

    let mut warm = Backtest::new(ema_below_50(), 100);
    let mut replay = Replay::default();
    let aggregates: Vec<_> = warm.trigger().rule.aggregates.iter().collect();
    for event in &history {
        replay.feed(&aggregates, event, 100);
    }
    warm.warm(replay);
    run(&mut warm, &period);
    let finished = warm.finish();
    assert_eq!(finished.report.fires.iter().map(|f| f.aggregates["ema"].clone()).collect::<Vec<_>>(), vec![d("35")]);
    let (first, aggregates) = finished.first_fire.expect("it fired");
    assert_eq!((first.id.0, aggregates["ema"].clone()), (3, d("35")));
}

#[test]
fn removed_and_out_of_scope_events_are_passed_over() {
    let mut backtest = Backtest::new(ema_below_50(), 100);
    let mut removed = event(1, 1, 0);
    removed.removed = true;
    let registered = stored(2, testkit::fixtures::registered(2, 0, 42u64.into(), testkit::fixtures::CLIENT));
    run(&mut backtest, &[removed, registered, event(3, 3, 100)]);
    let report = backtest.finish().report;
    assert_eq!(report.events_scanned, 1);
    assert_eq!(report.fire_count, 0, "the removed 0 never fed the average");
}

#[test]
fn the_list_stops_at_its_limit_and_the_counts_do_not() {
    let trigger = trigger(json!({"field": "value", "op": "gte", "value": 0}), 0);
    let mut backtest = Backtest::new(trigger, 100);
    let total = MAX_LISTED as i64 + 5;
    for id in 1..=total {
        backtest.feed(&event(id, id.unsigned_abs(), 1));
    }
    let report = backtest.finish().report;
    assert_eq!(report.fires.len(), MAX_LISTED);
    assert_eq!(report.fire_count, total.unsigned_abs());
    assert!(report.truncated);
    assert_eq!(report.last_fire, Some(block_time(total.unsigned_abs())));
}
