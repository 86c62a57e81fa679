//! Tool calls on an agent's MCP server over Streamable HTTP, with the rmcp client: the
//! initialize handshake once per server (the session is reused), then `tools/call` with the
//! rendered arguments and the job id in `_meta`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::redirect;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, MetaObject, RequestMetaObject};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, json};
use shared::job::Job;
use shared::trigger::McpAction;
use tokio::sync::Mutex;

use crate::outcome::{Attempt, Verdict};
use crate::ssrf::AddressPolicy;
use crate::webhook::EXCERPT_BYTES;

type Session = Arc<RunningService<RoleClient, ClientConfig>>;

/// Redirects followed at most, all within the server's origin.
const MAX_REDIRECTS: usize = 5;
/// A session unused for this long is closed.
const SESSION_IDLE: Duration = Duration::from_secs(300);

/// One server's session (for one set of credentials), made on first use. Each has a lock of
/// its own, held while the session is made, so a server slow to initialize holds up only
/// the calls to itself.
#[derive(Default)]
struct Slot {
    session: Option<Session>,
    used: Option<Instant>,
}

#[derive(Clone)]
pub struct McpClients {
    http: reqwest::Client,
    policy: AddressPolicy,
    sessions: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<Slot>>>>>,
}

impl McpClients {
    pub fn new(policy: AddressPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(policy.resolver())
            .no_proxy()
            .user_agent(concat!("erc8004-backend/", env!("CARGO_PKG_VERSION")))
            // The transport talks to one endpoint: a redirect may move within its origin
            // (whose address the resolver checks on every hop), never to another one, which
            // would get the action's credentials.
            .redirect(redirect::Policy::custom(|attempt| {
                let same_origin =
                    attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if same_origin {
                    attempt.follow()
                } else {
                    attempt.error("refused to connect: the MCP server redirected to another origin")
                }
            }))
            .build()?;
        Ok(Self { http, policy, sessions: Arc::default() })
    }

    /// Calls the action's tool for `job`. `headers` are the action's write-only headers.
    pub async fn call(&self, job: &Job, action: &McpAction, headers: &BTreeMap<String, SecretString>) -> Attempt {
        if let Some(ip) = reqwest::Url::parse(&action.server_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .and_then(|h| h.parse().ok())
            && let Err(refused) = self.policy.check(ip)
        {
            return Attempt::failed(Verdict::Permanent, refused.to_string());
        }
        let (owned_job, arguments) = (job.clone(), action.arguments.clone());
        let rendering = move || shared::render::mcp_arguments(&owned_job, &arguments);
        let arguments = match shared::render::off_thread(rendering).await {
            Ok(arguments) => arguments,
            Err(error) => return Attempt::failed(Verdict::Permanent, error.to_string()),
        };
        let started = Instant::now();
        let timeout = Duration::from_millis(action.timeout_ms);
        let session = match self.session(&action.server_url, headers, timeout).await {
            Ok(session) => session,
            Err(error) => {
                let refused = error.contains("refused to connect");
                let verdict = if refused { Verdict::Permanent } else { Verdict::Retry { after: None } };
                return Attempt {
                    verdict,
                    status: None,
                    error: Some(error),
                    latency: started.elapsed(),
                    excerpt: None,
                };
            }
        };
        let mut meta = Map::new();
        meta.insert("job_id".into(), json!(job.job_id));
        let mut params = CallToolRequestParams::new(action.tool.clone()).with_arguments(arguments);
        params.meta = Some(RequestMetaObject(MetaObject(meta)));
        let called = tokio::time::timeout(timeout, session.call_tool(params)).await;
        let latency = started.elapsed();
        match called {
            Ok(Ok(result)) => {
                let excerpt: String =
                    serde_json::to_string(&result.content).unwrap_or_default().chars().take(EXCERPT_BYTES).collect();
                if result.is_error == Some(true) {
                    Attempt {
                        verdict: Verdict::Rejected,
                        status: None,
                        error: Some("the tool reported an error".into()),
                        latency,
                        excerpt: Some(excerpt),
                    }
                } else {
                    Attempt { verdict: Verdict::Delivered, status: None, error: None, latency, excerpt: Some(excerpt) }
                }
            }
            // The server answered with a protocol error: unknown tool, bad arguments.
            Ok(Err(ServiceError::McpError(error))) => Attempt {
                verdict: Verdict::Permanent,
                status: None,
                error: Some(format!("MCP error {}: {}", error.code.0, error.message)),
                latency,
                excerpt: None,
            },
            Ok(Err(error)) => {
                self.forget(&action.server_url, headers).await;
                Attempt {
                    verdict: Verdict::Retry { after: None },
                    status: None,
                    error: Some(shared::startup::error_chain(&error)),
                    latency,
                    excerpt: None,
                }
            }
            Err(_) => {
                self.forget(&action.server_url, headers).await;
                Attempt::failed(Verdict::Retry { after: None }, format!("no answer within {timeout:?}"))
            }
        }
    }

    /// The open session with this server (and these headers), made on first use within
    /// `timeout`. Sessions unused for [`SESSION_IDLE`] are closed on the way.
    async fn session(
        &self,
        url: &str,
        headers: &BTreeMap<String, SecretString>,
        timeout: Duration,
    ) -> Result<Session, String> {
        let key = session_key(url, headers);
        let slot = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            // A slot in use (locked) is never idle.
            sessions.retain(|_, slot| {
                slot.try_lock().map_or(true, |s| s.used.is_none_or(|at| at.elapsed() < SESSION_IDLE))
            });
            sessions.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().await;
        slot.used = Some(Instant::now());
        if let Some(session) = slot.session.as_ref().filter(|s| !s.is_closed()) {
            return Ok(session.clone());
        }
        let custom: HashMap<HeaderName, HeaderValue> = headers
            .iter()
            .filter_map(|(k, v)| {
                Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v.expose_secret()).ok()?))
            })
            .collect();
        let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(custom);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let connecting = ClientConfig::default().serve(transport);
        let session = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(session)) => Arc::new(session),
            Ok(Err(error)) => {
                let error = shared::startup::error_chain(&error);
                // The transport does not pass the redirect policy's reason on; a redirect
                // error can only be that policy's refusal.
                if error.contains("error following redirect") {
                    return Err(format!(
                        "refused to connect: the MCP server redirected to another origin, or more than {MAX_REDIRECTS} times"
                    ));
                }
                return Err(format!("MCP initialize failed: {error}"));
            }
            Err(_) => return Err(format!("MCP initialize did not answer within {timeout:?}")),
        };
        slot.session = Some(session.clone());
        Ok(session)
    }

    async fn forget(&self, url: &str, headers: &BTreeMap<String, SecretString>) {
        let slot = self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&session_key(url, headers));
        drop(slot);
    }

    /// The number of sessions open or being made.
    pub fn sessions(&self) -> usize {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Sessions are per server and credentials; the key holds a digest, never the secrets.
fn session_key(url: &str, headers: &BTreeMap<String, SecretString>) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for (name, value) in headers {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(value.expose_secret().as_bytes());
        digest.update([0]);
    }
    let hash: String = digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{url}#{hash}")
}
