//! Replies end to end: `sendReply` over GraphQL, then the delivery worker
//! calls a local stand-in for Facebook's Send API, until the message shows
//! DELIVERED in the read model.
//!
//! `cargo bench --bench replies` (SQLite; `-- postgres` for PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::Mac;
use omnibox_projections::Change;
use omnibox_store::testing::Backend;
use serde_json::json;
use uuid::Uuid;

#[path = "support/mod.rs"]
mod support;
// The calls it records are not looked at here.
#[allow(dead_code)]
#[path = "support/send_api.rs"]
mod send_api;

use support::APP_SECRET;
const PAGE: &str = "104729381650237";
const REPLIES: usize = 2000;
const CONCURRENCY: usize = 16;

async fn run(backend: Backend) {
    let (graph, _) = send_api::platform().await;
    let Some((_database, app)) =
        support::open_app(backend, &[("OMNIBOX_FACEBOOK_GRAPH_URL", &graph)]).await
    else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    support::connect_page(&app, &owner, PAGE).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let serving = app.clone();
    tokio::spawn(async move {
        let _ = omnibox_api::server::serve(serving, listener, std::future::pending()).await;
    });
    let client = reqwest::Client::new();
    // One customer per sender writes first: their 24-hour windows are open.
    let millis = chrono::Utc::now().timestamp_millis();
    for n in 0..CONCURRENCY {
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{millis},"messaging":[{{"sender":{{"id":"72940183655{n:05}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{millis},"message":{{"mid":"m_bench_in_{n}","text":"hello"}}}}]}}]}}"#
        );
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        client
            .post(format!("{base}/webhooks/facebook"))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("webhook");
    }
    let waiting_since = Instant::now();
    let conversations: Vec<String> = loop {
        assert!(
            waiting_since.elapsed() < Duration::from_secs(30),
            "the inbound messages never reached the inbox"
        );
        let answer: serde_json::Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&owner.token)
            .json(&json!({ "query": "{ conversations(first: 50) { nodes { id } } }" }))
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
        if ids.len() == CONCURRENCY {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Watch the read model's updates for DELIVERED, as a live client would.
    let sent_at: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut updates = app.bus.subscribe();
    let watcher = {
        let (app, sent_at, delivered) = (app.clone(), sent_at.clone(), delivered.clone());
        let org = owner.org_id;
        tokio::spawn(async move {
            // Checks `messages` in the read model; true once all are delivered.
            let check = |messages: Vec<Uuid>| {
                let (app, sent_at, delivered) = (app.clone(), sent_at.clone(), delivered.clone());
                async move {
                    for message in messages {
                        let Some(started) = sent_at.lock().expect("lock").get(&message).copied()
                        else {
                            continue;
                        };
                        let row = omnibox_projections::inbox::message(&app.db, org, message)
                            .await
                            .ok()
                            .flatten();
                        if row.and_then(|r| r.delivery_state).as_deref() == Some("DELIVERED") {
                            sent_at.lock().expect("lock").remove(&message);
                            delivered.lock().expect("lock").push(started.elapsed());
                        }
                    }
                    delivered.lock().expect("lock").len() == REPLIES
                }
            };
            // Short, so that the run's end is seen when it happens (a 2 s sweep
            // made every run end on a multiple of 2 s).
            let mut sweep = tokio::time::interval(Duration::from_millis(50));
            loop {
                let messages = tokio::select! {
                    update = updates.recv() => match update {
                        Ok(update) => match update.change {
                            Change::Message { message, .. } => vec![message],
                            _ => continue,
                        },
                        // Fell behind the bus: look at everything outstanding.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            sent_at.lock().expect("lock").keys().copied().collect()
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    // A message delivered before its sender recorded the id.
                    _ = sweep.tick() => sent_at.lock().expect("lock").keys().copied().collect(),
                };
                if check(messages).await {
                    return;
                }
            }
        })
    };
    let started = Instant::now();
    let mut send_latencies = Vec::with_capacity(REPLIES);
    let per_task = REPLIES / CONCURRENCY;
    let tasks: Vec<_> = conversations
        .into_iter()
        .map(|conversation| {
            let (client, base, token, sent_at) = (client.clone(), base.clone(), owner.token.clone(), sent_at.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for n in 0..per_task {
                    let begun = Instant::now();
                    let answer: serde_json::Value = client
                        .post(format!("{base}/graphql"))
                        .bearer_auth(&token)
                        .json(&json!({
                            "query": "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
                            "variables": { "i": { "conversationId": conversation, "bubbles": [{ "text": format!("Reply {n}") }] } }
                        }))
                        .send()
                        .await
                        .expect("sendReply")
                        .json()
                        .await
                        .expect("json");
                    let id = answer["data"]["sendReply"][0]["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                    let id = id.unwrap_or_else(|| panic!("sendReply failed: {answer}"));
                    sent_at.lock().expect("lock").insert(id, begun);
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    for task in tasks {
        send_latencies.extend(task.await.expect("sender"));
    }
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("all delivered")
        .expect("watcher");
    let elapsed = started.elapsed();
    send_latencies.sort();
    let mut delivered = delivered.lock().expect("lock").clone();
    delivered.sort();
    let at = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!("\n### {backend:?}\n");
    println!("| measure | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    println!(
        "| `sendReply` answered (QUEUED) | {:.1} | {:.1} |",
        at(&send_latencies, 0.5),
        at(&send_latencies, 0.99)
    );
    println!(
        "| `sendReply` to DELIVERED in the read model | {:.1} | {:.1} |",
        at(&delivered, 0.5),
        at(&delivered, 0.99)
    );
    println!(
        "\n{REPLIES} replies from {CONCURRENCY} concurrent clients: {:.0} replies/s delivered",
        REPLIES as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!("reply benchmark, {}", chrono::Utc::now().format("%Y-%m-%d"));
    let backend = match filter.as_deref() {
        Some(f) if f.contains("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    run(backend).await;
}
