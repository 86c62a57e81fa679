//! The migrations against a real PostgreSQL.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

use shared::db;
use testkit::TestDb;

const TABLES: &[&str] = &[
    "events",
    "users",
    "api_keys",
    "triggers",
    "trigger_actions",
    "action_breakers",
    "aggregate_state",
    "cooldowns",
    "processor_cursor",
    "action_outbox",
    "deliveries",
    "indexer_checkpoints",
    "indexer_blocks",
];

const INDEXES: &[&str] = &[
    "events_log_unique",
    "events_cursor_idx",
    "events_agent_idx",
    "events_chain_block_idx",
    "events_type_idx",
    "events_time_idx",
    "events_history_idx",
    "users_email_unique",
    "triggers_user_idx",
    "action_outbox_unfinished_idx",
    "action_outbox_event_idx",
    "deliveries_trigger_idx",
    "deliveries_one_success",
];

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_then_are_a_no_op() {
    let test_db = TestDb::empty().await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&test_db.pool)
        .await
        .unwrap();
    assert_eq!(before, 0);

    db::migrate(&test_db.pool).await.expect("first run applies every migration");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&test_db.pool)
        .await
        .unwrap();
    assert_eq!(applied, db::MIGRATOR.iter().count() as i64);

    db::migrate(&test_db.pool).await.expect("second run is a no-op");
    let applied_again: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&test_db.pool).await.unwrap();
    assert_eq!(applied_again, applied);

    for table in TABLES {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = $1)",
        )
        .bind(table)
        .fetch_one(&test_db.pool)
        .await
        .unwrap();
        assert!(exists, "table {table} is missing");
    }
    for index in INDEXES {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND indexname = $1)",
        )
        .bind(index)
        .fetch_one(&test_db.pool)
        .await
        .unwrap();
        assert!(exists, "index {index} is missing");
    }
}

#[tokio::test]
async fn every_normalized_field_has_a_typed_column() {
    let test_db = TestDb::new().await;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'events'",
    )
    .fetch_all(&test_db.pool)
    .await
    .unwrap();
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, data_type)| data_type.as_str())
            .unwrap_or_else(|| panic!("events.{name} is missing"))
    };
    assert_eq!(type_of("agent_id"), "numeric");
    assert_eq!(type_of("value"), "numeric");
    assert_eq!(type_of("value_raw"), "numeric");
    assert_eq!(type_of("feedback_index"), "numeric");
    assert_eq!(type_of("block_timestamp"), "timestamp with time zone");
    assert_eq!(type_of("args"), "jsonb");
    for field in [
        "id",
        "chain_id",
        "registry",
        "event_type",
        "contract_address",
        "block_number",
        "block_hash",
        "tx_hash",
        "log_index",
        "removed",
        "owner",
        "agent_uri",
        "updated_by",
        "metadata_key",
        "metadata_value",
        "from_address",
        "to_address",
        "client_address",
        "value_decimals",
        "tag1",
        "tag2",
        "endpoint",
        "feedback_uri",
        "feedback_hash",
        "responder",
        "response_uri",
        "response_hash",
        "validator_address",
        "request_uri",
        "request_hash",
        "response",
        "tag",
    ] {
        type_of(field);
    }
}

#[tokio::test]
async fn changing_an_action_bumps_its_trigger_version() {
    let test_db = TestDb::new().await;
    let mut conn = test_db.pool.acquire().await.unwrap();
    let user = shared::store::users::insert(&mut conn, "a@example.com", "x").await.unwrap();
    let definition = shared::trigger::TriggerDefinition::parse(&serde_json::json!({
        "name": "t",
        "actions": [{"type": "webhook", "url": "https://example.com/a"}]
    }))
    .unwrap();
    let (trigger, actions) =
        shared::store::triggers::insert(&mut conn, &testkit::keyring(), user, &definition, None).await.unwrap();
    let pool = &test_db.pool;
    let version = || async move {
        sqlx::query_scalar::<_, i64>("SELECT version FROM triggers WHERE id = $1")
            .bind(trigger)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let created = version().await;
    sqlx::query("UPDATE trigger_actions SET config = config WHERE id = $1")
        .bind(actions[0])
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(version().await, created + 1);
    sqlx::query("DELETE FROM trigger_actions WHERE id = $1").bind(actions[0]).execute(pool).await.unwrap();
    assert_eq!(version().await, created + 2);
}
