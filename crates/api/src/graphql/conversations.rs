//! The inbox: conversations across channels, their messages and windows,
//! and what members do with them (read, assign, resolve).

use std::collections::HashMap;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::stream::{Stream, StreamExt};
use omnibox_app::services::conversations as service;
use omnibox_app::services::erasure::erase_contact_by_member;
use omnibox_app::AppError;
use omnibox_domain::conversation::{
    self as domain, AttachmentKind as DomainAttachmentKind, ConversationCommand,
};
use omnibox_domain::ids::{ChannelId, ConversationId, MemberId, OrgId};
use omnibox_domain::policy::{self, WindowPhase as DomainPhase};
use omnibox_projections::channels::{self as channel_read, ChannelRow};
use omnibox_projections::inbox::{
    self as read, ConversationRow, InboxFilter, MediaRow, MessageRow,
};
use omnibox_projections::members::{self as member_read, MemberRow};
use omnibox_projections::Change;
use uuid::Uuid;

use super::channels::{Channel, ChannelKind};
use super::members::Member;
use super::{session, state};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConversationStatus {
    Open,
    Resolved,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WindowPhase {
    Standard,
    HumanAgent,
    Closed,
    Unlimited,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DeliveryState {
    Queued,
    Delivered,
    Failed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AttachmentKind {
    Image,
    Video,
    Audio,
    File,
    Sticker,
    Location,
    Link,
    Other,
}

impl From<DomainAttachmentKind> for AttachmentKind {
    fn from(kind: DomainAttachmentKind) -> Self {
        match kind {
            DomainAttachmentKind::Image => AttachmentKind::Image,
            DomainAttachmentKind::Video => AttachmentKind::Video,
            DomainAttachmentKind::Audio => AttachmentKind::Audio,
            DomainAttachmentKind::File => AttachmentKind::File,
            DomainAttachmentKind::Sticker => AttachmentKind::Sticker,
            DomainAttachmentKind::Location => AttachmentKind::Location,
            DomainAttachmentKind::Link => AttachmentKind::Link,
            DomainAttachmentKind::Other => AttachmentKind::Other,
        }
    }
}

/// The customer's messaging window at an instant.
#[derive(SimpleObject)]
pub struct Window {
    pub phase: WindowPhase,
    pub standard_ends_at: Option<DateTime<Utc>>,
    pub human_agent_ends_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct Contact {
    pub id: Uuid,
    /// Null once the contact is erased.
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub platform_user_id: String,
    /// The contact's personal data was erased (`eraseContact`, or the
    /// platform's deletion request): name, avatar, texts and file names are
    /// gone for good.
    pub erased: bool,
}

/// Opens a personal field of the read models (sealed under its contact's
/// key); `None` when it is absent or was erased.
pub(crate) async fn reveal(app: &AppState, text: Option<&str>) -> Result<Option<String>, ApiError> {
    Ok(app
        .personal
        .open_opt(text)
        .await
        .map_err(ApiError::internal)?
        .and_then(omnibox_store::personal::Opened::into_plain))
}

/// Whether a personal field was sealed under a key that is gone.
async fn is_erased(app: &AppState, text: Option<&str>) -> Result<bool, ApiError> {
    Ok(matches!(
        app.personal
            .open_opt(text)
            .await
            .map_err(ApiError::internal)?,
        Some(omnibox_store::personal::Opened::Erased)
    ))
}

#[derive(SimpleObject)]
pub struct Attachment {
    pub kind: AttachmentKind,
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub content_type: Option<String>,
    /// LINK: the shared link. Media: Omnibox's own authenticated copy, once stored.
    pub url: Option<String>,
    pub title: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// One message, inbound or outbound.
#[derive(Clone)]
pub struct Message {
    row: MessageRow,
    author: Option<MemberRow>,
    media: Vec<MediaRow>,
    public_url: String,
}

#[Object]
impl Message {
    async fn id(&self) -> Uuid {
        self.row.id
    }
    async fn conversation_id(&self) -> Uuid {
        self.row.conversation_id.0
    }
    async fn direction(&self) -> Direction {
        if self.row.inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }
    /// The platform's time for the message.
    async fn sent_at(&self) -> DateTime<Utc> {
        self.row.sent_at
    }
    /// Hidden once the customer unsent it, and gone once they were erased.
    async fn text(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        if self.row.unsent {
            return Ok(None);
        }
        Ok(reveal(state(ctx)?, self.row.text.as_deref()).await?)
    }
    /// Its text or file names were erased with its customer and cannot be
    /// read any more (times, kinds and states remain). A message with
    /// nothing personal in it (an image alone) stays false; see
    /// `Contact.erased` for the customer.
    async fn erased(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let app = state(ctx)?;
        if is_erased(app, self.row.text.as_deref()).await? {
            return Ok(true);
        }
        for attachment in &self.row.attachments {
            if is_erased(app, attachment.file_name.as_deref()).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    async fn attachments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Attachment>> {
        if self.row.unsent {
            return Ok(Vec::new());
        }
        let app = state(ctx)?;
        let mut opened = Vec::with_capacity(self.row.attachments.len());
        for a in &self.row.attachments {
            opened.push((
                reveal(app, a.file_name.as_deref()).await?,
                reveal(app, a.title.as_deref()).await?,
            ));
        }
        Ok(self
            .row
            .attachments
            .iter()
            .zip(opened)
            .enumerate()
            .map(|(index, (a, (file_name, title)))| {
                let stored = self
                    .media
                    .iter()
                    .find(|m| m.index as usize == index && m.state == "STORED");
                Attachment {
                    kind: a.kind.into(),
                    file_name,
                    size_bytes: stored
                        .and_then(|m| m.size_bytes)
                        .or_else(|| a.size_bytes.and_then(|s| i64::try_from(s).ok())),
                    content_type: stored.and_then(|m| m.content_type.clone()),
                    url: match (a.kind, stored) {
                        (DomainAttachmentKind::Link, _) => a.reference.clone(),
                        (_, Some(_)) => {
                            Some(format!("{}/media/{}/{index}", self.public_url, self.row.id))
                        }
                        (_, None) => None,
                    },
                    title,
                    latitude: a.latitude,
                    longitude: a.longitude,
                }
            })
            .collect())
    }
    async fn delivery_state(&self) -> Option<DeliveryState> {
        match self.row.delivery_state.as_deref() {
            Some("QUEUED") => Some(DeliveryState::Queued),
            Some("DELIVERED") => Some(DeliveryState::Delivered),
            Some("FAILED") => Some(DeliveryState::Failed),
            _ => None,
        }
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.row.failure_reason.as_deref()
    }
    async fn author(&self) -> Option<Member> {
        self.author.clone().map(Member::from)
    }
    async fn unsent(&self) -> bool {
        self.row.unsent
    }
}

/// A conversation with one customer (or LINE group) on one channel.
#[derive(Clone)]
pub struct Conversation {
    row: ConversationRow,
    channel: Option<ChannelRow>,
    assignee: Option<MemberRow>,
    /// In a subscription: the log position this row reflects.
    position: Option<omnibox_store::Position>,
    /// Time travel: the instant this conversation is shown as of, and its
    /// messages then (instead of the read model's).
    as_of: Option<std::sync::Arc<(DateTime<Utc>, Vec<MessageRow>)>>,
}

fn cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}:{id}", at.timestamp_micros())
}

fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || {
        ApiError::App(AppError::Validation(format!(
            "{text:?} is not a cursor from this list"
        )))
    };
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| invalid())?))
}

const MAX_PAGE: i32 = 200;

fn page_size(value: Option<i32>, default: i32) -> Result<usize, ApiError> {
    let n = value.unwrap_or(default);
    if !(1..=MAX_PAGE).contains(&n) {
        return Err(ApiError::App(AppError::Validation(format!(
            "page size must be between 1 and {MAX_PAGE}"
        ))));
    }
    Ok(n as usize)
}

#[Object]
impl Conversation {
    async fn id(&self) -> Uuid {
        self.row.id.0
    }
    /// In `inboxUpdates`: the log position this row reflects. Pass the last
    /// one seen as `after` when reconnecting to receive what was missed.
    async fn position(&self) -> Option<String> {
        self.position.map(|p| p.to_string())
    }
    async fn channel(&self) -> Option<Channel> {
        self.channel.clone().map(Channel::now)
    }
    /// The channel's platform, for the row's icon.
    async fn channel_kind(&self) -> ChannelKind {
        self.row.channel_kind.into()
    }
    async fn contact(&self, ctx: &Context<'_>) -> async_graphql::Result<Contact> {
        let app = state(ctx)?;
        let c = &self.row.contact;
        // The name is opened once: its key being gone also says "erased".
        let name = app
            .personal
            .open_opt(c.display_name.as_deref())
            .await
            .map_err(ApiError::internal)?;
        let name_erased = matches!(name, Some(omnibox_store::personal::Opened::Erased));
        Ok(Contact {
            id: c.id.0,
            display_name: name.and_then(omnibox_store::personal::Opened::into_plain),
            avatar_url: reveal(app, c.avatar_url.as_deref()).await?,
            platform_user_id: c.platform_user_id.clone(),
            erased: c.erased || name_erased,
        })
    }
    /// Newest message time (platform time), inbound or outbound.
    async fn last_message_at(&self) -> DateTime<Utc> {
        self.row.last_message_at
    }
    async fn last_message_preview(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<String>> {
        let preview = reveal(state(ctx)?, self.row.last_message_preview.as_deref()).await?;
        Ok(preview.map(|p| read::shown_preview(&p)))
    }
    async fn last_customer_message_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_customer_message_at
    }
    async fn unread_count(&self) -> i64 {
        self.row.unread_count
    }
    async fn assignee(&self) -> Option<Member> {
        self.assignee.clone().map(Member::from)
    }
    async fn status(&self) -> ConversationStatus {
        if self.row.resolved {
            ConversationStatus::Resolved
        } else {
            ConversationStatus::Open
        }
    }
    /// The messaging window at `at` (default now): Facebook STANDARD for 24 h
    /// after the customer's last message, HUMAN_AGENT until 7 days, then
    /// CLOSED; LINE UNLIMITED.
    async fn window(
        &self,
        ctx: &Context<'_>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Window> {
        let at = match at.or(self.as_of.as_ref().map(|a| a.0)) {
            Some(at) => at,
            None => state(ctx)?.clock.now(),
        };
        let window = policy::window(self.row.channel_kind, self.row.last_customer_message_at, at);
        Ok(Window {
            phase: match window.phase {
                DomainPhase::Standard => WindowPhase::Standard,
                DomainPhase::HumanAgent => WindowPhase::HumanAgent,
                DomainPhase::Closed => WindowPhase::Closed,
                DomainPhase::Unlimited => WindowPhase::Unlimited,
            },
            standard_ends_at: window.standard_ends_at,
            human_agent_ends_at: window.human_agent_ends_at,
        })
    }
    /// Messages in platform time order, oldest first. `first`/`after` page
    /// forward; `last`/`before` page back from the newest.
    #[graphql(complexity = "super::page_cost(first.or(last), 50, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<Connection<String, Message>> {
        let app = state(ctx)?;
        let after = after.as_deref().map(parse_cursor).transpose()?;
        let before = before.as_deref().map(parse_cursor).transpose()?;
        let backwards = last.is_some() || (before.is_some() && first.is_none());
        let limit = page_size(if backwards { last } else { first }, 50)?;
        let mut rows = match &self.as_of {
            // Time travel: the messages as they were, paged the same way.
            Some(as_of) => {
                let in_range = |r: &&MessageRow| {
                    after.is_none_or(|a| (r.sent_at, r.id) > a)
                        && before.is_none_or(|b| (r.sent_at, r.id) < b)
                };
                let mut rows: Vec<MessageRow> = as_of.1.iter().filter(in_range).cloned().collect();
                if backwards {
                    rows.reverse();
                }
                rows.truncate(limit + 1);
                rows
            }
            None => read::messages(&app.db, self.row.id, after, before, backwards, limit + 1)
                .await
                .map_err(ApiError::from)?,
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        if backwards {
            rows.reverse();
        }
        let (has_previous, has_next) = if backwards {
            (more, before.is_some())
        } else {
            (after.is_some(), more)
        };
        let authors = authors(
            app,
            self.row.org_id,
            rows.iter().filter_map(|r| r.author_id),
        )
        .await?;
        let mut connection = Connection::new(has_previous, has_next);
        for row in rows {
            let author = row.author_id.and_then(|id| authors.get(&id).cloned());
            let media = media_of(app, self.row.org_id, &row).await?;
            let public_url = app.config.public_url.clone();
            connection.edges.push(Edge::new(
                cursor(row.sent_at, row.id),
                Message {
                    row,
                    author,
                    media,
                    public_url,
                },
            ));
        }
        Ok(connection)
    }
}

/// One message of `org` with its author and media, if it exists.
pub(crate) async fn load_message(
    app: &AppState,
    org: OrgId,
    id: Uuid,
) -> Result<Option<Message>, ApiError> {
    let Some(row) = read::message(&app.db, org, id).await? else {
        return Ok(None);
    };
    let author = match row.author_id {
        Some(author) => member_read::member(&app.db, org, author).await?,
        None => None,
    };
    let media = media_of(app, org, &row).await?;
    Ok(Some(Message {
        row,
        author,
        media,
        public_url: app.config.public_url.clone(),
    }))
}

/// What the media store holds for a message's attachments (one query, only
/// for messages that have attachments).
async fn media_of(app: &AppState, org: OrgId, row: &MessageRow) -> Result<Vec<MediaRow>, ApiError> {
    if row.attachments.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read::media(&app.db, org, row.id).await?)
}

async fn authors(
    app: &AppState,
    org: OrgId,
    ids: impl Iterator<Item = MemberId>,
) -> Result<HashMap<MemberId, MemberRow>, ApiError> {
    let wanted: Vec<MemberId> = ids.collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(member_read::members(&app.db, org)
        .await?
        .into_iter()
        .filter(|m| wanted.contains(&m.id))
        .map(|m| (m.id, m))
        .collect())
}

/// The conversations of `org` changed in the log after `after`, each once
/// with the position of its last change, and the position replayed up to.
/// Waits until the read models show that position, so the rows sent
/// reflect at least what the positions say.
async fn missed_conversations(
    app: &AppState,
    org: OrgId,
    after: omnibox_store::Position,
) -> Result<
    (
        Vec<(ConversationId, omnibox_store::Position)>,
        Option<omnibox_store::Position>,
    ),
    ApiError,
> {
    let mut changed: Vec<(ConversationId, omnibox_store::Position)> = Vec::new();
    let mut cursor = Some(after);
    let mut last = None;
    let mut scanned = 0;
    // Only events that name this organization are decoded.
    let org_text = org.0.to_string();
    loop {
        let page = app.store.read_all(cursor, 1000).await?;
        let Some(end) = page.last().map(|e| e.position) else {
            break;
        };
        scanned += page.len();
        let limit = app.config.max_replay_events;
        if scanned > limit {
            return Err(ApiError::App(AppError::Validation(format!(
                "`after` is more than {limit} events behind the log: \
                 query `conversations` again and subscribe without `after`"
            ))));
        }
        for event in page.iter().filter(|e| {
            e.stream.category() == ConversationId::CATEGORY && e.data.contains(&org_text)
        }) {
            let Ok(data) = serde_json::from_str::<domain::ConversationEvent>(&event.data) else {
                continue;
            };
            if data.org_id() != org {
                continue;
            }
            let id = data.conversation_id();
            changed.retain(|(c, _)| *c != id);
            changed.push((id, event.position));
        }
        cursor = Some(end);
        last = Some(end);
    }
    if let Some(last) = last {
        app.projections
            .wait_for(last, std::time::Duration::from_secs(10))
            .await;
    }
    Ok((changed, last))
}

/// Dresses rows with their channel and assignee, with two queries whatever the page size.
async fn dress(
    app: &AppState,
    org: OrgId,
    rows: Vec<ConversationRow>,
) -> Result<Vec<Conversation>, ApiError> {
    let channels: HashMap<ChannelId, ChannelRow> = channel_read::channels(&app.db, org)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let members = authors(app, org, rows.iter().filter_map(|r| r.assignee_id)).await?;
    Ok(rows
        .into_iter()
        .map(|row| Conversation {
            position: None,
            as_of: None,
            channel: channels.get(&row.channel_id).cloned(),
            assignee: row.assignee_id.and_then(|id| members.get(&id).cloned()),
            row,
        })
        .collect())
}

/// One conversation, dressed: with its channel in one query, and a second
/// for its assignee if it has one.
async fn load(app: &AppState, org: OrgId, id: ConversationId) -> Result<Conversation, ApiError> {
    let (row, channel) = read::conversation_with_channel(&app.db, org, id)
        .await?
        .ok_or_else(|| {
            ApiError::App(AppError::NotFound(
                "no such conversation in your organization".into(),
            ))
        })?;
    let assignee = match row.assignee_id {
        Some(id) => authors(app, org, std::iter::once(id)).await?.remove(&id),
        None => None,
    };
    Ok(Conversation {
        position: None,
        as_of: None,
        channel,
        assignee,
        row,
    })
}

#[derive(Default)]
pub struct ConversationsQuery;

#[Object]
impl ConversationsQuery {
    /// The conversation as its events made it up to `at` (time travel):
    /// assignee, status, unread count and window then (`window` defaults to
    /// `at`), and the messages that existed with their delivery states then.
    async fn conversation_as_of(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<Conversation>> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let until = omnibox_app::commands::read_stream_until;
        let stream = omnibox_store::StreamName::new(ConversationId::CATEGORY, id)
            .map_err(ApiError::internal)?;
        let mut events = until(&*app.store, &stream, at).await?;
        // Its contact's events too (name, picture), from the first message.
        let contact = events.iter().find_map(|e| {
            match serde_json::from_str::<domain::ConversationEvent>(&e.data) {
                Ok(domain::ConversationEvent::MessageReceived { contact_id, .. }) => {
                    Some(contact_id)
                }
                _ => None,
            }
        });
        if let Some(contact) = contact {
            let stream =
                omnibox_store::StreamName::new(omnibox_domain::ids::ContactId::CATEGORY, contact.0)
                    .map_err(ApiError::internal)?;
            events.extend(until(&*app.store, &stream, at).await?);
            events.sort_by_key(|e| e.position);
        }
        let Some((row, messages)) = read::as_of(ConversationId(id), &events)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        else {
            return Ok(None);
        };
        if row.org_id != me.org_id {
            return Ok(None);
        }
        let channel = channel_read::channel(&app.db, me.org_id, row.channel_id).await?;
        let assignee = match row.assignee_id {
            Some(member) => member_read::member(&app.db, me.org_id, member).await?,
            None => None,
        };
        Ok(Some(Conversation {
            row,
            channel,
            assignee,
            position: None,
            as_of: Some(std::sync::Arc::new((at, messages))),
        }))
    }

    /// The inbox across channels, newest activity first. `channelIds`
    /// narrows it (default: all channels).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::page_cost(first, 20, child_complexity)")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        channel_ids: Option<Vec<Uuid>>,
        assignee_id: Option<Uuid>,
        unassigned: Option<bool>,
        status: Option<ConversationStatus>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Conversation>> {
        super::check_list("channelIds", &channel_ids)?;
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let limit = page_size(first, 20)?;
        let after = after.as_deref().map(parse_cursor).transpose()?;
        let filter = InboxFilter {
            channel_ids: channel_ids.map(|ids| ids.into_iter().map(ChannelId).collect()),
            assignee: assignee_id.map(MemberId),
            unassigned: unassigned.unwrap_or(false),
            resolved: status.map(|s| s == ConversationStatus::Resolved),
        };
        let mut rows = read::conversations(&app.db, me.org_id, &filter, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let has_next = rows.len() > limit;
        rows.truncate(limit);
        let mut connection = Connection::new(after.is_some(), has_next);
        for conversation in dress(app, me.org_id, rows).await? {
            connection.edges.push(Edge::new(
                cursor(conversation.row.last_message_at, conversation.row.id.0),
                conversation,
            ));
        }
        Ok(connection)
    }

    /// One conversation; NOT_FOUND for any id outside the organization.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> async_graphql::Result<Option<Conversation>> {
        let me = &session(ctx)?.member;
        Ok(Some(
            load(state(ctx)?, me.org_id, ConversationId(id)).await?,
        ))
    }
}

/// Runs a conversation command for the caller; answers the conversation.
async fn command(
    ctx: &Context<'_>,
    id: Uuid,
    command: ConversationCommand,
) -> async_graphql::Result<Conversation> {
    let me = &session(ctx)?.member;
    let app = state(ctx)?;
    service::run(app, me, ConversationId(id), command)
        .await
        .map_err(ApiError::from)?;
    Ok(load(app, me.org_id, ConversationId(id)).await?)
}

#[derive(Default)]
pub struct ConversationsMutation;

#[Object]
impl ConversationsMutation {
    /// Resets the unread count.
    async fn mark_read(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
    ) -> async_graphql::Result<Conversation> {
        let by = session(ctx)?.member.id;
        command(ctx, conversation_id, ConversationCommand::MarkRead { by }).await
    }

    /// Assigns the conversation to a member of the organization (any member
    /// may assign; the assignee must be a member).
    async fn assign_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
        agent_id: Uuid,
    ) -> async_graphql::Result<Conversation> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let id = ConversationId(conversation_id);
        service::assign(app, me, id, MemberId(agent_id))
            .await
            .map_err(ApiError::from)?;
        Ok(load(app, me.org_id, id).await?)
    }

    async fn unassign_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
    ) -> async_graphql::Result<Conversation> {
        let by = session(ctx)?.member.id;
        command(ctx, conversation_id, ConversationCommand::Unassign { by }).await
    }

    async fn resolve_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
    ) -> async_graphql::Result<Conversation> {
        let by = session(ctx)?.member.id;
        command(ctx, conversation_id, ConversationCommand::Resolve { by }).await
    }

    async fn reopen_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
    ) -> async_graphql::Result<Conversation> {
        let by = session(ctx)?.member.id;
        command(ctx, conversation_id, ConversationCommand::Reopen { by }).await
    }

    /// Erases a contact's personal data (OWNER or PRIMARY_ADMIN): its keys
    /// are destroyed, so its name, avatar, message texts and file names can
    /// no longer be read anywhere (log, read models, exports), and its media
    /// files are deleted. Times, counts and delivery states remain. Erasing
    /// again is harmless.
    async fn erase_contact(
        &self,
        ctx: &Context<'_>,
        contact_id: Uuid,
    ) -> async_graphql::Result<Contact> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let contact = omnibox_domain::ids::ContactId(contact_id);
        erase_contact_by_member(app, me, contact)
            .await
            .map_err(ApiError::from)?;
        let row = read::contact(&app.db, me.org_id, contact)
            .await?
            .ok_or_else(|| {
                ApiError::App(AppError::NotFound(
                    "no such contact in your organization".into(),
                ))
            })?;
        Ok(Contact {
            id: contact_id,
            display_name: None,
            avatar_url: None,
            platform_user_id: row.platform_user_id,
            erased: row.erased,
        })
    }
}

#[derive(Default)]
pub struct ConversationsSubscription;

#[Subscription]
impl ConversationsSubscription {
    /// The updated conversation row after every change that touches it (new
    /// message, read, assignment, status), after the read model shows it.
    /// `channelIds` narrows it (default: all channels).
    async fn inbox_updates(
        &self,
        ctx: &Context<'_>,
        channel_ids: Option<Vec<Uuid>>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Conversation>>> {
        super::check_list("channelIds", &channel_ids)?;
        let org = session(ctx)?.member.org_id;
        let app = state(ctx)?.clone();
        let channels: Option<Vec<ChannelId>> =
            channel_ids.map(|ids| ids.into_iter().map(ChannelId).collect());
        let after = after
            .map(|p| {
                p.parse::<omnibox_store::Position>()
                    .map_err(|e| ApiError::App(AppError::Validation(e.to_string())))
            })
            .transpose()?;
        // Listen first, then replay, so nothing falls between the two.
        let live = super::org_updates(super::hub(ctx)?, org);
        let (missed, replayed_to) = match after {
            Some(after) => missed_conversations(&app, org, after).await?,
            None => (Vec::new(), None),
        };
        let replay = futures_util::stream::iter(
            missed
                .into_iter()
                .map(|(id, position)| Ok((id, position, None))),
        );
        let live = live.filter_map(move |update| {
            std::future::ready(match update {
                Ok(shared) if replayed_to.is_some_and(|to| shared.update.position <= to) => None,
                Ok(shared) => match shared.update.change {
                    Change::Conversation(id)
                    | Change::Message {
                        conversation: id, ..
                    } => Some(Ok((id, shared.update.position, Some(shared)))),
                    _ => None,
                },
                Err(error) => Some(Err(error)),
            })
        });
        Ok(replay
            .chain(live)
            .then(move |wanted| {
                let app = app.clone();
                let channels = channels.clone();
                async move {
                    let (id, position, shared) = match wanted {
                        Ok(wanted) => wanted,
                        Err(error) => return Some(Err(error)),
                    };
                    let load = || async { load(&app, org, id).await.ok() };
                    let mut conversation = match shared {
                        // Loaded once for every subscriber of the organization.
                        Some(shared) => shared.conversation(load).await?,
                        None => load().await?,
                    };
                    conversation.position = Some(position);
                    match &channels {
                        Some(wanted) if !wanted.contains(&conversation.row.channel_id) => None,
                        _ => Some(Ok(conversation)),
                    }
                }
            })
            .filter_map(std::future::ready))
    }

    /// New and changed messages of one conversation.
    async fn conversation_updates(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Message>>> {
        let org = session(ctx)?.member.org_id;
        let app = state(ctx)?.clone();
        load(&app, org, ConversationId(conversation_id)).await?;
        let wanted = ConversationId(conversation_id);
        Ok(super::live_rows(
            app,
            super::hub(ctx)?,
            org,
            move |change| match change {
                Change::Message {
                    conversation,
                    message,
                } if *conversation == wanted => Some(*message),
                _ => None,
            },
            move |app, shared, message| async move {
                shared
                    .message(|| async { load_message(&app, org, message).await.ok().flatten() })
                    .await
            },
        ))
    }
}
