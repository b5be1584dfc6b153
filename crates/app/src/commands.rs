//! Running a command: load an aggregate, decide, append, retry on conflict.
//!
//! The domain decides with pure functions; this module gives them a
//! consistent state and makes the decision stick. Two commands racing on one
//! stream both read revision N; the first append wins, the second gets a
//! conflict, re-reads and decides again on the new state, a bounded number
//! of times.

use omnibox_store::{
    Direction, EventStore, ExpectedRevision, Metadata, NewEvent, Position, StoreError, StreamName,
};
use uuid::Uuid;

/// Attempts before a command on a very contended stream gives up.
const MAX_ATTEMPTS: usize = 10;
const PAGE: usize = 512;

pub use omnibox_domain::Aggregate;

/// Whether `data`, an internally tagged event as serde writes it (the tag
/// first), names `event_type`: the type the store files an event under and
/// the tag it is read back by can never drift apart.
fn tagged_as(data: &str, event_type: &str) -> bool {
    data.strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.strip_prefix(event_type))
        .is_some_and(|rest| rest.starts_with('"'))
}

/// Who is acting and on behalf of which request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub correlation_id: Uuid,
    pub actor: String,
    /// The organization acted in, when there is one.
    pub org: Option<omnibox_domain::ids::OrgId>,
}

impl Actor {
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            correlation_id: Uuid::now_v7(),
            actor: actor.into(),
            org: None,
        }
    }

    /// A member acting in their organization.
    pub fn member(member: &omnibox_projections::members::MemberRow) -> Self {
        Self {
            org: Some(member.org_id),
            ..Self::new(format!("member:{}", member.id))
        }
    }

    /// Omnibox itself (timers, workers).
    pub fn system(name: &str) -> Self {
        Self::new(name)
    }
}

/// What a command did.
#[derive(Debug)]
pub struct Executed<E> {
    pub events: Vec<E>,
    /// Where the last event landed; `None` when the decision was "nothing to do".
    pub position: Option<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The domain said no.
    #[error(transparent)]
    Rejected(E),
    #[error("the stream kept changing under the command; try again")]
    Contended,
    #[error("a stored event cannot be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads `A` from its stream `<category>-<id>`, returning it with its revision.
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    id: Uuid,
) -> Result<(A, Option<u64>), CommandError<std::convert::Infallible>> {
    let stream = stream_name::<A>(id)?;
    let mut state = A::default();
    let mut revision = None;
    catch_up(store, &stream, &mut state, &mut revision).await?;
    Ok((state, revision))
}

/// The events of `stream` recorded up to the instant `at`, in order.
pub async fn read_stream_until(
    store: &dyn EventStore,
    stream: &StreamName,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<omnibox_store::RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    loop {
        let from = events.len() as u64;
        let page = store
            .read_stream(stream, from, Direction::Forwards, PAGE)
            .await?;
        let full = page.len() == PAGE;
        for recorded in page {
            if recorded.recorded_at > at {
                return Ok(events);
            }
            events.push(recorded);
        }
        if !full {
            return Ok(events);
        }
    }
}

/// Loads `A` as its events made it up to the instant `at` (time travel:
/// events recorded later are left out).
pub async fn load_as_of<A: Aggregate>(
    store: &dyn EventStore,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<A, CommandError<std::convert::Infallible>> {
    let mut state = A::default();
    for recorded in read_stream_until(store, &stream_name::<A>(id)?, at).await? {
        state.evolve(&decode::<A>(&recorded)?);
    }
    Ok(state)
}

/// One stored event of `A`'s stream, as `A`'s event type.
fn decode<A: Aggregate>(
    recorded: &omnibox_store::RecordedEvent,
) -> Result<A::Event, CommandError<std::convert::Infallible>> {
    serde_json::from_str(&recorded.data).map_err(|e| {
        CommandError::Corrupt(format!(
            "{} revision {}: {e}",
            recorded.stream, recorded.revision
        ))
    })
}

/// The data of `event` if it is organization `org`'s (its own stream, or an
/// event naming it as `org_id`); `None` for any other organization's.
/// Only events that mention the id are decoded.
pub fn organization_data(
    event: &omnibox_store::RecordedEvent,
    org: omnibox_domain::ids::OrgId,
) -> Result<Option<serde_json::Value>, serde_json::Error> {
    let id = org.0.to_string();
    let own_stream = event.stream.category() == omnibox_domain::ids::OrgId::CATEGORY
        && event.stream.id() == org.0;
    if !own_stream && !event.data.contains(&id) {
        return Ok(None);
    }
    let data: serde_json::Value = serde_json::from_str(&event.data)?;
    Ok((own_stream || data["org_id"].as_str() == Some(id.as_str())).then_some(data))
}

/// Evolves `state`, which reflects `stream` up to `revision`, with the
/// events appended since.
async fn catch_up<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamName,
    state: &mut A,
    revision: &mut Option<u64>,
) -> Result<(), CommandError<std::convert::Infallible>> {
    loop {
        let from = revision.map_or(0, |r: u64| r + 1);
        let page = store
            .read_stream(stream, from, Direction::Forwards, PAGE)
            .await?;
        for recorded in &page {
            state.evolve(&decode::<A>(recorded)?);
            *revision = Some(recorded.revision);
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}

fn stream_name<A: Aggregate>(id: Uuid) -> Result<StreamName, StoreError> {
    StreamName::new(A::CATEGORY, id).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decides `decide` against the current state of aggregate `id` and appends
/// what it returns, retrying from a fresh read when another writer got there first.
pub async fn execute<A, E>(
    store: &dyn EventStore,
    id: Uuid,
    actor: &Actor,
    decide: impl Fn(&A) -> Result<Vec<A::Event>, E>,
) -> Result<Executed<A::Event>, CommandError<E>>
where
    A: Aggregate,
{
    execute_identified(store, id, actor, |_| None, decide).await
}

/// [`execute`], with the ids of some events chosen by `event_id` (the
/// others get UUIDv7s). An event whose id is already stored anywhere in the
/// log makes the append a no-op that reports the stored event's place: how
/// a retried request with an idempotency key queues nothing twice.
pub async fn execute_identified<A, E>(
    store: &dyn EventStore,
    id: Uuid,
    actor: &Actor,
    event_id: impl Fn(&A::Event) -> Option<Uuid>,
    decide: impl Fn(&A) -> Result<Vec<A::Event>, E>,
) -> Result<Executed<A::Event>, CommandError<E>>
where
    A: Aggregate,
{
    let mut known = Known::default();
    execute_on(store, id, actor, &mut known, event_id, decide).await
}

/// An aggregate as far as it has been read, kept by a caller that decides
/// on it again and again (the delivery worker): each decision reads only
/// the events appended since.
pub struct Known<A> {
    pub state: A,
    pub revision: Option<u64>,
}

impl<A: Default> Default for Known<A> {
    fn default() -> Self {
        Self {
            state: A::default(),
            revision: None,
        }
    }
}

impl<A: Aggregate> Known<A> {
    /// Reads the events appended to aggregate `id` since this state.
    pub async fn catch_up(
        &mut self,
        store: &dyn EventStore,
        id: Uuid,
    ) -> Result<(), CommandError<std::convert::Infallible>> {
        let stream = stream_name::<A>(id)?;
        catch_up(store, &stream, &mut self.state, &mut self.revision).await
    }
}

/// [`execute_identified`] on a state the caller keeps: it is brought up to
/// date first, and after a successful append it includes the new events.
pub async fn execute_on<A, E>(
    store: &dyn EventStore,
    id: Uuid,
    actor: &Actor,
    known: &mut Known<A>,
    event_id: impl Fn(&A::Event) -> Option<Uuid>,
    decide: impl Fn(&A) -> Result<Vec<A::Event>, E>,
) -> Result<Executed<A::Event>, CommandError<E>>
where
    A: Aggregate,
{
    let stream = stream_name::<A>(id)?;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // Let the other writer finish before reading what it wrote.
            let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=attempt as u64 * 2);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        // Only the events appended since the last read are read.
        catch_up(store, &stream, &mut known.state, &mut known.revision)
            .await
            .map_err(|e| match e {
                CommandError::Store(e) => CommandError::Store(e),
                CommandError::Corrupt(e) => CommandError::Corrupt(e),
                CommandError::Contended => CommandError::Contended,
                CommandError::Rejected(never) => match never {},
            })?;
        let events = decide(&known.state).map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(Executed {
                events,
                position: None,
            });
        }
        let new_events = events
            .iter()
            .map(|event| {
                let event_type = A::event_type(event);
                let data = serde_json::to_string(event)
                    .map_err(|e| CommandError::Corrupt(e.to_string()))?;
                if !tagged_as(&data, event_type) {
                    return Err(CommandError::Corrupt(format!(
                        "{event_type} would be stored under another serde tag"
                    )));
                }
                Ok(NewEvent {
                    id: event_id(event).unwrap_or_else(Uuid::now_v7),
                    event_type: event_type.to_owned(),
                    data,
                    metadata: Metadata {
                        correlation_id: actor.correlation_id,
                        causation_id: None,
                        actor: Some(actor.actor.clone()),
                    },
                })
            })
            .collect::<Result<Vec<_>, CommandError<E>>>()?;
        let expected = known
            .revision
            .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        match store.append(&stream, expected, new_events).await {
            Ok(outcome) if !outcome.duplicate => {
                for event in &events {
                    known.state.evolve(event);
                }
                known.revision = Some(outcome.revision);
                return Ok(Executed {
                    events,
                    position: Some(outcome.position),
                });
            }
            // Stored before (an idempotent retry): the state is read again
            // by whoever decides next.
            Ok(outcome) => {
                return Ok(Executed {
                    events,
                    position: Some(outcome.position),
                })
            }
            Err(StoreError::WrongExpectedRevision { .. } | StoreError::Contended { .. }) => {
                continue
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(CommandError::Contended)
}

#[cfg(test)]
mod tag_tests {
    use super::tagged_as;

    #[test]
    fn an_event_type_must_be_its_serde_tag() {
        assert!(tagged_as(
            r#"{"type":"MessageReceived","x":1}"#,
            "MessageReceived"
        ));
        assert!(!tagged_as(
            r#"{"type":"MessageReceivedV2"}"#,
            "MessageReceived"
        ));
        assert!(!tagged_as(r#"{"type":"Other"}"#, "MessageReceived"));
        assert!(!tagged_as(
            r#"{"x":1,"type":"MessageReceived"}"#,
            "MessageReceived"
        ));
    }

    #[test]
    fn an_organization_event_is_filed_under_its_tag() {
        use omnibox_domain::Aggregate;
        let event = omnibox_domain::org::OrgEvent::OrganizationCreated {
            org_id: omnibox_domain::ids::OrgId(uuid::Uuid::nil()),
            name: "Shop".into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let data = serde_json::to_string(&event).expect("serializes");
        let event_type = <omnibox_domain::org::Organization as Aggregate>::event_type(&event);
        assert!(tagged_as(&data, event_type), "{data}");
    }
}
