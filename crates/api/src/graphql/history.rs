//! History: an auditor's exact view of a stream, event by event.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use omnibox_app::AppError;
use omnibox_domain::ids::{ChannelId, ConversationId, OrgId};
use omnibox_projections::{channels, inbox};
use omnibox_store::{Direction, StreamName};

use super::{session, state};
use crate::error::ApiError;
use crate::state::AppState;

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
    /// The events of one stream of the caller's organization, oldest first,
    /// or with `stream: "$all"` all of the organization's events in log
    /// order (OWNER only). `after` is the cursor of the last event already
    /// seen. Token hashes never appear; secrets are never in the log.
    #[graphql(complexity = "super::page_cost(first, 100, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        stream: String,
        after: Option<String>,
        #[graphql(default = 100)] first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, Event>> {
        let me = &session(ctx)?.member;
        if stream == "$all" {
            return Ok(whole_history(ctx, after, first.unwrap_or(100)).await?);
        }
        let not_found = || {
            ApiError::App(AppError::NotFound(format!(
                "no stream {stream:?} in your organization"
            )))
        };
        let name = StreamName::parse(&stream)
            .map_err(|e| ApiError::App(AppError::Validation(e.to_string())))?;
        let app = state(ctx)?;
        // A stream is readable when the read models say it is the caller's organization's.
        let visible = match name.category() {
            // Member events name people and their roles: administrators only.
            OrgId::CATEGORY if name.id() == me.org_id.0 => {
                if !me.role.can_administer() {
                    return Err(ApiError::App(AppError::Forbidden(
                        "only an OWNER or PRIMARY_ADMIN may read the organization's history".into(),
                    ))
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
            return Err(ApiError::App(AppError::Validation(format!(
                "first must be between 1 and {MAX_PAGE}"
            )))
            .into());
        }
        let from = match after {
            Some(cursor) => cursor
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::App(AppError::Validation(format!(
                        "{cursor:?} is not a cursor from this stream"
                    )))
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
            let cursor = event.revision.to_string();
            let data = serde_json::from_str(&event.data).map_err(ApiError::internal)?;
            let Edge { node, .. } = to_edge(app, event, data).await?;
            connection.edges.push(Edge::new(cursor, node));
        }
        Ok(connection)
    }
}

/// Events `history(stream: "$all")` reads per request once it has found
/// some: a page may hold fewer than `first` events and still have a next.
const MAX_SCANNED: usize = 50_000;

/// The caller's organization's events in log order (OWNER only). The log
/// holds every organization's events; this reads it after `after`, keeps
/// the caller's, and stops at `first` events or [`MAX_SCANNED`] read, so a
/// page's cursor may point past events of other organizations.
async fn whole_history(
    ctx: &Context<'_>,
    after: Option<String>,
    first: i32,
) -> Result<Connection<String, Event>, ApiError> {
    let me = &session(ctx)?.member;
    if me.role != omnibox_domain::org::Role::Owner {
        return Err(ApiError::App(AppError::Forbidden(
            "only the OWNER may read the organization's whole history".into(),
        )));
    }
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::App(AppError::Validation(format!(
            "first must be between 1 and {MAX_PAGE}"
        ))));
    }
    let app = state(ctx)?;
    let mut cursor = after
        .as_deref()
        .map(|c| {
            c.parse::<omnibox_store::Position>().map_err(|_| {
                ApiError::App(AppError::Validation(format!(
                    "{c:?} is not a cursor of $all"
                )))
            })
        })
        .transpose()?;
    let mut edges = Vec::new();
    let mut scanned = 0;
    let mut more = false;
    'pages: loop {
        let page = app.store.read_all(cursor, 1000).await?;
        if page.is_empty() {
            break;
        }
        for event in page {
            scanned += 1;
            cursor = Some(event.position);
            let data = omnibox_app::commands::organization_data(&event, me.org_id)
                .map_err(ApiError::internal)?;
            if let Some(data) = data {
                edges.push(to_edge(app, event, data).await?);
                if edges.len() == first as usize {
                    more = true;
                    break 'pages;
                }
            }
            // A page ends early only with something in it, so its last
            // cursor is where the next one starts.
            if scanned >= MAX_SCANNED && !edges.is_empty() {
                more = true;
                break 'pages;
            }
        }
    }
    let mut connection = Connection::new(after.is_some(), more);
    connection.edges = edges;
    Ok(connection)
}

/// `event` (whose `data` is already decoded) as history shows it: secrets
/// removed, personal fields opened (`null` once their contact is erased).
async fn to_edge(
    app: &AppState,
    event: omnibox_store::RecordedEvent,
    mut data: serde_json::Value,
) -> Result<Edge<String, Event, async_graphql::connection::EmptyFields>, ApiError> {
    redact(&mut data);
    app.personal
        .open_json(&mut data)
        .await
        .map_err(ApiError::internal)?;
    let metadata = serde_json::to_value(&event.metadata).map_err(ApiError::internal)?;
    Ok(Edge::new(
        event.position.to_string(),
        Event {
            position: event.position.to_string(),
            stream: event.stream.to_string(),
            revision: event.revision as i64,
            event_type: event.event_type,
            recorded_at: event.recorded_at,
            data: Json(data),
            metadata: Json(metadata),
        },
    ))
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
