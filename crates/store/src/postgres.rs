//! The PostgreSQL backend, for several server processes sharing one log.
//!
//! Appends: two writer tasks each take what is waiting in the process's
//! queue and write it with two statements whatever the batch size: one
//! that reads stored ids and stream heads, one atomic `INSERT … UNNEST`.
//! A batch that collides with a concurrent writer (a unique violation) is
//! retried one append at a time, each re-deciding from fresh reads.
//!
//! `$all`: a plain sequence is not a safe cursor, because a transaction can
//! draw a lower sequence number and commit after a reader has already gone
//! past it. Events are therefore ordered by (writing transaction id,
//! sequence), and a reader only returns events of transactions older than
//! the oldest one still running (`pg_snapshot_xmin`). Everything below that
//! horizon is final, so a reader can never later find an event behind its
//! cursor. Commits are announced with `pg_notify` after the transaction, not
//! inside it, so notifying never serializes commits.
//!
//! One follower task per process reads the log's head after each commit
//! (this process's, or another's it heard of) and keeps the newest events
//! in memory; the process's projectors and reactors read them from there
//! ([`EventStore::read_all_recent`]) instead of each querying after every
//! commit, and go to the database only when they are further behind.
//! Before it waits for the next commit, it asks whether committed events
//! are still held behind the horizon: a transaction that drew its id
//! earlier and appends nothing (a read-model batch, a rebuild) wakes no one
//! when it ends, so the follower looks again every few milliseconds until
//! they show instead of waiting for its idle poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::event::{
    AppendOutcome, Direction, ExpectedRevision, Metadata, NewEvent, Position, RecordedEvent,
    StreamName,
};
use crate::subscription::{HORIZON_RETRY_MAX, IDLE_POLL};
use crate::{check_new_events, EventStore, StoreError};

const WRITERS: usize = 2;
const MAX_BATCH_APPENDS: usize = 512;
const MAX_BATCH_EVENTS: usize = 4096;
const QUEUE_DEPTH: usize = 16 * 1024;
/// Attempts for one append that keeps colliding with other processes.
const MAX_ATTEMPTS: usize = 8;

struct AppendRequest {
    stream: StreamName,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

type Queue = Arc<Mutex<mpsc::Receiver<AppendRequest>>>;

pub struct PgEventStore {
    pool: PgPool,
    requests: mpsc::Sender<AppendRequest>,
    /// The newest events of `$all`, read once for all of this process's
    /// followers.
    followed: Arc<std::sync::Mutex<Followed>>,
    /// Changes whenever `followed` gained events.
    changes: Arc<watch::Sender<u64>>,
    /// Batches PostgreSQL ended as deadlocked (see [`PgEventStore::deadlocks`]).
    deadlocks: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PgEventStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How the follower waits when it finds nothing new.
#[derive(Debug, Clone, Copy)]
pub struct FollowerTiming {
    /// With no wake-up at all, look anyway this often (a `LISTEN`
    /// connection may be down). Tests make it long, so that only a wake-up
    /// or a held-back look can bring an event.
    pub idle_poll: Duration,
}

impl Default for FollowerTiming {
    fn default() -> Self {
        Self {
            idle_poll: IDLE_POLL,
        }
    }
}

impl PgEventStore {
    /// Starts the writer tasks and the LISTEN task on `pool` (migrated already).
    pub async fn start(pool: PgPool) -> Result<Self, StoreError> {
        Self::start_with(pool, FollowerTiming::default()).await
    }

    /// [`PgEventStore::start`] with the follower waiting as `timing` says.
    pub async fn start_with(pool: PgPool, timing: FollowerTiming) -> Result<Self, StoreError> {
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await?;
        // One channel per schema, so databases shared by several tenants (or tests) don't wake each other.
        let channel = format!("omnibox_events.{schema}");
        let (requests, queue) = mpsc::channel(QUEUE_DEPTH);
        let queue: Queue = Arc::new(Mutex::new(queue));
        // The writers' statements are planned once per connection: their
        // plans do not depend on the values (every lookup has its index),
        // yet PostgreSQL would plan the head probe anew for each batch,
        // because the number of streams in it changes the estimate.
        let writing = sqlx::postgres::PgPoolOptions::new()
            .max_connections(WRITERS as u32)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(
                (*pool.connect_options())
                    .clone()
                    .options([("plan_cache_mode", "force_generic_plan")]),
            )
            .await?;
        // Commits, this process's and (heard) other processes'.
        let committed = Arc::new(watch::Sender::new(0));
        // Commits of this process, announced to others by one notifier task.
        let local = Arc::new(watch::Sender::new(0u64));
        let deadlocks = Arc::new(AtomicU64::new(0));
        let mut tasks: Vec<JoinHandle<()>> = (0..WRITERS)
            .map(|_| {
                tokio::spawn(run_writer(
                    writing.clone(),
                    queue.clone(),
                    committed.clone(),
                    local.clone(),
                    deadlocks.clone(),
                ))
            })
            .collect();
        // Signs this process's notifications, so it does not wake for its own.
        let sender = Uuid::new_v4().simple().to_string();
        tasks.push(tokio::spawn(run_notifier(
            pool.clone(),
            channel.clone(),
            sender.clone(),
            local.subscribe(),
        )));
        tasks.push(tokio::spawn(run_listener(
            pool.clone(),
            channel,
            sender,
            committed.clone(),
        )));
        let followed = Arc::new(std::sync::Mutex::new(Followed::default()));
        let changes = Arc::new(watch::Sender::new(0));
        tasks.push(tokio::spawn(run_follower(
            pool.clone(),
            committed.subscribe(),
            followed.clone(),
            changes.clone(),
            timing,
        )));
        Ok(Self {
            pool,
            requests,
            followed,
            changes,
            deadlocks,
            tasks,
        })
    }

    /// How many append batches PostgreSQL has ended as deadlocked since
    /// this store started (each cost its appends a second before they were
    /// retried one by one). Batches insert in one key order, so this stays
    /// zero; tests hold it to that.
    pub fn deadlocks(&self) -> u64 {
        self.deadlocks.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_new_events(&events)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.clone(),
            expected,
            events,
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
        let sql = match direction {
            Direction::Forwards => {
                "SELECT seq, tx_id, event_id, stream, revision, event_type, data::text, metadata::text, recorded_at
                 FROM events WHERE stream = $1 AND revision >= $2 ORDER BY revision LIMIT $3"
            }
            Direction::Backwards => {
                "SELECT seq, tx_id, event_id, stream, revision, event_type, data::text, metadata::text, recorded_at
                 FROM events WHERE stream = $1 AND revision <= $2 ORDER BY revision DESC LIMIT $3"
            }
        };
        sqlx::query(sql)
            .bind(stream.as_str())
            .bind(clamp(from))
            .bind(clamp(limit as u64))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // From memory only when there is something to read there: the log
        // may already show more than the follower has read.
        if let Some(events) = self.read_all_recent(after, limit) {
            if !events.is_empty() {
                return Ok(events);
            }
        }
        read_all_after(&self.pool, after, limit).await
    }

    fn read_all_recent(&self, after: Option<Position>, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(after, limit)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM events LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// The horizon: the oldest transaction id still running anywhere in the
/// cluster (see the module's docs).
macro_rules! horizon {
    () => {
        "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    };
}
/// The condition that keeps a read of `events` below the horizon.
macro_rules! below_horizon {
    () => {
        concat!("tx_id < ", horizon!())
    };
}

/// Events of `$all` after `after`, up to the horizon.
async fn read_all_after(
    pool: &PgPool,
    after: Option<Position>,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let after = after.unwrap_or_default();
    sqlx::query(concat!(
        "SELECT seq, tx_id, event_id, stream, revision, event_type, data::text, metadata::text, recorded_at
         FROM events
         WHERE (tx_id, seq) > ($1, $2) AND ",
        below_horizon!(),
        " ORDER BY tx_id, seq LIMIT $3"
    ))
    .bind(clamp(after.commit))
    .bind(clamp(after.prepare))
    .bind(clamp(limit as u64))
    .fetch_all(pool)
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// How many of the newest events the follower keeps for this process's
/// readers. One further behind reads the log, as it would without it.
const FOLLOWED_CAPACITY: usize = 8192;
/// Events the follower reads at once.
const FOLLOWER_PAGE: usize = 1000;

/// The newest events of `$all`, as one follower task read them: every event
/// after `start` up to the last one held, with nothing missing, since the
/// follower reads the log in order as any reader would.
#[derive(Default)]
struct Followed {
    /// `None` until the follower knows where the log ended when it began.
    start: Option<Option<Position>>,
    events: std::collections::VecDeque<RecordedEvent>,
}

impl Followed {
    /// The position after which the follower holds everything, once known
    /// (`Some(None)`: from the log's beginning).
    fn end(&self) -> Option<Option<Position>> {
        match self.events.back() {
            Some(last) => Some(Some(last.position)),
            None => self.start,
        }
    }

    fn extend(&mut self, events: Vec<RecordedEvent>) {
        self.events.extend(events);
        while self.events.len() > FOLLOWED_CAPACITY {
            if let Some(gone) = self.events.pop_front() {
                self.start = Some(Some(gone.position));
            }
        }
    }

    /// Up to `limit` events after `after` (none at the end), or `None` when
    /// `after` is before what is held (or the follower has not begun).
    fn read(&self, after: Option<Position>, limit: usize) -> Option<Vec<RecordedEvent>> {
        let start = self.start?;
        if after < start || Some(after) > self.end() {
            return None;
        }
        let from = self.events.partition_point(|e| Some(e.position) <= after);
        Some(self.events.range(from..).take(limit).cloned().collect())
    }
}

/// Reads `$all` once for the whole process, from where the log ends when it
/// starts, into `followed`, and announces what it adds on `changes`: the
/// process's projectors and reactors then read the log's head from memory
/// instead of each asking the database after every commit.
async fn run_follower(
    pool: PgPool,
    mut committed: watch::Receiver<u64>,
    followed: Arc<std::sync::Mutex<Followed>>,
    changes: Arc<watch::Sender<u64>>,
    timing: FollowerTiming,
) {
    let lock = || followed.lock().unwrap_or_else(|p| p.into_inner());
    let mut after: Option<Position> = loop {
        let head = sqlx::query_as::<_, (i64, i64)>(concat!(
            "SELECT tx_id, seq FROM events WHERE ",
            below_horizon!(),
            " ORDER BY tx_id DESC, seq DESC LIMIT 1"
        ))
        .fetch_optional(&pool)
        .await;
        match head {
            Ok(head) => {
                break head.map(|(tx_id, seq)| {
                    Position::new(
                        u64::try_from(tx_id).unwrap_or_default(),
                        u64::try_from(seq).unwrap_or_default(),
                    )
                })
            }
            Err(error) => {
                tracing::warn!(%error, "cannot find the end of the log; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    lock().start = Some(after);
    // Zero: no second look planned. Otherwise the log is looked at again
    // after this long, doubling up to `HORIZON_RETRY_MAX`: what a wake-up
    // announced, or what follows what was just read, may still be held back
    // behind the horizon by a transaction that is still running.
    let mut retry = Duration::ZERO;
    loop {
        committed.borrow_and_update();
        match read_all_after(&pool, after, FOLLOWER_PAGE).await {
            Ok(events) if !events.is_empty() => {
                let full = events.len() == FOLLOWER_PAGE;
                after = events.last().map(|e| e.position);
                lock().extend(events);
                changes.send_modify(|n| *n = n.wrapping_add(1));
                if full {
                    continue;
                }
                retry = Duration::from_millis(1);
            }
            Ok(_) => retry *= 2,
            Err(error) => {
                tracing::warn!(%error, "cannot read the log's head; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // About to idle: no quick look is planned, or they are over. If
        // something committed is still behind the horizon, the transaction
        // holding it may end without a word: keep looking at the slowest
        // quick pace until it shows. (With no look planned, a wake-up may
        // have been taken in just before a read that found its event held
        // back.)
        let idling = retry == Duration::ZERO || retry > HORIZON_RETRY_MAX;
        // An error counts as no: the idle poll still looks.
        if idling && events_held_back(&pool).await.unwrap_or(false) {
            retry = HORIZON_RETRY_MAX;
        }
        if retry > Duration::ZERO && retry <= HORIZON_RETRY_MAX {
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                changed = committed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    retry = Duration::from_millis(1);
                }
            }
            continue;
        }
        retry = match tokio::time::timeout(timing.idle_poll, committed.changed()).await {
            Ok(Ok(())) => Duration::from_millis(1),
            Ok(Err(_)) => return,
            Err(_elapsed) => Duration::ZERO,
        };
    }
}

/// Whether committed events of the log on `pool` wait behind the horizon:
/// any event at or above it that this snapshot can see is committed, and
/// no reader has been given it yet. One index probe.
pub async fn events_held_back(pool: &PgPool) -> Result<bool, StoreError> {
    // The complement of `below_horizon!()`.
    Ok(sqlx::query_scalar::<_, bool>(concat!(
        "SELECT EXISTS (SELECT 1 FROM events WHERE tx_id >= ",
        horizon!(),
        ")"
    ))
    .fetch_one(pool)
    .await?)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn position(tx_id: i64, seq: i64) -> Position {
    Position::new(tx_id.max(0) as u64, seq.max(0) as u64)
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    let stream: String = row.try_get(3)?;
    let revision: i64 = row.try_get(4)?;
    let metadata: String = row.try_get(7)?;
    Ok(RecordedEvent {
        position: position(row.try_get(1)?, row.try_get(0)?),
        id: row.try_get(2)?,
        stream: StreamName::parse(&stream).map_err(|e| corrupt(&e.to_string()))?,
        revision: u64::try_from(revision).map_err(|_| corrupt("negative revision"))?,
        event_type: row.try_get(5)?,
        data: row.try_get(6)?,
        metadata: serde_json::from_str::<Metadata>(&metadata)
            .map_err(|e| corrupt(&e.to_string()))?,
        recorded_at: row.try_get::<DateTime<Utc>, _>(8)?,
    })
}

async fn run_writer(
    pool: PgPool,
    queue: Queue,
    changes: Arc<watch::Sender<u64>>,
    local: Arc<watch::Sender<u64>>,
    deadlocks: Arc<AtomicU64>,
) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
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
            batch
        };
        let mut wrote = false;
        match commit(&pool, &batch, false).await {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    wrote |= matches!(
                        outcome,
                        Ok(AppendOutcome {
                            duplicate: false,
                            ..
                        })
                    );
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                if is_deadlock(&error) {
                    deadlocks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        appends = batch.len(),
                        "an append batch deadlocked; retrying its appends one by one"
                    );
                } else {
                    tracing::debug!(%error, appends = batch.len(), "batch collided; retrying its appends one by one");
                }
                for request in batch {
                    let outcome = commit_alone(&pool, &request).await;
                    wrote |= matches!(
                        outcome,
                        Ok(AppendOutcome {
                            duplicate: false,
                            ..
                        })
                    );
                    let _ = request.reply.send(outcome);
                }
            }
        }
        if wrote {
            changes.send_modify(|n| *n = n.wrapping_add(1));
            local.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Announces this process's commits to other processes with `pg_notify`,
/// after the fact and outside any append transaction. One NOTIFY at a time:
/// commits made while one is in flight share the next, so announcing never
/// holds more than one pooled connection or slows the writers.
async fn run_notifier(
    pool: PgPool,
    channel: String,
    sender: String,
    mut local: watch::Receiver<u64>,
) {
    while local.changed().await.is_ok() {
        local.borrow_and_update();
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(&sender)
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "could not announce a commit; other processes will see it at their next poll");
        }
    }
}

/// One append alone, checked thoroughly, retried while it collides with
/// concurrent writers (each retry re-reads ids and heads).
async fn commit_alone(pool: &PgPool, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit(pool, std::slice::from_ref(request), true).await {
            Ok(mut outcomes) => return outcomes.pop().unwrap_or(Err(StoreError::WriterGone)),
            Err(error) if is_unique_violation(&error) && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(attempt as u64)).await;
            }
            // The insert is atomic: a unique key taken each time means
            // nothing of this append was written.
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Contended {
                    stream: request.stream.clone(),
                })
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Whether `error` is PostgreSQL's error `code` (SQLSTATE).
fn has_code(error: &sqlx::Error, code: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// PostgreSQL's `deadlock_detected`.
fn is_deadlock(error: &sqlx::Error) -> bool {
    has_code(error, "40P01")
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    has_code(error, "23505")
}

/// Decides and writes `batch` with two statements: one that reads the
/// stored ids and the stream heads, and one `INSERT … UNNEST`, which is
/// atomic on its own. Deciding outside a transaction is safe because the
/// unique indexes on event id and (stream, revision) refuse any insert that
/// a concurrent writer made stale; the caller then retries one append at a
/// time, `thorough`ly. The fast path looks up only each append's first id
/// (a retried append repeats it). The outer error means nothing was
/// written; the inner results are each append's verdict.
async fn commit(
    pool: &PgPool,
    batch: &[AppendRequest],
    thorough: bool,
) -> Result<Vec<Result<AppendOutcome, StoreError>>, sqlx::Error> {
    let ids: Vec<Uuid> = batch
        .iter()
        .flat_map(|r| {
            r.events
                .iter()
                .take(if thorough { usize::MAX } else { 1 })
                .map(|e| e.id)
        })
        .collect();
    let mut streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();

    // Kind 0: a stored event (id, revision, position); kind 1: a stream's
    // head, one backward index probe each (`max(…) GROUP BY` would scan
    // whole streams).
    let rows = sqlx::query(
        "SELECT 0, event_id::text, revision, tx_id, seq FROM events WHERE event_id = ANY($1)
         UNION ALL
         SELECT 1, s.stream, head.revision, 0, 0 FROM UNNEST($2::text[]) AS s(stream)
         CROSS JOIN LATERAL (SELECT revision FROM events e WHERE e.stream = s.stream
                             ORDER BY revision DESC LIMIT 1) AS head",
    )
    .bind(&ids)
    .bind(&streams)
    .fetch_all(pool)
    .await?;
    let mut stored: HashMap<Uuid, (i64, Position)> = HashMap::new();
    let mut heads: HashMap<String, i64> = HashMap::new();
    for row in &rows {
        let kind: i32 = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        let revision: i64 = row.try_get(2)?;
        if kind == 0 {
            let id = Uuid::parse_str(&key).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            stored.insert(id, (revision, position(row.try_get(3)?, row.try_get(4)?)));
        } else {
            heads.insert(key, revision);
        }
    }
    if !thorough
        && batch.iter().any(|r| {
            r.events.len() > 1 && r.events.first().is_some_and(|e| stored.contains_key(&e.id))
        })
    {
        // Only first ids were looked up; a retried multi-event append needs all of them.
        return Box::pin(commit(pool, batch, true)).await;
    }

    let mut outcomes: Vec<Option<Result<AppendOutcome, StoreError>>> =
        Vec::with_capacity(batch.len());
    let mut rows: Vec<NewRow<'_>> = Vec::new();
    let mut last_event_of: Vec<Option<(Uuid, i64)>> = Vec::with_capacity(batch.len());
    for request in batch {
        let found: Vec<&(i64, Position)> = request
            .events
            .iter()
            .filter_map(|e| stored.get(&e.id))
            .collect();
        if !found.is_empty() {
            last_event_of.push(None);
            if found.len() < request.events.len() {
                outcomes.push(Some(Err(StoreError::PartiallyStored {
                    stream: request.stream.clone(),
                })));
            } else {
                let (revision, position) = found
                    .iter()
                    .max_by_key(|(_, p)| *p)
                    .map_or((0, Position::default()), |f| **f);
                outcomes.push(Some(Ok(AppendOutcome {
                    revision: revision as u64,
                    position,
                    duplicate: true,
                })));
            }
            continue;
        }
        let head = heads.get(request.stream.as_str()).copied();
        let actual = head.and_then(|r| u64::try_from(r).ok());
        if !request.expected.matches(actual) {
            last_event_of.push(None);
            outcomes.push(Some(Err(StoreError::WrongExpectedRevision {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            })));
            continue;
        }
        let mut revision = head.unwrap_or(-1);
        for event in &request.events {
            revision += 1;
            rows.push(NewRow {
                stream: request.stream.as_str(),
                revision,
                event,
            });
        }
        heads.insert(request.stream.as_str().to_owned(), revision);
        last_event_of.push(request.events.last().map(|e| (e.id, revision)));
        outcomes.push(None);
    }

    let mut written: HashMap<Uuid, Position> = HashMap::with_capacity(rows.len());
    if !rows.is_empty() {
        in_insertion_order(&mut rows);
        let col_id: Vec<Uuid> = rows.iter().map(|r| r.event.id).collect();
        let col_stream: Vec<&str> = rows.iter().map(|r| r.stream).collect();
        let col_revision: Vec<i64> = rows.iter().map(|r| r.revision).collect();
        let col_type: Vec<&str> = rows.iter().map(|r| r.event.event_type.as_str()).collect();
        let col_data: Vec<&str> = rows.iter().map(|r| r.event.data.as_str()).collect();
        let col_meta: Vec<String> = rows
            .iter()
            .map(|r| serde_json::to_string(&r.event.metadata).unwrap_or_else(|_| "{}".into()))
            .collect();
        let inserted = sqlx::query(
            "INSERT INTO events (event_id, stream, revision, event_type, data, metadata)
             SELECT u.id, u.stream, u.revision, u.event_type, u.data::json, u.metadata::json
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[])
                  AS u(id, stream, revision, event_type, data, metadata)
             RETURNING event_id, tx_id, seq",
        )
        .bind(&col_id)
        .bind(&col_stream)
        .bind(&col_revision)
        .bind(&col_type)
        .bind(&col_data)
        .bind(&col_meta)
        .fetch_all(pool)
        .await?;
        for row in &inserted {
            written.insert(row.try_get(0)?, position(row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(outcomes
        .into_iter()
        .zip(last_event_of)
        .map(|(decided, last)| match (decided, last) {
            (Some(outcome), _) => outcome,
            (None, Some((id, revision))) => written
                .get(&id)
                .map(|&position| AppendOutcome {
                    revision: revision as u64,
                    position,
                    duplicate: false,
                })
                .ok_or(StoreError::Corrupt(
                    "an inserted event was not returned".into(),
                )),
            (None, None) => Err(StoreError::EmptyAppend),
        })
        .collect())
}

/// One event of a batch, at the revision decided for it.
struct NewRow<'a> {
    stream: &'a str,
    revision: i64,
    event: &'a NewEvent,
}

/// Puts a batch's rows in (stream, revision) order, the order in which the
/// `INSERT` takes their unique keys. Two batches decided from the same
/// heads (two writers here, or two processes) collide on those keys; taken
/// in the same order, one waits for the other and then fails cleanly,
/// whereas in opposite orders (stream A then B, and B then A) they wait for
/// each other until PostgreSQL's deadlock check (`deadlock_timeout`, 1 s by
/// default) ends one: appends stalled for a second. Each append's events
/// stay in revision order, and which append comes first in a batch of
/// concurrent ones was never promised.
fn in_insertion_order(rows: &mut [NewRow<'_>]) {
    rows.sort_by(|a, b| (a.stream, a.revision).cmp(&(b.stream, b.revision)));
}

/// Turns other processes' `pg_notify` into wake-ups of this process's
/// follower. If the connection drops, the follower still polls.
async fn run_listener(
    pool: PgPool,
    channel: String,
    sender: String,
    changes: Arc<watch::Sender<u64>>,
) {
    crate::listen::listen_forever(
        &pool,
        &channel,
        |_| {},
        |payload| {
            // This process's own commits woke its follower already.
            if payload != sender {
                changes.send_modify(|n| *n = n.wrapping_add(1));
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_inserted_in_stream_then_revision_order() {
        let new = || NewEvent {
            id: Uuid::new_v4(),
            event_type: "Tested".into(),
            data: "{}".into(),
            metadata: Metadata::default(),
        };
        // Appends as they came: b (two events), a, c, then b again.
        let decided = [("b", 3), ("b", 4), ("a", 9), ("c", 0), ("b", 5)];
        let events: Vec<NewEvent> = decided.iter().map(|_| new()).collect();
        let mut rows: Vec<NewRow<'_>> = decided
            .iter()
            .zip(&events)
            .map(|(&(stream, revision), event)| NewRow {
                stream,
                revision,
                event,
            })
            .collect();
        in_insertion_order(&mut rows);
        let order: Vec<(&str, i64)> = rows.iter().map(|r| (r.stream, r.revision)).collect();
        assert_eq!(order, [("a", 9), ("b", 3), ("b", 4), ("b", 5), ("c", 0)]);
        // Each append's events keep their order.
        assert_eq!(rows[1].event.id, events[0].id);
        assert_eq!(rows[2].event.id, events[1].id);
    }

    fn event(tx_id: u64, seq: u64) -> RecordedEvent {
        RecordedEvent::at(Position::new(tx_id, seq))
    }

    fn seqs(events: Option<Vec<RecordedEvent>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.position.prepare).collect())
    }

    #[test]
    fn the_followed_head_serves_only_what_it_holds_all_of() {
        let mut followed = Followed::default();
        assert_eq!(seqs(followed.read(None, 10)), None, "not begun");
        // The log ended at (100, 7) when the follower began.
        followed.start = Some(Some(Position::new(100, 7)));
        assert_eq!(
            seqs(followed.read(Some(Position::new(100, 7)), 10)),
            Some(vec![])
        );
        // Positions are (transaction, sequence): a later transaction may
        // hold lower sequence numbers.
        followed.extend(vec![event(105, 9), event(107, 8), event(107, 10)]);
        assert_eq!(
            seqs(followed.read(Some(Position::new(100, 7)), 10)),
            Some(vec![9, 8, 10])
        );
        assert_eq!(
            seqs(followed.read(Some(Position::new(105, 9)), 1)),
            Some(vec![8])
        );
        assert_eq!(
            seqs(followed.read(Some(Position::new(107, 10)), 10)),
            Some(vec![])
        );
        // Before its start, or past what it read: the log answers.
        assert_eq!(seqs(followed.read(Some(Position::new(100, 6)), 10)), None);
        assert_eq!(seqs(followed.read(None, 10)), None);
        assert_eq!(seqs(followed.read(Some(Position::new(108, 1)), 10)), None);
    }

    #[test]
    fn the_followed_head_keeps_only_the_newest_events() {
        let mut followed = Followed {
            start: Some(None),
            ..Followed::default()
        };
        assert_eq!(seqs(followed.read(None, 10)), Some(vec![]), "an empty log");
        followed.extend(
            (1..=FOLLOWED_CAPACITY as u64 + 2)
                .map(|n| event(n, n))
                .collect(),
        );
        assert_eq!(seqs(followed.read(None, 10)), None);
        assert_eq!(seqs(followed.read(Some(Position::new(1, 1)), 1)), None);
        assert_eq!(
            seqs(followed.read(Some(Position::new(2, 2)), 1)),
            Some(vec![3])
        );
    }
}
