//! Webhook ingestion, end to end: signed Facebook webhooks (one message
//! each) posted over loopback to the real HTTP server, each answered only
//! once its event is durable.
//!
//! `cargo bench --bench webhooks` (both backends; `-- sqlite` or
//! `-- postgres` for one). PostgreSQL from `OMNIBOX_TEST_POSTGRES_URL`.
//! Two runs per backend: closed loop with 64 concurrent senders (throughput)
//! and open loop at a fixed rate (acknowledgement latency percentiles).
//! `OMNIBOX_BENCH_SCALE=0.1` shortens it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::Mac;
use omnibox_api::AppState;
use omnibox_store::testing::{Backend, TestDatabase};

#[path = "support/mod.rs"]
mod support;

use support::APP_SECRET;
const PAGE: &str = "104729381650237";

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("OMNIBOX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

/// A signed one-message webhook body for customer `n`.
fn webhook(n: usize) -> (Vec<u8>, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{now},"message":{{"mid":"m_bench_{n}_{nonce}","text":"Hi! Do you ship to Chiang Mai? \u0e02\u0e2d\u0e1a\u0e04\u0e38\u0e13"}}}}]}}]}}"#,
        psid = 7_000_000_000_000_000u64 + (n % 1000) as u64,
        nonce = uuid::Uuid::new_v4().simple(),
    );
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body.into_bytes(), signature)
}

async fn server(backend: Backend) -> Option<(TestDatabase, String, AppState)> {
    server_with(backend, &[]).await
}

async fn server_with(
    backend: Backend,
    env: &[(&str, &str)],
) -> Option<(TestDatabase, String, AppState)> {
    let (database, app) = support::open_app(backend, env).await?;
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    // Connected directly through its command: the benchmark measures ingestion.
    support::connect_page(&app, &owner, PAGE).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/facebook",
        listener.local_addr().expect("address")
    );
    let serving = app.clone();
    tokio::spawn(async move {
        let _ = omnibox_api::server::serve(serving, listener, std::future::pending()).await;
    });
    Some((database, url, app))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 64 senders, each posting as fast as it is answered.
async fn closed_loop(url: &str, total: usize) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::new();
    let bodies: Vec<_> = (0..total).map(webhook).collect();
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, bodies) = (client.clone(), url.to_owned(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some((body, signature)) = bodies.lock().expect("lock").pop() else {
                        return latencies;
                    };
                    let sent = Instant::now();
                    let status = client
                        .post(&url)
                        .header("x-hub-signature-256", signature)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("post")
                        .status();
                    assert_eq!(status, 200);
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("sender"));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// Posts at a fixed `rate` per second whatever the answers do, so latency
/// is measured without the senders slowing down to match the server.
async fn open_loop(url: &str, rate: usize, total: usize) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::new();
    let bodies: Vec<_> = (0..total).map(webhook).collect();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    // Bounded in flight, so an overloaded server shows as latency, not as
    // the load generator running out of sockets.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(800));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (n, (body, signature)) in bodies.into_iter().enumerate() {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.to_owned());
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let status = client
                .post(&url)
                .header("x-hub-signature-256", signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post")
                .status();
            assert_eq!(status, 200);
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(task.await.expect("sender"));
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (achieved, latencies)
}

fn report(name: &str, rate: f64, latencies: &[Duration]) {
    println!(
        "| {name} | {rate:.0} | {:.1} | {:.1} | {:.1} |",
        percentile(latencies, 0.5).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

/// Waits until the projectors have applied everything in the log, so one
/// run's backlog does not weigh on the next run's figures; returns how many
/// customer messages the log holds (each acknowledged webhook must be one).
async fn settle(app: &AppState, acknowledged: usize) -> usize {
    // On PostgreSQL, `$all` shows an event only once every transaction
    // older than its own has ended (a projector's batch may still be
    // open), so the count is taken again until it reaches what was
    // acknowledged or a minute passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (messages, end) = count_messages(app).await;
        if messages >= acknowledged || std::time::Instant::now() > deadline {
            if let Some(end) = end {
                assert!(
                    app.projections
                        .wait_for(end, Duration::from_secs(300))
                        .await,
                    "projections did not catch up"
                );
            }
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The messages in the log, and the position of its last event.
async fn count_messages(app: &AppState) -> (usize, Option<omnibox_store::Position>) {
    let mut end = None;
    let mut messages = 0;
    loop {
        let page = app.store.read_all(end, 10_000).await.expect("read the log");
        messages += page
            .iter()
            .filter(|e| e.event_type == "MessageReceived")
            .count();
        match page.last() {
            Some(last) => end = Some(last.position),
            None => return (messages, end),
        }
    }
}

async fn run(backend: Backend) {
    let Some((_database, url, app)) = server(backend).await else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    println!("\n### {backend:?}\n");
    println!("| run | messages/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let (rate, latencies) = closed_loop(&url, scaled(40_000)).await;
    report("64 concurrent senders (closed loop)", rate, &latencies);
    let mut posted = latencies.len();
    for target in [1_000, 5_000] {
        assert_eq!(
            settle(&app, posted).await,
            posted,
            "every acknowledged webhook is a stored message"
        );
        let (rate, latencies) = open_loop(&url, target, scaled(target * 5)).await;
        posted += latencies.len();
        report(
            &format!("fixed rate {target}/s (open loop)"),
            rate,
            &latencies,
        );
    }
    assert_eq!(
        settle(&app, posted).await,
        posted,
        "every acknowledged webhook is a stored message"
    );
}

/// What sealing personal data costs ingestion: closed loops on a server
/// with `OMNIBOX_SEAL_PERSONAL_DATA` off and on, alternating, same run.
/// The first message of each of the 1,000 customers makes their key (one
/// more write); the next 20,000 find it cached.
async fn sealing_cost(backend: Backend) {
    println!("\n#### {backend:?}: personal data in plain text vs sealed\n");
    println!("| round | plain: first messages/s | sealed: first messages/s | plain: messages/s | sealed: messages/s |");
    println!("|---|---:|---:|---:|---:|");
    for round in 1..=2 {
        let mut rates = Vec::new();
        for seal in ["false", "true"] {
            let Some((_database, url, app)) =
                server_with(backend, &[("OMNIBOX_SEAL_PERSONAL_DATA", seal)]).await
            else {
                return;
            };
            let (first, new_customers) = closed_loop(&url, 1_000).await;
            let (rate, known_customers) = closed_loop(&url, scaled(20_000)).await;
            assert_eq!(
                settle(&app, new_customers.len() + known_customers.len()).await,
                new_customers.len() + known_customers.len(),
                "every webhook stored"
            );
            rates.push((first, rate));
        }
        println!(
            "| {round} | {:.0} | {:.0} | {:.0} | {:.0} |",
            rates[0].0, rates[1].0, rates[0].1, rates[1].1
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "webhook ingestion benchmark, {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if filter
            .as_deref()
            .is_none_or(|f| format!("{backend:?}").to_lowercase().contains(f))
        {
            run(backend).await;
            sealing_cost(backend).await;
        }
    }
}
