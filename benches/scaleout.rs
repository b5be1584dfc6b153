//! Scale-out on PostgreSQL: one, two and three `omnibox serve` processes on
//! one database, the clients spread over them round-robin (as a load
//! balancer would). Three measurements for each number of servers, each on
//! a fresh database:
//!
//! - *Webhook ingestion*: 64 senders post signed webhooks as fast as they
//!   are answered (closed loop).
//! - *Live updates*: 20 organizations, each with one Facebook page and 10
//!   agents whose clients hold an `inboxUpdates` subscription over a real
//!   WebSocket (graphql-transport-ws), 200 subscribers connected to the
//!   servers in turn. Signed webhooks are posted open loop at a fixed rate
//!   (200 messages/s for 20 s by default), to the servers in turn, each
//!   message carrying its sequence number in its text; latency runs from
//!   posting to a subscriber seeing the message as `lastMessagePreview`,
//!   per (message, subscriber), as in `benches/live.rs`. An update must
//!   cross from the server that stored the message to every other server.
//! - *Replies*: 16 clients, each sending `sendReply` to its own
//!   conversation through server `client % N` and watching it with a
//!   `conversationUpdates` subscription on the same server, 2,000 replies
//!   in all; every server's delivery worker calls a stand-in for
//!   Facebook's Send API inside this process. Latency runs from the
//!   mutation to the subscriber seeing the reply DELIVERED. The stand-in
//!   records every send: each reply must reach it exactly once, and any
//!   reply sent twice is listed under the table.
//!
//! `cargo bench --bench scaleout` (PostgreSQL from
//! `OMNIBOX_TEST_POSTGRES_URL`). `OMNIBOX_BENCH_SCALE=0.1` shortens every
//! measurement (fewer webhooks, a shorter live run, fewer replies);
//! `OMNIBOX_BENCH_LIVE_RATE` (messages/s) and `OMNIBOX_BENCH_LIVE_SECONDS`
//! (before scaling) change the live load. The servers inherit the bench's
//! environment (`OMNIBOX_SEAL_PERSONAL_DATA=false` measures without
//! sealing, as for `benches/live.rs`).
//!
//! All processes share this machine's cores with the load generator and
//! PostgreSQL: the figures say what one more process buys on the same
//! hardware, not on more of it.
//!
//! The organizations, their members' tokens and their pages are written by
//! this process's own application on the servers' database, through the
//! commands: a server checks a token against the members read model (only
//! its hash is stored), and opens a page's access token with the shared
//! `OMNIBOX_SECRET_KEY`, so every server accepts what was written here.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::Mac;
use omnibox_api::{AppState, Config};
use omnibox_domain::SystemClock;
use omnibox_store::testing::{Backend, TestDatabase};
use serde_json::{json, Value};
use uuid::Uuid;

// Only the page connection is used here.
#[path = "support/send_api.rs"]
mod send_api;
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
#[path = "support/live.rs"]
mod support_live;

use support_live::{next_payload, open_loop, receipt_subscriber, subscribe, warm_up, Receipts};

use support::APP_SECRET;
const SECRET_KEY: &str = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=";
const PAGE: &str = "104729381650237";
const SENDERS: usize = 64;
/// Live updates: organizations, agents (subscribers) in each, customers
/// writing to each organization's page.
const ORGS: usize = 20;
const AGENTS_PER_ORG: usize = 10;
const CUSTOMERS_PER_PAGE: usize = 100;
/// Replies: clients, each with a conversation of its own.
const CLIENTS: usize = 16;

fn scale() -> f64 {
    env_number("OMNIBOX_BENCH_SCALE", 1.0)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(1)
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile of `sorted`, in milliseconds (NaN when it is empty).
fn quantile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p) as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// `body` with its `X-Hub-Signature-256`.
fn signed(body: String) -> (Vec<u8>, String) {
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body.into_bytes(), signature)
}

/// A signed one-message webhook body for customer `n`.
fn webhook(n: usize) -> (Vec<u8>, String) {
    let now = chrono::Utc::now().timestamp_millis();
    signed(format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{now},"message":{{"mid":"m_scale_{n}_{nonce}","text":"Hi! Do you ship to Chiang Mai?"}}}}]}}]}}"#,
        psid = 7_000_000_000_000_000u64 + (n % 1000) as u64,
        nonce = Uuid::new_v4().simple(),
    ))
}

/// The Facebook page of live organization `org`.
fn live_page(org: usize) -> String {
    format!("{}", 104_729_381_000_000u64 + org as u64)
}

/// A signed one-message webhook for live message `seq`, to organization
/// `seq % ORGS`, its text "bench {seq}".
fn live_webhook(seq: usize) -> (Vec<u8>, String) {
    let org = seq % ORGS;
    let page = live_page(org);
    let psid = 7_000_000_000_000_000u64
        + (org * CUSTOMERS_PER_PAGE + (seq / ORGS) % CUSTOMERS_PER_PAGE) as u64;
    let now = chrono::Utc::now().timestamp_millis();
    signed(format!(
        r#"{{"object":"page","entry":[{{"id":"{page}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{page}"}},"timestamp":{now},"message":{{"mid":"m_live_{seq}_{nonce}","text":"bench {seq}"}}}}]}}]}}"#,
        nonce = Uuid::new_v4().simple(),
    ))
}

/// Posts a signed webhook to `base`; the server must take it (200).
async fn post_webhook(client: &reqwest::Client, base: &str, (body, signature): (Vec<u8>, String)) {
    let status = client
        .post(format!("{base}/webhooks/facebook"))
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("webhook")
        .status();
    assert_eq!(status, 200, "webhook to {base}");
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

/// Starts `n` servers on `database`, each answering `/readyz` before it
/// returns. `graph` replaces the Graph API's URL on every server.
async fn start(n: usize, database: &str, graph: Option<&str>) -> (Servers, Vec<String>) {
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_omnibox"));
        command
            .arg("serve")
            .env("OMNIBOX_DATABASE_URL", database)
            .env("OMNIBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env("OMNIBOX_SECRET_KEY", SECRET_KEY)
            .env("OMNIBOX_FACEBOOK_APP_SECRET", APP_SECRET)
            .env("OMNIBOX_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(graph) = graph {
            command.env("OMNIBOX_FACEBOOK_GRAPH_URL", graph);
        }
        children.push(command.spawn().expect("start omnibox serve"));
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

/// This process's own application on a fresh database, without background
/// work: it writes what the servers start from and reads what they wrote.
/// `None` when PostgreSQL is not reachable.
async fn open_database() -> Option<(TestDatabase, AppState)> {
    let database = TestDatabase::create(Backend::Postgres).await?;
    let vars: HashMap<&str, String> = [
        ("OMNIBOX_DATABASE_URL", database.url.clone()),
        ("OMNIBOX_SECRET_KEY", SECRET_KEY.to_owned()),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("config");
    let app = AppState::open(config, Arc::new(SystemClock))
        .await
        .expect("open");
    Some((database, app))
}

// Webhook ingestion.

/// `SENDERS` senders posting `total` webhooks as fast as they are
/// answered, sender `i` to server `i % urls.len()`.
async fn closed_loop(urls: &[String], total: usize) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::new();
    let bodies: Vec<_> = (0..total).map(webhook).collect();
    let bodies = Arc::new(Mutex::new(bodies));
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

async fn ingestion(n: usize) -> Option<(f64, Vec<Duration>)> {
    let (database, app) = open_database().await?;
    // The organization and its page, through the commands (no Graph API).
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    support::connect_page(&app, &owner, PAGE).await;
    let (servers, urls) = start(n, &database.url, None).await;
    let (rate, latencies) = closed_loop(&urls, scaled(30_000)).await;
    // Acknowledged means committed, but `$all` shows a commit only once
    // every older transaction has finished (another server's projection
    // batch may still be open): wait for it, with a bound.
    let waiting = Instant::now();
    let mut stored = stored_messages(&app).await;
    while stored < latencies.len() && waiting.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = stored_messages(&app).await;
    }
    assert_eq!(
        stored,
        latencies.len(),
        "every acknowledged webhook is stored"
    );
    drop(servers);
    Some((rate, latencies))
}

// Live updates.

struct LiveRun {
    posted: usize,
    posting: Duration,
    expected: usize,
    latencies: Vec<Duration>,
    resyncs: u64,
}

/// An organization with its page connected; answers the owner's token,
/// which its agents' clients share.
async fn live_organization(app: &AppState, org: usize) -> String {
    let owner = omnibox_app::services::bootstrap::bootstrap(
        app,
        &format!("Shop {org}"),
        &format!("owner{org}@example.com"),
    )
    .await
    .expect("bootstrap");
    support::connect_page(app, &owner, &live_page(org)).await;
    owner.token
}

async fn live(n: usize, rate: f64, seconds: f64) -> Option<LiveRun> {
    let (database, app) = open_database().await?;
    let mut tokens = Vec::with_capacity(ORGS);
    for org in 0..ORGS {
        tokens.push(live_organization(&app, org).await);
    }
    // Profile lookups fail at once instead of leaving the machine.
    let (servers, urls) = start(n, &database.url, Some("http://127.0.0.1:9")).await;

    let total = ((rate * seconds) as usize).max(1);
    let warmup = ORGS;
    let receipts = Arc::new(Receipts::new(warmup + total));
    // Subscriber `k` to server `k % n`: each organization's agents are
    // spread over every server.
    let subscribers: Vec<_> = tokens
        .iter()
        .flat_map(|token| std::iter::repeat_n(token, AGENTS_PER_ORG))
        .enumerate()
        .map(|(k, token)| {
            tokio::spawn(receipt_subscriber(
                urls[k % n].clone(),
                token.clone(),
                receipts.clone(),
            ))
        })
        .collect();
    let client = reqwest::Client::new();
    // Message `seq` to server `seq % n`.
    let post = |seq: usize| {
        let (client, base, receipts) = (client.clone(), urls[seq % n].clone(), receipts.clone());
        async move {
            let webhook = live_webhook(seq);
            receipts.posting(seq);
            post_webhook(&client, &base, webhook).await;
        }
    };
    // Warm-up: one message per organization until every subscriber hears.
    let (post, client, urls) = (&post, &client, &urls);
    warm_up(
        &receipts,
        (ORGS * AGENTS_PER_ORG) as u64,
        |round| async move {
            if round == 0 {
                futures_util::future::join_all((0..ORGS).map(post)).await;
            } else {
                // Subscriptions are not acknowledged: nudge every page again.
                futures_util::future::join_all((0..ORGS).map(|org| async move {
                    post_webhook(client, &urls[org % n], live_webhook(org)).await
                }))
                .await;
            }
        },
    )
    .await;

    // The measured run: open loop at `rate`.
    let posting = open_loop(rate, warmup..warmup + total, post).await;
    let expected = total * AGENTS_PER_ORG;
    let latencies = receipts.collect(expected).await;
    for subscriber in subscribers {
        subscriber.abort();
    }
    drop(servers);
    drop(database);
    Some(LiveRun {
        posted: total,
        posting,
        expected,
        latencies,
        resyncs: receipts.resyncs.load(Ordering::Relaxed),
    })
}

// Replies.

/// The first `first` conversations of the owner's organization, as server
/// `base` lists them once there are that many.
async fn conversations(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    first: usize,
) -> Vec<String> {
    let waiting = Instant::now();
    loop {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the inbound messages never reached the inbox"
        );
        let answer: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": format!("{{ conversations(first: {first}) {{ nodes {{ id }} }} }}") }))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        let ids: Vec<String> = answer["data"]["conversations"]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| n["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() == first {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a one-bubble reply through `base`: the message's id, or the
/// server's answer when it refused.
async fn send_reply(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    conversation: &str,
    text: &str,
) -> Result<Uuid, Value> {
    let answer: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({
            "query": "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
            "variables": { "i": { "conversationId": conversation, "bubbles": [{ "text": text }] } }
        }))
        .send()
        .await
        .expect("sendReply")
        .json()
        .await
        .expect("json");
    answer["data"]["sendReply"][0]["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(answer)
}

/// What the clients' subscriptions saw.
struct Deliveries {
    epoch: Instant,
    /// When each message was first seen DELIVERED, after `epoch`.
    delivered: Mutex<HashMap<Uuid, Duration>>,
    /// Per conversation: its subscription has sent something.
    live: Vec<AtomicBool>,
    resyncs: AtomicU64,
}

async fn delivery_subscriber(
    base: String,
    token: String,
    index: usize,
    conversation: String,
    deliveries: Arc<Deliveries>,
) {
    let mut socket = subscribe(
        &base,
        &token,
        "subscription($c: UUID!) { conversationUpdates(conversationId: $c) { id deliveryState } }",
        json!({ "c": conversation }),
    )
    .await;
    while let Some(Ok(message)) = socket.next().await {
        let received = deliveries.epoch.elapsed();
        let data = match next_payload(&message) {
            Some(Ok(data)) => data,
            Some(Err(_)) => {
                deliveries.resyncs.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => continue,
        };
        deliveries.live[index].store(true, Ordering::Relaxed);
        let update = &data["conversationUpdates"];
        let id = update["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        if let (Some(id), Some("DELIVERED")) = (id, update["deliveryState"].as_str()) {
            deliveries
                .delivered
                .lock()
                .expect("lock")
                .entry(id)
                .or_insert(received);
        }
    }
}

/// One measured reply: its id (or the refusal), its text, when it was
/// sent and when `sendReply` answered, after the epoch.
struct Sent {
    id: Result<Uuid, Value>,
    text: String,
    begun: Duration,
    answered: Duration,
}

struct ReplyRun {
    replies: usize,
    /// Replies per second, from the first mutation to the last DELIVERED.
    rate: f64,
    answered: Vec<Duration>,
    delivered: Vec<Duration>,
    resyncs: u64,
    /// Calls the stand-in Send API received, for how many replies.
    sends: usize,
    expected_sends: usize,
    duplicates_by_id: usize,
    duplicates_by_text: usize,
    missing: usize,
    /// What went wrong, one line each: refusals, duplicates, replies not
    /// seen delivered.
    notes: Vec<String>,
}

async fn replies(n: usize) -> Option<ReplyRun> {
    let (graph, sends) = send_api::platform().await;
    let (database, app) = open_database().await?;
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    support::connect_page(&app, &owner, PAGE).await;
    let (servers, urls) = start(n, &database.url, Some(&graph)).await;
    let client = reqwest::Client::new();
    // One customer per client writes first, through the servers in turn:
    // their 24-hour windows are open.
    let millis = chrono::Utc::now().timestamp_millis();
    for c in 0..CLIENTS {
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{millis},"messaging":[{{"sender":{{"id":"72940183655{c:05}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{millis},"message":{{"mid":"m_bench_in_{c}","text":"hello"}}}}]}}]}}"#
        );
        post_webhook(&client, &urls[c % n], signed(body)).await;
    }
    let conversations = conversations(&client, &urls[0], &owner.token, CLIENTS).await;

    // Client `c` writes to conversation `c` and watches it, both through
    // server `c % n`; whichever server's delivery worker claims a reply sends it.
    let deliveries = Arc::new(Deliveries {
        epoch: Instant::now(),
        delivered: Mutex::default(),
        live: (0..CLIENTS).map(|_| AtomicBool::new(false)).collect(),
        resyncs: AtomicU64::new(0),
    });
    let subscribers: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(c, conversation)| {
            tokio::spawn(delivery_subscriber(
                urls[c % n].clone(),
                owner.token.clone(),
                c,
                conversation.clone(),
                deliveries.clone(),
            ))
        })
        .collect();
    // Warm-up: a reply to each conversation whose subscription has not yet
    // shown anything (subscriptions are not acknowledged).
    let mut expected_ids = Vec::new();
    let mut notes = Vec::new();
    let waiting = Instant::now();
    for round in 0.. {
        let quiet: Vec<usize> = (0..CLIENTS)
            .filter(|&c| !deliveries.live[c].load(Ordering::Relaxed))
            .collect();
        if quiet.is_empty() {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "{} of {CLIENTS} reply subscriptions never showed anything",
            quiet.len()
        );
        for c in quiet {
            let text = format!("warm-up {c}-{round}");
            match send_reply(
                &client,
                &urls[c % n],
                &owner.token,
                &conversations[c],
                &text,
            )
            .await
            {
                Ok(id) => expected_ids.push((id, text)),
                Err(answer) => notes.push(format!("warm-up `sendReply` refused: {answer}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The measured run: each client sends its replies one after another.
    let per_client = (scaled(2000) / CLIENTS).max(1);
    let started = deliveries.epoch.elapsed();
    let tasks: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(c, conversation)| {
            let (client, base, token, conversation, deliveries) = (
                client.clone(),
                urls[c % n].clone(),
                owner.token.clone(),
                conversation.clone(),
                deliveries.clone(),
            );
            tokio::spawn(async move {
                let mut sent = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let text = format!("reply {c}-{i}");
                    let begun = deliveries.epoch.elapsed();
                    let id = send_reply(&client, &base, &token, &conversation, &text).await;
                    let answered = deliveries.epoch.elapsed();
                    sent.push(Sent {
                        id,
                        text,
                        begun,
                        answered,
                    });
                }
                sent
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(per_client * CLIENTS);
    for task in tasks {
        sent.extend(task.await.expect("client"));
    }
    let queued: Vec<(Uuid, Duration)> = sent
        .iter()
        .filter_map(|s| s.id.as_ref().ok().map(|id| (*id, s.begun)))
        .collect();
    // Wait until every queued reply is seen DELIVERED, or nothing moves for 10 s.
    let mut last = (0, Instant::now());
    loop {
        let seen = {
            let delivered = deliveries.delivered.lock().expect("lock");
            queued
                .iter()
                .filter(|(id, _)| delivered.contains_key(id))
                .count()
        };
        if seen == queued.len() || last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        if seen != last.0 {
            last = (seen, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second send of the same reply would come from another server's
    // worker racing on it: give one a moment to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let delivered_at = deliveries.delivered.lock().expect("lock").clone();
    let mut delivered: Vec<Duration> = queued
        .iter()
        .filter_map(|(id, begun)| delivered_at.get(id).map(|at| at.saturating_sub(*begun)))
        .collect();
    delivered.sort();
    let last_delivered = queued
        .iter()
        .filter_map(|(id, _)| delivered_at.get(id))
        .max()
        .copied()
        .unwrap_or(started);
    let rate = delivered.len() as f64 / last_delivered.saturating_sub(started).as_secs_f64();
    let mut answered: Vec<Duration> = sent.iter().map(|s| s.answered - s.begun).collect();
    answered.sort();

    for refused in sent.iter().filter_map(|s| s.id.as_ref().err()).take(5) {
        notes.push(format!("`sendReply` refused: {refused}"));
    }
    let refusals = sent.iter().filter(|s| s.id.is_err()).count();
    if refusals > 5 {
        notes.push(format!("… {refusals} refusals in all"));
    }
    for (id, _) in queued
        .iter()
        .filter(|(id, _)| !delivered_at.contains_key(id))
    {
        let row = omnibox_projections::inbox::message(&app.db, owner.org_id, *id)
            .await
            .expect("read model");
        let state = row.as_ref().and_then(|r| r.delivery_state.as_deref());
        let reason = row.as_ref().and_then(|r| r.failure_reason.as_deref());
        notes.push(format!(
            "reply {id} never seen DELIVERED live; the read model shows {state:?} {reason:?}"
        ));
    }

    // Every reply the servers took must have reached the platform once.
    expected_ids.extend(
        sent.iter()
            .filter_map(|s| s.id.as_ref().ok().map(|id| (*id, s.text.clone()))),
    );
    let sends = std::mem::take(&mut *sends.lock().expect("lock"));
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    for send in &sends {
        *by_id.entry(send.metadata.as_str()).or_default() += 1;
        *by_text.entry(send.text.as_str()).or_default() += 1;
    }
    let expected_metadata: HashMap<String, &str> = expected_ids
        .iter()
        .map(|(id, text)| (format!("omnibox:msg:{id}"), text.as_str()))
        .collect();
    let missing = expected_metadata
        .keys()
        .filter(|m| !by_id.contains_key(m.as_str()))
        .count();
    for (metadata, count) in by_id.iter().filter(|(_, count)| **count > 1) {
        let text = expected_metadata.get(*metadata).copied().unwrap_or("?");
        notes.push(format!("sent {count} times: {metadata} ({text:?})"));
    }
    for (text, count) in by_text.iter().filter(|(_, count)| **count > 1) {
        notes.push(format!("text sent {count} times: {text:?}"));
    }
    for unknown in by_id
        .keys()
        .filter(|m| !expected_metadata.contains_key(**m))
    {
        notes.push(format!("sent, but no client queued it: {unknown:?}"));
    }
    for subscriber in subscribers {
        subscriber.abort();
    }
    drop(servers);
    drop(database);
    Some(ReplyRun {
        replies: sent.len(),
        rate,
        answered,
        delivered,
        resyncs: deliveries.resyncs.load(Ordering::Relaxed),
        sends: sends.len(),
        expected_sends: expected_metadata.len(),
        duplicates_by_id: by_id.values().map(|c| c - 1).sum(),
        duplicates_by_text: by_text.values().map(|c| c - 1).sum(),
        missing,
        notes,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!(
        "scale-out benchmark (PostgreSQL), {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    println!("\n### Webhook ingestion ({SENDERS} senders, closed loop)");
    println!("\n| servers | messages/s | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|");
    for n in 1..=3 {
        let Some((rate, latencies)) = ingestion(n).await else {
            println!("PostgreSQL not reachable: skipped");
            return;
        };
        println!(
            "| {n} | {rate:.0} | {:.1} | {:.1} |",
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99)
        );
    }

    let rate = env_number("OMNIBOX_BENCH_LIVE_RATE", 200.0);
    let seconds = env_number("OMNIBOX_BENCH_LIVE_SECONDS", 20.0) * scale();
    println!(
        "\n### Live updates ({ORGS} organizations × {AGENTS_PER_ORG} subscribers, \
         {rate:.0} messages/s for {seconds:.1} s, webhook → subscriber)"
    );
    println!(
        "\n| servers | messages/s posted | receipts (message × subscriber) | RESYNC errors | p50 ms | p99 ms | max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in 1..=3 {
        let Some(run) = live(n, rate, seconds).await else {
            println!("PostgreSQL not reachable: skipped");
            return;
        };
        println!(
            "| {n} | {:.0} | {} of {} | {} | {:.1} | {:.1} | {:.1} |",
            run.posted as f64 / run.posting.as_secs_f64(),
            run.latencies.len(),
            run.expected,
            run.resyncs,
            quantile(&run.latencies, 0.5),
            quantile(&run.latencies, 0.99),
            quantile(&run.latencies, 1.0)
        );
    }

    println!("\n### Replies ({CLIENTS} clients, `sendReply` → DELIVERED seen live)");
    println!(
        "\n| servers | replies | replies/s delivered | answered p50 ms | answered p99 ms | DELIVERED p50 ms | DELIVERED p99 ms | DELIVERED max ms | seen DELIVERED | RESYNC errors | platform calls | duplicates (by id / text) | missing |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for n in 1..=3 {
        let Some(run) = replies(n).await else {
            println!("PostgreSQL not reachable: skipped");
            return;
        };
        println!(
            "| {n} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} for {} replies | {} / {} | {} |",
            run.replies,
            run.rate,
            quantile(&run.answered, 0.5),
            quantile(&run.answered, 0.99),
            quantile(&run.delivered, 0.5),
            quantile(&run.delivered, 0.99),
            quantile(&run.delivered, 1.0),
            run.delivered.len(),
            run.resyncs,
            run.sends,
            run.expected_sends,
            run.duplicates_by_id,
            run.duplicates_by_text,
            run.missing
        );
        notes.extend(
            run.notes
                .into_iter()
                .map(|note| format!("{n} servers: {note}")),
        );
    }
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
}
