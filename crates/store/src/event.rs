//! The shapes that cross the store's boundary.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stream's name: `<category>-<uuid>`, e.g. `conversation-0192…`.
///
/// Parsing instead of validating: a `StreamName` can only hold a well-formed
/// name, so backends never see an arbitrary string from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a stream name of the form <category>-<uuid> (category: lowercase letters and _)"
)]
pub struct StreamNameError(pub String);

impl StreamName {
    /// Builds a name from a category (lowercase ASCII letters and `_`) and an id.
    pub fn new(category: &str, id: Uuid) -> Result<Self, StreamNameError> {
        Self::parse(&format!("{category}-{id}"))
    }

    pub fn parse(name: &str) -> Result<Self, StreamNameError> {
        let invalid = || StreamNameError(name.to_owned());
        let (category, id) = name.split_once('-').ok_or_else(invalid)?;
        let category_ok = !category.is_empty()
            && category.len() <= 64
            && category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_');
        if !category_ok || id.len() != 36 || Uuid::parse_str(id).is_err() {
            return Err(invalid());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or("", |(category, _)| category)
    }

    /// The id part of the name.
    pub fn id(&self) -> Uuid {
        self.0
            .split_once('-')
            .and_then(|(_, id)| Uuid::parse_str(id).ok())
            .unwrap_or_default()
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StreamName {
    type Err = StreamNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What the caller believes about a stream before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet (reservations: one page, one organization).
    NoStream,
    /// The stream's last event must have this revision (revisions start at 0).
    Exact(u64),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `actual` satisfies this expectation.
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => actual.is_none(),
            ExpectedRevision::Exact(expected) => actual == Some(expected),
        }
    }
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// An event's place in `$all`.
///
/// Opaque to everyone but the backend that issued it: two numbers, so that an
/// EventStoreDB backend can carry its (commit, prepare) pair, and PostgreSQL
/// its (transaction id, sequence). SQLite uses one number for both. Positions
/// compare in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    pub const fn new(commit: u64, prepare: u64) -> Self {
        Self { commit, prepare }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.commit == self.prepare {
            write!(f, "{}", self.commit)
        } else {
            write!(f, "{}:{}", self.commit, self.prepare)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a log position")]
pub struct PositionParseError(pub String);

impl FromStr for Position {
    type Err = PositionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PositionParseError(s.to_owned());
        match s.split_once(':') {
            Some((commit, prepare)) => Ok(Position::new(
                commit.parse().map_err(|_| invalid())?,
                prepare.parse().map_err(|_| invalid())?,
            )),
            None => {
                let n = s.parse().map_err(|_| invalid())?;
                Ok(Position::new(n, n))
            }
        }
    }
}

/// Who and what caused an event; stored beside it, never inside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Shared by every event that one outside request led to.
    pub correlation_id: Uuid,
    /// The event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who acted: `member:<uuid>`, `platform:facebook`, `system:timer`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique for ever; appending an id that is already stored is a no-op.
    pub id: Uuid,
    pub event_type: String,
    /// The event's JSON document.
    pub data: String,
    pub metadata: Metadata,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: StreamName,
    /// The event's place in its stream, from 0.
    pub revision: u64,
    pub position: Position,
    pub event_type: String,
    pub data: String,
    pub metadata: Metadata,
    /// When the log stored it (not when it happened on a platform).
    pub recorded_at: DateTime<Utc>,
}

#[cfg(test)]
impl RecordedEvent {
    /// A stand-in event at `position`, for tests of what holds events.
    pub(crate) fn at(position: Position) -> Self {
        RecordedEvent {
            id: Uuid::new_v4(),
            stream: StreamName::new("conversation", Uuid::nil()).expect("stream name"),
            revision: position.prepare,
            position,
            event_type: "Test".into(),
            data: "{}".into(),
            metadata: Metadata::default(),
            recorded_at: chrono::Utc::now(),
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Revision of the last event of the append (the next `Exact` to expect).
    pub revision: u64,
    /// Position of the last event of the append.
    pub position: Position,
    /// True when every event was already stored and nothing was written.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_parse_only_category_dash_uuid() {
        let id = Uuid::now_v7();
        let ok = StreamName::parse(&format!("conversation-{id}")).expect("valid");
        assert_eq!(ok.category(), "conversation");
        assert_eq!(ok.id(), id);
        for bad in [
            "",
            "conversation",
            "conversation-",
            "Conversation-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f",
            "conversation-not-a-uuid",
            "-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f",
            "con versation-0192f0c1-7ad4-7d3c-a3e1-5f6b9c1d2e3f",
        ] {
            assert!(StreamName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn positions_round_trip_through_text_and_order_by_commit_then_prepare() {
        for p in [
            Position::new(7, 7),
            Position::new(900, 3),
            Position::new(0, 0),
        ] {
            assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        }
        assert!(Position::new(1, 9) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
        assert!("x:1".parse::<Position>().is_err());
    }

    #[test]
    fn expected_revision_matches() {
        assert!(ExpectedRevision::Any.matches(None));
        assert!(ExpectedRevision::Any.matches(Some(3)));
        assert!(ExpectedRevision::NoStream.matches(None));
        assert!(!ExpectedRevision::NoStream.matches(Some(0)));
        assert!(ExpectedRevision::Exact(2).matches(Some(2)));
        assert!(!ExpectedRevision::Exact(2).matches(Some(3)));
        assert!(!ExpectedRevision::Exact(0).matches(None));
    }
}
