//! The health endpoint against the machine's real PostgreSQL and Redis, and against closed
//! ports standing in for a dead database or Redis.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use api_gateway::Application;
use common::Running;
use serde_json::{Value, json};
use shared::config::{DatabaseConfig, RedisConfig};
use shared::redis::RedisHandle;
use sqlx::postgres::PgConnectOptions;
use testkit::TestDb;
use testkit::net::closed_port;

fn redis() -> RedisHandle {
    RedisHandle::new(&testkit::redis_config()).expect("redis handle")
}

fn dead_redis() -> RedisHandle {
    let config = RedisConfig::for_url(&format!("redis://127.0.0.1:{}/", closed_port()), "test:");
    RedisHandle::new(&config).expect("redis handle")
}

fn dead_database() -> sqlx::PgPool {
    let options = PgConnectOptions::new().host("127.0.0.1").port(closed_port()).username("postgres");
    shared::db::connect_lazy(&DatabaseConfig::new(options))
}

#[tokio::test]
async fn healthy_when_database_and_redis_answer() {
    testkit::init_telemetry();
    let test_db = TestDb::new().await;
    let app = Running::start(common::state(test_db.pool.clone(), redis()));

    let response = app.get("/api/v1/health").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "healthy", "database": "connected", "redis": "connected", "version": "0.1.0"}));
}

#[tokio::test]
async fn unhealthy_naming_the_database_when_postgres_is_unreachable() {
    let app = Running::start(common::state(dead_database(), redis()));

    let response = app.get("/api/v1/health").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "disconnected");
    assert_eq!(body["redis"], "connected");
    assert_eq!(body["failing"], json!(["database"]));
}

#[tokio::test]
async fn unhealthy_naming_redis_when_redis_is_unreachable() {
    let test_db = TestDb::new().await;
    let app = Running::start(common::state(test_db.pool.clone(), dead_redis()));

    let response = app.get("/api/v1/health").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "connected");
    assert_eq!(body["redis"], "disconnected");
    assert_eq!(body["failing"], json!(["redis"]));
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_replaced_when_not() {
    let test_db = TestDb::new().await;
    let app = Running::start(common::state(test_db.pool.clone(), redis()));

    let kept =
        app.client.get(format!("{}/api/v1/health", app.base)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");

    let replaced = app
        .client
        .get(format!("{}/api/v1/health", app.base))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn unknown_routes_answer_the_error_json() {
    let test_db = TestDb::new().await;
    let app = Running::start(common::state(test_db.pool.clone(), redis()));

    let response = app.get("/api/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no route for GET /api/v1/nothing-here");
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_format() {
    let test_db = TestDb::new().await;
    let app = Running::start(common::state(test_db.pool.clone(), redis()));

    assert_eq!(app.get("/api/v1/health").await.status(), 200);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/api/v1/health\""))
        .unwrap_or_else(|| panic!("no request counter for the health route in:\n{text}"));
    assert!(line.contains("status=\"200\""), "{line}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn build_from_configuration_migrates_and_serves() {
    let test_db = TestDb::empty().await;
    let env = shared::config::Env::from_pairs([
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", "5432".to_owned()),
        ("DB_USER", "postgres".to_owned()),
        ("DB_NAME", test_db.name().to_owned()),
        ("SERVER_HOST", "127.0.0.1".to_owned()),
        ("SERVER_PORT", "0".to_owned()),
        ("REDIS_KEY_PREFIX", "test:build:".to_owned()),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
        ("SECRETS_KEY", testkit::SECRETS_KEY.to_owned()),
    ]);
    let config = api_gateway::GatewayConfig::from_env(&env).unwrap();
    let app = Application::build(config).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());

    let migrated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&test_db.pool).await.unwrap();
    assert_eq!(migrated, shared::db::MIGRATOR.iter().count() as i64);
    let response = testkit::http_client().get(format!("{base}/api/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
