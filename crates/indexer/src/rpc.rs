//! JSON-RPC to one chain over one or more URLs: when a URL fails, the next one takes over.
//! Errors are classified: a node that answers with an error refused the request (a range
//! too large, say), while a node that cannot be reached is unavailable.

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address as RawAddress, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log};
use alloy::transports::{RpcError, TransportError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::domain::ChainId;
use url::Url;

/// The parts of a block header the indexer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub time: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// The node answered with an error: the request itself was refused (for `eth_getLogs`,
    /// usually a range or a result too large).
    #[error("the node refused the request: {0}")]
    Refused(String),
    /// No URL could be reached or gave a usable answer.
    #[error("no RPC URL answered: {0}")]
    Unavailable(String),
    /// The node does not have a block it should have (it is behind, or the block was just
    /// dropped by a reorg).
    #[error("the node has no block {0}")]
    MissingBlock(u64),
}

/// One chain's RPC URLs with failover.
pub struct Rpc {
    chain: ChainId,
    providers: Vec<RootProvider>,
    current: usize,
    timeout: Duration,
}

/// How long one RPC call may take before the URL counts as unavailable.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn classify(error: TransportError) -> RpcFailure {
    match error {
        RpcError::ErrorResp(payload) => {
            RpcFailure::Refused(redact_urls(&format!("{} (code {})", payload.message, payload.code)))
        }
        other => RpcFailure::Unavailable(redact_urls(&other.to_string())),
    }
}

/// `text` with every URL in it replaced: an RPC URL often carries an API key (in its path
/// or query), and errors end up in logs. URLs are named by their number instead.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://", "ws://", "wss://"].iter().filter_map(|s| rest.find(s)).min() {
        out.push_str(&rest[..at]);
        out.push_str("<url>");
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | ',' | '>')).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl Rpc {
    pub fn new(chain: ChainId, urls: &[Url]) -> Self {
        crate::install_tls_provider();
        let providers = urls.iter().map(|url| RootProvider::new_http(url.clone())).collect();
        Self { chain, providers, current: 0, timeout: RPC_TIMEOUT }
    }

    /// The same with another bound on each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Which URL is in use (1-based, in configuration order): metrics name URLs this way,
    /// since a URL may carry an API key.
    pub fn url_number(&self) -> usize {
        self.current + 1
    }

    fn failed(&mut self, error: &RpcFailure) {
        metrics::counter!("indexer_rpc_errors_total", "chain" => self.chain.to_string(), "url" => self.url_number().to_string())
            .increment(1);
        if matches!(error, RpcFailure::Unavailable(_)) && self.providers.len() > 1 {
            tracing::warn!(chain = %self.chain, url = self.url_number(), %error, "RPC URL failed; trying the next");
            self.current = (self.current + 1) % self.providers.len();
        }
    }

    /// Runs `call` on the current URL, then on each other URL while they are unavailable.
    async fn with_failover<T, F, Fut>(&mut self, call: F) -> Result<T, RpcFailure>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcFailure>>,
    {
        let mut last = RpcFailure::Unavailable("no RPC URL configured".into());
        for _ in 0..self.providers.len() {
            let provider = self.providers[self.current].clone();
            let answer = tokio::time::timeout(self.timeout, call(provider)).await.unwrap_or_else(|_| {
                Err(RpcFailure::Unavailable(format!(
                    "URL {} gave no answer within {:?}",
                    self.url_number(),
                    self.timeout
                )))
            });
            match answer {
                Ok(value) => return Ok(value),
                Err(error) => {
                    self.failed(&error);
                    if !matches!(error, RpcFailure::Unavailable(_)) {
                        return Err(error);
                    }
                    last = error;
                }
            }
        }
        Err(last)
    }

    pub async fn head(&mut self) -> Result<u64, RpcFailure> {
        self.with_failover(|p| async move { p.get_block_number().await.map_err(classify) }).await
    }

    pub async fn block(&mut self, number: u64) -> Result<BlockRef, RpcFailure> {
        self.with_failover(|p| async move {
            let block = p
                .get_block_by_number(BlockNumberOrTag::Number(number))
                .await
                .map_err(classify)?
                .ok_or(RpcFailure::MissingBlock(number))?;
            let header = &block.header;
            let time = i64::try_from(header.inner.timestamp)
                .ok()
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .ok_or_else(|| RpcFailure::Unavailable(format!("block {number} has an impossible timestamp")))?;
            Ok(BlockRef { number, hash: header.hash, parent_hash: header.inner.parent_hash, time })
        })
        .await
    }

    /// Every log of `addresses` in blocks `from..=to`: the registries' other events are read
    /// too, so that a layout this version does not know shows up in the skipped-logs count.
    pub async fn logs(&mut self, from: u64, to: u64, addresses: &[RawAddress]) -> Result<Vec<Log>, RpcFailure> {
        let filter = Filter::new().from_block(from).to_block(to).address(addresses.to_vec());
        self.with_failover(|p| {
            let filter = filter.clone();
            async move { p.get_logs(&filter).await.map_err(classify) }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_reach_an_error_text() {
        let text = "error sending request for url (https://eth.example/v2/secret-key?x=1): connection refused";
        assert_eq!(redact_urls(text), "error sending request for url (<url>): connection refused");
        assert_eq!(redact_urls("a http://h/k1 and wss://h/k2, done"), "a <url> and <url>, done");
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(redact_urls("https://"), "<url>");
    }
}
