//! Running projectors: checkpoints, batches, catch-up, live following.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omnibox_domain::ids::OrgId;
use omnibox_store::{Database, EventStore, Position, RecordedEvent, StoreError, Subscription};
use sqlx::Row;
use tokio::sync::watch;

use crate::refill::Refill;
use crate::{execute, fetch_optional_tx, Change, LiveUpdate, ReadTx, UpdateBus};

/// Events per read while following the log live. A transaction holds one
/// read, or, when it waited for more (see [`MIN_COMMIT_INTERVAL`]), reads
/// until it has at least this many: always fewer than twice this.
const BATCH: usize = 500;
/// A batch lets the thread's other tasks (webhooks) run after this many
/// events: its statements are synchronous calls on a runtime thread.
const YIELD_EVERY: usize = 16;
/// Events per transaction when catching up (start-up, rebuild): fewer
/// commits write each hot page fewer times.
const CATCH_UP_BATCH: usize = 20000;
/// Events a rebuild reads at once. The next page is read while this one
/// is folded; the first is small so the fold starts at once. On
/// PostgreSQL, 1,000 then 5,000 folded 100,000 events in 0.53 to 0.78 s
/// against 0.69 to 0.93 s for pages of 20,000.
const REBUILD_FIRST_PAGE: usize = 1000;
const REBUILD_PAGE: usize = 5000;
/// While following the log live, batches holding no event a projector
/// handles move only its position in memory (no transaction, no write to
/// the read-model file); its checkpoint is written with the next batch it
/// does handle, or once this many events have gone by unrecorded. A
/// restart re-reads at most these, and they change nothing.
const UNRECORDED_LIMIT: u64 = 10_000;
/// A projector following the log commits at most once per this interval:
/// under load, the events that arrive meanwhile join the next transaction
/// (bounded by [`BATCH`]) instead of each few paying for their own commit,
/// which writes every page it touched. When the log is quiet, an event is
/// applied as soon as it is read.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The projection met an event it cannot apply. It stops here rather
    /// than skip the event: a read model with a hole is worse than a late one.
    #[error("projection {projection} cannot apply event {event_id} ({event_type}) at position {position}: {reason}")]
    BadEvent {
        projection: &'static str,
        position: Position,
        event_id: uuid::Uuid,
        event_type: String,
        reason: String,
    },
    #[error("read-model database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("event store error: {0}")]
    Store(#[from] StoreError),
    /// A rebuild computed its rows but could not write them; nothing changed.
    #[error("projection {projection} could not write its rebuilt rows: {reason}")]
    Write {
        projection: &'static str,
        reason: String,
    },
}

/// Why one event could not be applied, before the runtime names the event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A row the event adds is already there.
    #[error("{0}")]
    Duplicate(String),
}

/// Turns events into read-model rows.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Unique, stable: the checkpoint's key.
    fn name(&self) -> &'static str;

    /// The tables this projector owns (emptied by a rebuild).
    fn tables(&self) -> &'static [&'static str];

    /// Whether [`Projector::apply`] may change anything for `event`. Batches
    /// without such an event skip the transaction while following the log.
    fn handles(&self, _event: &RecordedEvent) -> bool {
        true
    }

    /// Applies one event inside the batch's transaction, noting what changed
    /// (and for which organization) in `changes`.
    async fn apply(
        &self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        changes: &mut Vec<(OrgId, Change)>,
    ) -> Result<(), ApplyError>;

    /// A rebuild in memory, for projectors with tables worth one (see
    /// [`ProjectionRunner::rebuild`]). Without it, a rebuild replays the
    /// log through [`Projector::apply`].
    fn fold(&self) -> Option<Box<dyn Fold>> {
        None
    }
}

/// A projector's whole read model computed in memory from the log, then
/// written at once: each row is written once, in its final state.
#[async_trait]
pub trait Fold: Send {
    /// Applies one event to the rows in memory, as [`Projector::apply`]
    /// would to the tables.
    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError>;

    /// Writes every row into the projector's tables, emptied in `tx`.
    async fn write(self: Box<Self>, tx: &mut ReadTx) -> Result<(), ApplyError>;
}

/// First pause after a transient failure (deadlock, lost connection, busy
/// file); it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long a projector stopped by an event it cannot apply waits before it
/// tries that event again (a fixed deployment, a repaired row).
const STOPPED_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// What a projector is doing, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerStatus {
    /// Not started, or reading the log's backlog.
    CatchingUp,
    /// Its last read reached the end of the log.
    Live,
    /// A transient failure; it tries again by itself.
    Retrying { reason: String },
    /// An event it cannot apply stopped it; it tries again after a pause.
    Stopped { reason: String },
}

/// Runs one projector against the log.
pub struct ProjectionRunner {
    db: Database,
    store: Arc<dyn EventStore>,
    projector: Arc<dyn Projector>,
    bus: UpdateBus,
    position: watch::Sender<Position>,
    status: watch::Sender<RunnerStatus>,
    /// The server this runner publishes for (see [`crate::NodeId`]).
    node: crate::NodeId,
}

enum Batch {
    Applied,
    /// Another process moved the checkpoint first; it is now here.
    Lost(Position),
}

impl ProjectionRunner {
    pub fn new(
        db: Database,
        store: Arc<dyn EventStore>,
        projector: Arc<dyn Projector>,
        bus: UpdateBus,
        node: crate::NodeId,
    ) -> Self {
        Self {
            db,
            store,
            projector,
            bus,
            position: watch::Sender::new(Position::default()),
            status: watch::Sender::new(RunnerStatus::CatchingUp),
            node,
        }
    }

    fn set_status(&self, now: RunnerStatus) {
        let name = self.name();
        self.status.send_if_modified(|status| {
            let changed = *status != now;
            match (&*status, &now) {
                (RunnerStatus::Live, RunnerStatus::Live) => {}
                (_, RunnerStatus::Live) => {
                    tracing::info!(projection = name, "projection caught up")
                }
                (RunnerStatus::Live, RunnerStatus::CatchingUp) => {
                    tracing::info!(projection = name, "projection catching up")
                }
                _ => {}
            }
            *status = now;
            changed
        });
    }

    /// What this projector is doing now.
    pub fn status(&self) -> RunnerStatus {
        self.status.borrow().clone()
    }

    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    /// The position this projection's read model reflects.
    pub fn position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    async fn checkpoint(&self) -> Result<Position, sqlx::Error> {
        let name = self.projector.name();
        let mut tx = ReadTx::begin(&self.db).await?;
        execute!(
            &mut tx,
            "INSERT INTO projection_checkpoints (name, commit_position, prepare_position) VALUES ($1, 0, 0)
             ON CONFLICT (name) DO NOTHING",
            name
        )?;
        let position = fetch_optional_tx!(
            &mut tx,
            "SELECT commit_position, prepare_position FROM projection_checkpoints WHERE name = $1",
            [name],
            |row| Ok(Position::new(
                row.try_get::<i64, _>(0)? as u64,
                row.try_get::<i64, _>(1)? as u64
            ))
        )?
        .unwrap_or_default();
        tx.commit().await?;
        Ok(position)
    }

    /// Applies everything in the log now; returns how many events it applied.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_reporting(&|_| {}).await
    }

    /// Like [`ProjectionRunner::catch_up`], telling `progress` the running
    /// count after every batch.
    pub async fn catch_up_reporting(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let mut position = self.checkpoint().await?;
        self.position.send_replace(position);
        let mut applied = 0;
        loop {
            let events = self.store.read_all(Some(position), CATCH_UP_BATCH).await?;
            if events.is_empty() {
                return Ok(applied);
            }
            match self.apply_batch(position, &events).await? {
                Batch::Applied => {
                    applied += events.len() as u64;
                    position = events.last().map_or(position, |e| e.position);
                    progress(applied);
                }
                Batch::Lost(now) => position = now,
            }
        }
    }

    /// Catches up, then follows the log until an error stops it.
    pub async fn run(self) -> Result<(), ProjectionError> {
        // `recorded` is the checkpoint as written; the position in memory
        // may be ahead of it by batches this projector had nothing to do for.
        let mut recorded = self.checkpoint().await?;
        self.position.send_replace(recorded);
        let mut subscription = Subscription::new(self.store.clone(), Some(recorded), BATCH);
        let mut unrecorded = 0;
        let mut committed = tokio::time::Instant::now();
        loop {
            let mut events = subscription
                .next_batch_noting_idle(|| self.set_status(RunnerStatus::Live))
                .await?;
            if events.len() >= BATCH {
                self.set_status(RunnerStatus::CatchingUp);
            }
            unrecorded += events.len() as u64;
            if unrecorded < UNRECORDED_LIMIT && !events.iter().any(|e| self.projector.handles(e)) {
                if let Some(last) = events.last() {
                    self.position.send_replace(last.position);
                }
                continue;
            }
            let next_commit = committed + MIN_COMMIT_INTERVAL;
            if events.len() < BATCH && tokio::time::Instant::now() < next_commit {
                tokio::time::sleep_until(next_commit).await;
                while events.len() < BATCH {
                    let more = subscription.poll_recent().await?;
                    if more.is_empty() {
                        break;
                    }
                    events.extend(more);
                }
            }
            let Some(last) = events.last().map(|e| e.position) else {
                continue;
            };
            unrecorded = 0;
            let applied = self.apply_batch(recorded, &events).await?;
            committed = tokio::time::Instant::now();
            match applied {
                Batch::Applied => recorded = last,
                Batch::Lost(now) => {
                    recorded = now;
                    subscription = Subscription::new(self.store.clone(), Some(now), BATCH);
                }
            }
        }
    }

    /// Runs until the process stops. A transient failure (deadlock, lost
    /// connection, busy file, the store unreachable) is retried with
    /// back-off; an event the projector cannot apply stops it, visibly
    /// (its status, an ERROR naming the event), and it tries again after
    /// [`STOPPED_RETRY_PAUSE`]. It never stops for good.
    pub async fn run_forever(self: Arc<Self>) {
        tracing::info!(projection = self.name(), "projection started");
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let runner = ProjectionRunner {
                db: self.db.clone(),
                store: self.store.clone(),
                projector: self.projector.clone(),
                bus: self.bus.clone(),
                position: self.position.clone(),
                status: self.status.clone(),
                node: self.node,
            };
            let started = tokio::time::Instant::now();
            let error = match runner.run().await {
                Ok(()) => return,
                Err(error) => error,
            };
            if started.elapsed() > MAX_RETRY_PAUSE * 2 {
                pause = FIRST_RETRY_PAUSE;
            }
            if error.is_transient() {
                tracing::warn!(projection = self.name(), %error, retry_in = ?pause, "projection interrupted; retrying");
                self.status.send_replace(RunnerStatus::Retrying {
                    reason: error.to_string(),
                });
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            } else {
                tracing::error!(projection = self.name(), %error, retry_in = ?STOPPED_RETRY_PAUSE, "projection stopped");
                self.status.send_replace(RunnerStatus::Stopped {
                    reason: error.to_string(),
                });
                tokio::time::sleep(STOPPED_RETRY_PAUSE).await;
            }
        }
    }

    /// Applies `events` in one transaction and moves the checkpoint from
    /// `from` to the last of them. Events between `from` and the first of
    /// them, if any, are ones this projector does not handle.
    async fn apply_batch(
        &self,
        from: Position,
        events: &[RecordedEvent],
    ) -> Result<Batch, ProjectionError> {
        let Some(to) = events.last().map(|e| e.position) else {
            return Ok(Batch::Applied);
        };
        let name = self.projector.name();
        // On SQLite the statements are synchronous calls made right here.
        // Moving the batch to a blocking thread (or `block_in_place`) was
        // measured: live updates then lagged by ~100 ms instead of ~10.
        let mut tx = ReadTx::begin(&self.db).await?;
        // The checkpoint moves first: on SQLite that takes the write lock, and
        // everywhere it is the compare-and-set that lets only one process apply this batch.
        let moved = execute!(
            &mut tx,
            "UPDATE projection_checkpoints SET commit_position = $1, prepare_position = $2
             WHERE name = $3 AND commit_position = $4 AND prepare_position = $5",
            to.commit as i64,
            to.prepare as i64,
            name,
            from.commit as i64,
            from.prepare as i64
        )?;
        if moved == 0 {
            tx.rollback().await?;
            let now = self.checkpoint().await?;
            self.position.send_replace(now);
            return Ok(Batch::Lost(now));
        }
        let mut updates = Vec::new();
        let mut changes = Vec::new();
        for (n, event) in events
            .iter()
            .filter(|e| self.projector.handles(e))
            .enumerate()
        {
            if n % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            match self.projector.apply(&mut tx, event, &mut changes).await {
                Ok(()) => {}
                // Rolled back with the transaction; the batch is tried again.
                Err(ApplyError::Sql(error)) if is_transient(&error) => return Err(error.into()),
                Err(error) => return Err(bad_event(name, event, error)),
            }
            updates.extend(changes.drain(..).map(|(org_id, change)| LiveUpdate {
                org_id,
                position: event.position,
                change,
            }));
        }
        crate::updates::announce(&mut tx, self.node, &updates).await?;
        tx.commit().await?;
        self.position.send_replace(to);
        for update in updates {
            // No subscriber is not an error.
            let _ = self.bus.send(update);
        }
        Ok(Batch::Applied)
    }

    /// Rebuilds this projection's read model from the whole log; returns how
    /// many events it applied.
    pub async fn rebuild(&self) -> Result<u64, ProjectionError> {
        self.rebuild_reporting(&|_| {}).await
    }

    /// Like [`ProjectionRunner::rebuild`], telling `progress` the running count.
    ///
    /// A projector with a [`Fold`] is rebuilt beside its tables: the log is
    /// folded in memory while the tables keep serving, then one transaction
    /// replaces their rows (see [`crate::refill`]) and moves the checkpoint (readers
    /// see the old read model or the new one, never a mix), and the events
    /// appended meanwhile are applied as usual. A server projecting the same
    /// tables loses its next compare-and-set on the checkpoint and goes on
    /// from the new one. Memory grows with the read model (see the README).
    ///
    /// Without a fold, the tables are emptied in one transaction and refilled
    /// batch by batch, so a server reading them meanwhile sees them partial.
    pub async fn rebuild_reporting(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let Some(mut fold) = self.projector.fold() else {
            return self.rebuild_in_place(progress).await;
        };
        let name = self.projector.name();
        let read = |after: Position, limit: usize| {
            let store = self.store.clone();
            tokio::spawn(async move { store.read_all(Some(after), limit).await })
        };
        let fold_started = std::time::Instant::now();
        let mut position = Position::default();
        let mut applied = 0;
        // The next page is read (on the store's threads) while this one is folded.
        let mut next = read(position, REBUILD_FIRST_PAGE);
        // Time spent waiting for the log rather than folding.
        let mut read_wait = Duration::ZERO;
        loop {
            let waiting = std::time::Instant::now();
            let events = next.await.map_err(|e| StoreError::Task(e.to_string()))??;
            read_wait += waiting.elapsed();
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            next = read(last, REBUILD_PAGE);
            for event in &events {
                fold.apply(event)
                    .await
                    .map_err(|error| bad_event(name, event, error))?;
            }
            applied += events.len() as u64;
            position = last;
            progress(applied);
            // A long fold must not starve the rest of the runtime.
            tokio::task::yield_now().await;
        }
        let fold_took = fold_started.elapsed();
        let write_started = std::time::Instant::now();
        let mut tx = ReadTx::begin(&self.db).await?;
        // The checkpoint first, then the tables: the order a live batch
        // takes them in, so the two wait for each other instead of
        // deadlocking, and a live batch either committed before this
        // transaction (its rows are replaced here) or loses its
        // compare-and-set after it (and goes on from the new checkpoint).
        set_checkpoint(&mut tx, name, position).await?;
        let refill = Refill::start(&mut tx, self.projector.tables()).await?;
        fold.write(&mut tx)
            .await
            .map_err(|error| ProjectionError::Write {
                projection: name,
                reason: error.to_string(),
            })?;
        refill.finish(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(
            projection = name,
            events = applied,
            fold_ms = fold_took.as_millis() as u64,
            read_wait_ms = read_wait.as_millis() as u64,
            write_ms = write_started.elapsed().as_millis() as u64,
            "projection rebuilt beside its tables"
        );
        self.position.send_replace(position);
        let since = self.catch_up_reporting(&|n| progress(applied + n)).await?;
        Ok(applied + since)
    }

    /// Replays the whole log into this projection's tables in one
    /// transaction: readers (and webhooks) see the old rows until it
    /// commits, then the new ones; a live batch meanwhile waits for the
    /// checkpoint row and then loses its compare-and-set. For the small
    /// projectors only (their events are few); the inbox folds instead.
    async fn rebuild_in_place(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let name = self.projector.name();
        let mut tx = ReadTx::begin(&self.db).await?;
        set_checkpoint(&mut tx, name, Position::default()).await?;
        for table in self.projector.tables() {
            execute!(&mut tx, &format!("DELETE FROM {table}"))?;
        }
        let mut position = Position::default();
        let mut applied = 0;
        let mut changes = Vec::new();
        loop {
            let events = self.store.read_all(Some(position), CATCH_UP_BATCH).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for event in events.iter().filter(|e| self.projector.handles(e)) {
                match self.projector.apply(&mut tx, event, &mut changes).await {
                    Ok(()) => changes.clear(),
                    Err(ApplyError::Sql(error)) if is_transient(&error) => return Err(error.into()),
                    Err(error) => return Err(bad_event(name, event, error)),
                }
            }
            applied += events.len() as u64;
            position = last;
            progress(applied);
            tokio::task::yield_now().await;
        }
        set_checkpoint(&mut tx, name, position).await?;
        tx.commit().await?;
        self.position.send_replace(position);
        let since = self.catch_up_reporting(&|n| progress(applied + n)).await?;
        Ok(applied + since)
    }
}

/// Sets `name`'s checkpoint to `position` inside `tx` (creating it).
async fn set_checkpoint(
    tx: &mut ReadTx,
    name: &'static str,
    position: Position,
) -> Result<(), sqlx::Error> {
    execute!(
        tx,
        "INSERT INTO projection_checkpoints (name, commit_position, prepare_position) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET commit_position = excluded.commit_position,
             prepare_position = excluded.prepare_position",
        name,
        position.commit as i64,
        position.prepare as i64
    )?;
    Ok(())
}

/// Whether `error` may go away by itself: a deadlock or serialization
/// failure, a lost or refused connection, a pool timeout, a busy file.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(error) => {
            let code = error.code().unwrap_or_default();
            // PostgreSQL: serialization failure, deadlock, connection
            // exceptions, insufficient resources, operator intervention
            // (a terminated backend). SQLite: BUSY and LOCKED, with their
            // extended codes (the low byte is the primary code).
            matches!(&*code, "40001" | "40P01")
                || ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                || code
                    .parse::<i32>()
                    .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
        }
        _ => false,
    }
}

impl ProjectionError {
    /// Whether retrying may succeed without anything changing.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::BadEvent { .. } => false,
            ProjectionError::Sql(error) => is_transient(error),
            ProjectionError::Store(_) => true,
            ProjectionError::Write { .. } => true,
        }
    }
}

fn bad_event(
    projection: &'static str,
    event: &RecordedEvent,
    error: ApplyError,
) -> ProjectionError {
    ProjectionError::BadEvent {
        projection,
        position: event.position,
        event_id: event.id,
        event_type: event.event_type.clone(),
        reason: error.to_string(),
    }
}

/// Every projector of the process, and a way to wait until they all reflect a position.
#[derive(Clone)]
pub struct Projections {
    runners: Vec<Arc<ProjectionRunner>>,
}

impl Projections {
    pub fn new(runners: Vec<ProjectionRunner>) -> Self {
        Self {
            runners: runners.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn runners(&self) -> &[Arc<ProjectionRunner>] {
        &self.runners
    }

    /// The projector named `name` (`inbox`, `members`, …), if there is one.
    pub fn runner(&self, name: &str) -> Option<Arc<ProjectionRunner>> {
        self.runners.iter().find(|r| r.name() == name).cloned()
    }

    /// Starts every projector on the runtime.
    pub fn spawn(&self) {
        for runner in &self.runners {
            tokio::spawn(runner.clone().run_forever());
        }
    }

    /// Brings every read model up to the end of the log, once.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        let mut applied = 0;
        for runner in &self.runners {
            applied += runner.catch_up().await?;
        }
        Ok(applied)
    }

    /// Applies events actively (no runner needs to be spawned) until every
    /// read model reflects `position`, or `timeout` passes. On PostgreSQL a
    /// just-committed event can stay below the read horizon for a moment
    /// (another transaction still running), hence the retries.
    pub async fn catch_up_to(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            self.catch_up().await?;
            if self
                .runners
                .iter()
                .all(|r| *r.position().borrow() >= position)
            {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Waits until every read model reflects `position` (so a client reads
    /// its own write), or `timeout` passes. Returns whether it got there.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let all = async {
            for runner in &self.runners {
                let mut seen = runner.position();
                if seen.wait_for(|p| *p >= position).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }
}
