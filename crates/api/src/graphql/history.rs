//! History: an auditor's exact view of a stream, event by event.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use omnibox_domain::ids::{ChannelId, ConversationId, OrgId};
use omnibox_projections::{channels, inbox};
use omnibox_store::{Direction, StreamName};

use super::{session, state};
use crate::ApiError;

/// One event as the log holds it.
#[derive(SimpleObject)]
pub struct Event {
    /// Opaque position in the whole log.
    pub position: String,
    pub stream: String,
    pub revision: i64,
    #[graphql(name = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub data: Json<serde_json::Value>,
    /// correlationId, causationId and actor.
    pub metadata: Json<serde_json::Value>,
}

#[derive(Default)]
pub struct HistoryQuery;

const MAX_PAGE: i32 = 500;

#[Object]
impl HistoryQuery {
    /// The events of one stream of the caller's organization, oldest first.
    /// `after` is the cursor of the last event already seen.
    #[graphql(complexity = "super::page_cost(first, 100, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        stream: String,
        after: Option<String>,
        #[graphql(default = 100)] first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, Event>> {
        let me = &session(ctx)?.member;
        let not_found = || ApiError::NotFound(format!("no stream {stream:?} in your organization"));
        let name = StreamName::parse(&stream).map_err(|e| ApiError::Validation(e.to_string()))?;
        let app = state(ctx)?;
        // A stream is readable when the read models say it is the caller's organization's.
        let visible = match name.category() {
            // Member events name people and their roles: administrators only.
            OrgId::CATEGORY if name.id() == me.org_id.0 => {
                if !me.role.can_administer() {
                    return Err(ApiError::Forbidden(
                        "only an OWNER or PRIMARY_ADMIN may read the organization's history".into(),
                    )
                    .into());
                }
                true
            }
            ChannelId::CATEGORY => channels::channel(&app.db, me.org_id, ChannelId(name.id()))
                .await
                .map_err(ApiError::from)?
                .is_some(),
            ConversationId::CATEGORY => {
                inbox::conversation(&app.db, me.org_id, ConversationId(name.id()))
                    .await
                    .map_err(ApiError::from)?
                    .is_some()
            }
            _ => false,
        };
        if !visible {
            return Err(not_found().into());
        }
        let first = first.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(
                ApiError::Validation(format!("first must be between 1 and {MAX_PAGE}")).into(),
            );
        }
        let from = match after {
            Some(cursor) => cursor
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::Validation(format!("{cursor:?} is not a cursor from this stream"))
                })?
                .saturating_add(1),
            None => 0,
        };
        let limit = first as usize;
        let mut events = app
            .store
            .read_stream(&name, from, Direction::Forwards, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let has_next = events.len() > limit;
        events.truncate(limit);
        let mut connection = Connection::new(from > 0, has_next);
        for event in events {
            let mut data = serde_json::from_str(&event.data).map_err(ApiError::internal)?;
            redact(&mut data);
            let metadata = serde_json::to_value(&event.metadata).map_err(ApiError::internal)?;
            connection.edges.push(Edge::new(
                event.revision.to_string(),
                Event {
                    position: event.position.to_string(),
                    stream: event.stream.to_string(),
                    revision: event.revision as i64,
                    event_type: event.event_type,
                    recorded_at: event.recorded_at,
                    data: Json(data),
                    metadata: Json(metadata),
                },
            ));
        }
        Ok(connection)
    }
}

/// Fields history never shows, even hashed: members' token hashes.
const REDACTED: &[&str] = &["token_sha256"];

/// Removes [`REDACTED`] fields from an event's data, wherever they nest.
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|key, _| !REDACTED.contains(&key.as_str()));
            map.values_mut().for_each(redact);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
