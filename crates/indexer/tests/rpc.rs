//! RPC calls are bounded in time, and their errors never carry the URL (which may hold an
//! API key).

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use indexer::rpc::{Rpc, RpcFailure};
use shared::domain::ChainId;

#[tokio::test]
async fn a_node_that_never_answers_fails_the_call_in_time() {
    // Accepts connections and reads them, but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/v2/secret-key")).unwrap();
    let mut rpc = Rpc::new(ChainId(1), &[url]).with_timeout(Duration::from_millis(300));
    let failure = rpc.head().await.unwrap_err();
    assert!(matches!(failure, RpcFailure::Unavailable(_)), "{failure}");
    let text = failure.to_string();
    assert!(text.contains("no answer within"), "{text}");
    assert!(!text.contains("secret-key"), "{text}");
}

#[tokio::test]
async fn an_unreachable_node_is_named_by_number_not_by_url() {
    let port = testkit::net::closed_port();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/v2/secret-key?apikey=also-secret")).unwrap();
    let mut rpc = Rpc::new(ChainId(1), &[url]);
    let text = rpc.head().await.unwrap_err().to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.starts_with("no RPC URL answered"), "{text}");
}
