use serde_json::json;
use shared::trigger::Rule;

use super::*;

fn aggregate(spec: serde_json::Value) -> Aggregate {
    let condition = json!({"all": [{"field": "value", "op": "exists", "value": true}, spec]});
    Rule::parse(None, Some(&condition)).expect("valid aggregate").aggregates.remove(0)
}

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

fn feed(state: &mut AggregateState, agg: &Aggregate, samples: &[(i64, &str)]) {
    for (at, x) in samples {
        state.update(&agg.kind, Some(d(x)), *at, 10_000);
    }
}

#[test]
fn ema_matches_hand_computed_values() {
    // window 3 => alpha = 2 / 4 = 0.5
    let agg = aggregate(json!({"ema": {"field": "value", "window": 3}, "op": "lt", "value": 1}));
    let mut state = AggregateState::new(&agg.kind);
    assert_eq!(state.value(&agg, 0), None);
    feed(&mut state, &agg, &[(1, "100")]);
    assert_eq!(state.value(&agg, 1), Some(d("100")), "the first sample initializes the average");
    feed(&mut state, &agg, &[(2, "50")]);
    assert_eq!(state.value(&agg, 2), Some(d("75")));
    feed(&mut state, &agg, &[(3, "-25")]);
    assert_eq!(state.value(&agg, 3), Some(d("25")));
    feed(&mut state, &agg, &[(4, "99.77")]);
    assert_eq!(state.value(&agg, 4), Some(d("62.385")));
}

#[test]
fn ema_with_explicit_alpha_rounds_the_same_way_every_time() {
    let agg = aggregate(json!({"ema": {"field": "value", "window": 10, "alpha": "0.1"}, "op": "lt", "value": 1}));
    let mut state = AggregateState::new(&agg.kind);
    feed(&mut state, &agg, &[(1, "10"), (2, "20"), (3, "30")]);
    // 10 -> 11 -> 12.9
    assert_eq!(state.value(&agg, 3), Some(d("12.9")));
    // alpha 2/11 is not a finite decimal: results are rounded at 30 places.
    let agg = aggregate(json!({"ema": {"field": "value", "window": 10}, "op": "lt", "value": 1}));
    let mut a = AggregateState::new(&agg.kind);
    let mut b = AggregateState::new(&agg.kind);
    feed(&mut a, &agg, &[(1, "1"), (2, "2")]);
    feed(&mut b, &agg, &[(1, "1"), (2, "2")]);
    assert_eq!(a, b);
    assert_eq!(a.value(&agg, 2), Some(d("1.181818181818181818181818181818")));
}

#[test]
fn ema_waits_for_min_samples() {
    let agg = aggregate(json!({"ema": {"field": "value", "window": 3, "min_samples": 3}, "op": "lt", "value": 1}));
    let mut state = AggregateState::new(&agg.kind);
    feed(&mut state, &agg, &[(1, "10"), (2, "20")]);
    assert_eq!(state.value(&agg, 2), None);
    feed(&mut state, &agg, &[(3, "30")]);
    assert_eq!(state.value(&agg, 3), Some(d("22.5")));
}

#[test]
fn an_event_without_the_field_does_not_feed() {
    let agg = aggregate(json!({"ema": {"field": "value", "window": 3}, "op": "lt", "value": 1}));
    let mut state = AggregateState::new(&agg.kind);
    state.update(&agg.kind, None, 1, 10);
    assert_eq!(state, AggregateState::Ema { value: None, samples: 0 });
}

#[test]
fn windows_slide_on_block_time() {
    let count = aggregate(json!({"count": {"window_secs": 60}, "op": "gt", "value": 1}));
    let sum = aggregate(json!({"sum": {"field": "value", "window_secs": 60}, "op": "gt", "value": 1}));
    let avg = aggregate(json!({"avg": {"field": "value", "window_secs": 60}, "op": "gt", "value": 1}));
    let min = aggregate(json!({"min": {"field": "value", "window_secs": 60}, "op": "gt", "value": 1}));
    let max = aggregate(json!({"max": {"field": "value", "window_secs": 60}, "op": "gt", "value": 1}));
    let samples = [(100, "10"), (130, "-2.5"), (159, "4"), (161, "7")];
    let mut states: Vec<_> = [&count, &sum, &avg, &min, &max].iter().map(|a| AggregateState::new(&a.kind)).collect();
    for (state, agg) in states.iter_mut().zip([&count, &sum, &avg, &min, &max]) {
        feed(state, agg, &samples);
    }
    // At t=161 the window is (101, 161]: the sample at 100 has left.
    let at = 161;
    assert_eq!(states[0].value(&count, at), Some(d("3")));
    assert_eq!(states[1].value(&sum, at), Some(d("8.5")));
    assert_eq!(states[2].value(&avg, at), Some(d("2.833333333333333333333333333333")));
    assert_eq!(states[3].value(&min, at), Some(d("-2.5")));
    assert_eq!(states[4].value(&max, at), Some(d("7")));
    // Later, seen from t=219, only the samples after 159 remain.
    assert_eq!(states[0].value(&count, 219), Some(d("1")));
    assert_eq!(states[3].value(&min, 219), Some(d("7")));
    // Far later, the window is empty: a count of 0, a sum of 0, no average/min/max.
    assert_eq!(states[0].value(&count, 10_000), Some(d("0")));
    assert_eq!(states[1].value(&sum, 10_000), Some(d("0")));
    assert_eq!(states[2].value(&avg, 10_000), None);
    assert_eq!(states[4].value(&max, 10_000), None);
}

#[test]
fn windows_keep_at_most_the_configured_entries() {
    let count = aggregate(json!({"count": {"window_secs": 1000}, "op": "gt", "value": 1}));
    let mut state = AggregateState::new(&count.kind);
    for at in 0..10 {
        state.update(&count.kind, None, at, 4);
    }
    assert_eq!(state.value(&count, 9), Some(d("4")));
}

#[test]
fn state_survives_a_json_round_trip_exactly() {
    let agg = aggregate(json!({"ema": {"field": "value", "window": 7}, "op": "lt", "value": 1}));
    let mut state = AggregateState::new(&agg.kind);
    feed(&mut state, &agg, &[(1, "99.77"), (2, "-3.2"), (3, "170141183460469231731.687303715884105727")]);
    let json = serde_json::to_value(&state).unwrap();
    let back: AggregateState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
}
