//! Waiting for an effect with a deadline, instead of sleeping and hoping.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after
/// `timeout`, with the transactions open on the PostgreSQL server at that moment (readers
/// that wait for settled transactions wait for the oldest of them).
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            let open = crate::database::open_transactions().await;
            panic!("timed out after {timeout:?} waiting for {what}; transactions open on the server: {open}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
