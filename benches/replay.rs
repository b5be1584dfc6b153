//! `omnibox replay --all` over a log of 1,000,000 events: its rate and the
//! process's peak resident memory (it streams page by page, so memory
//! should not grow with the log).
//!
//! `cargo bench --bench replay` (SQLite; `-- postgres` for PostgreSQL).
//! `OMNIBOX_BENCH_EVENTS` changes the count. Needs `/usr/bin/time`.

use std::time::Instant;

use omnibox_store::testing::{Backend, TestDatabase};
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};

const STREAMS: usize = 10_000;
const PER_APPEND: usize = 100;

fn event(n: usize) -> NewEvent {
    let data = format!(
        r#"{{"type":"MessageReceived","conversation_id":"{c}","org_id":"{o}","channel_id":"{o}","channel_kind":"FACEBOOK","contact_id":"{c}","thread":{{"User":"7294018365{n:06}"}},"author":null,"platform_message_id":"m_{n}","sent_at":"2026-11-23T00:00:00Z","text":"Hi! Do you ship to Chiang Mai? message number {n}","attachments":[]}}"#,
        c = uuid::Uuid::from_u128((n % STREAMS) as u128),
        o = uuid::Uuid::from_u128(1),
    );
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: "MessageReceived".into(),
        data,
        metadata: Metadata {
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: Some("platform:facebook".into()),
        },
    }
}

/// The server's allocator (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let total: usize = std::env::var("OMNIBOX_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let Some(database) = TestDatabase::create(backend).await else {
        println!("{backend:?}: skipped (not reachable)");
        return;
    };
    let db = database.connect().await;
    let store = db.event_store().await.expect("store");
    let filling = Instant::now();
    let mut appends = Vec::new();
    for start in (0..total).step_by(PER_APPEND) {
        let stream = StreamName::new(
            "conversation",
            uuid::Uuid::from_u128(((start / PER_APPEND) % STREAMS) as u128),
        )
        .expect("stream");
        let events = (start..(start + PER_APPEND).min(total))
            .map(event)
            .collect();
        let store = store.clone();
        appends.push(tokio::spawn(async move {
            store
                .append(&stream, ExpectedRevision::Any, events)
                .await
                .expect("append")
        }));
        if appends.len() == 64 {
            for append in appends.drain(..) {
                append.await.expect("task");
            }
        }
    }
    for append in appends {
        append.await.expect("task");
    }
    println!(
        "replay benchmark, {}: {backend:?}, {total} events written in {:.1} s",
        chrono::Utc::now().format("%Y-%m-%d"),
        filling.elapsed().as_secs_f64()
    );
    drop(store);
    let started = Instant::now();
    let output = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_omnibox"))
        .args(["replay", "--all"])
        .env("OMNIBOX_DATABASE_URL", &database.url)
        .env("OMNIBOX_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("replay");
    let output = output.wait_with_output().expect("replay output");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = output.stdout.iter().filter(|b| **b == b'\n').count();
    assert_eq!(lines, total, "every event once");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let peak_kb: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    println!("| measure | figure |\n|---|---:|");
    println!("| events replayed | {lines} |");
    println!(
        "| rate | {:.0} events/s ({:.1} s) |",
        lines as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "| peak resident memory | {:.1} MB |",
        peak_kb as f64 / 1024.0
    );
    println!(
        "| NDJSON written | {:.0} MB |",
        output.stdout.len() as f64 / 1e6
    );
}
