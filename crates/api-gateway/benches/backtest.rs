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
use shared::store::events;
use shared::store::events::history::{self, ScopeFilter};
use shared::trigger::TriggerDefinition;
use testkit::TestDb;
use testkit::fixtures::{block_time, feedback};

const AGENTS: u64 = 100;
const RUNS: usize = 3;

async fn store_events(db: &TestDb, count: u64) {
    let started = Instant::now();
    let writers = 4;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.expect("connection");
                let mut batch = Vec::with_capacity(5_000);
                for i in (w..count).step_by(writers as usize) {
                    let (block, log_index) = (1 + i / 100, u32::try_from(i % 100).expect("small"));
                    batch.push(feedback(block, log_index, i % AGENTS, i128::from(i % 100), 0, "uptime"));
                    if batch.len() == 5_000 {
                        events::insert(&mut conn, &batch).await.expect("insert");
                        batch.clear();
                    }
                }
                events::insert(&mut conn, &batch).await.expect("insert");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    sqlx::query("VACUUM ANALYZE events").execute(&db.pool).await.expect("analyze");
    println!("stored {count} events in {:.1} s", started.elapsed().as_secs_f64());
}

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
    store_events(&db, count).await;
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
