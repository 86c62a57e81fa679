//! A slow target holds up only its own jobs: deliveries run concurrently, each target within
//! its share, and the claims of deliveries still running are renewed so no other consumer
//! sends them again.

// Test code: a panic is how a failure is reported, in helpers as in tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use action_workers::worker::{CONSUMERS, Worker};
use common::{Bench, Receiver};
use serde_json::json;
use shared::redis::RedisHandle;
use shared::trigger::ActionKind;
use testkit::fixtures::feedback;
use testkit::wait;

/// How long the slow target takes to answer each request.
const SLOW: Duration = Duration::from_secs(20);

fn ids(receiver: &Receiver) -> (usize, HashSet<String>) {
    let requests = receiver.requests();
    let ids = requests.iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
    (requests.len(), ids)
}

#[tokio::test]
async fn a_slow_target_holds_up_only_its_own_jobs_and_none_is_sent_twice() {
    let bench = Bench::new().await;
    let (slow, fast) = (Receiver::start_slow(SLOW).await, Receiver::start().await);
    bench.trigger("slow", json!({"type": "webhook", "url": slow.url(), "timeout_ms": 30_000})).await;
    bench.trigger("fast", json!({"type": "webhook", "url": fast.url()})).await;
    // 500 feedbacks: 500 jobs for each target, interleaved in the stream.
    let events: Vec<_> =
        (0..500u32).map(|i| feedback(1 + u64::from(i / 100), i % 100, u64::from(i), 1, 0, "a")).collect();
    bench.fire(&events).await;
    let settings = action_workers::Settings {
        concurrency: 32,
        per_target: 8,
        // Far shorter than a slow delivery: only renewed claims keep them from being taken over.
        claim_idle: Duration::from_millis(1_000),
        ..Bench::settings(true)
    };
    let workers = bench.start_workers(settings);

    // Well before the slow target has answered even once.
    wait::until("every job of the fast target", SLOW - Duration::from_secs(5), || async {
        (fast.requests().len() >= 500).then_some(())
    })
    .await;
    let (sent, unique) = ids(&fast);
    assert_eq!((sent, unique.len()), (500, 500), "each fast job once");
    let (sent, _) = ids(&slow);
    assert!(sent <= 8, "the slow target has at most its share in flight: {sent}");

    // Past the first answers and well past the claim idle time: the next share goes out, and
    // no delivery still running was taken over and sent again.
    wait::until("the slow target's second share", SLOW * 2, || async { (slow.requests().len() > 8).then_some(()) })
        .await;
    let (sent, unique) = ids(&slow);
    assert_eq!(sent, unique.len(), "no slow job sent twice");
    assert!(sent <= 16, "still within its share: {sent}");
    assert_eq!(ids(&fast).0, 500, "no fast job sent again");
    workers.abort();
}

#[tokio::test]
async fn a_fast_target_at_its_share_keeps_its_jobs_waiting_here_never_in_the_retry_set() {
    let bench = Bench::new().await;
    let fast = Receiver::start().await;
    bench.trigger("fast", json!({"type": "webhook", "url": fast.url()})).await;
    let events: Vec<_> =
        (0..2_000u32).map(|i| feedback(1 + u64::from(i / 100), i % 100, u64::from(i), 1, 0, "a")).collect();
    bench.fire(&events).await;
    // The process's whole room is one target's share: every job read while the share is in
    // flight must wait for it.
    let settings = action_workers::Settings { concurrency: 8, per_target: 8, ..Bench::settings(true) };
    let worker =
        Worker::new(bench.db.pool.clone(), RedisHandle::new(&bench.redis).unwrap(), ActionKind::Webhook, settings)
            .unwrap();
    // The consumers alone, without the housekeeping that brings jobs back from the retry set:
    // a job parked there would never be delivered.
    let consumers: Vec<_> = (0..CONSUMERS).map(|i| tokio::spawn(worker.clone().consume(i))).collect();

    wait::until("every job delivered", Duration::from_secs(60), || async {
        (fast.requests().len() >= 2_000).then_some(())
    })
    .await;
    let (sent, unique) = ids(&fast);
    assert_eq!((sent, unique.len()), (2_000, 2_000), "each job once");
    let parked = worker.queue(0).move_due(i64::MAX, 10_000).await.unwrap();
    assert_eq!(parked, 0, "no job went through the retry set");
    for consumer in consumers {
        consumer.abort();
    }
}
