//! MCP tool calls against a real MCP server built with rmcp, on loopback.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Bench;
use serde_json::json;
use testkit::fixtures::feedback;
use testkit::outside::mcp_server::start_server;
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
