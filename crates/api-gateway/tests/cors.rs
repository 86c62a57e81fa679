//! Cross-origin requests: allowed only from the configured origins.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::Running;
use shared::redis::RedisHandle;
use testkit::TestDb;

#[tokio::test]
async fn only_configured_origins_get_cors_headers() {
    let db = TestDb::new().await;
    let redis = RedisHandle::new(&testkit::redis_config()).unwrap();
    let state = common::state(db.pool.clone(), redis).with_cors_origins(vec!["https://app.example.com".to_owned()]);
    let app = Running::start(state);
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/triggers", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let simple = app
        .client
        .get(format!("{}/api/v1/health", app.base))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example.com");
}
