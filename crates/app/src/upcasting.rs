//! The store as every reader sees it: older event versions brought to the
//! current shape on the way out, current versions stamped on the way in
//! (see [`omnibox_domain::upcast`]).

use std::sync::Arc;

use async_trait::async_trait;
use omnibox_domain::upcast;
use omnibox_store::{
    AppendOutcome, Direction, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent,
    StoreError, StreamName,
};
use tokio::sync::watch;

/// Wraps a backend so that readers only ever see current event shapes.
pub struct UpcastingStore {
    inner: Arc<dyn EventStore>,
}

impl UpcastingStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self { inner }
    }
}

/// Brings one read event to its current shape.
fn current(mut event: RecordedEvent) -> Result<RecordedEvent, StoreError> {
    if upcast::current(&event.event_type) == 1 {
        return Ok(event);
    }
    let mut data: serde_json::Value = serde_json::from_str(&event.data)
        .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.id)))?;
    if upcast::upcast(&event.event_type, &mut data)
        .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.id)))?
    {
        event.data = data.to_string();
    }
    Ok(event)
}

fn all_current(events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
    events.into_iter().map(current).collect()
}

#[async_trait]
impl EventStore for UpcastingStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        for event in &mut events {
            if upcast::current(&event.event_type) > 1 {
                let mut data: serde_json::Value = serde_json::from_str(&event.data)
                    .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.id)))?;
                upcast::stamp(&event.event_type, &mut data);
                event.data = data.to_string();
            }
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        all_current(
            self.inner
                .read_stream(stream, from, direction, limit)
                .await?,
        )
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        all_current(self.inner.read_all(after, limit).await?)
    }

    fn read_all_recent(&self, after: Option<Position>, limit: usize) -> Option<Vec<RecordedEvent>> {
        // An event that cannot be brought up to date is left to `read_all`,
        // which reports it.
        all_current(self.inner.read_all_recent(after, limit)?).ok()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
