//! What the end-to-end tests share.

use std::time::Duration;

use sqlx::PgPool;
use testkit::wait;

/// Waits until every job in the outbox is recorded as delivered: nothing more can be sent.
pub async fn every_job_delivered(pool: &PgPool, timeout: Duration) {
    wait::until("every job recorded as delivered", timeout, || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status <> 'delivered'")
            .fetch_one(pool)
            .await
            .ok()?;
        (open == 0).then_some(())
    })
    .await;
}
