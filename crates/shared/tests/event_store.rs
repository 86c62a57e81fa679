//! Inserting and reading events against a real PostgreSQL.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use shared::domain::{AgentId, EventData, EventId, FeedbackValue, Hash32, HexBytes, StoredEvent};
use shared::store::events;
use sqlx::postgres::PgListener;
use testkit::TestDb;
use testkit::fixtures::{self, feedback, hash, position};

const WAIT: Duration = Duration::from_secs(10);

async fn listen(test_db: &TestDb) -> PgListener {
    let mut listener = PgListener::connect_with(&test_db.pool).await.expect("listener connects");
    listener.listen("new_event").await.expect("LISTEN new_event");
    listener
}

/// Sends a marker through the same channel and returns every notification that arrived
/// before it, so a test can count notifications exactly instead of waiting for silence.
async fn notifications_before_marker(test_db: &TestDb, listener: &mut PgListener) -> Vec<String> {
    sqlx::query("SELECT pg_notify('new_event', 'marker')").execute(&test_db.pool).await.expect("send marker");
    let mut seen = Vec::new();
    loop {
        let n =
            tokio::time::timeout(WAIT, listener.recv()).await.expect("notification in time").expect("listener open");
        if n.payload() == "marker" {
            return seen;
        }
        seen.push(n.payload().to_owned());
    }
}

#[tokio::test]
async fn one_transaction_of_many_inserts_notifies_once() {
    let test_db = TestDb::new().await;
    let mut listener = listen(&test_db).await;

    let mut tx = test_db.pool.begin().await.unwrap();
    let first: Vec<_> = (0..3).map(|i| feedback(1, i, 1, 95, 0, "uptime")).collect();
    let second: Vec<_> = (0..2).map(|i| feedback(2, i, 1, 90, 0, "uptime")).collect();
    assert_eq!(events::insert(&mut tx, &first).await.unwrap(), 3);
    assert_eq!(events::insert(&mut tx, &second).await.unwrap(), 2);
    tx.commit().await.unwrap();

    let seen = notifications_before_marker(&test_db, &mut listener).await;
    assert_eq!(seen, vec![String::new()], "exactly one new_event for the transaction");
}

#[tokio::test]
async fn the_same_log_inserted_twice_is_stored_once_and_notifies_once() {
    let test_db = TestDb::new().await;
    let mut listener = listen(&test_db).await;
    let event = feedback(5, 0, 7, 9977, 2, "uptime");

    let mut conn = test_db.pool.acquire().await.unwrap();
    assert_eq!(events::insert(&mut conn, std::slice::from_ref(&event)).await.unwrap(), 1);
    assert_eq!(events::insert(&mut conn, std::slice::from_ref(&event)).await.unwrap(), 0);
    // A duplicate inside one batch is skipped as well.
    let other = feedback(5, 1, 7, 1, 0, "uptime");
    assert_eq!(events::insert(&mut conn, &[event.clone(), other]).await.unwrap(), 1);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&test_db.pool).await.unwrap();
    assert_eq!(stored, 2);
    let seen = notifications_before_marker(&test_db, &mut listener).await;
    assert_eq!(seen.len(), 2, "the insert that stored nothing sends no notification");
}

#[tokio::test]
async fn every_event_type_reads_back_exactly_as_written() {
    let test_db = TestDb::new().await;
    let addr = |n: u8| format!("0x{}", format!("{n:02x}").repeat(20)).parse().unwrap();
    let h = |n: u64| -> Hash32 { hash(n).parse().unwrap() };
    let big_agent: AgentId =
        "115792089237316195423570985008687907853269984665640564039457584007913129639935".parse().unwrap();
    let datas = vec![
        EventData::Registered { owner: addr(1), agent_uri: "ipfs://agent-ü-名前".into() },
        EventData::MetadataSet { metadata_key: "endpoint".into(), metadata_value: HexBytes(vec![0, 1, 254, 255]) },
        EventData::UriUpdated { agent_uri: Default::default(), updated_by: addr(2) },
        EventData::Transfer { from: addr(0), to: addr(3) },
        EventData::NewFeedback {
            client_address: addr(4),
            feedback_index: Some(u64::MAX),
            value: FeedbackValue::new(i128::MIN + 1, 18).unwrap(),
            tag1: Some("uptime".into()),
            tag1_hash: None,
            tag2: "p99".into(),
            endpoint: "https://agent.example/mcp".into(),
            feedback_uri: "ipfs://feedback".into(),
            feedback_hash: h(9),
        },
        EventData::NewFeedback {
            client_address: addr(4),
            feedback_index: None,
            value: FeedbackValue::new(87, 0).unwrap(),
            tag1: None,
            tag1_hash: Some(h(10)),
            tag2: Default::default(),
            endpoint: Default::default(),
            feedback_uri: Default::default(),
            feedback_hash: h(11),
        },
        EventData::FeedbackRevoked { client_address: addr(4), feedback_index: 1 },
        EventData::ResponseAppended {
            client_address: addr(4),
            feedback_index: 2,
            responder: addr(5),
            response_uri: "https://r".into(),
            response_hash: h(12),
        },
        EventData::ValidationRequest {
            validator_address: addr(6),
            request_uri: "ipfs://req".into(),
            request_hash: h(13),
        },
        EventData::ValidationResponse {
            validator_address: addr(6),
            request_hash: h(13),
            response: 100,
            response_uri: "ipfs://resp".into(),
            response_hash: h(14),
            tag: "zk".into(),
        },
    ];
    let new: Vec<_> = datas
        .into_iter()
        .enumerate()
        .map(|(i, data)| fixtures::event(position(10, i as u32), big_agent, data))
        .collect();
    let mut conn = test_db.pool.acquire().await.unwrap();
    assert_eq!(events::insert(&mut conn, &new).await.unwrap(), new.len() as u64);

    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY log_index").fetch_all(&test_db.pool).await.unwrap();
    for (id, written) in ids.into_iter().zip(&new) {
        let read: StoredEvent = events::get(&test_db.pool, EventId(id)).await.unwrap().expect("stored");
        assert_eq!(read.event, written.event);
        assert!(!read.removed);
    }
    // The exact value is queryable in SQL too.
    let value: String =
        sqlx::query_scalar("SELECT value::text FROM events WHERE feedback_index = 18446744073709551615")
            .fetch_one(&test_db.pool)
            .await
            .unwrap();
    assert_eq!(value, "-170141183460469231731.687303715884105727");
    assert!(events::get(&test_db.pool, EventId(999_999)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_row_that_breaks_the_model_is_reported_not_panicked_on() {
    let test_db = TestDb::new().await;
    let mut conn = test_db.pool.acquire().await.unwrap();
    events::insert(&mut conn, &[feedback(1, 0, 1, 5, 0, "x")]).await.unwrap();
    sqlx::query("UPDATE events SET client_address = 'not-an-address'").execute(&test_db.pool).await.unwrap();
    let id: i64 = sqlx::query_scalar("SELECT id FROM events").fetch_one(&test_db.pool).await.unwrap();
    let err = events::get(&test_db.pool, EventId(id)).await.unwrap_err();
    assert!(err.to_string().contains("client_address"), "{err}");
}

#[tokio::test]
async fn long_text_is_stored_whole_in_statements_of_bounded_size() {
    let db = TestDb::new().await;
    // 400 events of 100 KB each: several statements, every row stored once and whole.
    let events: Vec<_> = (0..400u64)
        .map(|n| {
            let mut event = feedback(n, 0, n, 1, 0, "long");
            let EventData::NewFeedback { feedback_uri, .. } = &mut event.event.data else { panic!() };
            *feedback_uri = "u".repeat(100_000).into();
            event
        })
        .collect();
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(events::insert(&mut conn, &events).await.unwrap(), 400);
    let (rows, shortest): (i64, i32) =
        sqlx::query_as("SELECT count(*), min(length(feedback_uri)) FROM events").fetch_one(&db.pool).await.unwrap();
    assert_eq!((rows, shortest), (400, 100_000));
    assert_eq!(events::insert(&mut conn, &events).await.unwrap(), 0, "inserting again adds nothing");
}
