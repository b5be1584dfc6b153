//! The embedded backend: an SQLite file in WAL mode.
//!
//! One writer thread owns the only writing connection. Callers hand it their
//! appends through a channel; it takes everything that is waiting (up to a
//! bound), commits it in one transaction, and only then answers each caller.
//! Many callers share one fsync (group commit), and nobody hears "stored"
//! before their events are on disk. A failed batch is retried one append at
//! a time, so one caller's bad append never fails another's.
//!
//! Reads go to a small pool of connections on blocking threads: WAL readers
//! see the last commit and never wait for the writer. Reads of `$all` near
//! its end, which is where the projectors follow it, are served from the
//! events the writer has just committed, kept in memory ([`crate::tail`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::event::{
    AppendOutcome, Direction, ExpectedRevision, Metadata, NewEvent, Position, RecordedEvent,
    StreamName,
};
use crate::tail::{Tail, TAIL_CAPACITY};
use crate::{check_new_events, EventStore, StoreError};

/// How long a statement waits for SQLite's write lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The page size of the SQLite log files Omnibox creates (files created
/// earlier keep theirs).
///
/// Every commit writes each page it dirtied to the WAL in full, and a group
/// commit of the webhook shape (one event in each of ~100 streams) dirties
/// one leaf of the (stream, revision) index per stream: halving the page
/// from SQLite's default 4 KiB took that shape from ~34k to ~45k events/s
/// on the benchmark machine. 1 KiB pages wrote no faster but made `$all`
/// reads a third slower (deeper trees, more pages per row).
pub(crate) const LOG_PAGE_SIZE: u32 = 2048;

/// At most this many appends share one transaction.
const MAX_BATCH_APPENDS: usize = 1024;
/// ... and at most about this many events.
const MAX_BATCH_EVENTS: usize = 8192;
/// Appends waiting for the writer beyond this make callers wait (backpressure).
const QUEUE_DEPTH: usize = 16 * 1024;

struct AppendRequest {
    stream: StreamName,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
    /// Each event's metadata as JSON, serialized by the caller so the one
    /// writer thread does as little as possible.
    metadata: Vec<String>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The SQLite event store. Cheap to share behind an `Arc`.
pub struct SqliteEventStore {
    requests: mpsc::Sender<AppendRequest>,
    readers: Arc<ReadPool>,
    changes: Arc<watch::Sender<u64>>,
    tail: Arc<Mutex<Tail>>,
    /// Held while the store lives; the checkpointer stops once it is gone.
    _alive: Arc<()>,
}

/// How often the checkpointer copies the log's WAL back into the file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl SqliteEventStore {
    /// Opens the log in the SQLite file at `path` (migrated already) and
    /// starts its writer thread, which stops when the store is dropped.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = open_connection(path)?;
        let readers = Arc::new(ReadPool::new(path.to_path_buf()));
        readers.with(|_| Ok(()))?;
        let (requests, queue) = mpsc::channel(QUEUE_DEPTH);
        let changes = Arc::new(watch::Sender::new(0));
        let notify = changes.clone();
        let tail = Arc::new(Mutex::new(Tail::new(TAIL_CAPACITY)));
        let committed = tail.clone();
        std::thread::Builder::new()
            .name("omnibox-sqlite-writer".into())
            .spawn(move || run_writer(writer, queue, &notify, &committed))?;
        let alive = Arc::new(());
        let checkpointer = open_connection(path)?;
        let store_alive = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("omnibox-sqlite-checkpointer".into())
            .spawn(move || run_checkpointer(&checkpointer, &store_alive))?;
        Ok(Self {
            requests,
            readers,
            changes,
            tail,
            _alive: alive,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    // Only takes effect on a file this connection creates.
    conn.pragma_update(None, "page_size", LOG_PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // No commit copies the WAL back into the file: a checkpoint on the
    // writer's path held every waiting append for tens of milliseconds. The
    // checkpointer thread does it beside the writer instead.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// Copies committed WAL frames into the database file, a little at a time,
/// without ever blocking the writer (PASSIVE), until the store is dropped.
fn run_checkpointer(conn: &Connection, alive: &std::sync::Weak<()>) {
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        if let Err(error) = outcome {
            tracing::warn!(%error, "WAL checkpoint failed; trying again");
        }
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_new_events(&events)?;
        let (reply, answer) = oneshot::channel();
        let metadata = events
            .iter()
            .map(|e| serde_json::to_string(&e.metadata).unwrap_or_else(|_| "{}".into()))
            .collect();
        let request = AppendRequest {
            stream: stream.clone(),
            expected,
            events,
            metadata,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        self.read(move |conn| {
            let sql = match direction {
                Direction::Forwards => {
                    "SELECT e.position, e.event_id, e.revision, e.event_type, e.data, e.metadata, e.recorded_at
                     FROM streams s JOIN events e ON e.stream_id = s.stream_id
                     WHERE s.name = ?1 AND e.revision >= ?2 ORDER BY e.revision LIMIT ?3"
                }
                Direction::Backwards => {
                    "SELECT e.position, e.event_id, e.revision, e.event_type, e.data, e.metadata, e.recorded_at
                     FROM streams s JOIN events e ON e.stream_id = s.stream_id
                     WHERE s.name = ?1 AND e.revision <= ?2 ORDER BY e.revision DESC LIMIT ?3"
                }
            };
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query(params![stream.as_str(), clamp(from), clamp_limit(limit)])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(decode(row, 0, stream.clone())?);
            }
            Ok(events)
        })
        .await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // From memory only when there is something to read there: the file
        // may hold newer events, from another process.
        if let Some(events) = self.read_all_recent(after, limit) {
            if !events.is_empty() {
                return Ok(events);
            }
        }
        let after = clamp(after.map_or(0, |p| p.prepare));
        self.read(move |conn| {
            // Names are looked up once per stream per page rather than
            // joined and parsed on every row.
            let mut statement = conn.prepare_cached(
                "SELECT position, event_id, revision, event_type, data, metadata, recorded_at, stream_id
                 FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let mut name_of = conn.prepare_cached("SELECT name FROM streams WHERE stream_id = ?1")?;
            let mut names: HashMap<i64, StreamName> = HashMap::new();
            let mut rows = statement.query(params![after, clamp_limit(limit)])?;
            let mut events = Vec::with_capacity(limit.min(4096));
            while let Some(row) = rows.next()? {
                let stream_id: i64 = row.get(7)?;
                let stream = match names.get(&stream_id) {
                    Some(stream) => stream.clone(),
                    None => {
                        let name: String = name_of.query_row(params![stream_id], |r| r.get(0))?;
                        let stream = StreamName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        names.insert(stream_id, stream.clone());
                        stream
                    }
                };
                events.push(decode(row, 0, stream)?);
            }
            Ok(events)
        })
        .await
    }

    fn read_all_recent(&self, after: Option<Position>, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(after.map_or(0, |p| p.prepare), limit)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(
            |conn| Ok(conn.query_row("SELECT count(*) FROM streams LIMIT 1", [], |_| Ok(()))?),
        )
        .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn decode(
    row: &rusqlite::Row<'_>,
    at: usize,
    stream: StreamName,
) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(at)?;
    let id: Vec<u8> = row.get(at + 1)?;
    let revision: i64 = row.get(at + 2)?;
    let metadata = row
        .get_ref(at + 5)?
        .as_str()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let recorded_at: i64 = row.get(at + 6)?;
    let position =
        u64::try_from(position).map_err(|_| StoreError::Corrupt("negative position".into()))?;
    Ok(RecordedEvent {
        id: Uuid::from_slice(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        stream,
        revision: u64::try_from(revision)
            .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
        position: Position::new(position, position),
        event_type: row.get(at + 3)?,
        data: row.get(at + 4)?,
        metadata: serde_json::from_str::<Metadata>(metadata)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        recorded_at: DateTime::<Utc>::from_timestamp_micros(recorded_at)
            .ok_or_else(|| StoreError::Corrupt("recorded_at out of range".into()))?,
    })
}

/// Read connections, opened on demand and reused.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true)?;
                conn
            }
        };
        let result = f(&conn);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }
}

/// The writer thread's state: its connection, and the head of every stream
/// it has written or looked up since the log last changed behind its back.
struct Writer {
    conn: Connection,
    /// Stream name → (stream_id, head revision), true as of this
    /// connection's last commit. Only the writer thread writes while the
    /// server runs, but another process (an `omnibox` command) may:
    /// `PRAGMA data_version` changes when it does, and the cache is dropped.
    heads: HashMap<String, (i64, i64)>,
    data_version: Option<i64>,
}

/// Beyond this many cached stream heads the cache starts over.
const MAX_CACHED_HEADS: usize = 100_000;

/// The writer thread's loop: take what is waiting, commit it, answer.
fn run_writer(
    conn: Connection,
    mut queue: mpsc::Receiver<AppendRequest>,
    changes: &watch::Sender<u64>,
    tail: &Mutex<Tail>,
) {
    let mut writer = Writer {
        conn,
        heads: HashMap::new(),
        data_version: None,
    };
    while let Some(first) = queue.blocking_recv() {
        let mut events = first.events.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            match queue.try_recv() {
                Ok(request) => {
                    events += request.events.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let recorded_at = Utc::now().timestamp_micros();
        let mut committed = Vec::with_capacity(events);
        match writer.commit(&batch, recorded_at, false) {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    answer(request, outcome, recorded_at, &mut committed);
                }
            }
            Err(error) => {
                tracing::warn!(%error, appends = batch.len(), "group commit failed; retrying its appends one by one");
                for request in batch {
                    let outcome =
                        match writer.commit(std::slice::from_ref(&request), recorded_at, true) {
                            Ok(mut outcomes) => {
                                outcomes.pop().unwrap_or(Err(StoreError::WriterGone))
                            }
                            Err(error) => Err(StoreError::Sqlite(error)),
                        };
                    answer(request, outcome, recorded_at, &mut committed);
                }
            }
        }
        if !committed.is_empty() {
            tail.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(committed);
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Answers one append and, if it wrote events, adds them to `committed` as
/// the log now holds them.
fn answer(
    request: AppendRequest,
    outcome: Result<AppendOutcome, StoreError>,
    recorded_at: i64,
    committed: &mut Vec<RecordedEvent>,
) {
    let AppendRequest {
        stream,
        events,
        reply,
        ..
    } = request;
    let written = match &outcome {
        Ok(outcome) if !outcome.duplicate => Some(*outcome),
        _ => None,
    };
    let _ = reply.send(outcome);
    let (Some(last), Some(recorded_at)) =
        (written, DateTime::<Utc>::from_timestamp_micros(recorded_at))
    else {
        return;
    };
    // One append's events were inserted one after another: consecutive
    // positions and revisions, ending at the outcome's.
    let first = (events.len() as u64).saturating_sub(1);
    committed.extend(events.into_iter().enumerate().map(|(n, event)| {
        let back = first - n as u64;
        RecordedEvent {
            id: event.id,
            stream: stream.clone(),
            revision: last.revision - back,
            position: Position::new(last.position.commit - back, last.position.prepare - back),
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
            recorded_at,
        }
    }));
}

impl Writer {
    /// Commits `batch` in one transaction. The outer error is SQLite
    /// failing (nothing committed, and the cached heads are dropped, since
    /// they may hold the rolled-back revisions); the inner results are each
    /// append's own verdict. `thorough` looks up every event id and reads
    /// heads from the file (the one-by-one retry path).
    fn commit(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: i64,
        thorough: bool,
    ) -> rusqlite::Result<Vec<Result<AppendOutcome, StoreError>>> {
        let result = self.write(batch, recorded_at, thorough);
        if result.is_err() {
            self.heads.clear();
        }
        result
    }

    fn write(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: i64,
        thorough: bool,
    ) -> rusqlite::Result<Vec<Result<AppendOutcome, StoreError>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Holding the write lock, nobody else can commit until we do.
        let version: i64 = tx.query_row("PRAGMA data_version", [], |row| row.get(0))?;
        if thorough || self.data_version != Some(version) || self.heads.len() > MAX_CACHED_HEADS {
            self.heads.clear();
            self.data_version = Some(version);
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            outcomes.push(append_one(
                &tx,
                &mut self.heads,
                request,
                recorded_at,
                thorough,
            )?);
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

/// Appends one request inside the writer's transaction.
///
/// The fast path costs one statement per event, its insert: the stream's
/// head comes from the writer's cache, and the first event is inserted
/// with `ON CONFLICT (event_id) DO NOTHING`, so a retried append (which
/// repeats its first event) is recognised by inserting nothing. If a later
/// id alone is stored, its plain insert hits the unique index, the batch
/// fails, and the one-by-one retry takes the thorough path.
fn append_one(
    tx: &rusqlite::Transaction<'_>,
    heads: &mut HashMap<String, (i64, i64)>,
    request: &AppendRequest,
    recorded_at: i64,
    thorough: bool,
) -> rusqlite::Result<Result<AppendOutcome, StoreError>> {
    if thorough {
        if let Some(verdict) = stored_verdict(tx, request)? {
            return Ok(verdict);
        }
    }
    let name = request.stream.as_str();
    let head = match heads.get(name) {
        Some(head) => Some(*head),
        None => tx
            .prepare_cached(
                "SELECT stream_id, coalesce((SELECT max(revision) FROM events e WHERE e.stream_id = s.stream_id), -1)
                 FROM streams s WHERE name = ?1",
            )?
            .query_row(params![name], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?,
    };
    let actual = head.and_then(|(_, revision)| u64::try_from(revision).ok());
    if !request.expected.matches(actual) {
        // A retried append finds its stream moved on by its own first try:
        // that is a duplicate, not a conflict.
        if let Some(verdict) = stored_verdict(tx, request)? {
            return Ok(verdict);
        }
        return Ok(Err(StoreError::WrongExpectedRevision {
            stream: request.stream.clone(),
            expected: request.expected,
            actual,
        }));
    }
    let (stream_id, mut revision, created) = match head {
        Some((stream_id, revision)) => (stream_id, revision, false),
        None => {
            tx.prepare_cached("INSERT INTO streams (name) VALUES (?1)")?
                .execute(params![name])?;
            (tx.last_insert_rowid(), -1, true)
        }
    };
    let mut insert_first = tx.prepare_cached(
        "INSERT INTO events (event_id, stream_id, revision, event_type, data, metadata, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (event_id) DO NOTHING",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (event_id, stream_id, revision, event_type, data, metadata, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (n, (event, metadata)) in request.events.iter().zip(&request.metadata).enumerate() {
        revision += 1;
        let values = params![
            event.id.as_bytes(),
            stream_id,
            revision,
            event.event_type,
            event.data,
            metadata,
            recorded_at
        ];
        if n > 0 {
            insert.execute(values)?;
        } else if insert_first.execute(values)? == 0 {
            // The first id is stored: a retry of an earlier append.
            if created {
                tx.prepare_cached("DELETE FROM streams WHERE stream_id = ?1")?
                    .execute(params![stream_id])?;
            }
            return Ok(stored_verdict(tx, request)?.unwrap_or_else(|| {
                Err(StoreError::Corrupt(
                    "an event id conflicted but is not stored".into(),
                ))
            }));
        }
    }
    let position = tx.last_insert_rowid() as u64;
    match heads.get_mut(name) {
        Some(head) => *head = (stream_id, revision),
        None => {
            heads.insert(name.to_owned(), (stream_id, revision));
        }
    }
    Ok(Ok(AppendOutcome {
        revision: revision as u64,
        position: Position::new(position, position),
        duplicate: false,
    }))
}

/// What an append whose ids are (partly) stored already gets: `None` when
/// none is stored, a duplicate outcome pointing at the stored events when
/// all are, and an error when only some are.
fn stored_verdict(
    tx: &rusqlite::Transaction<'_>,
    request: &AppendRequest,
) -> rusqlite::Result<Option<Result<AppendOutcome, StoreError>>> {
    let mut find =
        tx.prepare_cached("SELECT position, revision FROM events WHERE event_id = ?1")?;
    let mut stored: Option<(i64, i64)> = None;
    let mut stored_count = 0;
    for event in &request.events {
        if let Some(found) = find
            .query_row(params![event.id.as_bytes()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?
        {
            stored_count += 1;
            stored = stored.max(Some(found));
        }
    }
    Ok(stored.map(|(position, revision)| {
        if stored_count < request.events.len() {
            return Err(StoreError::PartiallyStored {
                stream: request.stream.clone(),
            });
        }
        let position = position as u64;
        Ok(AppendOutcome {
            revision: revision as u64,
            position: Position::new(position, position),
            duplicate: true,
        })
    }))
}
