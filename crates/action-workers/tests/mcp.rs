//! MCP tool calls against a real MCP server built with rmcp, on loopback.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Bench;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use testkit::fixtures::feedback;
use testkit::wait;

/// A call the server got: tool, arguments, `_meta`, and the Authorization header.
#[derive(Debug, Clone)]
struct Call {
    tool: String,
    arguments: Value,
    meta: Value,
    authorization: Option<String>,
}

#[derive(Clone, Default)]
struct AgentServer {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let authorization = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.calls.lock().unwrap().push(Call {
            tool: request.name.to_string(),
            arguments: json!(request.arguments),
            // rmcp hands the request's `_meta` to the handler in its context.
            meta: serde_json::to_value(&context.meta).unwrap_or(Value::Null),
            authorization,
        });
        match request.name.as_ref() {
            "notify_feedback" => Ok(CallToolResult::success(vec![ContentBlock::text("noted")]).into()),
            "refuse" => Ok(CallToolResult::error(vec![ContentBlock::text("not today")]).into()),
            other => Err(ErrorData::invalid_params(format!("unknown tool {other}"), None)),
        }
    }
}

async fn start_server() -> (AgentServer, String) {
    let server = AgentServer::default();
    let handler = server.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (server, url)
}

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
