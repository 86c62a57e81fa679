//! The scope index: it finds exactly the triggers whose scope an event matches, costs the
//! lengths of the scope lists rather than their product, and takes changes one trigger at
//! a time.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Bench, long_ago, webhook};
use engine::LoadedTrigger;
use engine::TriggerIndex;
use event_processor::triggers::TriggerSet;
use serde_json::{Value, json};
use shared::domain::{Address, AgentId, ChainId, EventData, NewEvent, StoredEvent, TriggerId, UserId};
use shared::store;
use shared::trigger::{Rule, TriggerDefinition};
use testkit::fixtures::{CLIENT, event, feedback, hash, position, registered, stored};

fn loaded(scope: &Value) -> Arc<LoadedTrigger> {
    Arc::new(LoadedTrigger {
        id: TriggerId::new_random(),
        user_id: UserId::new_random(),
        name: scope.to_string(),
        enabled: true,
        version: 1,
        rule: Rule::parse(Some(scope), None).unwrap_or_else(|e| panic!("{scope}: {e}")),
        cooldown_secs: 0,
        fires_from: long_ago(),
        actions: Vec::new(),
    })
}

/// Scopes of every shape: catch-all, chains only, registry only, event types only, chains
/// and types, agents alone and with the other parts.
fn scopes() -> Vec<Value> {
    vec![
        json!({}),
        json!({"chain_ids": [31337]}),
        json!({"chain_ids": [1, 10]}),
        json!({"registry": "reputation"}),
        json!({"registry": "identity"}),
        json!({"registry": "validation"}),
        json!({"event_types": ["NewFeedback"]}),
        json!({"event_types": ["Registered", "NewFeedback"]}),
        json!({"event_types": ["Registered", "MetadataSet", "URIUpdated", "Transfer", "NewFeedback",
                               "FeedbackRevoked", "ResponseAppended", "ValidationRequest", "ValidationResponse"]}),
        json!({"chain_ids": [31337], "event_types": ["NewFeedback"]}),
        json!({"chain_ids": [1, 31337], "registry": "identity"}),
        json!({"chain_ids": [10], "registry": "reputation", "event_types": ["FeedbackRevoked", "NewFeedback"]}),
        json!({"agent_ids": ["1", "2"]}),
        json!({"agent_ids": ["3"], "chain_ids": [1]}),
        json!({"agent_ids": ["2"], "registry": "identity"}),
        json!({"agent_ids": ["1", "3"], "event_types": ["Transfer", "ValidationRequest"]}),
        json!({"agent_ids": ["1", "3", "4"], "chain_ids": [31337, 10], "registry": "reputation", "event_types": ["NewFeedback"]}),
    ]
}

/// Three triggers of each shape, so that buckets hold several triggers in a random order of ids.
fn triggers() -> Vec<Arc<LoadedTrigger>> {
    scopes().iter().flat_map(|scope| (0..3).map(move |_| loaded(scope))).collect()
}

fn on_chain(chain: u64, mut new: NewEvent) -> NewEvent {
    new.event.log.chain_id = ChainId(chain);
    new
}

/// Events of five types over three registries, on four chains, for agents 0 to 4.
fn events() -> Vec<StoredEvent> {
    let address = || -> Address { CLIENT.parse().expect("an address") };
    let mut events = Vec::new();
    let mut id = 0;
    for chain in [1, 10, 31337, 5] {
        for agent in 0..5u64 {
            let of_agent = [
                feedback(1, 0, agent, 7, 0, "t"),
                registered(1, 1, AgentId::from(agent), CLIENT),
                event(position(1, 2), AgentId::from(agent), EventData::Transfer { from: address(), to: address() }),
                event(
                    position(1, 3),
                    AgentId::from(agent),
                    EventData::FeedbackRevoked { client_address: address(), feedback_index: 1 },
                ),
                event(
                    position(1, 4),
                    AgentId::from(agent),
                    EventData::ValidationRequest {
                        validator_address: address(),
                        request_uri: "ipfs://request".into(),
                        request_hash: hash(9).parse().expect("a hash"),
                    },
                ),
            ];
            for new in of_agent {
                id += 1;
                events.push(stored(id, on_chain(chain, new)));
            }
        }
    }
    events
}

/// What the index must answer: every trigger whose scope matches, by id.
fn brute_force(triggers: &[Arc<LoadedTrigger>], event: &StoredEvent) -> Vec<TriggerId> {
    let mut ids: Vec<TriggerId> = triggers.iter().filter(|t| t.rule.scope.matches(event)).map(|t| t.id).collect();
    ids.sort();
    ids
}

fn found(index: &TriggerIndex, event: &StoredEvent) -> Vec<TriggerId> {
    index.candidates(event).map(|t| t.id).collect()
}

#[test]
fn candidates_are_the_matching_triggers_each_once_in_id_order() {
    let triggers = triggers();
    let index = TriggerIndex::build(&triggers);
    assert_eq!(index.len(), triggers.len());
    let mut matched = 0;
    for event in events() {
        let expected = brute_force(&triggers, &event);
        assert_eq!(
            found(&index, &event),
            expected,
            "{:?} on chain {}",
            event.event.event_type(),
            event.event.log.chain_id
        );
        matched += expected.len();
    }
    assert!(matched > 0, "some events match some triggers");
}

#[test]
fn an_index_changed_one_trigger_at_a_time_answers_as_one_built_at_once() {
    let triggers = triggers();
    let mut index = TriggerIndex::default();
    // Filed in reverse id order, the worst case for sorted buckets.
    let mut by_id = triggers.clone();
    by_id.sort_by_key(|t| std::cmp::Reverse(t.id));
    for trigger in &by_id {
        index.insert(trigger.clone());
    }
    // Filing a trigger again replaces it rather than adding it twice.
    index.insert(triggers[0].clone());
    assert_eq!(index.len(), triggers.len());
    for event in events() {
        assert_eq!(found(&index, &event), brute_force(&triggers, &event));
    }

    // Every other trigger goes away; so do the buckets only they held.
    let (kept, dropped): (Vec<_>, Vec<_>) = triggers.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, trigger) in &dropped {
        assert!(index.remove(trigger.id));
        assert!(!index.remove(trigger.id), "removed once");
    }
    let kept: Vec<_> = kept.into_iter().map(|(_, t)| t).collect();
    assert_eq!(index.len(), kept.len());
    for event in events() {
        assert_eq!(found(&index, &event), brute_force(&kept, &event));
    }
    assert_eq!(index.entries(), TriggerIndex::build(&kept).entries());

    // A trigger whose scope changes is found under its new scope only.
    let moved = Arc::new(LoadedTrigger {
        id: kept[0].id,
        user_id: kept[0].user_id,
        name: "moved".into(),
        enabled: true,
        version: 2,
        rule: Rule::parse(Some(&json!({"agent_ids": ["4"], "chain_ids": [5]})), None).unwrap(),
        cooldown_secs: 0,
        fires_from: long_ago(),
        actions: Vec::new(),
    });
    index.insert(moved.clone());
    let mut now = kept.clone();
    now[0] = moved;
    for event in events() {
        assert_eq!(found(&index, &event), brute_force(&now, &event));
    }
}

#[test]
fn a_scope_costs_the_lengths_of_its_lists_not_their_product() {
    // The parser's longest lists: 1,000 chains and 1,000 agents, in the reputation registry
    // (three event types). Filed under every combination, that was 3,000,000 bucket slots.
    let chains: Vec<u64> = (1..=1_000).collect();
    let agents: Vec<String> = (0..1_000).map(|a| a.to_string()).collect();
    let wide = loaded(&json!({"chain_ids": chains, "agent_ids": agents, "registry": "reputation"}));
    let index = TriggerIndex::build([&wide]);
    assert_eq!(index.entries(), 2_000, "one slot per agent and one per chain");
    assert!(index.approx_heap_bytes() < 1_000_000, "{} bytes", index.approx_heap_bytes());

    let at = |chain: u64, agent: u64| stored(1, on_chain(chain, feedback(1, 0, agent, 1, 0, "t")));
    assert_eq!(found(&index, &at(1_000, 999)), vec![wide.id]);
    assert_eq!(found(&index, &at(1, 0)), vec![wide.id]);
    assert!(found(&index, &at(1_001, 999)).is_empty(), "a chain the scope does not list");
    assert!(found(&index, &at(1_000, 1_000)).is_empty(), "an agent the scope does not list");
    let registered_event = stored(2, on_chain(5, registered(1, 0, AgentId::from(5u64), CLIENT)));
    assert!(found(&index, &registered_event).is_empty(), "a registry the scope does not name");

    // Without agents, chains and types are filed together: at most nine types per chain.
    let chains_and_types = loaded(&json!({"chain_ids": chains, "event_types": ["NewFeedback", "FeedbackRevoked"]}));
    let index = TriggerIndex::build([&wide, &chains_and_types]);
    assert_eq!(index.entries(), 2_000 + 2 * 1_000);
    assert_eq!(found(&index, &at(7, 3)), {
        let mut both = vec![wide.id, chains_and_types.id];
        both.sort();
        both
    });
    assert_eq!(found(&index, &at(7, 1_000)), vec![chains_and_types.id]);
}

async fn create_triggers(bench: &Bench, n: u64) -> Vec<TriggerId> {
    let mut tx = bench.db.pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for agent in 0..n {
        let definition = TriggerDefinition::parse(&webhook(
            &format!("agent {agent}"),
            json!({"agent_ids": [agent.to_string()]}),
            json!({"field": "value", "op": "gte", "value": 0}),
        ))
        .unwrap();
        let (id, _) = store::triggers::insert(&mut tx, &testkit::keyring(), bench.user, &definition, Some(long_ago()))
            .await
            .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

#[tokio::test]
async fn a_refresh_refiles_only_the_triggers_that_changed() {
    let bench = Bench::new().await;
    let ids = create_triggers(&bench, 1_000).await;
    let pool = &bench.db.pool;
    let mut processor = bench.processor(100);
    processor.refresh_triggers().await.unwrap();
    assert_eq!(processor.triggers_loaded(), 1_000);

    // The set the processor keeps, read the same way beside it.
    let mut set = TriggerSet::default();
    let first = set.refresh(pool).await.unwrap();
    assert_eq!((first.changed.len(), first.removed.len()), (1_000, 0));
    let mut index = TriggerIndex::build(set.iter());
    assert!(set.refresh(pool).await.unwrap().is_empty(), "nothing changed, nothing read");

    // One trigger moves from agent 5 to agent 5,000; another is deleted, a third disabled.
    let (moved, deleted, disabled) = (ids[5], ids[6], ids[7]);
    let changed = TriggerDefinition::parse(&webhook(
        "agent 5000",
        json!({"agent_ids": ["5000"]}),
        json!({"field": "value", "op": "gte", "value": 0}),
    ))
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::triggers::update_rule(&mut conn, bench.user, moved, &changed).await.unwrap());
    assert!(store::triggers::delete(&mut conn, bench.user, deleted).await.unwrap());
    assert!(store::triggers::set_enabled(&mut conn, bench.user, disabled, false, None).await.unwrap());

    let refresh = set.refresh(pool).await.unwrap();
    let changed: Vec<TriggerId> = refresh.changed.iter().map(|t| t.id).collect();
    assert_eq!(changed, vec![moved], "only the changed trigger is read and filed again");
    let removed: BTreeSet<TriggerId> = refresh.removed.iter().copied().collect();
    assert_eq!(removed, BTreeSet::from([deleted, disabled]));
    for id in &refresh.removed {
        assert!(index.remove(*id));
    }
    for trigger in &refresh.changed {
        index.insert(trigger.clone());
    }
    assert_eq!(index.len(), 998);
    let at = |agent: u64| stored(1, feedback(1, 0, agent, 1, 0, "t"));
    assert!(found(&index, &at(5)).is_empty(), "the moved trigger left agent 5");
    assert_eq!(found(&index, &at(5_000)), vec![moved]);
    assert!(found(&index, &at(6)).is_empty(), "the deleted trigger is gone");
    assert!(found(&index, &at(7)).is_empty(), "the disabled trigger is gone");
    assert_eq!(found(&index, &at(8)), vec![ids[8]]);
    assert_eq!(index.entries(), TriggerIndex::build(set.iter()).entries());

    // The processor applies the same changes to its own index.
    assert!(processor.refresh_triggers().await.unwrap(), "the processor saw the changes");
    assert_eq!(processor.triggers_loaded(), 998);
    bench
        .insert(&[
            feedback(1, 0, 5, 1, 0, "t"),
            feedback(1, 1, 5_000, 1, 0, "t"),
            feedback(1, 2, 6, 1, 0, "t"),
            feedback(1, 3, 7, 1, 0, "t"),
            feedback(1, 4, 8, 1, 0, "t"),
        ])
        .await;
    bench.settle(&mut processor).await;
    let fired: BTreeSet<TriggerId> = bench.fired().await.into_iter().map(|(trigger, _)| trigger).collect();
    assert_eq!(fired, BTreeSet::from([moved, ids[8]]));
}

#[tokio::test]
async fn warming_a_catch_all_trigger_pages_through_every_agent() {
    let bench = Bench::new().await;
    // Three feedbacks (10, 20, 30) for each of 25 agents, processed before the trigger exists.
    let events: Vec<_> = (0..3u64)
        .flat_map(|k| {
            (0..25u64).map(move |agent| feedback(1 + k, agent as u32, agent, 10 * (i128::from(k) + 1), 0, "u"))
        })
        .collect();
    bench.insert(&events).await;
    // 4,000 events per key: two agents per page, so thirteen pages.
    let settings = event_processor::Settings { warm_events_per_key: 4_000, ..Bench::settings(100) };
    assert_eq!(event_processor::warm::PAGE_EVENTS / settings.warm_events_per_key, 2);
    let mut processor = event_processor::Processor::new(bench.db.pool.clone(), settings);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    let (trigger, _) = bench
        .trigger(
            webhook(
                "ema",
                json!({}),
                json!({"ema": {"field": "value", "window": 3, "as": "e"}, "op": "lt", "value": 0}),
            ),
            testkit::fixtures::block_time(100),
        )
        .await;
    processor.refresh_triggers().await.unwrap();
    let states = bench.states().await;
    assert_eq!(states.len(), 25, "one state per agent: {states:?}");
    for ((t, _, key), state) in &states {
        assert_eq!(*t, trigger);
        // EMA with alpha 0.5: 10, 15, 22.5.
        assert_eq!(state, &json!({"t": "ema", "value": "22.5", "samples": 3}), "{key}");
    }
    // Each state remembers the last event that fed it, as live processing would.
    let last: BTreeSet<(String, i64)> =
        sqlx::query_as("SELECT key, last_event_id FROM aggregate_state WHERE key <> '#warmed'")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let expected: BTreeSet<(String, i64)> =
        sqlx::query_as("SELECT '31337:' || agent_id::text, max(id) FROM events GROUP BY agent_id")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(last, expected);
    assert!(bench.fired().await.is_empty(), "warming never fires");

    // Pages commit one by one and the marker last: warming cut short before its marker (a
    // crash) is done again by the next processor, to the same states.
    sqlx::query("DELETE FROM aggregate_state WHERE key = '#warmed'").execute(&bench.db.pool).await.unwrap();
    sqlx::query(
        "UPDATE aggregate_state SET state = '{\"t\": \"ema\", \"value\": \"1\", \"samples\": 9}' WHERE key = '31337:3'",
    )
    .execute(&bench.db.pool)
    .await
    .unwrap();
    let settings = event_processor::Settings { warm_events_per_key: 4_000, ..Bench::settings(100) };
    let mut next = event_processor::Processor::new(bench.db.pool.clone(), settings);
    next.refresh_triggers().await.unwrap();
    assert_eq!(bench.states().await, states, "warmed again, to the same states");
}

#[tokio::test]
async fn warming_stops_at_its_limit_and_the_other_keys_start_empty() {
    let bench = Bench::new().await;
    let events: Vec<_> =
        (0..3u64).flat_map(|k| (0..25u64).map(move |agent| feedback(1 + k, agent as u32, agent, 10, 0, "u"))).collect();
    bench.insert(&events).await;
    // Two agents (six events) a page; the limit is reached after the second page.
    let settings =
        event_processor::Settings { warm_events_per_key: 4_000, warm_max_events: 10, ..Bench::settings(100) };
    let mut processor = event_processor::Processor::new(bench.db.pool.clone(), settings);
    processor.refresh_triggers().await.unwrap();
    bench.settle(&mut processor).await;

    let condition = json!({"ema": {"field": "value", "window": 3, "as": "e"}, "op": "lt", "value": 0});
    bench.trigger(webhook("ema", json!({}), condition), testkit::fixtures::block_time(100)).await;
    processor.refresh_triggers().await.unwrap();

    let keys: BTreeSet<String> = bench.states().await.into_keys().map(|(_, _, key)| key).collect();
    assert_eq!(keys, BTreeSet::from(["31337:0", "31337:1", "31337:2", "31337:3"].map(String::from)));
    let marked: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregate_state WHERE key = '#warmed'")
        .fetch_one(&bench.db.pool)
        .await
        .unwrap();
    assert_eq!(marked, 1, "warmed, within its limit");
}
