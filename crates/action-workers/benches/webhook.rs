//! Webhook delivery benchmark: deliveries/s through the workers (consume, check, render,
//! sign, send, record, ack) to a local receiver that answers 200 at once, with 1 and 4
//! deliveries in flight (`WORKER_CONCURRENCY`) in one worker process, against a bare reqwest
//! loop posting the same bodies with as many requests in flight (the limit).
//!
//! `cargo bench -p action-workers --bench webhook`

use std::time::{Duration, Instant};

use action_workers::outcome::{Attempt, Verdict};
use action_workers::record::{self, After, Recorded};
use action_workers::ssrf::AddressPolicy;
use action_workers::{Settings, Worker};
use actix_web::{App, HttpResponse, HttpServer, web};
use event_processor::{Processor, Relay};
use serde_json::json;
use shared::job::Job;
use shared::redis::RedisHandle;
use shared::store;
use shared::trigger::{ActionKind, TriggerDefinition};
use testkit::TestDb;
use testkit::fixtures::feedback;

const JOBS: u32 = 3_000;

/// A receiver on its own thread and runtime, answering 200 at once.
fn start_receiver() -> String {
    let listener = testkit::net::listener();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().expect("address").port());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new().default_service(web::to(|_: web::Bytes| async { HttpResponse::Ok().finish() }))
            })
            .workers(1)
            .listen(listener)
            .expect("listen")
            .run()
            .await
            .expect("receiver");
        });
    });
    url
}

/// A database with `JOBS` webhook jobs pushed to Redis, and the job bodies.
async fn prepare(url: &str) -> (TestDb, RedisHandle, Vec<String>) {
    let db = TestDb::new().await;
    let redis = RedisHandle::new(&testkit::redis_config()).expect("redis");
    let mut conn = db.pool.acquire().await.expect("connection");
    let user = store::users::insert(&mut conn, "bench@example.com", "x").await.expect("user");
    let definition = TriggerDefinition::parse(&json!({
        "name": "bench", "scope": {"event_types": ["NewFeedback"]},
        "actions": [{"type": "webhook", "url": url}]
    }))
    .expect("trigger");
    store::triggers::insert(
        &mut conn,
        &testkit::keyring(),
        user,
        &definition,
        chrono::DateTime::from_timestamp(946_684_800, 0),
    )
    .await
    .expect("insert trigger");
    let events: Vec<_> =
        (0..JOBS).map(|i| feedback(1 + u64::from(i / 500), i % 500, u64::from(i), 1, 0, "b")).collect();
    store::events::insert(&mut conn, &events).await.expect("events");
    drop(conn);
    let mut processor = Processor::new(db.pool.clone(), event_processor::Settings::default());
    processor.refresh_triggers().await.expect("triggers");
    while processor.position().is_none_or(|p| p.id < i64::from(JOBS)) {
        processor.catch_up().await.expect("process");
    }
    Relay::new(db.pool.clone(), redis.clone(), 500).run_once().await.expect("relay");
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM action_outbox").fetch_all(&db.pool).await.expect("payloads");
    (db, redis, bodies)
}

async fn workers(url: &str, concurrency: usize) -> f64 {
    let (db, redis, _) = prepare(url).await;
    let settings = Settings {
        concurrency,
        address_policy: AddressPolicy { allowed: vec!["127.0.0.0/8".parse().expect("cidr")] },
        keyring: testkit::keyring(),
        ..Settings::default()
    };
    let worker = Worker::new(db.pool.clone(), redis, ActionKind::Webhook, settings).expect("worker");
    worker.queue(0).ensure_group().await.expect("group");
    // Timed on the database's clock, from the start to the last recorded delivery, so the
    // completion check (every 100 ms) adds nothing to the figure.
    let started: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&db.pool).await.expect("clock");
    // As a worker process runs them: its consumers share `concurrency` deliveries in flight,
    // and housekeeping brings back what was held (jobs beyond a target's share).
    let mut tasks: Vec<_> =
        (0..action_workers::worker::CONSUMERS).map(|i| tokio::spawn(worker.clone().consume(i))).collect();
    tasks.push(tokio::spawn(worker.clone().maintain()));
    loop {
        // On the partial index of unfinished jobs: a count over the table would scan it in
        // parallel every round, taking the processors the workers are measured on.
        let unfinished: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM action_outbox WHERE status IN ('pending', 'dispatched'))")
                .fetch_one(&db.pool)
                .await
                .expect("unfinished");
        if !unfinished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM action_outbox WHERE status = 'delivered'")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(delivered, i64::from(JOBS), "every job is delivered");
    let finished: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(created_at) FROM deliveries").fetch_one(&db.pool).await.expect("last delivery");
    let elapsed = (finished - started).to_std().expect("positive");
    for task in tasks {
        task.abort();
    }
    f64::from(JOBS) / elapsed.as_secs_f64()
}

async fn bare(url: &str, concurrency: usize, bodies: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let chunks: Vec<Vec<String>> = bodies.chunks(bodies.len().div_ceil(concurrency)).map(<[String]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                for body in chunk {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("post");
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

/// The bare loop that also keeps the delivery log: after every 64 requests, the same
/// `record_many` a worker runs (one transaction: the attempts, the outbox rows finished).
/// The limit for a sender that must remember what it delivered.
async fn bare_logged(url: &str, concurrency: usize, pool: &sqlx::PgPool, bodies: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let jobs: Vec<Job> = bodies.iter().map(|b| serde_json::from_str(b).expect("job")).collect();
    let started = Instant::now();
    let chunks: Vec<Vec<Job>> = jobs.chunks(jobs.len().div_ceil(concurrency)).map(<[Job]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .zip(bodies.chunks(bodies.len().div_ceil(concurrency)).map(<[String]>::to_vec))
        .map(|(jobs, bodies)| {
            let (client, url, pool) = (client.clone(), url.to_owned(), pool.clone());
            tokio::spawn(async move {
                for (jobs, bodies) in jobs.chunks(64).zip(bodies.chunks(64)) {
                    let mut attempts = Vec::with_capacity(jobs.len());
                    for body in bodies {
                        let sent = Instant::now();
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .expect("post");
                        let status = response.status().as_u16();
                        let excerpt = response.text().await.ok();
                        attempts.push(Attempt {
                            verdict: Verdict::Delivered,
                            status: Some(status),
                            error: None,
                            latency: sent.elapsed(),
                            excerpt,
                        });
                    }
                    let recorded: Vec<Recorded<'_>> = jobs
                        .iter()
                        .zip(&attempts)
                        .map(|(job, attempt)| Recorded { job, number: 1, attempt, after: After::Delivered })
                        .collect();
                    record::record_many(&pool, &recorded).await.expect("record");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    shared::telemetry::init_telemetry("error", false);
    action_workers::install_tls_provider();
    let url = start_receiver();
    let (_db, _redis, bodies) = prepare(&url).await;
    for concurrency in [1, 4, 8] {
        let limit = bare(&url, concurrency, &bodies).await;
        let (logged_db, _, logged_bodies) = prepare(&url).await;
        let logged = bare_logged(&url, concurrency, &logged_db.pool, &logged_bodies).await;
        let ours = workers(&url, concurrency).await;
        println!(
            "{concurrency} worker(s): {ours:.0} deliveries/s; bare reqwest loop {limit:.0} requests/s (ratio {:.2}); \
             bare loop keeping the delivery log {logged:.0}/s (ratio {:.2})",
            ours / limit,
            ours / logged
        );
        println!(
            "| workers: signed webhooks delivered and logged, {concurrency} worker(s) | {ours:.0}/s | {limit:.0}/s bare loop; {logged:.0}/s bare loop keeping the log | {:.2}; {:.2} |",
            ours / limit,
            ours / logged
        );
    }
}
