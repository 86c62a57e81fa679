//! A real MCP server (rmcp, Streamable HTTP) standing for an agent: it records every tool
//! call (tool, arguments, `_meta`, Authorization header); `notify_feedback` succeeds,
//! `refuse` answers an error result, any other tool is a protocol error.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeRequestParams, InitializeResult,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// A call the server got: tool, arguments, `_meta`, and the Authorization header.
#[derive(Debug, Clone)]
pub struct Call {
    pub tool: String,
    pub arguments: Value,
    pub meta: Value,
    pub authorization: Option<String>,
}

#[derive(Clone, Default)]
pub struct AgentServer {
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// How long the server takes to answer `initialize`.
    pub initialize_delay: std::time::Duration,
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        tokio::time::sleep(self.initialize_delay).await;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
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
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Call {
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

/// Starts the server on a free port: the server (to read its calls) and its URL.
pub async fn start_server() -> (AgentServer, String) {
    start(AgentServer::default()).await
}

/// A server that takes `delay` to answer `initialize`.
pub async fn start_slow_server(delay: std::time::Duration) -> (AgentServer, String) {
    start(AgentServer { initialize_delay: delay, ..AgentServer::default() }).await
}

async fn start(server: AgentServer) -> (AgentServer, String) {
    let handler = server.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("mcp server");
    let url = format!("http://127.0.0.1:{}/mcp", listener.local_addr().expect("mcp server").port());
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
