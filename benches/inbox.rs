//! The read side: rebuild speed, and `conversations(first: 50)` latency over
//! GraphQL with a large inbox.
//!
//! `cargo bench --bench inbox` (SQLite; `-- postgres` for PostgreSQL).
//! `OMNIBOX_BENCH_EVENTS` (default 100,000) inbound messages are appended
//! and the inbox projection rebuilt from them; then the inbox table is
//! filled to `OMNIBOX_BENCH_CONVERSATIONS` (default 1,000,000) rows with
//! generated rows and 500 first pages are queried over HTTP.

use std::sync::Arc;
use std::time::Instant;

use omnibox_api::{AppState, Config};
use omnibox_domain::conversation::{contact_id, conversation_id, ConversationEvent, Thread};
use omnibox_domain::ids::{ChannelId, OrgId};
use omnibox_domain::{ChannelKind, SystemClock};
use omnibox_store::testing::{Backend, TestDatabase};
use omnibox_store::{Database, ExpectedRevision, Metadata, NewEvent, StreamName};
use uuid::Uuid;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn open(backend: Backend) -> Option<(TestDatabase, AppState)> {
    let database = TestDatabase::create(backend).await?;
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
    let app = AppState::open(config, Arc::new(SystemClock))
        .await
        .expect("open");
    Some((database, app))
}

/// Appends `events` inbound messages over `events / 10` conversations.
async fn history(app: &AppState, org: OrgId, events: usize) {
    history_sealed(app, org, events, false).await
}

/// `events` inbound messages; with `seal`, their texts sealed under each
/// customer's key, as the webhook path writes them.
async fn history_sealed(app: &AppState, org: OrgId, events: usize, seal: bool) {
    let channel = ChannelId::generate();
    let conversations = (events / 10).max(1);
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let mut tasks = Vec::new();
    for c in 0..conversations {
        let store = app.store.clone();
        let keys = app.personal.clone().sealing(seal);
        tasks.push(tokio::spawn(async move {
            let user = format!("U{c:032}");
            let key = keys
                .for_contact(org.0, contact_id(channel, &user).0)
                .await
                .expect("key");
            let thread = Thread::User(user.clone());
            let conversation = conversation_id(channel, &thread);
            let batch: Vec<NewEvent> = (0..10)
                .map(|n| {
                    let event = ConversationEvent::MessageReceived {
                        conversation_id: conversation,
                        org_id: org,
                        channel_id: channel,
                        channel_kind: ChannelKind::Line,
                        contact_id: contact_id(channel, &user),
                        thread: thread.clone(),
                        author: Some(user.clone()),
                        platform_message_id: format!("{c}-{n}"),
                        sent_at: start + chrono::Duration::milliseconds((c * 10 + n) as i64),
                        text: Some(key.seal("สวัสดีครับ ขอสอบถามเรื่องการจัดส่งครับ")),
                        attachments: vec![],
                        postback: None,
                        quick_reply_payload: None,
                        reply_to: None,
                        reply_token: None,
                        standby: false,
                    };
                    NewEvent {
                        id: Uuid::now_v7(),
                        event_type: event.event_type().into(),
                        data: serde_json::to_string(&event).expect("json"),
                        metadata: Metadata::default(),
                    }
                })
                .collect();
            let stream = StreamName::new("conversation", conversation.0).expect("stream");
            store
                .append(&stream, ExpectedRevision::Any, batch)
                .await
                .expect("append");
        }));
        if tasks.len() >= 256 {
            for task in tasks.drain(..) {
                task.await.expect("append task");
            }
        }
    }
    for task in tasks {
        task.await.expect("append task");
    }
}

/// A line of `/proc/self/status` in KiB (Linux), such as `VmHWM:`, the
/// process's peak resident memory.
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

async fn count(db: &Database, table: &str) -> usize {
    let sql = format!("SELECT count(*) FROM {table}");
    let n: i64 = match db {
        Database::Sqlite { read_pool, .. } => sqlx::query_scalar(&sql).fetch_one(read_pool).await,
        Database::Postgres { pool } => sqlx::query_scalar(&sql).fetch_one(pool).await,
    }
    .expect("count");
    n as usize
}

/// Adds generated inbox rows up to `total`, straight into the read model.
async fn fill_inbox(db: &Database, org: OrgId, total: usize) {
    let channel = Uuid::now_v7();
    match db {
        Database::Sqlite { read_pool, .. } => {
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
                 INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
                     thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, status)
                 SELECT randomblob(16), $2, $3, 'LINE', randomblob(16), 'USER', 'U' || i, 1700000000000000 + i * 1000,
                     'hello', 1700000000000000 + i * 1000, 1, 'OPEN' FROM n",
            )
            .bind(total as i64)
            .bind(org.0)
            .bind(channel)
            .execute(read_pool)
            .await
            .expect("fill");
        }
        Database::Postgres { pool } => {
            sqlx::query(
                "INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
                     thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, status)
                 SELECT gen_random_uuid(), $2, $3, 'LINE', gen_random_uuid(), 'USER', 'U' || i, 1700000000000000 + i * 1000,
                     'hello', 1700000000000000 + i * 1000, 1, 'OPEN' FROM generate_series(1, $1) AS i",
            )
            .bind(total as i64)
            .bind(org.0)
            .bind(channel)
            .execute(pool)
            .await
            .expect("fill");
            sqlx::query("ANALYZE rm_conversations")
                .execute(pool)
                .await
                .expect("analyze");
        }
    }
}

async fn run(backend: Backend) {
    let Some((_database, app)) = open(backend).await else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    let events = env_number("OMNIBOX_BENCH_EVENTS", 100_000);
    let conversations = env_number("OMNIBOX_BENCH_CONVERSATIONS", 1_000_000);
    let owner = omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
        .await
        .expect("bootstrap");
    history(&app, owner.org_id, events).await;
    let inbox = app.projections.runner("inbox").expect("inbox projector");
    // Linux: writing 5 resets the peak to the present resident size.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let resident_before = memory_kib("VmRSS:");
    let started = Instant::now();
    let applied = inbox.rebuild().await.expect("rebuild");
    let rebuild = started.elapsed();
    let peak = memory_kib("VmHWM:");
    // The figure counts only if every row was written.
    let conversations_made = (events / 10).max(1);
    for (table, expected) in [
        ("rm_messages", conversations_made * 10),
        ("rm_conversations", conversations_made),
        ("rm_contacts", conversations_made),
    ] {
        assert_eq!(
            count(&app.db, table).await,
            expected,
            "{table} after the rebuild"
        );
    }
    println!("\n### {backend:?}\n");
    println!("| measure | figure |");
    println!("|---|---:|");
    println!(
        "| rebuild of the inbox projection ({applied} events) | {:.0} events/s ({:.1} s) |",
        applied as f64 / rebuild.as_secs_f64(),
        rebuild.as_secs_f64()
    );
    // The whole process's peak since the reset: an upper bound on the rebuild's own.
    if let (Some(before), Some(peak)) = (resident_before, peak) {
        let grew = peak.saturating_sub(before);
        println!(
            "| memory the rebuild added at its peak (upper bound) | {:.1} MiB, {:.0} bytes per event |",
            grew as f64 / 1024.0,
            grew as f64 * 1024.0 / applied.max(1) as f64
        );
    }

    fill_inbox(
        &app.db,
        owner.org_id,
        conversations.saturating_sub(events / 10),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/graphql", listener.local_addr().expect("address"));
    let serving = app.clone();
    tokio::spawn(async move {
        let _ = omnibox_api::server::serve(serving, listener, std::future::pending()).await;
    });
    let client = reqwest::Client::new();
    let query = serde_json::json!({ "query": "{ conversations(first: 50) { nodes { id channelKind lastMessageAt lastMessagePreview unreadCount contact { platformUserId } channel { id } assignee { email } } pageInfo { endCursor hasNextPage } } }" });
    let mut latencies = Vec::with_capacity(500);
    for n in 0..520 {
        let sent = Instant::now();
        let answer: serde_json::Value = client
            .post(&url)
            .bearer_auth(&owner.token)
            .json(&query)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let elapsed = sent.elapsed();
        assert_eq!(
            answer["data"]["conversations"]["nodes"]
                .as_array()
                .map(Vec::len),
            Some(50),
            "{answer}"
        );
        if n >= 20 {
            latencies.push(elapsed);
        }
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "| `conversations(first: 50)` over HTTP, {conversations} conversations | p50 {:.2} ms, p99 {:.2} ms |",
        at(0.5),
        at(0.99)
    );
}

/// What sealed personal fields cost the inbox rebuild: the same history
/// with texts in plain text and sealed, alternating, same run.
async fn sealing_cost(backend: Backend) {
    let events = env_number("OMNIBOX_BENCH_EVENTS", 100_000);
    println!(
        "\n#### {backend:?}: inbox rebuild, texts in plain text vs sealed ({events} events)\n"
    );
    println!("| round | plain text events/s | sealed events/s |");
    println!("|---|---:|---:|");
    for round in 1..=2 {
        let mut rates = Vec::new();
        for seal in [false, true] {
            let Some((_database, app)) = open(backend).await else {
                return;
            };
            let owner =
                omnibox_app::services::bootstrap::bootstrap(&app, "Bench", "owner@example.com")
                    .await
                    .expect("bootstrap");
            history_sealed(&app, owner.org_id, events, seal).await;
            let inbox = app.projections.runner("inbox").expect("inbox projector");
            let started = Instant::now();
            let applied = inbox.rebuild().await.expect("rebuild");
            rates.push(applied as f64 / started.elapsed().as_secs_f64());
        }
        println!("| {round} | {:.0} | {:.0} |", rates[0], rates[1]);
    }
}

/// The server's allocator (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `RUST_LOG=omnibox_projections=info` shows each rebuild's fold and write times.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "read-side benchmark, {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let backends: &[Backend] = match filter.as_deref() {
        Some(f) if f.contains("postgres") => &[Backend::Postgres],
        _ => &[Backend::Sqlite],
    };
    for backend in backends {
        if std::env::var("OMNIBOX_BENCH_ONLY_SEALING").is_err() {
            run(*backend).await;
        }
        sealing_cost(*backend).await;
    }
}
