//! MCP tool calls against a real MCP server built with rmcp, on loopback.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bench, Receiver};
use serde_json::json;
use testkit::fixtures::feedback;
use testkit::outside::mcp_server::{start_server, start_slow_server};
use testkit::wait;

#[tokio::test]
async fn the_tool_gets_rendered_arguments_the_job_id_and_the_secret_header() {
    let bench = Bench::new().await;
    let (server, url) = start_server().await;
    bench
        .trigger(
            "mcp",
            json!({
                "type": "mcp", "server_url": url, "tool": "notify_feedback",
                "arguments": {"agent": "{{ event.agent_id }}", "value": "{{ event.value }}", "fixed": 7},
                "headers": {"Authorization": "Bearer agent-secret"}
            }),
        )
        .await;
    bench.fire(&[feedback(1, 0, 42, 9977, 2, "uptime")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("the delivery", Duration::from_secs(30), || async {
        (bench.job_status().await == ["delivered"]).then_some(())
    })
    .await;
    let calls = server.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.tool, "notify_feedback");
    assert_eq!(call.arguments, json!({"agent": "42", "value": "99.77", "fixed": 7}));
    let job: uuid::Uuid =
        sqlx::query_scalar("SELECT job_id FROM action_outbox").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(call.meta["job_id"], json!(job.to_string()));
    assert_eq!(call.authorization.as_deref(), Some("Bearer agent-secret"));
    let (outcome, excerpt): (String, Option<String>) =
        sqlx::query_as("SELECT outcome, response_excerpt FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(outcome, "success");
    assert!(excerpt.unwrap_or_default().contains("noted"));
    workers.abort();
}

#[tokio::test]
async fn an_error_result_is_rejected_and_an_unknown_tool_fails() {
    let bench = Bench::new().await;
    let (server, url) = start_server().await;
    bench.trigger("mcp", json!({"type": "mcp", "server_url": url, "tool": "refuse"})).await;
    bench.trigger("mcp", json!({"type": "mcp", "server_url": url, "tool": "no_such_tool"})).await;
    bench.fire(&[feedback(1, 0, 42, 1, 0, "x")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("both outcomes", Duration::from_secs(30), || async {
        (bench.job_status().await == ["failed", "failed"]).then_some(())
    })
    .await;
    let outcomes: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, error FROM deliveries ORDER BY outcome")
            .fetch_all(&bench.db.pool)
            .await
            .unwrap();
    assert_eq!(outcomes.len(), 2, "one attempt each: neither is retried");
    assert_eq!(outcomes[0].0, "failed");
    assert!(outcomes[0].1.as_deref().unwrap_or("").contains("unknown tool no_such_tool"), "{outcomes:?}");
    assert_eq!(outcomes[1].0, "rejected");
    assert_eq!(server.calls.lock().unwrap().len(), 2);
    workers.abort();
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_credential_stays_home() {
    let bench = Bench::new().await;
    let (redirecting, elsewhere) = (Receiver::start().await, Receiver::start().await);
    // Another port is another origin: it must never see the request or its header.
    redirecting.redirect_to(&elsewhere.url());
    bench
        .trigger(
            "mcp",
            json!({"type": "mcp", "server_url": redirecting.url(), "tool": "notify_feedback",
                   "headers": {"Authorization": "Bearer agent-secret"}}),
        )
        .await;
    bench.fire(&[feedback(1, 0, 42, 1, 0, "x")]).await;
    let workers = bench.start_workers(Bench::settings(true));

    wait::until("the job to fail", Duration::from_secs(30), || async {
        (bench.job_status().await == ["failed"]).then_some(())
    })
    .await;
    let (outcome, error): (String, Option<String>) =
        sqlx::query_as("SELECT outcome, error FROM deliveries").fetch_one(&bench.db.pool).await.unwrap();
    assert_eq!(outcome, "failed", "not retried");
    assert!(error.unwrap_or_default().contains("redirected to another origin"));
    assert!(!redirecting.requests().is_empty(), "the server was asked");
    assert!(elsewhere.requests().is_empty(), "the other origin got nothing");
    workers.abort();
}

#[tokio::test]
async fn a_server_slow_to_initialize_holds_up_only_its_own_calls() {
    let bench = Bench::new().await;
    let (_slow, slow_url) = start_slow_server(Duration::from_secs(20)).await;
    let (fast, fast_url) = start_server().await;
    bench.trigger("slow", json!({"type": "mcp", "server_url": slow_url, "tool": "notify_feedback"})).await;
    bench.trigger("fast", json!({"type": "mcp", "server_url": fast_url, "tool": "notify_feedback"})).await;
    bench.fire(&(0..5).map(|i| feedback(1, i, 42, 1, 0, "x")).collect::<Vec<_>>()).await;
    let workers = bench.start_workers(action_workers::Settings { concurrency: 16, ..Bench::settings(true) });

    // Well before the slow server has answered its handshake.
    wait::until("every call to the fast server", Duration::from_secs(10), || async {
        (fast.calls.lock().unwrap().len() == 5).then_some(())
    })
    .await;
    workers.abort();
}

#[tokio::test]
async fn a_handshake_is_bounded_by_the_action_timeout() {
    let bench = Bench::new().await;
    let (_slow, slow_url) = start_slow_server(Duration::from_secs(30)).await;
    bench
        .trigger("slow", json!({"type": "mcp", "server_url": slow_url, "tool": "notify_feedback", "timeout_ms": 300}))
        .await;
    bench.fire(&[feedback(1, 0, 42, 1, 0, "x")]).await;
    let workers = bench.start_workers(Bench::settings(true));
    let (outcome, error): (String, Option<String>) =
        wait::until("the first attempt to time out", Duration::from_secs(10), || async {
            sqlx::query_as("SELECT outcome, error FROM deliveries ORDER BY id LIMIT 1")
                .fetch_optional(&bench.db.pool)
                .await
                .unwrap()
        })
        .await;
    assert_eq!(outcome, "retry");
    assert!(error.unwrap_or_default().contains("did not answer within 300ms"));
    workers.abort();
}
