//! The event log: Omnibox's only source of truth.
//!
//! This crate owns the [`EventStore`] port and its backends. It knows events
//! as a type name, a JSON document and [`Metadata`]; it knows nothing of what
//! they mean (that is the domain's business). It also owns the encrypted
//! [`secrets`] table, because secrets are source data that must never be
//! written into the log itself.
//!
//! Backends:
//! - [`sqlite::SqliteEventStore`] — the embedded default. One writer thread
//!   commits the appends of many callers together (group commit); each caller
//!   is answered only after the commit that holds its events is durable.
//! - [`postgres::PgEventStore`] — for several server processes sharing one log.
//!   `$all` is ordered by (transaction id, sequence) and readers only look
//!   below the oldest running transaction, so no concurrent writer can ever
//!   slip an event in behind a reader.
//! - `eventstoredb::EventStoreDbStore` (feature `eventstoredb`) — the log in
//!   an EventStoreDB / KurrentDB server, selected by `OMNIBOX_EVENTSTORE_URL`;
//!   secrets and read models stay in the SQL database.

pub mod database;
mod error;
mod event;
#[cfg(feature = "eventstoredb")]
pub mod eventstoredb;
pub mod listen;
pub mod personal;
pub mod postgres;
pub mod secrets;
pub mod sqlite;
mod subscription;
mod tail;
#[cfg(feature = "testing")]
pub mod testing;

pub use database::Database;
pub use error::StoreError;
pub use event::{
    AppendOutcome, Direction, ExpectedRevision, Metadata, NewEvent, Position, RecordedEvent,
    StreamName, StreamNameError,
};
pub use subscription::Subscription;

use async_trait::async_trait;
use tokio::sync::watch;

/// Names an EventStoreDB / KurrentDB server to keep the log in (the
/// `eventstoredb` feature); SQL keeps everything else.
pub const EVENTSTORE_URL_VARIABLE: &str = "OMNIBOX_EVENTSTORE_URL";

/// Checks an append's events before any backend sees them.
pub(crate) fn check_new_events(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for event in events {
        if !seen.insert(event.id) {
            return Err(StoreError::DuplicateIdInAppend(event.id));
        }
    }
    Ok(())
}

/// An append-only log of events in named streams, totally ordered in `$all`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream's current
    /// revision matches `expected`.
    ///
    /// If every event id is already stored the call changes nothing and
    /// reports the stored events' place with `duplicate: true`, whatever
    /// `expected` says: a retried command must not fail because its first
    /// attempt succeeded.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads up to `limit` events of one stream, starting at revision `from`
    /// (inclusive) in `direction`. Backwards from `u64::MAX` reads from the end.
    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of `$all` strictly after `after` (from the
    /// start when `None`), in position order. Never returns an event below
    /// one it could still return later.
    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// What `read_all` would answer, when the store can tell from what this
    /// process has just committed, without reading the log: `None` when it
    /// cannot. `Some` of nothing means this process has committed nothing
    /// after `after`; another process may have, which only `read_all` shows.
    /// Followers use it after a wake-up from [`EventStore::changes`].
    fn read_all_recent(
        &self,
        _after: Option<Position>,
        _limit: usize,
    ) -> Option<Vec<RecordedEvent>> {
        None
    }

    /// A signal that changes whenever this process has committed new events
    /// (and, where the backend can tell, when another process has).
    fn changes(&self) -> watch::Receiver<u64>;

    /// Answers when the store can be read.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;
}
