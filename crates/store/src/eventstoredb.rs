//! The log in EventStoreDB / KurrentDB (feature `eventstoredb`).
//!
//! Only the event log moves to the server: secrets, personal-data keys and
//! read models stay in the SQL database of `OMNIBOX_DATABASE_URL` (SQLite or
//! PostgreSQL), which a server opens as before. [`crate::Database::event_store`]
//! opens this backend instead of the SQL log when `OMNIBOX_EVENTSTORE_URL`
//! is set.
//!
//! # The client crate
//!
//! This uses `kurrentdb` (1.x), the successor of the `eventstore` crate (4.x):
//! the same client repository, renamed with the product, publishes its new
//! releases under the new name. Both speak the same gRPC protocol to EventStoreDB 20.10+ and
//! KurrentDB, and both pull `tonic`, `prost` and rustls with the `aws-lc-rs`
//! provider (no feature turns that off). `kurrentdb` costs less here: its
//! `tonic` 0.13 shares this workspace's `axum` 0.8 and `tower` 0.5, where
//! `eventstore`'s `tonic` 0.12 brings second copies (`axum` 0.7, `tower`
//! 0.4, `indexmap` 1, `hashbrown` 0.12).
//!
//! # Mapping
//!
//! - Streams: an Omnibox [`StreamName`] (`<category>-<uuid>`) is the
//!   server's stream name as it is, behind an optional prefix that only tests
//!   use (each test run gets its own). The server's by-category projection
//!   must split at the first `-` to see `<category>`: the uuid has dashes.
//! - Expected revisions: [`ExpectedRevision`] maps one to one onto the
//!   server's `StreamState` (`Any`, `NoStream`, `StreamRevision`), and its
//!   wrong-expected-version answer becomes
//!   [`StoreError::WrongExpectedRevision`], as on the SQL backends.
//! - Idempotent ids: the server only recognizes a retried write whose
//!   expectation is the same as the first attempt's. So before writing, the
//!   stream's newest [`ID_WINDOW`] events are searched for the append's ids:
//!   all found is a duplicate (reported with their place), some found is
//!   [`StoreError::PartiallyStored`]. Unlike the SQL backends, ids are not
//!   unique across streams, nor recognized further back in a stream, and
//!   two retries racing with `Any` can both write. An append costs three
//!   round trips: that search, the write, and a read of the last event
//!   written for its exact `$all` position (the write's answer does not
//!   reliably carry the last event's own position).
//! - Positions: `$all` positions are the server's (commit, prepare) pairs,
//!   which [`Position`] was shaped for. Stream reads carry them from
//!   EventStoreDB 22.6 on; older servers are refused.
//! - `$all`: read with a server-side filter on Omnibox's stream names, so
//!   system streams (`$…`), metadata streams and other applications' streams
//!   never reach a projector; events with a `$`-type are skipped as well.
//! - Metadata: the event's custom metadata, as JSON with the server's own
//!   names `$correlationId` and `$causationId` (its by-correlation projection
//!   reads them) beside `actor`.
//! - [`EventStore::changes`]: a live subscription to `$all` (with the same
//!   filter) wakes followers when any process appends, besides this
//!   process's own appends.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions,
    ReadStreamOptions, ResolvedEvent, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscriptionEvent, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    check_new_events, AppendOutcome, Direction, EventStore, ExpectedRevision, Metadata, NewEvent,
    Position, RecordedEvent, StoreError, StreamName,
};

/// The variable that moves the log to an EventStoreDB / KurrentDB server.
pub const URL_VARIABLE: &str = crate::EVENTSTORE_URL_VARIABLE;

/// How many of a stream's newest events an append searches for its ids.
pub const ID_WINDOW: usize = 128;

/// How long to wait before subscribing again after the live subscription
/// that wakes followers broke, doubling up to the maximum while it fails.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
const RESUBSCRIBE_DELAY_MAX: Duration = Duration::from_secs(30);

/// Makes rustls's `ring` provider the process's default, once.
///
/// This feature builds rustls with both `ring` (which the rest of Omnibox
/// uses, through reqwest) and `aws-lc-rs` (which `kurrentdb` asks for). With
/// both, rustls picks no default of its own, and anything that builds a TLS
/// configuration from the default would panic. Call this at startup; the
/// store also calls it before it connects. Returns whether this call
/// installed it (false when a provider was already installed).
pub fn install_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// Where the server is, and which of its streams are Omnibox's.
#[derive(Clone)]
pub struct EventStoreDbSettings {
    client: ClientSettings,
    prefix: String,
}

/// Hosts and options, never the credentials (the client's own `Debug`
/// prints the password).
impl std::fmt::Debug for EventStoreDbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self
            .client
            .hosts()
            .iter()
            .map(|h| format!("{}:{}", h.host, h.port))
            .collect();
        f.debug_struct("EventStoreDbSettings")
            .field("hosts", &hosts)
            .field("tls", &self.client.is_secure_mode_enabled())
            .field("user", &self.client.default_authenticated_user().is_some())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EventStoreDbSettings {
    /// Parses a connection string: `esdb://host:2113?tls=false`,
    /// `esdb+discover://…`, `kurrentdb://…` (see the server's documentation
    /// for its options).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let client = ClientSettings::from_str(url).map_err(|e| invalid_url(url, e.message()))?;
        Ok(Self {
            client,
            prefix: String::new(),
        })
    }

    /// Puts every stream under `prefix` (lowercase ASCII letters, digits and
    /// `_`): tests use one per run, so that each sees only its own `$all`.
    pub fn with_stream_prefix(self, prefix: &str) -> Result<Self, StoreError> {
        let ok = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(StoreError::InvalidUrl {
                url: prefix.to_owned(),
                reason: "a stream prefix has only a-z, 0-9 and _".to_owned(),
            });
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            ..self
        })
    }

    /// The settings from [`URL_VARIABLE`], when it is set and not empty.
    pub fn from_env() -> Option<Result<Self, StoreError>> {
        let url = std::env::var(URL_VARIABLE).ok()?;
        let url = url.trim();
        (!url.is_empty()).then(|| Self::parse(url))
    }

    pub fn stream_prefix(&self) -> &str {
        &self.prefix
    }

    pub fn client_settings(&self) -> &ClientSettings {
        &self.client
    }
}

/// An invalid URL, with any password left out of the message.
fn invalid_url(url: &str, reason: &str) -> StoreError {
    StoreError::InvalidUrl {
        url: redact(url),
        reason: reason.to_owned(),
    }
}

/// `scheme://user:secret@host…` without the secret.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, _)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{}", &rest[user_info.len() + 1..])
        }
        None => url.to_owned(),
    }
}

/// How Omnibox names map onto the server's stream names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Naming {
    prefix: String,
}

impl Naming {
    fn stream(&self, stream: &StreamName) -> String {
        format!("{}{}", self.prefix, stream.as_str())
    }

    /// The Omnibox stream a server stream holds, if it is one of ours.
    fn parse(&self, name: &str) -> Option<StreamName> {
        StreamName::parse(name.strip_prefix(self.prefix.as_str())?).ok()
    }

    /// A regular expression matching exactly the names [`Naming::stream`]
    /// makes: the server filters `$all` with it.
    fn regex(&self) -> String {
        format!(
            "^{}[a-z_]{{1,64}}-[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}$",
            self.prefix
        )
    }

    fn filter(&self) -> SubscriptionFilter {
        SubscriptionFilter::on_stream_name().regex(self.regex())
    }
}

fn stream_state(expected: ExpectedRevision) -> StreamState {
    match expected {
        ExpectedRevision::Any => StreamState::Any,
        ExpectedRevision::NoStream => StreamState::NoStream,
        ExpectedRevision::Exact(revision) => StreamState::StreamRevision(revision),
    }
}

fn actual_revision(current: CurrentRevision) -> Option<u64> {
    match current {
        CurrentRevision::Current(revision) => Some(revision),
        CurrentRevision::NoStream => None,
    }
}

fn to_server_position(position: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: position.commit,
        prepare: position.prepare,
    }
}

/// The server's position, or `None` where it sent none (all ones: a stream
/// read from a server older than 22.6).
fn from_server_position(position: kurrentdb::Position) -> Option<Position> {
    (position.commit != u64::MAX).then_some(Position::new(position.commit, position.prepare))
}

/// [`Metadata`] as the server's custom metadata.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ServerMetadata {
    #[serde(rename = "$correlationId")]
    correlation_id: Uuid,
    #[serde(
        rename = "$causationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
}

fn encode_metadata(metadata: &Metadata) -> ServerMetadata {
    ServerMetadata {
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        actor: metadata.actor.clone(),
    }
}

fn decode_metadata(bytes: &[u8]) -> Result<Metadata, serde_json::Error> {
    if bytes.is_empty() {
        return Ok(Metadata::default());
    }
    let metadata: ServerMetadata = serde_json::from_slice(bytes)?;
    Ok(Metadata {
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        actor: metadata.actor,
    })
}

/// An event as the server takes it: JSON data byte for byte (any other
/// text as a binary payload), the id kept, metadata as custom metadata.
fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("event {}: {e}", event.id));
    let data = match serde_json::from_str::<&serde_json::value::RawValue>(&event.data) {
        // RawValue leaves out surrounding whitespace: keep such data as bytes.
        Ok(raw) if raw.get().len() == event.data.len() => {
            EventData::json(&event.event_type, &raw).map_err(corrupt)?
        }
        _ => EventData::binary(&event.event_type, bytes::Bytes::from(event.data.clone())),
    };
    data.id(event.id)
        .metadata_as_json(&encode_metadata(&event.metadata))
        .map_err(corrupt)
}

/// The event a read returned (links are not resolved, so it is the event).
fn server_event(resolved: &ResolvedEvent) -> Result<&kurrentdb::RecordedEvent, StoreError> {
    resolved
        .event
        .as_ref()
        .or(resolved.link.as_ref())
        .ok_or_else(|| StoreError::Server("the server sent an empty event".into()))
}

fn server_error(error: kurrentdb::Error) -> StoreError {
    StoreError::Server(error.to_string())
}

fn is_missing(error: &kurrentdb::Error) -> bool {
    matches!(
        error,
        kurrentdb::Error::ResourceNotFound | kurrentdb::Error::ResourceDeleted
    )
}

/// The log in an EventStoreDB / KurrentDB server.
pub struct EventStoreDbStore {
    client: Client,
    naming: Naming,
    changes: Arc<watch::Sender<u64>>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for EventStoreDbStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl EventStoreDbStore {
    /// Connects, checks that the server answers, and starts following
    /// `$all` for other processes' appends.
    pub async fn connect(settings: EventStoreDbSettings) -> Result<Self, StoreError> {
        install_crypto_provider();
        let client = Client::new(settings.client).map_err(|e| StoreError::Server(e.to_string()))?;
        let naming = Naming {
            prefix: settings.prefix,
        };
        let (changes, _) = watch::channel(0);
        let changes = Arc::new(changes);
        let follower = tokio::spawn(follow_all(client.clone(), naming.filter(), changes.clone()));
        let store = Self {
            client,
            naming,
            changes,
            follower,
        };
        store.ping().await?;
        Ok(store)
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn recorded(&self, resolved: &ResolvedEvent) -> Result<RecordedEvent, StoreError> {
        let event = server_event(resolved)?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {}: {what}", event.id));
        let stream = self
            .naming
            .parse(event.stream_id())
            .ok_or_else(|| corrupt("not in an Omnibox stream"))?;
        let position = from_server_position(event.position).ok_or_else(|| {
            StoreError::Server(
                "the server sends no $all positions with stream reads (EventStoreDB 22.6 or later is needed)"
                    .into(),
            )
        })?;
        Ok(RecordedEvent {
            id: event.id,
            stream,
            revision: event.revision,
            position,
            event_type: event.event_type.clone(),
            data: String::from_utf8(event.data.to_vec()).map_err(|_| corrupt("data not UTF-8"))?,
            metadata: decode_metadata(&event.custom_metadata)
                .map_err(|e| corrupt(&format!("metadata: {e}")))?,
            recorded_at: event.created.with_timezone(&Utc),
        })
    }

    /// Where `ids` are stored among the stream's newest [`ID_WINDOW`]
    /// events: `None` when none is, an error when only some are.
    async fn stored(
        &self,
        stream: &StreamName,
        ids: &[Uuid],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let newest = self
            .read_stream(stream, u64::MAX, Direction::Backwards, ID_WINDOW)
            .await?;
        // Read backwards: the first found is the newest.
        let Some(newest_found) = newest.iter().find(|e| ids.contains(&e.id)) else {
            return Ok(None);
        };
        // The server does not keep ids unique, even in one stream: count
        // each once.
        let found: HashSet<Uuid> = newest
            .iter()
            .map(|e| e.id)
            .filter(|id| ids.contains(id))
            .collect();
        if found.len() < ids.len() {
            return Err(StoreError::PartiallyStored {
                stream: stream.clone(),
            });
        }
        Ok(Some(AppendOutcome {
            revision: newest_found.revision,
            position: newest_found.position,
            duplicate: true,
        }))
    }

    /// The place of the event at `revision`, just appended.
    async fn landed(
        &self,
        stream: &StreamName,
        revision: u64,
    ) -> Result<AppendOutcome, StoreError> {
        let event = self
            .read_stream(stream, revision, Direction::Forwards, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                StoreError::Server(format!(
                    "{stream}@{revision} was appended but is not readable"
                ))
            })?;
        Ok(AppendOutcome {
            revision: event.revision,
            position: event.position,
            duplicate: false,
        })
    }

    async fn collect(
        &self,
        mut reader: kurrentdb::ReadStream,
        limit: usize,
    ) -> Result<Vec<ResolvedEvent>, kurrentdb::Error> {
        let mut events = Vec::new();
        while events.len() < limit {
            match reader.next().await? {
                Some(event) => events.push(event),
                None => break,
            }
        }
        Ok(events)
    }

    /// Up to `limit + 1` events of Omnibox streams from `after` (inclusive:
    /// a read from a position starts with the event there).
    async fn read_all_page(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<ResolvedEvent>, StoreError> {
        let start = after.map_or(StreamPosition::Start, |p| {
            StreamPosition::Position(to_server_position(p))
        });
        let count = limit.saturating_add(1);
        let options = ReadAllOptions::default()
            .position(start)
            .forwards()
            .filter(self.naming.filter())
            .max_count(count);
        let reader = self.client.read_all(&options).await.map_err(server_error)?;
        self.collect(reader, count).await.map_err(server_error)
    }
}

/// Wakes followers whenever an Omnibox stream gets an event, from any
/// process, until the store is dropped.
async fn follow_all(client: Client, filter: SubscriptionFilter, changes: Arc<watch::Sender<u64>>) {
    let mut delay = RESUBSCRIBE_DELAY;
    loop {
        let options = SubscribeToAllOptions::default()
            .position(StreamPosition::End)
            .filter(filter.clone());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(_)) => {
                    changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(SubscriptionEvent::Confirmed(_)) => delay = RESUBSCRIBE_DELAY,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the EventStoreDB subscription that wakes followers broke; subscribing again");
                    break;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RESUBSCRIBE_DELAY_MAX);
    }
}

#[async_trait]
impl EventStore for EventStoreDbStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        check_new_events(&events)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        if let Some(stored) = self.stored(stream, &ids).await? {
            return Ok(stored);
        }
        let data = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(stream_state(expected));
        let name = self.naming.stream(stream);
        match self
            .client
            .append_to_stream(name.as_str(), &options, data)
            .await
        {
            Ok(written) => {
                self.notify();
                self.landed(stream, written.next_expected_version).await
            }
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                // A concurrent retry of the same append may have won.
                if let Some(stored) = self.stored(stream, &ids).await? {
                    return Ok(stored);
                }
                Err(StoreError::WrongExpectedRevision {
                    stream: stream.clone(),
                    expected,
                    actual: actual_revision(current),
                })
            }
            Err(error) => Err(server_error(error)),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = match (direction, from) {
            (Direction::Backwards, u64::MAX) => StreamPosition::End,
            _ => StreamPosition::Position(from),
        };
        let options = ReadStreamOptions::default().position(start);
        let options = match direction {
            Direction::Forwards => options.forwards(),
            Direction::Backwards => options.backwards(),
        }
        .max_count(limit);
        let name = self.naming.stream(stream);
        let events = match self.client.read_stream(name.as_str(), &options).await {
            Ok(reader) => self.collect(reader, limit).await,
            Err(error) => Err(error),
        };
        match events {
            Ok(events) => events.iter().map(|e| self.recorded(e)).collect(),
            Err(error) if is_missing(&error) => Ok(Vec::new()),
            Err(error) => Err(server_error(error)),
        }
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = after;
        let mut recorded = Vec::with_capacity(limit);
        loop {
            let page = self.read_all_page(cursor, limit).await?;
            let full = page.len() > limit;
            for resolved in &page {
                let event = server_event(resolved)?;
                let position = Position::new(event.position.commit, event.position.prepare);
                if cursor.is_some_and(|cursor| position <= cursor) {
                    continue;
                }
                cursor = Some(position);
                if event.event_type.starts_with('$') {
                    continue;
                }
                recorded.push(self.recorded(resolved)?);
                if recorded.len() == limit {
                    return Ok(recorded);
                }
            }
            // A full page of skipped system events: read on past them.
            if !full {
                return Ok(recorded);
            }
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1);
        let reader = self.client.read_all(&options).await.map_err(server_error)?;
        self.collect(reader, 1).await.map_err(server_error)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "eventstoredb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamName {
        StreamName::parse("conversation-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f").expect("stream")
    }

    #[test]
    fn stream_names_are_the_servers_as_they_are_without_a_prefix() {
        let naming = Naming {
            prefix: String::new(),
        };
        assert_eq!(naming.stream(&stream()), stream().as_str());
        assert_eq!(naming.parse(stream().as_str()), Some(stream()));
        for other in [
            "$all",
            "$$conversation-x",
            "$ce-conversation",
            "orders",
            "a-b",
        ] {
            assert_eq!(
                naming.parse(other),
                None,
                "{other:?} is not an Omnibox stream"
            );
        }
    }

    #[test]
    fn a_prefix_keeps_one_run_apart_from_every_other() {
        let settings = EventStoreDbSettings::parse("esdb://localhost:2113?tls=false")
            .expect("url")
            .with_stream_prefix("t1a2b_")
            .expect("prefix");
        let naming = Naming {
            prefix: settings.stream_prefix().to_owned(),
        };
        let name = naming.stream(&stream());
        assert_eq!(name, format!("t1a2b_{stream}", stream = stream()));
        assert_eq!(naming.parse(&name), Some(stream()));
        assert_eq!(naming.parse(stream().as_str()), None);
        assert!(EventStoreDbSettings::parse("esdb://localhost:2113")
            .expect("url")
            .with_stream_prefix("Bad-")
            .is_err());
    }

    /// The `$all` filter (the server's .NET regex syntax and Rust's agree
    /// on anchors, classes and counted repetition).
    #[test]
    fn the_all_filter_matches_exactly_the_names_the_store_makes() {
        let naming = Naming {
            prefix: "t9_".to_owned(),
        };
        let regex = regex::Regex::new(&naming.regex()).expect("regex");
        assert!(regex.is_match(&naming.stream(&stream())));
        assert!(!regex.is_match(stream().as_str()), "another run's stream");
        for other in [
            "$$t9_conversation-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f",
            "t9_conversation-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f-x",
            "$ce-t9_conversation",
            "$et-Tested",
        ] {
            assert!(!regex.is_match(other), "{other:?}");
        }
        let production = regex::Regex::new(
            &Naming {
                prefix: String::new(),
            }
            .regex(),
        )
        .expect("regex");
        assert!(production.is_match(stream().as_str()));
        assert!(!production.is_match(&format!("${}", stream())));
    }

    #[test]
    fn expected_revisions_map_one_to_one() {
        assert_eq!(stream_state(ExpectedRevision::Any), StreamState::Any);
        assert_eq!(
            stream_state(ExpectedRevision::NoStream),
            StreamState::NoStream
        );
        assert_eq!(
            stream_state(ExpectedRevision::Exact(7)),
            StreamState::StreamRevision(7)
        );
        assert_eq!(actual_revision(CurrentRevision::Current(3)), Some(3));
        assert_eq!(actual_revision(CurrentRevision::NoStream), None);
    }

    #[test]
    fn positions_are_the_servers_commit_and_prepare_pair() {
        let ours = Position::new(1_024, 980);
        let theirs = to_server_position(ours);
        assert_eq!((theirs.commit, theirs.prepare), (1_024, 980));
        assert_eq!(from_server_position(theirs), Some(ours));
        // Both order by commit, then prepare.
        let (a, b) = (Position::new(5, 9), Position::new(6, 1));
        assert_eq!(a.cmp(&b), to_server_position(a).cmp(&to_server_position(b)));
        // All ones: an old server's stream read, which has no position.
        assert_eq!(from_server_position(kurrentdb::Position::end()), None);
        assert_eq!(
            from_server_position(kurrentdb::Position::start()),
            Some(Position::new(0, 0))
        );
    }

    #[test]
    fn metadata_uses_the_servers_correlation_names_and_round_trips() {
        let metadata = Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            actor: Some("member:1".into()),
        };
        let json = serde_json::to_value(encode_metadata(&metadata)).expect("encode");
        assert_eq!(json["$correlationId"], metadata.correlation_id.to_string());
        assert_eq!(
            json["$causationId"],
            metadata.causation_id.expect("set").to_string()
        );
        assert_eq!(json["actor"], "member:1");
        let bytes = serde_json::to_vec(&json).expect("bytes");
        assert_eq!(decode_metadata(&bytes).expect("decode"), metadata);

        let bare = Metadata {
            correlation_id: Uuid::now_v7(),
            ..Metadata::default()
        };
        let bytes = serde_json::to_vec(&encode_metadata(&bare)).expect("encode");
        assert!(!String::from_utf8_lossy(&bytes).contains("causation"));
        assert_eq!(decode_metadata(&bytes).expect("decode"), bare);
        assert_eq!(decode_metadata(b"").expect("none"), Metadata::default());
        assert!(decode_metadata(b"{\"actor\":1}").is_err());
    }

    #[test]
    fn events_keep_their_id_and_json_data_byte_for_byte() {
        for data in [
            r#"{"n":1,"text":"สวัสดี 👋🏽"}"#,
            r#"{ "spaced" : [1, 2] }"#,
            " {} ",
            "not json",
        ] {
            let event = NewEvent {
                id: Uuid::now_v7(),
                event_type: "Tested".into(),
                data: data.into(),
                metadata: Metadata::default(),
            };
            let debug = format!("{:?}", event_data(&event).expect("event data"));
            assert!(debug.contains(&event.id.to_string()), "{debug}");
            let json =
                serde_json::from_str::<serde_json::Value>(data).is_ok() && data.trim() == data;
            let content_type = if json {
                "application/json"
            } else {
                "application/octet-stream"
            };
            assert!(debug.contains(content_type), "{data:?}: {debug}");
        }
    }

    #[test]
    fn urls_parse_for_every_scheme_and_keep_passwords_out_of_errors() {
        for url in [
            "esdb://localhost:2113?tls=false",
            "esdb://admin:changeit@node1:2113,node2:2113?tls=true",
            "esdb+discover://cluster.example:2113",
            "kurrentdb://localhost:2113?tls=false",
        ] {
            EventStoreDbSettings::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let settings =
            EventStoreDbSettings::parse("esdb://admin:changeit@localhost:2113?tls=false")
                .expect("url");
        assert!(!settings.client_settings().is_secure_mode_enabled());
        let debug = format!("{settings:?}");
        assert!(debug.contains("localhost:2113"), "{debug}");
        assert!(!debug.contains("changeit"), "{debug}");
        let error = EventStoreDbSettings::parse("postgres://admin:hunter2@localhost/omnibox")
            .expect_err("not a server url")
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("admin:***@localhost"), "{error}");
        assert_eq!(redact("esdb://localhost:2113"), "esdb://localhost:2113");
        assert_eq!(
            redact("esdb://u:p@h:1/x?tls=false"),
            "esdb://u:***@h:1/x?tls=false"
        );
    }

    #[test]
    fn the_process_settles_on_one_crypto_provider() {
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        // Building a TLS client configuration from the default no longer
        // panics, though rustls has two providers compiled in.
        let roots = rustls::RootCertStore::empty();
        let _ = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        assert!(!install_crypto_provider(), "installed once");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_not_a_hang() {
        let settings = EventStoreDbSettings::parse(
            "esdb://127.0.0.1:9?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=200",
        )
        .expect("url");
        let connected = tokio::time::timeout(
            Duration::from_secs(20),
            EventStoreDbStore::connect(settings),
        )
        .await
        .expect("gives up in time");
        assert!(matches!(connected, Err(StoreError::Server(_))));
    }
}
