use crate::event::{ExpectedRevision, StreamName};

/// What can go wrong talking to the event log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the revision the caller expected: someone else
    /// appended first. Nothing was written; re-read and decide again.
    #[error("stream {stream} is at {actual:?}, expected {expected:?}")]
    WrongExpectedRevision {
        stream: StreamName,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },
    /// Other writers kept appending to the stream while this append was
    /// decided again and again (with [`ExpectedRevision::Any`], say), until
    /// the store stopped trying. Nothing was written; try again.
    #[error("stream {stream} kept changing under this append; nothing was written, try again")]
    Contended { stream: StreamName },
    /// Some, but not all, of the events of one append are already stored:
    /// the caller reused ids for different events.
    #[error("append to {stream} mixes stored and new event ids")]
    PartiallyStored { stream: StreamName },
    /// The same event id appears twice in one append.
    #[error("event id {0} appears twice in one append")]
    DuplicateIdInAppend(uuid::Uuid),
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("the store holds an event it cannot read: {0}")]
    Corrupt(String),
    #[error("a store task failed: {0}")]
    Task(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// An event store server (EventStoreDB / KurrentDB) refused or failed
    /// a request, or could not be reached.
    #[error("event store server error: {0}")]
    Server(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
