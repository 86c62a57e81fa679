//! A trigger deleted (or an action removed) between the processor's reading of the triggers
//! and its commit never fails the batch: the firings of the others commit, its own are
//! dropped. And a user creating and deleting triggers in a loop delays no one.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Bench, long_ago, webhook};
use serde_json::json;
use shared::domain::TriggerId;
use shared::store;
use shared::trigger::TriggerDefinition;
use testkit::fixtures::feedback;

/// Fires on every feedback, with a window aggregate (so it writes state too).
fn counting(name: &str) -> serde_json::Value {
    webhook(name, json!({}), json!({"count": {"window_secs": 3600}, "op": "gte", "value": 1}))
}

async fn delete(bench: &Bench, trigger: TriggerId) {
    let mut conn = bench.db.pool.acquire().await.unwrap();
    assert!(store::triggers::delete(&mut conn, bench.user, trigger).await.unwrap());
}

#[tokio::test]
async fn a_trigger_deleted_after_loading_drops_only_its_own_firings() {
    let bench = Bench::new().await;
    let (kept, _) = bench.trigger(counting("kept"), long_ago()).await;
    let (gone, _) = bench.trigger(counting("gone"), long_ago()).await;
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.triggers_loaded(), 2);

    // Deleted while the processor still holds it.
    delete(&bench, gone).await;
    bench.insert(&[feedback(1, 0, 1, 5, 0, "a"), feedback(2, 0, 2, 7, 0, "b")]).await;
    // Every batch commits (`settle` fails on any error).
    let report = bench.settle(&mut processor).await;

    assert_eq!(report.events, 2);
    let fired = bench.fired().await;
    assert_eq!(fired.iter().filter(|(t, _)| *t == kept).count(), 2, "{fired:?}");
    assert!(fired.iter().all(|(t, _)| *t != gone), "{fired:?}");
    let states = bench.states().await;
    assert!(states.keys().all(|(t, _, _)| *t == kept), "no state is left for the deleted trigger: {states:?}");
    assert!(!states.is_empty());
}

#[tokio::test]
async fn an_action_removed_after_loading_drops_only_its_jobs() {
    let bench = Bench::new().await;
    let mut two_actions = counting("two actions");
    two_actions["actions"] = json!([
        {"type": "webhook", "url": "https://example.com/a"},
        {"type": "webhook", "url": "https://example.com/b"}
    ]);
    let (trigger, actions) = bench.trigger(two_actions.clone(), long_ago()).await;
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();

    // The trigger is edited to keep only its first action.
    two_actions["actions"] = json!([{"type": "webhook", "url": "https://example.com/a"}]);
    let definition = TriggerDefinition::parse(&two_actions).unwrap();
    let mut conn = bench.db.pool.acquire().await.unwrap();
    store::triggers::replace(&mut conn, &testkit::keyring(), bench.user, trigger, &definition).await.unwrap();
    bench.insert(&[feedback(1, 0, 1, 5, 0, "a")]).await;
    bench.settle(&mut processor).await;

    let jobs: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT action_id FROM action_outbox").fetch_all(&bench.db.pool).await.unwrap();
    assert_eq!(jobs, [actions[0].0], "only the action that still exists has a job");
}

#[tokio::test]
async fn creating_and_deleting_triggers_in_a_loop_delays_no_one() {
    let bench = Bench::new().await;
    let (steady, _) = bench.trigger(counting("steady"), long_ago()).await;
    let mut processor = bench.processor(50);

    // One user creates and deletes triggers that match everything, as fast as it can ...
    let churn = {
        let pool = bench.db.pool.clone();
        let user = bench.user;
        tokio::spawn(async move {
            let definition = TriggerDefinition::parse(&counting("churn")).unwrap();
            loop {
                let mut conn = pool.acquire().await.unwrap();
                let (id, _) =
                    store::triggers::insert(&mut conn, &testkit::keyring(), user, &definition, Some(long_ago()))
                        .await
                        .unwrap();
                tokio::task::yield_now().await;
                store::triggers::delete(&mut conn, user, id).await.unwrap();
            }
        })
    };
    // ... while events stream in and the processor reads the triggers again before every
    // batch, as the service does when told of a change: neither ever fails.
    let mut expected = 0;
    for block in 1..=40_u64 {
        let events: Vec<_> = (0..5).map(|i| feedback(block, i, u64::from(i), 5, 0, "x")).collect();
        expected += events.len();
        bench.insert(&events).await;
        processor.refresh_triggers().await.expect("reading the triggers never fails");
        processor.process_batch().await.expect("no batch fails");
    }
    churn.abort();
    let _ = churn.await;
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    let fired = bench.fired().await;
    let steady_firings: BTreeSet<i64> = fired.iter().filter(|(t, _)| *t == steady).map(|(_, e)| *e).collect();
    assert_eq!(steady_firings.len(), expected, "every firing of the steady trigger");
    assert_eq!(fired.iter().filter(|(t, _)| *t == steady).count(), expected, "none twice");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM triggers").fetch_one(&bench.db.pool).await.unwrap();
    assert!(live <= 2, "the churned triggers are gone ({live} left)");
}

#[tokio::test]
async fn a_stored_action_that_no_longer_reads_takes_its_trigger_out_and_no_one_else() {
    let bench = Bench::new().await;
    let (kept, _) = bench.trigger(counting("kept"), long_ago()).await;
    let (broken, actions) = bench.trigger(counting("edited by hand"), long_ago()).await;
    // A row edited by hand: the webhook lost its URL. It is never turned into a job that a
    // worker would have to guess about.
    sqlx::query("UPDATE trigger_actions SET config = config - 'url' WHERE id = $1")
        .bind(actions[0])
        .execute(&bench.db.pool)
        .await
        .unwrap();
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.triggers_loaded(), 1);
    bench.insert(&[feedback(1, 0, 1, 5, 0, "a")]).await;
    bench.settle(&mut processor).await;
    let fired = bench.fired().await;
    assert_eq!(fired.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![kept], "{fired:?}");
    assert!(fired.iter().all(|(t, _)| *t != broken));
}
