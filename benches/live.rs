//! Webhook to subscriber: how long after a customer's message is posted
//! does every live inbox client of its organization see it?
//!
//! 100 organizations, each with one Facebook page and 10 agents whose
//! clients hold an `inboxUpdates` subscription over a real WebSocket
//! (graphql-transport-ws): 1,000 subscribers. Signed webhooks are posted
//! over loopback at a fixed rate (open loop, 1,000 messages/s by default),
//! spread over the organizations; each message carries its sequence number
//! in its text, and each subscriber notes when the conversation first shows
//! it as `lastMessagePreview`. Latency runs from the moment the webhook is
//! posted to that receipt, per (message, subscriber).
//!
//! `cargo bench --bench live` (SQLite; `-- postgres` for PostgreSQL).
//! `OMNIBOX_BENCH_RATE` (messages/s) and `OMNIBOX_BENCH_SECONDS` change the load.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hmac::Mac;
use omnibox_api::AppState;
use omnibox_store::testing::Backend;

#[path = "support/mod.rs"]
mod support;
#[path = "support/live.rs"]
mod support_live;

use support::APP_SECRET;
use support_live::{open_loop, receipt_subscriber, warm_up, Receipts};
const ORGS: usize = 100;
const AGENTS_PER_ORG: usize = 10;
/// Customers writing to each page.
const CUSTOMERS_PER_PAGE: usize = 100;

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn page(org: usize) -> String {
    format!("{}", 104_729_381_000_000u64 + org as u64)
}

/// A signed one-message webhook for message `seq`, to organization `seq % ORGS`.
fn webhook(seq: usize) -> (String, String) {
    let org = seq % ORGS;
    let page = page(org);
    let psid = 7_000_000_000_000_000u64
        + (org * CUSTOMERS_PER_PAGE + (seq / ORGS) % CUSTOMERS_PER_PAGE) as u64;
    let now = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{page}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{page}"}},"timestamp":{now},"message":{{"mid":"m_live_{seq}_{nonce}","text":"bench {seq}"}}}}]}}]}}"#,
        nonce = uuid::Uuid::new_v4().simple(),
    );
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

/// An organization with its page connected; answers the owner's token.
async fn organization(app: &AppState, org: usize) -> String {
    let owner = omnibox_app::services::bootstrap::bootstrap(
        app,
        &format!("Shop {org}"),
        &format!("owner{org}@example.com"),
    )
    .await
    .expect("bootstrap");
    support::connect_page(app, &owner, &page(org)).await;
    owner.token
}

async fn run(backend: Backend, rate: f64, seconds: f64) {
    // Profile lookups fail at once instead of leaving the machine.
    // `OMNIBOX_SEAL_PERSONAL_DATA=false` in the bench's environment measures
    // the same path without sealing.
    let seal = std::env::var("OMNIBOX_SEAL_PERSONAL_DATA").unwrap_or_else(|_| "true".into());
    let Some((database, app)) = support::open_app(
        backend,
        &[
            ("OMNIBOX_FACEBOOK_GRAPH_URL", "http://127.0.0.1:9"),
            ("OMNIBOX_SEAL_PERSONAL_DATA", seal.as_str()),
        ],
    )
    .await
    else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    let mut tokens = Vec::with_capacity(ORGS);
    for org in 0..ORGS {
        tokens.push(organization(&app, org).await);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let serving = app.clone();
    tokio::spawn(async move {
        let _ = omnibox_api::server::serve(serving, listener, std::future::pending()).await;
    });

    let total = (rate * seconds) as usize;
    let warmup = ORGS;
    let receipts = Arc::new(Receipts::new(warmup + total));
    for token in &tokens {
        for _ in 0..AGENTS_PER_ORG {
            tokio::spawn(receipt_subscriber(
                format!("http://{address}"),
                token.clone(),
                receipts.clone(),
            ));
        }
    }
    let client = reqwest::Client::new();
    let url = format!("http://{address}/webhooks/facebook");
    // How long each measured webhook took to be acknowledged (stored).
    let acks = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let post = |seq: usize| {
        let (client, url, receipts, acks) =
            (client.clone(), url.clone(), receipts.clone(), acks.clone());
        async move {
            let (body, signature) = webhook(seq);
            receipts.posting(seq);
            let posted = std::time::Instant::now();
            let status = client
                .post(&url)
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .expect("webhook")
                .status();
            assert_eq!(status, 200);
            if seq >= warmup {
                acks.lock().expect("acks").push(posted.elapsed());
            }
        }
    };
    // Warm-up: one message per organization until every subscriber hears.
    let subscribers = (ORGS * AGENTS_PER_ORG) as u64;
    let (post, client, url) = (&post, &client, &url);
    warm_up(&receipts, subscribers, |round| async move {
        if round * ORGS < warmup {
            futures_util::future::join_all((0..ORGS).map(|org| post(round * ORGS + org))).await;
        } else {
            // Subscriptions are not acknowledged: nudge every page again.
            futures_util::future::join_all((0..ORGS).map(|org| async move {
                let (body, signature) = webhook(org);
                let _ = client
                    .post(url)
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await;
            }))
            .await;
        }
    })
    .await;

    // The measured run: open loop at `rate`.
    let posting = open_loop(rate, warmup..warmup + total, post).await;
    let expected = total * AGENTS_PER_ORG;
    let latencies = receipts.collect(expected).await;
    let at = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!("\n### {backend:?}\n");
    println!(
        "{total} messages posted in {:.1} s ({:.0} messages/s) to {ORGS} organizations, \
         {subscribers} subscribers ({AGENTS_PER_ORG} per organization)\n",
        posting.as_secs_f64(),
        total as f64 / posting.as_secs_f64()
    );
    println!("| measure | figure |");
    println!("|---|---:|");
    println!(
        "| receipts (message × subscriber) | {} of {expected} |",
        latencies.len()
    );
    println!(
        "| RESYNC errors | {} |",
        receipts.resyncs.load(Ordering::Relaxed)
    );
    println!("| webhook → subscriber p50 | {:.1} ms |", at(0.5));
    println!("| webhook → subscriber p99 | {:.1} ms |", at(0.99));
    println!("| webhook → subscriber max | {:.1} ms |", at(1.0));
    let mut acks = std::mem::take(&mut *acks.lock().expect("acks"));
    acks.sort();
    let ack = |p: f64| {
        acks.get(((acks.len().max(1) - 1) as f64 * p) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!("| webhook acknowledged p50 | {:.1} ms |", ack(0.5));
    println!("| webhook acknowledged p99 | {:.1} ms |", ack(0.99));
    drop(database);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = if args.iter().any(|a| a == "postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let rate = env_number("OMNIBOX_BENCH_RATE", 1000.0);
    let seconds = env_number("OMNIBOX_BENCH_SECONDS", 10.0);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(backend, rate, seconds));
}
