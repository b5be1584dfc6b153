//! Event store throughput: appends (1 caller, 64 callers, batches of 100,
//! 100 streams at once) and `$all` reads, on SQLite and PostgreSQL, each
//! beside the same run's raw fsync rate so the ratio holds on a noisy machine.
//!
//! `cargo bench -p omnibox-store --bench append` (PostgreSQL from
//! `OMNIBOX_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres;
//! skipped if unreachable). `OMNIBOX_BENCH_SCALE=0.1` shortens every case.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use omnibox_store::testing::{Backend, TestDatabase};
use omnibox_store::{EventStore, ExpectedRevision, Metadata, NewEvent, Position, StreamName};
use uuid::Uuid;

fn event() -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "MessageReceived".into(),
        // About 200 bytes, like an inbound text message.
        data: format!(
            r#"{{"conversation_id":"{}","platform_message_id":"m_{}","text":"Hi! Do you ship to Chiang Mai? ขอบคุณค่ะ","sent_at":"2026-11-23T02:10:05.412Z"}}"#,
            Uuid::now_v7(),
            Uuid::new_v4().simple()
        ),
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: Some("platform:facebook".into()),
        },
    }
}

fn stream() -> StreamName {
    StreamName::new("conversation", Uuid::now_v7()).expect("stream name")
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("OMNIBOX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

/// 4 KiB write + fdatasync, in a loop, in `dir`: the disk's commit ceiling.
fn fsync_baseline(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-baseline");
    let mut file = std::fs::File::create(&path).expect("baseline file");
    let block = [7u8; 4096];
    let n = scaled(2000);
    let started = Instant::now();
    for _ in 0..n {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    rate
}

async fn single_sequential(store: &Arc<dyn EventStore>) -> f64 {
    let n = scaled(3000);
    // Events are made before the clock starts: the store is measured, not the generator.
    let appends: Vec<_> = (0..n).map(|_| (stream(), vec![event()])).collect();
    let started = Instant::now();
    for (s, events) in appends {
        store
            .append(&s, ExpectedRevision::NoStream, events)
            .await
            .expect("append");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `callers` tasks, each appending single events to its own new streams.
async fn single_concurrent(store: &Arc<dyn EventStore>, callers: usize, per_caller: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    store
                        .append(&stream(), ExpectedRevision::NoStream, vec![event()])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    (callers * per_caller) as f64 / started.elapsed().as_secs_f64()
}

async fn batches_one_stream(store: &Arc<dyn EventStore>) -> f64 {
    let batches = scaled(1000);
    let s = stream();
    let prepared: Vec<Vec<NewEvent>> = (0..batches)
        .map(|_| (0..100).map(|_| event()).collect())
        .collect();
    let started = Instant::now();
    for batch in prepared {
        store
            .append(&s, ExpectedRevision::Any, batch)
            .await
            .expect("append");
    }
    (batches * 100) as f64 / started.elapsed().as_secs_f64()
}

/// 100 callers appending one event each to 100 long-lived streams, so each
/// group commit is about 100 events over 100 streams (the webhook shape).
async fn hundred_streams(store: &Arc<dyn EventStore>) -> f64 {
    let rounds = scaled(600);
    let streams: Vec<StreamName> = (0..100).map(|_| stream()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    store
                        .append(&s, ExpectedRevision::Any, vec![event()])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    (rounds * 100) as f64 / started.elapsed().as_secs_f64()
}

async fn read_all(store: &Arc<dyn EventStore>) -> (usize, f64) {
    let started = Instant::now();
    let mut after: Option<Position> = None;
    let mut count = 0;
    loop {
        let page = store.read_all(after, 1000).await.expect("read");
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        count += page.len();
    }
    (count, count as f64 / started.elapsed().as_secs_f64())
}

async fn run(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        println!("\n{backend:?}: skipped (not reachable)");
        return;
    };
    let db = database.connect().await;
    let store = db.event_store().await.expect("store");
    let baseline = fsync_baseline(&std::env::temp_dir());
    println!("\n### {backend:?}\n");
    println!("| case | events/s | × fsync baseline ({baseline:.0}/s) |");
    println!("|---|---:|---:|");
    let row = |name: &str, rate: f64| println!("| {name} | {rate:.0} | {:.2} |", rate / baseline);
    let one = single_sequential(&store).await;
    row("single event, 1 caller", one);
    let many = single_concurrent(&store, 64, scaled(600)).await;
    row("single event, 64 concurrent callers", many);
    println!("| (64 callers ÷ 1 caller) | {:.1}× | |", many / one);
    row(
        "batches of 100, one stream",
        batches_one_stream(&store).await,
    );
    row(
        "100 callers × 100 streams (webhook shape)",
        hundred_streams(&store).await,
    );
    let (count, rate) = read_all(&store).await;
    row(
        &format!("read `$all`, pages of 1000 ({count} events)"),
        rate,
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one backend.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "event store benchmark, {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if filter
            .as_deref()
            .is_none_or(|f| format!("{backend:?}").to_lowercase().contains(f))
        {
            run(backend).await;
        }
    }
}
