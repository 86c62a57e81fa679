//! Backtest benchmark: one stateful trigger (an EMA and a count window per agent) run over
//! 1,000,000 stored events of its scope, in events/s, against the same rows merely read from
//! PostgreSQL in the same order, page by page (the limit of the path).
//!
//! `cargo bench -p api-gateway --bench backtest` (EVENTS may be set to shorten it)

use std::time::Instant;

use api_gateway::backtest::{self, BacktestLimits, Period};
use engine::LoadedTrigger;
use serde_json::json;
use shared::domain::UserId;
use shared::store::events::history::{self, ScopeFilter};
use shared::trigger::TriggerDefinition;
use testkit::TestDb;
use testkit::fixtures::block_time;

const AGENTS: u64 = 100;
const RUNS: usize = 3;

fn trigger() -> LoadedTrigger {
    let definition = TriggerDefinition::parse(&json!({
        "name": "uptime falling, or many feedbacks",
        "scope": {"event_types": ["NewFeedback"]},
        "condition": {"any": [
            {"ema": {"field": "value", "window": 10, "as": "ema"}, "op": "lt", "value": "20"},
            {"count": {"window_secs": 3600, "as": "n"}, "op": "gt", "value": 500}
        ]},
        "cooldown_secs": 600,
        "actions": [{"type": "webhook", "url": "https://example.com/hook"}]
    }))
    .expect("a valid trigger");
    LoadedTrigger::draft(UserId::new_random(), &definition)
}

/// Reads every row of the period as the backtest does, evaluating nothing: rows/s.
async fn read_only(db: &TestDb, period: &Period, limits: BacktestLimits) -> (u64, f64) {
    let filter = ScopeFilter::of(&trigger().rule.scope);
    let started = Instant::now();
    let (mut rows, mut after) = (0_u64, None);
    loop {
        let mut conn = db.pool.acquire().await.expect("connection");
        let page = history::period_page(&mut conn, &filter, period.from, period.to, after, limits.page_events)
            .await
            .expect("page");
        rows += page.events.len() as u64;
        if page.rows < limits.page_events as usize {
            break;
        }
        after = page.last;
    }
    (rows, rows as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let count = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000_u64);
    let db = TestDb::new().await;
    testkit::fixtures::store_feedback_history(&db.pool, count, AGENTS).await;
    let period =
        Period { from: block_time(0), to: block_time(2 + count / 100) + chrono::Duration::seconds(1), warm: false };
    let limits = BacktestLimits::default();

    let (mut best_ours, mut best_limit, mut fires) = (0_f64, 0_f64, 0);
    for run in 1..=RUNS {
        let (rows, limit) = read_only(&db, &period, limits).await;
        let started = Instant::now();
        let finished = backtest::run(&db.pool, trigger(), &period, limits, || {}).await.expect("backtest");
        let ours = finished.report.events_scanned as f64 / started.elapsed().as_secs_f64();
        assert_eq!(finished.report.events_scanned, rows, "the backtest scans every row of the period");
        fires = finished.report.fire_count + finished.report.suppressed_count;
        println!("run {run}: backtest {ours:.0} events/s; the same rows read {limit:.0}/s; ratio {:.2}", ours / limit);
        best_ours = best_ours.max(ours);
        best_limit = best_limit.max(limit);
    }
    println!("{fires} firings and suppressions per run");
    println!(
        "| backtest: an EMA and a count window per agent over {count} events | {best_ours:.0} events/s | {best_limit:.0} rows/s (the same rows read in the same order) | {:.2} |",
        best_ours / best_limit
    );
}
