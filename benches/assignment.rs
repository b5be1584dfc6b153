//! Automatic assignment, end to end: new customers' webhooks posted at
//! 1,000 conversations/s to a page in ROUND_ROBIN with 10 available agents;
//! the server's assignment reactor assigns each. Reports how many
//! assignments per second it made and the time from posting a webhook to
//! its conversation's assignment being committed to the log; then a
//! backlog of waiting conversations released at once (its rate).
//!
//! `cargo bench --bench assignment` (SQLite; `-- postgres` for PostgreSQL).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::Mac;
use omnibox_app::commands::{execute, Actor};
use omnibox_domain::channel::{self, AssignmentMode, Channel, ChannelCommand, Requester};
use omnibox_domain::conversation::{conversation_id, Thread};
use omnibox_domain::ids::{ChannelId, MemberId};
use omnibox_domain::org::{self, Email, NewMember, OrgCommand, Organization, Role, TokenHash};
use omnibox_store::testing::Backend;

#[path = "support/mod.rs"]
mod support;

use support::APP_SECRET;
const PAGE: &str = "104729381650237";
const AGENTS: usize = 10;
const RATE: usize = 1_000;
const SECONDS: usize = 5;
const BACKLOG: usize = 5_000;

fn webhook(psid: u64) -> (Vec<u8>, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":{now},"message":{{"mid":"m_assign_{psid}","text":"hello"}}}}]}}]}}"#
    );
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    (
        body.into_bytes(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

async fn set_mode(
    app: &omnibox_api::AppState,
    owner: &omnibox_app::services::bootstrap::Bootstrapped,
    channel: ChannelId,
    mode: AssignmentMode,
) {
    let command = ChannelCommand::SetAssignmentMode {
        by: Requester {
            member_id: owner.user_id,
            org_id: owner.org_id,
            role: Role::Owner,
        },
        mode,
        max_open_per_agent: None,
    };
    let now = chrono::Utc::now();
    execute::<Channel, _>(&*app.store, channel.0, &Actor::system("bench"), |c| {
        channel::decide(c, command.clone(), now)
    })
    .await
    .expect("mode");
}

/// Waits until `count` automatic assignments are in the log; their
/// conversation ids with the commit time of each.
async fn assignments(
    app: &omnibox_api::AppState,
    count: usize,
) -> HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut found = HashMap::new();
        let mut after = None;
        loop {
            let page = app.store.read_all(after, 10_000).await.expect("read");
            for event in &page {
                if event.event_type == "ConversationAssigned" && event.data.contains("\"reason\"") {
                    found.insert(event.stream.id(), event.recorded_at);
                }
            }
            match page.last() {
                Some(last) => after = Some(last.position),
                None => break,
            }
        }
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} assigned",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(backend: Backend) {
    let Some((_database, app)) = support::open_app(backend, &[]).await else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    let channel = support::connect_page(&app, &owner, PAGE).await;
    for n in 0..AGENTS {
        let member = NewMember {
            member_id: MemberId::generate(),
            email: Email::parse(&format!("agent{n}@example.com")).expect("email"),
            role: Role::Agent,
            token_sha256: TokenHash(format!("{n:064}")),
        };
        let now = chrono::Utc::now();
        execute::<Organization, _>(&*app.store, owner.org_id.0, &Actor::system("bench"), |o| {
            org::decide(
                o,
                OrgCommand::AddMember {
                    by: owner.user_id,
                    member: member.clone(),
                },
                now,
            )
        })
        .await
        .expect("agent");
    }
    set_mode(&app, &owner, channel, AssignmentMode::RoundRobin).await;
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
    let client = reqwest::Client::new();

    // Open loop: 1,000 new conversations a second.
    let total = RATE * SECONDS;
    let interval = Duration::from_secs_f64(1.0 / RATE as f64);
    let started = Instant::now();
    let sent_at = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        let psid = 8_000_000_000 + n as u64;
        let (body, signature) = webhook(psid);
        let (client, url, sent_at) = (client.clone(), url.clone(), sent_at.clone());
        tasks.push(tokio::spawn(async move {
            let at = chrono::Utc::now();
            let status = client
                .post(&url)
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .expect("post")
                .status();
            assert_eq!(status, 200);
            let id = conversation_id(channel, &Thread::User(psid.to_string())).0;
            sent_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, at);
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    let assigned = assignments(&app, total).await;
    let sent_at = sent_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut latencies: Vec<f64> = assigned
        .iter()
        .filter_map(|(id, at)| {
            sent_at
                .get(id)
                .map(|sent| (*at - *sent).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let first = assigned.values().min().copied().expect("some");
    let last = assigned.values().max().copied().expect("some");
    println!("\n### {backend:?}\n");
    println!("| measure | figure |\n|---|---:|");
    println!("| new conversations posted | {total} at {RATE}/s |");
    println!(
        "| automatic assignments/s (while posting) | {:.0} |",
        total as f64 / (last - first).num_milliseconds().max(1) as f64 * 1000.0
    );
    println!("| webhook → assigned p50 | {:.1} ms |", pick(0.5));
    println!("| webhook → assigned p99 | {:.1} ms |", pick(0.99));
    println!("| webhook → assigned max | {:.1} ms |", pick(1.0));

    // A backlog: conversations wait while the mode is OFF, then are released.
    set_mode(&app, &owner, channel, AssignmentMode::Off).await;
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(200) {
        let posts = chunk.iter().map(|n| {
            let (body, signature) = webhook(9_000_000_000 + *n as u64);
            client
                .post(&url)
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
        });
        for answer in futures_util::future::join_all(posts).await {
            assert_eq!(answer.expect("post").status(), 200);
        }
    }
    let released = Instant::now();
    set_mode(&app, &owner, channel, AssignmentMode::RoundRobin).await;
    assignments(&app, total + BACKLOG).await;
    let took = released.elapsed();
    println!(
        "| backlog of {BACKLOG} released at once | {:.0} assignments/s ({:.2} s) |",
        BACKLOG as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backend = match std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .as_deref()
    {
        Some(f) if "postgres".contains(f) => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    println!(
        "automatic assignment benchmark, {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    run(backend).await;
}
