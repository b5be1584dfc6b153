//! Scale-out on PostgreSQL: webhook ingestion through one, two and three
//! `omnibox serve` processes on one database, the senders spread over them
//! round-robin (as a load balancer would).
//!
//! `cargo bench --bench scaleout` (PostgreSQL from
//! `OMNIBOX_TEST_POSTGRES_URL`). `OMNIBOX_BENCH_SCALE=0.1` shortens it.
//! All processes share this machine's cores with the load generator and
//! PostgreSQL: the figures say what one more process buys on the same
//! hardware, not on more of it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::Mac;
use omnibox_api::{AppState, Config};
use omnibox_domain::SystemClock;
use omnibox_store::testing::{Backend, TestDatabase};

// Only the page connection is used here.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use support::APP_SECRET;
const PAGE: &str = "104729381650237";
const SENDERS: usize = 64;

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
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{now},"message":{{"mid":"m_scale_{n}_{nonce}","text":"Hi! Do you ship to Chiang Mai?"}}}}]}}]}}"#,
        psid = 7_000_000_000_000_000u64 + (n % 1000) as u64,
        nonce = uuid::Uuid::new_v4().simple(),
    );
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body.into_bytes(), signature)
}

/// `omnibox serve` processes, killed when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `n` servers on `database`, each answering `/readyz` before it returns.
async fn start(n: usize, database: &str) -> (Servers, Vec<String>) {
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_omnibox"))
            .arg("serve")
            .env("OMNIBOX_DATABASE_URL", database)
            .env("OMNIBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "OMNIBOX_SECRET_KEY",
                "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=",
            )
            .env("OMNIBOX_FACEBOOK_APP_SECRET", APP_SECRET)
            .env("OMNIBOX_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start omnibox serve");
        children.push(child);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let servers = Servers(children);
    let client = reqwest::Client::new();
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "{url} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (servers, urls)
}

/// `SENDERS` senders posting `total` webhooks as fast as they are
/// answered, sender `i` to server `i % urls.len()`.
async fn closed_loop(urls: &[String], total: usize) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::new();
    let bodies: Vec<_> = (0..total).map(webhook).collect();
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let tasks: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let url = format!("{}/webhooks/facebook", urls[sender % urls.len()]);
            let (client, bodies) = (client.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let next = bodies.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((body, signature)) = next else {
                        return latencies;
                    };
                    let sent = Instant::now();
                    let status = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("X-Hub-Signature-256", signature)
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

async fn stored_messages(app: &AppState) -> usize {
    let mut after = None;
    let mut messages = 0;
    loop {
        let page = app.store.read_all(after, 10_000).await.expect("read");
        messages += page
            .iter()
            .filter(|e| e.event_type == "MessageReceived")
            .count();
        match page.last() {
            Some(last) => after = Some(last.position),
            None => return messages,
        }
    }
}

async fn run(n: usize) -> Option<(f64, Vec<Duration>)> {
    let database = TestDatabase::create(Backend::Postgres).await?;
    let vars: std::collections::HashMap<&str, String> = [
        ("OMNIBOX_DATABASE_URL", database.url.clone()),
        (
            "OMNIBOX_SECRET_KEY",
            "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("config");
    // The organization and its page, through the commands (no Graph API).
    let app = AppState::open(config, Arc::new(SystemClock))
        .await
        .expect("open");
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    support::connect_page(&app, &owner, PAGE).await;
    let (servers, urls) = start(n, &database.url).await;
    let (rate, latencies) = closed_loop(&urls, scaled(30_000)).await;
    assert_eq!(
        stored_messages(&app).await,
        latencies.len(),
        "every acknowledged webhook is stored"
    );
    drop(servers);
    Some((rate, latencies))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!(
        "scale-out benchmark (PostgreSQL, webhook ingestion), {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    println!("\n| servers | messages/s | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|");
    for n in 1..=3 {
        let Some((rate, latencies)) = run(n).await else {
            println!("PostgreSQL not reachable: skipped");
            return;
        };
        let at =
            |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        println!("| {n} | {rate:.0} | {:.1} | {:.1} |", at(0.5), at(0.99));
    }
}
