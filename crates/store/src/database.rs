//! Opening the one database that holds the log, the secrets and the read
//! models, and bringing its schema up to date.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::postgres::PgEventStore;
pub use crate::sqlite::SQLITE_BUSY_TIMEOUT;
use crate::sqlite::{SqliteEventStore, LOG_PAGE_SIZE};
use crate::{EventStore, StoreError};

pub use crate::EVENTSTORE_URL_VARIABLE;

/// The EventStoreDB / KurrentDB log `OMNIBOX_EVENTSTORE_URL` names, if any.
#[cfg(feature = "eventstoredb")]
async fn external_event_store() -> Result<Option<Arc<dyn EventStore>>, StoreError> {
    use crate::eventstoredb::{EventStoreDbSettings, EventStoreDbStore};
    match EventStoreDbSettings::from_env() {
        None => Ok(None),
        Some(settings) => Ok(Some(Arc::new(EventStoreDbStore::connect(settings?).await?))),
    }
}

/// Without the feature, a configured server is an error, not a silent
/// fallback to the SQL log.
#[cfg(not(feature = "eventstoredb"))]
async fn external_event_store() -> Result<Option<Arc<dyn EventStore>>, StoreError> {
    match std::env::var(EVENTSTORE_URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Err(StoreError::InvalidUrl {
            url: EVENTSTORE_URL_VARIABLE.to_owned(),
            reason: "this build has no EventStoreDB backend (cargo feature `eventstoredb`)"
                .to_owned(),
        }),
        _ => Ok(None),
    }
}

/// Every schema change, per dialect, in order. Embedded in the binary so
/// `omnibox serve` needs nothing beside it.
macro_rules! migrations {
    ($dialect:literal: $($version:literal $name:literal),+ $(,)?) => {
        vec![$(Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(concat!("../../../migrations/", $dialect, "/", $name, ".sql"))),
            false,
        )),+]
    };
}

fn migrator(migrations: Vec<Migration>) -> Migrator {
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// A connection pool to the configured database.
#[derive(Clone, Debug)]
pub enum Database {
    /// SQLite: the log and the secrets in the file at `path` (where the
    /// writer thread also opens it), the read models in a second file beside
    /// it (`<name>.read.db`). SQLite has one write lock per file: keeping
    /// projectors' writes out of the log's file means they never delay an
    /// append, and the read models can be deleted and rebuilt at will.
    Sqlite {
        pool: SqlitePool,
        path: PathBuf,
        read_pool: SqlitePool,
        read_path: PathBuf,
        /// Plain connections to the read-model file for the projectors'
        /// write transactions.
        writers: SqliteWriters,
    },
    /// PostgreSQL: one database for everything.
    Postgres { pool: PgPool },
}

impl Database {
    /// Connects to `sqlite://file.db` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| invalid(&e.to_string()))?
                // Our tables start empty and grow, and nothing guarantees an
                // ANALYZE in between (autovacuum may be off): a generic plan
                // cached while `events` was small would keep scanning it
                // whole (measured: 9 ms per id lookup at 60k rows instead of
                // 0.05 ms). Every statement here has an index to use, so
                // sequential scans are ruled out instead: the plan made for
                // a small table is then the one that suits a large one, and
                // prepared statements keep their plans (planning every
                // execution cost more than running it: 1.7 s against 0.5 s
                // for the hottest lookup in a live-update run). Never
                // JIT-compile short OLTP statements.
                .options([("enable_seqscan", "off"), ("jit", "off")]);
            // A server holds 18 connections in all: these, the event
            // writers' 2 and 3 that LISTEN (commits, live updates, erasures).
            let pool = PgPoolOptions::new()
                .max_connections(13)
                // Broken connections surface as errors and are replaced; a
                // ping before every use would cost a round trip per statement.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            return Ok(Database::Postgres { pool });
        }
        let path = sqlite_path(url).ok_or_else(|| {
            invalid("expected sqlite://<file> (in-memory databases cannot be shared by the writer thread and the pool) or postgres://…")
        })?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        // SQLite gives its WAL and journal files the database file's mode.
        for file in [path.clone(), read_model_path(&path)] {
            if !file.exists() {
                create_private_file(&file)?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(sqlite_options(&path, LOG_PAGE_SIZE))
            .await?;
        let read_path = read_model_path(&path);
        let read_pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(sqlite_options(&read_path, READ_MODEL_PAGE_SIZE))
            .await?;
        Ok(Database::Sqlite {
            pool,
            path,
            read_pool,
            writers: SqliteWriters::new(read_path.clone()),
            read_path,
        })
    }

    /// Applies every migration not yet applied. Safe to run from several
    /// processes at once: the migrator takes a lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Database::Sqlite { pool, read_pool, .. } => {
                migrator(migrations!("sqlite": 1 "0001_event_log", 2 "0002_secrets", 9 "0009_stream_heads", 11 "0011_personal_keys"))
                    .run(pool)
                    .await?;
                migrator(migrations!("sqlite": 3 "0003_read_models", 4 "0004_channels", 5 "0005_inbox", 6 "0006_media", 7 "0007_deliveries", 8 "0008_templates", 10 "0010_qr_codes", 12 "0012_erased_contacts"))
                    .run(read_pool)
                    .await?
            }
            Database::Postgres { pool } => migrator(
                migrations!("postgres": 1 "0001_event_log", 2 "0002_secrets", 3 "0003_read_models", 4 "0004_channels", 5 "0005_inbox", 6 "0006_media", 7 "0007_deliveries", 8 "0008_templates", 10 "0010_qr_codes", 11 "0011_personal_keys", 12 "0012_erased_contacts"),
            )
            .run(pool)
            .await?,
        }
        Ok(())
    }

    /// How many events the log holds (for progress bars; a full count).
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        let count: i64 = match self {
            Database::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Opens the event store on this database (run [`Database::migrate`] first).
    ///
    /// When `OMNIBOX_EVENTSTORE_URL` is set, the log is that EventStoreDB /
    /// KurrentDB server's instead (feature `eventstoredb`; without it, the
    /// variable is refused rather than ignored), and this database keeps
    /// only the secrets and read models.
    pub async fn event_store(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        if let Some(store) = external_event_store().await? {
            return Ok(store);
        }
        Ok(match self {
            Database::Sqlite { path, .. } => Arc::new(SqliteEventStore::open(path)?),
            Database::Postgres { pool } => Arc::new(PgEventStore::start(pool.clone()).await?),
        })
    }

    /// Where files that belong beside the database go (the dev secret key):
    /// the SQLite file's folder, or the working directory for PostgreSQL.
    pub fn data_dir(&self) -> PathBuf {
        match self {
            Database::Sqlite { path, .. } => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            Database::Postgres { .. } => PathBuf::from("."),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Database::Sqlite {
                pool, read_pool, ..
            } => {
                pool.close().await;
                read_pool.close().await;
            }
            Database::Postgres { pool } => pool.close().await,
        }
    }
}

/// The read-model file keeps SQLite's default page size: with 2 KiB pages
/// an inbox rebuild ran at ~29k events/s instead of ~38k (its B-trees are
/// wide and deep; 8 KiB measured the same as 4).
const READ_MODEL_PAGE_SIZE: u32 = 4096;

/// The settings every SQLite connection of Omnibox uses, whichever library
/// opens it: WAL so readers never block the writer, `synchronous = FULL` so a
/// commit is on disk before anyone is told it happened. `page_size` only
/// applies to a file this connection creates.
pub(crate) fn sqlite_options(path: &Path, page_size: u32) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .page_size(page_size)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
}

/// Plain SQLite connections to the read-model file, kept for reuse.
///
/// The projectors write through these rather than the sqlx pool: a prepared
/// statement costs microseconds when called directly, while the pool hands
/// every statement to a worker thread and back, which bounded rebuilds and
/// live projection alike. Read models can always be rebuilt from the log,
/// so their commits need not reach the disk before the next one
/// (`synchronous = NORMAL` in WAL mode: a crash loses at most the last
/// transactions, checkpoint included, never consistency).
#[derive(Clone)]
pub struct SqliteWriters {
    path: PathBuf,
    idle: Arc<std::sync::Mutex<Vec<rusqlite::Connection>>>,
    /// One write transaction at a time from this process, first come first served.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for SqliteWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriters")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Idle writer connections kept open.
const IDLE_WRITERS: usize = 8;

impl SqliteWriters {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::default(),
            turn: Arc::default(),
        }
    }

    /// Waits for this process's turn to write to the file.
    pub async fn turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// An idle connection, or a new one. Take it during your
    /// [`SqliteWriters::turn`]; its busy wait then only meets other processes.
    pub fn take(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        if let Some(connection) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(connection);
        }
        let connection = rusqlite::Connection::open(&self.path)?;
        // A rebuild touches index pages all over the file: keep more of them.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;
             PRAGMA wal_autocheckpoint = 1000;",
        )?;
        connection.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(connection)
    }

    /// Returns a connection with no transaction open.
    pub fn give(&self, connection: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_WRITERS {
            idle.push(connection);
        }
    }
}

/// `omnibox.db` → `omnibox.read.db`, in the same folder.
fn read_model_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "omnibox".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.read.db"))
}

/// The file a `sqlite://` URL names (`None` for other URLs and in-memory ones).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return None;
    }
    Some(PathBuf::from(file))
}

/// Creates `dir` (and missing parents) readable by this user only; an
/// existing folder keeps its mode.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (or truncates) `file`, readable and writable by this user only.
pub fn create_private_file(file: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_models_live_beside_the_log() {
        assert_eq!(
            read_model_path(Path::new("data/omnibox.db")),
            PathBuf::from("data/omnibox.read.db")
        );
        assert_eq!(
            read_model_path(Path::new("inbox")),
            PathBuf::from("inbox.read.db")
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite://omnibox.db"),
            Some(PathBuf::from("omnibox.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/o.db"),
            Some(PathBuf::from("/var/lib/o.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:data/o.db?mode=rwc"),
            Some(PathBuf::from("data/o.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("mysql://x"), None);
    }
}
