//! What one delivery attempt came to. Retryable versus permanent is a type, decided where
//! the response is read.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target took it.
    Delivered,
    /// Worth trying again; `after` is the target's own wish (Retry-After), if it said one.
    Retry { after: Option<Duration> },
    /// Trying again would not help (a 4xx, a refused address, a template that fails).
    Permanent,
    /// The target took the request and said no (an MCP result with `isError`).
    Rejected,
}

/// One attempt as recorded in the delivery log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency: Duration,
    /// The first 4 KiB of the response body.
    pub excerpt: Option<String>,
}

impl Attempt {
    pub fn failed(verdict: Verdict, error: impl Into<String>) -> Self {
        Self { verdict, status: None, error: Some(error.into()), latency: Duration::ZERO, excerpt: None }
    }
}
