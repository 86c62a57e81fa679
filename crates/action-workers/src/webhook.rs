//! Signed HTTP deliveries (Standard Webhooks).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect;
use secrecy::{ExposeSecret, SecretString};
use shared::job::Job;
use shared::startup::error_chain;
use shared::trigger::{HttpMethod, WebhookAction};

use crate::outcome::{Attempt, Verdict};
use crate::signing::sign;
use crate::ssrf::AddressPolicy;
use shared::render::{off_thread, webhook_body};

/// Bytes of a response kept in the delivery log.
pub const EXCERPT_BYTES: usize = 4 * 1024;
const MAX_REDIRECTS: usize = 5;

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    /// For requests carrying secret headers: redirects stay within the origin, so the
    /// credentials never reach another host.
    same_origin: reqwest::Client,
    policy: AddressPolicy,
}

impl WebhookClient {
    pub fn new(policy: AddressPolicy) -> Result<Self, reqwest::Error> {
        Ok(Self { http: client(&policy, false)?, same_origin: client(&policy, true)?, policy })
    }

    /// Delivers one job. `secret_headers` are sent as the action's other headers are, but
    /// a request carrying any is redirected only within its origin.
    pub async fn deliver(
        &self,
        job: &Job,
        action: &WebhookAction,
        secret: &SecretString,
        secret_headers: &BTreeMap<String, SecretString>,
    ) -> Attempt {
        let url = match reqwest::Url::parse(&action.url) {
            Ok(url) => url,
            Err(err) => return Attempt::failed(Verdict::Permanent, format!("invalid URL: {err}")),
        };
        if let Some(ip) = url.host_str().and_then(|h| h.trim_matches(['[', ']']).parse().ok())
            && let Err(refused) = self.policy.check(ip)
        {
            return Attempt::failed(Verdict::Permanent, refused.to_string());
        }
        let (owned_job, template) = (job.clone(), action.body_template.clone());
        // The default body is the job's own JSON, bounded by the store: made here. Only a
        // user's template, whose cost its author chooses, goes to the render threads.
        let rendered = match template {
            None => webhook_body(&owned_job, None),
            Some(template) => off_thread(move || webhook_body(&owned_job, Some(&template))).await,
        };
        let body = match rendered {
            Ok(body) => body,
            Err(err) => return Attempt::failed(Verdict::Permanent, err.to_string()),
        };
        let id = job.job_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match sign(secret, &id, timestamp, body.as_bytes()) {
            Ok(signature) => signature,
            Err(err) => return Attempt::failed(Verdict::Permanent, err.to_string()),
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in &action.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                headers.insert(name, value);
            }
        }
        for (name, value) in secret_headers {
            let value = HeaderValue::from_str(value.expose_secret()).map(|mut v| {
                v.set_sensitive(true);
                v
            });
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), value) {
                headers.insert(name, value);
            }
        }
        for (name, value) in
            [("webhook-id", id), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)]
        {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let method = match action.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let started = Instant::now();
        let http = if secret_headers.is_empty() { &self.http } else { &self.same_origin };
        let sent = http
            .request(method, url)
            .headers(headers)
            .timeout(Duration::from_millis(action.timeout_ms))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => read_response(response, started).await,
            Err(err) => {
                let refused =
                    std::error::Error::source(&err).is_some_and(|s| error_chain(s).contains("refused to connect"));
                let verdict = if refused { Verdict::Permanent } else { Verdict::Retry { after: None } };
                Attempt {
                    verdict,
                    status: None,
                    error: Some(error_chain(&err)),
                    latency: started.elapsed(),
                    excerpt: None,
                }
            }
        }
    }
}

/// An HTTP client whose redirects are checked against `policy` at every hop (names by the
/// resolver, literal addresses here), and kept within the first URL's origin when
/// `same_origin`.
fn client(policy: &AddressPolicy, same_origin: bool) -> Result<reqwest::Client, reqwest::Error> {
    let redirect_policy = policy.clone();
    reqwest::Client::builder()
        .dns_resolver(policy.resolver())
        .no_proxy()
        .user_agent(concat!("erc8004-backend/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            if same_origin && attempt.previous().first().is_some_and(|first| first.origin() != attempt.url().origin()) {
                return attempt.error("a request carrying credentials is redirected within its origin only");
            }
            match attempt.url().host_str().and_then(|h| h.trim_matches(['[', ']']).parse().ok()) {
                Some(ip) => match redirect_policy.check(ip) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                },
                None => attempt.follow(),
            }
        }))
        .build()
}

async fn read_response(mut response: reqwest::Response, started: Instant) -> Attempt {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut excerpt = Vec::new();
    while excerpt.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())]),
            _ => break,
        }
    }
    let latency = started.elapsed();
    let code = status.as_u16();
    let verdict = match code {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry { after: retry_after },
        _ => Verdict::Permanent,
    };
    Attempt {
        error: (!status.is_success()).then(|| format!("HTTP {code}")),
        verdict,
        status: Some(code),
        latency,
        excerpt: Some(String::from_utf8_lossy(&excerpt).into_owned()),
    }
}
