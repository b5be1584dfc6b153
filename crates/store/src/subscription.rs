//! Following `$all`: catch up in pages, then wait for new commits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{EventStore, Position, RecordedEvent, StoreError};

/// With no wake-up at all, look anyway this often: another process may have
/// written to the same SQLite file, or a LISTEN connection may be down.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(500);
/// After a wake-up that shows nothing yet (PostgreSQL's horizon held back by
/// a transaction still committing), look again soon, backing off to this.
pub(crate) const HORIZON_RETRY_MAX: Duration = Duration::from_millis(32);

/// A cursor over `$all` that yields every event exactly once, in order.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Option<Position>,
    changes: watch::Receiver<u64>,
    page: usize,
}

impl Subscription {
    /// Follows `$all` from just after `after` (from the start when `None`),
    /// returning at most `page` events per batch.
    pub fn new(store: Arc<dyn EventStore>, after: Option<Position>, page: usize) -> Self {
        let changes = store.changes();
        Self {
            store,
            after,
            changes,
            page: page.max(1),
        }
    }

    /// The position of the last event returned.
    pub fn position(&self) -> Option<Position> {
        self.after
    }

    /// The next events, waiting until there are some.
    ///
    /// Looks are answered from what this process has just committed where
    /// the store can ([`EventStore::read_all_recent`]), and from the log
    /// otherwise, and always after a wait that no wake-up ended: only the
    /// log shows what another process wrote.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.next_batch_noting_idle(|| {}).await
    }

    /// [`Subscription::next_batch`], calling `idle` each time it found
    /// nothing new and is about to wait (the reader is at the log's end).
    pub async fn next_batch_noting_idle(
        &mut self,
        mut idle: impl FnMut(),
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut retry = Duration::ZERO;
        let mut from_memory = true;
        loop {
            // Mark the current version seen *before* reading, so a commit that
            // lands during the read still wakes the wait below.
            self.changes.borrow_and_update();
            let recent = match from_memory {
                true => self.store.read_all_recent(self.after, self.page),
                false => None,
            };
            let events = match recent {
                Some(events) => events,
                None => self.store.read_all(self.after, self.page).await?,
            };
            if let Some(last) = events.last() {
                self.after = Some(last.position);
                return Ok(events);
            }
            if retry > Duration::ZERO && retry <= HORIZON_RETRY_MAX {
                tokio::time::sleep(retry).await;
                retry *= 2;
                continue;
            }
            idle();
            let woken = tokio::time::timeout(IDLE_POLL, self.changes.changed()).await;
            from_memory = matches!(woken, Ok(Ok(())));
            retry = match woken {
                Ok(Ok(())) => Duration::from_millis(1),
                Ok(Err(_)) => {
                    tokio::time::sleep(IDLE_POLL).await;
                    Duration::ZERO
                }
                Err(_elapsed) => Duration::ZERO,
            };
        }
    }

    /// The events available right now (possibly none), without waiting.
    pub async fn poll(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.store.read_all(self.after, self.page).await?;
        if let Some(last) = events.last() {
            self.after = Some(last.position);
        }
        Ok(events)
    }

    /// Like [`Subscription::poll`], but answered from memory where the store
    /// keeps the log's newest events there ([`EventStore::read_all_recent`]):
    /// it may miss what was committed a moment ago (by another process, or
    /// not yet read by this one's follower), never anything in between. For
    /// gathering more into a batch that is about to be written.
    pub async fn poll_recent(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = match self.store.read_all_recent(self.after, self.page) {
            Some(events) => events,
            None => self.store.read_all(self.after, self.page).await?,
        };
        if let Some(last) = events.last() {
            self.after = Some(last.position);
        }
        Ok(events)
    }
}
