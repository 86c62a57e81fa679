//! Deleting from a large table a page at a time, so that pruning never holds one long
//! statement or transaction over the rows services are writing. Each page skips the rows
//! another transaction holds (`FOR UPDATE SKIP LOCKED`), leaving them to the next round:
//! pruning never waits on, nor deadlocks with, the services' own writes.

use std::future::Future;

/// Calls `page` from `first` on until it reaches the end: each call deletes what qualifies in
/// the page after the key it is given and answers how many rows went and the key to go on
/// after (`None` at the end). Other tasks run between two pages. The total deleted.
pub(crate) async fn delete_page_by_page<K, F, Fut>(first: K, mut page: F) -> Result<u64, sqlx::Error>
where
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<(i64, Option<K>), sqlx::Error>>,
{
    let mut after = first;
    let mut total = 0_u64;
    loop {
        let (deleted, next) = page(after).await?;
        total += u64::try_from(deleted).unwrap_or(0);
        match next {
            Some(next) => after = next,
            None => return Ok(total),
        }
        tokio::task::yield_now().await;
    }
}
