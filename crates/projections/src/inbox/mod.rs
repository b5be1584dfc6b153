//! The omnichannel inbox: conversations, their messages, and contacts.
//!
//! Ordering follows the platforms' timestamps: a late-arriving older
//! message takes its place in the history but never moves a conversation's
//! last activity, preview or window backwards.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omnibox_domain::conversation::{
    AttachmentKind, ContactEvent, ConversationEvent, InboundAttachment, MediaSource, Thread,
};
use omnibox_domain::ids::{ChannelId, ContactId, ConversationId, MemberId, OrgId};
use omnibox_domain::policy::{CheckedBubble, OutboundAttachmentKind};
use omnibox_domain::ChannelKind;
use omnibox_store::{Database, RecordedEvent};
use sqlx::Row;
use uuid::Uuid;

use crate::channels::micros;
use crate::runtime::{ApplyError, Fold};
use crate::{fetch_all, fetch_optional, Change, Projector, ReadTx};

mod memory;
mod rows;

use memory::MemoryRows;
use rows::{
    BubbleOutcome, ConversationChange, DeliveryStep, Inbound, InboxRows, MediaOutcome, NewContact,
    NewDelivery, NewMedia, NewMessage, SqlRows,
};

/// Previews show at most this many characters.
const PREVIEW_CHARS: usize = 120;

/// What the inbox shows for a customer who sent a QR assignment code.
pub const ASSIGNMENT_CODE_PREVIEW: &str = "[scanned an assignment QR code]";

fn preview(text: Option<&str>, attachments: &[InboundAttachment]) -> String {
    match (text, attachments.first()) {
        // Sealed under the contact's key: kept whole, cut when shown.
        (Some(text), _) if omnibox_store::personal::is_sealed(text) => text.to_owned(),
        // The code is for routing, not something the customer said.
        (Some(text), _) if omnibox_domain::qr::is_assignment_code(text) => {
            ASSIGNMENT_CODE_PREVIEW.to_owned()
        }
        (Some(text), _) if !text.trim().is_empty() => text.chars().take(PREVIEW_CHARS).collect(),
        (_, Some(attachment)) => format!("[{}]", kind_name(attachment.kind).to_lowercase()),
        _ => String::new(),
    }
}

/// A preview as shown: `text` (a preview as stored, opened) cut to length.
pub fn shown_preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

fn kind_name(kind: AttachmentKind) -> &'static str {
    match kind {
        AttachmentKind::Image => "IMAGE",
        AttachmentKind::Video => "VIDEO",
        AttachmentKind::Audio => "AUDIO",
        AttachmentKind::File => "FILE",
        AttachmentKind::Sticker => "STICKER",
        AttachmentKind::Location => "LOCATION",
        AttachmentKind::Link => "LINK",
        AttachmentKind::Other => "OTHER",
    }
}

/// Projects `conversation-*` and `contact-*` streams.
pub struct InboxProjector;

#[async_trait]
impl Projector for InboxProjector {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_conversations",
            "rm_messages",
            "rm_contacts",
            "rm_media",
            "rm_deliveries",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        changes: &mut Vec<(OrgId, Change)>,
    ) -> Result<(), ApplyError> {
        apply(&mut SqlRows(tx), event, changes).await
    }

    fn fold(&self) -> Option<Box<dyn Fold>> {
        Some(Box::new(InboxFold::default()))
    }
}

/// A rebuild of the inbox in memory (see [`memory`]).
#[derive(Default)]
struct InboxFold {
    rows: MemoryRows,
    changes: Vec<(OrgId, Change)>,
}

#[async_trait]
impl Fold for InboxFold {
    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError> {
        let result = apply(&mut self.rows, event, &mut self.changes).await;
        // Nobody listens to a rebuild: the swap is announced as a whole.
        self.changes.clear();
        result
    }

    async fn write(self: Box<Self>, tx: &mut ReadTx) -> Result<(), ApplyError> {
        self.rows.write(tx).await
    }
}

/// Conversation `id` and its messages as `events` (its own and its
/// contact's, in log order) made them: the inbox projection run in memory
/// over part of the log, for time travel. `None` if it did not exist yet.
pub async fn as_of(
    id: ConversationId,
    events: &[RecordedEvent],
) -> Result<Option<(ConversationRow, Vec<MessageRow>)>, ApplyError> {
    let mut rows = MemoryRows::default();
    let mut changes = Vec::new();
    for event in events {
        apply(&mut rows, event, &mut changes).await?;
        changes.clear();
    }
    Ok(rows
        .conversation_row(id.0)
        .map(|row| (row, rows.message_rows(id.0))))
}

/// Applies one event to the inbox's rows, wherever they are.
async fn apply(
    rows: &mut impl InboxRows,
    event: &RecordedEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    match event.stream.category() {
        ConversationId::CATEGORY => {
            let data: ConversationEvent = serde_json::from_str(&event.data)?;
            apply_conversation(rows, event.id, data, changes).await
        }
        ContactId::CATEGORY => {
            let data: ContactEvent = serde_json::from_str(&event.data)?;
            apply_contact(rows, data).await
        }
        _ => Ok(()),
    }
}

async fn apply_contact(rows: &mut impl InboxRows, event: ContactEvent) -> Result<(), ApplyError> {
    let (contact, org, channel, user, following) = match event {
        ContactEvent::ContactFollowed {
            contact_id,
            org_id,
            channel_id,
            platform_user_id,
            ..
        } => (contact_id, org_id, channel_id, platform_user_id, true),
        ContactEvent::ContactUnfollowed {
            contact_id,
            org_id,
            channel_id,
            platform_user_id,
            ..
        } => (contact_id, org_id, channel_id, platform_user_id, false),
        ContactEvent::ContactProfileUpdated {
            contact_id,
            display_name,
            avatar_url,
            ..
        } => {
            return rows
                .contact_profile(contact_id.0, display_name, avatar_url)
                .await
        }
        ContactEvent::ContactProfileUnavailable { contact_id, .. } => {
            return rows.contact_profile_unavailable(contact_id.0).await
        }
        ContactEvent::ContactErased { contact_id, .. } => {
            return rows.contact_erased(contact_id.0).await
        }
    };
    rows.contact_followed(
        NewContact {
            contact_id: contact.0,
            org_id: org.0,
            channel_id: channel.0,
            platform_user_id: &user,
        },
        following,
    )
    .await
}

fn message_changed(org: OrgId, conversation: ConversationId, message: Uuid) -> (OrgId, Change) {
    (
        org,
        Change::Message {
            conversation,
            message,
        },
    )
}

/// Applies one conversation event: each family of events has its own
/// function below.
async fn apply_conversation(
    rows: &mut impl InboxRows,
    event_id: Uuid,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    let (conversation, org) = (event.conversation_id(), event.org_id());
    match event {
        event @ ConversationEvent::MessageReceived { .. } => {
            apply_received(rows, event_id, conversation, org, event, changes).await
        }
        event @ ConversationEvent::MessageEchoed { .. } => {
            apply_echo(rows, event_id, conversation, org, event, changes).await
        }
        event @ (ConversationEvent::MessagesDelivered { .. }
        | ConversationEvent::MessagesRead { .. }
        | ConversationEvent::MessageUnsent { .. }) => {
            apply_receipt(rows, conversation, org, event, changes).await
        }
        event @ (ConversationEvent::MediaStored { .. }
        | ConversationEvent::MediaFetchFailed { .. }) => {
            apply_media(rows, conversation, org, event, changes).await
        }
        event @ ConversationEvent::ReplyQueued { .. } => {
            apply_reply_queued(rows, conversation, org, event, changes).await
        }
        event @ (ConversationEvent::ReplyBubbleDeferred { .. }
        | ConversationEvent::ReplyBubbleSending { .. }
        | ConversationEvent::ReplyBubbleDelivered { .. }
        | ConversationEvent::ReplyBubbleFailed { .. }) => {
            apply_bubble_step(rows, conversation, org, event, changes).await
        }
        event @ (ConversationEvent::ConversationMarkedRead { .. }
        | ConversationEvent::ConversationAssigned { .. }
        | ConversationEvent::ConversationUnassigned { .. }
        | ConversationEvent::ConversationResolved { .. }
        | ConversationEvent::ConversationReopened { .. }) => {
            apply_status(rows, conversation, org, event, changes).await
        }
    }
}

/// A customer's message: its contact, conversation, message and media rows.
async fn apply_received(
    rows: &mut impl InboxRows,
    event_id: Uuid,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    let ConversationEvent::MessageReceived {
        channel_id,
        channel_kind,
        contact_id,
        thread,
        author,
        platform_message_id,
        sent_at,
        text,
        attachments,
        ..
    } = event
    else {
        // Other families have their own functions.
        return Ok(());
    };
    let shown = preview(text.as_deref(), &attachments);
    let contact = NewContact {
        contact_id: contact_id.0,
        org_id: org.0,
        channel_id: channel_id.0,
        platform_user_id: author.as_deref().unwrap_or(thread.platform_id()),
    };
    let landing = Inbound {
        conversation_id: conversation.0,
        org_id: org.0,
        channel_id: channel_id.0,
        channel_kind: channel_kind.as_str(),
        contact_id: contact_id.0,
        thread_kind: match &thread {
            Thread::User(_) => "USER",
            Thread::Group(_) => "GROUP",
            Thread::Room(_) => "ROOM",
        },
        thread_id: thread.platform_id(),
        sent_at: micros(sent_at),
        preview: &shown,
    };
    let message = NewMessage {
        message_id: event_id,
        conversation_id: conversation.0,
        org_id: org.0,
        direction: "INBOUND",
        platform_message_id: Some(platform_message_id),
        sent_at: micros(sent_at),
        text,
        attachments: serde_json::to_string(&attachments)?,
        delivery_state: None,
        author_id: None,
    };
    rows.receive(contact, landing, message).await?;
    for (index, attachment) in attachments.iter().enumerate() {
        if matches!(attachment.source, MediaSource::None) {
            continue;
        }
        rows.insert_media(NewMedia {
            message_id: event_id,
            index: index as i32,
            org_id: org.0,
            conversation_id: conversation.0,
            channel_id: channel_id.0,
            source: serde_json::to_string(&attachment.source)?,
        })
        .await?;
    }
    changes.push(message_changed(org, conversation, event_id));
    Ok(())
}

/// A message the page sent, echoed back: one of our replies, or one sent elsewhere.
async fn apply_echo(
    rows: &mut impl InboxRows,
    event_id: Uuid,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    let ConversationEvent::MessageEchoed {
        platform_message_id,
        sent_at,
        text,
        attachments,
        metadata,
        ..
    } = event
    else {
        // Other families have their own functions.
        return Ok(());
    };
    // Our own reply, echoed: the metadata names our message.
    let ours = metadata
        .as_deref()
        .and_then(|m| m.strip_prefix("omnibox:msg:"))
        .and_then(|id| Uuid::parse_str(id).ok());
    if let Some(ours) = ours {
        if rows
            .echo_of_ours(ours, conversation.0, &platform_message_id)
            .await?
        {
            rows.delivery_step(ours, DeliveryStep::Done).await?;
            changes.push(message_changed(org, conversation, ours));
            return Ok(());
        }
    }
    if rows
        .message_exists(conversation.0, &platform_message_id)
        .await?
    {
        rows.delivered_by_platform_id(conversation.0, &platform_message_id, false)
            .await?;
    } else if rows.conversation_exists(conversation.0).await? {
        // An echo can only join a conversation the customer started.
        let shown = preview(text.as_deref(), &attachments);
        rows.insert_message(NewMessage {
            message_id: event_id,
            conversation_id: conversation.0,
            org_id: org.0,
            direction: "OUTBOUND",
            platform_message_id: Some(platform_message_id),
            sent_at: micros(sent_at),
            text,
            attachments: serde_json::to_string(&attachments)?,
            delivery_state: Some("DELIVERED"),
            author_id: None,
        })
        .await?;
        rows.touch(conversation.0, micros(sent_at), &shown).await?;
    }
    changes.push(message_changed(org, conversation, event_id));
    Ok(())
}

/// What the platform says happened to messages already shown.
async fn apply_receipt(
    rows: &mut impl InboxRows,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    match event {
        ConversationEvent::MessagesDelivered {
            watermark,
            platform_message_ids,
            ..
        } => {
            rows.delivered_up_to(conversation.0, micros(watermark))
                .await?;
            for mid in platform_message_ids {
                rows.delivered_by_platform_id(conversation.0, &mid, true)
                    .await?;
            }
            changes.push((org, Change::Conversation(conversation)));
        }
        ConversationEvent::MessagesRead { .. } => {}
        ConversationEvent::MessageUnsent {
            platform_message_id,
            ..
        } => {
            rows.unsent(conversation.0, &platform_message_id).await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        // Other families have their own functions.
        _ => {}
    }
    Ok(())
}

/// A received attachment's download, stored or failed.
async fn apply_media(
    rows: &mut impl InboxRows,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    match event {
        ConversationEvent::MediaStored {
            message_id,
            index,
            storage_key,
            size_bytes,
            content_type,
            ..
        } => {
            rows.media_outcome(
                message_id,
                index as i32,
                MediaOutcome::Stored {
                    storage_key,
                    size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
                    content_type,
                },
            )
            .await?;
            changes.push(message_changed(org, conversation, message_id));
        }
        ConversationEvent::MediaFetchFailed {
            message_id,
            index,
            reason,
            ..
        } => {
            rows.media_outcome(message_id, index as i32, MediaOutcome::Failed { reason })
                .await?;
            changes.push(message_changed(org, conversation, message_id));
        }
        // Other families have their own functions.
        _ => {}
    }
    Ok(())
}

/// A reply queued: one outbound message and one delivery row per bubble.
async fn apply_reply_queued(
    rows: &mut impl InboxRows,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    let ConversationEvent::ReplyQueued {
        channel_id,
        reply_id,
        recipient,
        bubbles,
        evidence,
        author,
        reply_token,
        sender,
        queued_at,
        ..
    } = event
    else {
        // Other families have their own functions.
        return Ok(());
    };
    let mut shown = String::new();
    for (index, bubble) in bubbles.iter().enumerate() {
        let index = index as u32;
        let id = omnibox_domain::conversation::reply_message_id(reply_id, index);
        let (text, attachments) = match bubble {
            CheckedBubble::Text(text) => (Some(text.clone()), Vec::new()),
            CheckedBubble::Attachment {
                attachment,
                attachment_kind,
            } => (
                None,
                vec![InboundAttachment {
                    kind: match attachment_kind {
                        OutboundAttachmentKind::Image => AttachmentKind::Image,
                        OutboundAttachmentKind::Video => AttachmentKind::Video,
                        OutboundAttachmentKind::Audio => AttachmentKind::Audio,
                        OutboundAttachmentKind::File => AttachmentKind::File,
                    },
                    source: MediaSource::None,
                    file_name: Some(attachment.file_name.clone()),
                    size_bytes: Some(attachment.size_bytes),
                    title: None,
                    reference: Some(attachment.url.clone()),
                    latitude: None,
                    longitude: None,
                }],
            ),
        };
        shown = preview(text.as_deref(), &attachments);
        rows.insert_message(NewMessage {
            message_id: id,
            conversation_id: conversation.0,
            org_id: org.0,
            direction: "OUTBOUND",
            platform_message_id: None,
            sent_at: micros(queued_at),
            text,
            attachments: serde_json::to_string(&attachments)?,
            delivery_state: Some("QUEUED"),
            author_id: Some(author.0),
        })
        .await?;
        let payload = serde_json::json!({
            "recipient": recipient,
            "bubble": bubble,
            "evidence": evidence,
            "reply_token": reply_token,
            "sender": sender,
            "count": bubbles.len(),
        });
        rows.insert_delivery(NewDelivery {
            message_id: id,
            reply_id,
            index: index as i32,
            conversation_id: conversation.0,
            org_id: org.0,
            channel_id: channel_id.0,
            payload: payload.to_string(),
            queued_at: micros(queued_at),
        })
        .await?;
        changes.push(message_changed(org, conversation, id));
    }
    rows.touch(conversation.0, micros(queued_at), &shown)
        .await?;
    Ok(())
}

/// A queued bubble's way to the customer.
async fn apply_bubble_step(
    rows: &mut impl InboxRows,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    match event {
        ConversationEvent::ReplyBubbleDeferred {
            reply_id, index, ..
        } => {
            let id = omnibox_domain::conversation::reply_message_id(reply_id, index);
            rows.delivery_step(id, DeliveryStep::Deferred).await?;
        }
        ConversationEvent::ReplyBubbleSending {
            reply_id,
            index,
            at,
            ..
        } => {
            let id = omnibox_domain::conversation::reply_message_id(reply_id, index);
            rows.delivery_step(id, DeliveryStep::Sending { at: micros(at) })
                .await?;
        }
        ConversationEvent::ReplyBubbleDelivered {
            reply_id,
            index,
            platform_message_id,
            ..
        } => {
            let id = omnibox_domain::conversation::reply_message_id(reply_id, index);
            rows.bubble_outcome(
                id,
                BubbleOutcome::Delivered {
                    platform_message_id,
                },
            )
            .await?;
            rows.delivery_step(id, DeliveryStep::Done).await?;
            changes.push(message_changed(org, conversation, id));
        }
        ConversationEvent::ReplyBubbleFailed {
            reply_id,
            index,
            reason,
            ..
        } => {
            let id = omnibox_domain::conversation::reply_message_id(reply_id, index);
            rows.bubble_outcome(id, BubbleOutcome::Failed { reason })
                .await?;
            rows.delivery_step(id, DeliveryStep::Done).await?;
            changes.push(message_changed(org, conversation, id));
        }
        // Other families have their own functions.
        _ => {}
    }
    Ok(())
}

/// Read, assigned, resolved: the conversation's own state.
async fn apply_status(
    rows: &mut impl InboxRows,
    conversation: ConversationId,
    org: OrgId,
    event: ConversationEvent,
    changes: &mut Vec<(OrgId, Change)>,
) -> Result<(), ApplyError> {
    match event {
        ConversationEvent::ConversationMarkedRead { .. } => {
            rows.change_conversation(conversation.0, ConversationChange::MarkedRead)
                .await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        ConversationEvent::ConversationAssigned { assignee, .. } => {
            rows.change_conversation(
                conversation.0,
                ConversationChange::Assigned(Some(assignee.0)),
            )
            .await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        ConversationEvent::ConversationUnassigned { .. } => {
            rows.change_conversation(conversation.0, ConversationChange::Assigned(None))
                .await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        ConversationEvent::ConversationResolved { .. } => {
            rows.change_conversation(conversation.0, ConversationChange::Status("RESOLVED"))
                .await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        ConversationEvent::ConversationReopened { .. } => {
            rows.change_conversation(conversation.0, ConversationChange::Status("OPEN"))
                .await?;
            changes.push((org, Change::Conversation(conversation)));
        }
        // Other families have their own functions.
        _ => {}
    }
    Ok(())
}

/// A conversation row, with its contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub id: ConversationId,
    pub org_id: OrgId,
    pub channel_id: ChannelId,
    pub channel_kind: ChannelKind,
    pub contact_id: ContactId,
    pub last_message_at: DateTime<Utc>,
    pub last_message_preview: Option<String>,
    pub last_customer_message_at: Option<DateTime<Utc>>,
    pub unread_count: i64,
    pub assignee_id: Option<MemberId>,
    pub resolved: bool,
    pub contact: ContactRow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub id: ContactId,
    pub platform_user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// Its personal data was erased.
    pub erased: bool,
}

fn instant(micros: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("instant {micros} out of range").into()))
}

const CONVERSATION_COLUMNS: &str = "c.conversation_id, c.org_id, c.channel_id, c.channel_kind, c.contact_id,
    c.last_message_at, c.last_message_preview, c.last_customer_message_at, c.unread_count, c.assignee_id, c.status,
    c.thread_id, k.platform_user_id, k.display_name, k.avatar_url, k.erased";

/// How many columns [`CONVERSATION_COLUMNS`] names.
const CONVERSATION_COLUMN_COUNT: usize = 16;

fn decode_conversation<R: Row>(row: &R) -> Result<ConversationRow, sqlx::Error>
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Uuid>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let kind: String = row.try_get(3)?;
    let status: String = row.try_get(10)?;
    let contact_id = ContactId(row.try_get(4)?);
    let thread_id: String = row.try_get(11)?;
    Ok(ConversationRow {
        id: ConversationId(row.try_get(0)?),
        org_id: OrgId(row.try_get(1)?),
        channel_id: ChannelId(row.try_get(2)?),
        channel_kind: ChannelKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("kind {kind:?}").into()))?,
        contact_id,
        last_message_at: instant(row.try_get(5)?)?,
        last_message_preview: row.try_get(6)?,
        last_customer_message_at: row.try_get::<Option<i64>, _>(7)?.map(instant).transpose()?,
        unread_count: i64::from(row.try_get::<i32, _>(8)?),
        assignee_id: row.try_get::<Option<Uuid>, _>(9)?.map(MemberId),
        resolved: status == "RESOLVED",
        contact: ContactRow {
            id: contact_id,
            platform_user_id: row.try_get::<Option<String>, _>(12)?.unwrap_or(thread_id),
            display_name: row.try_get(13)?,
            avatar_url: row.try_get(14)?,
            erased: row.try_get::<Option<bool>, _>(15)?.unwrap_or(false),
        },
    })
}

/// Filters of the inbox list.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub channel_ids: Option<Vec<ChannelId>>,
    pub assignee: Option<MemberId>,
    pub unassigned: bool,
    pub resolved: Option<bool>,
}

/// One page of `org`'s inbox, newest activity first, strictly after the
/// keyset cursor `(last_message_at, conversation_id)`.
pub async fn conversations(
    db: &Database,
    org: OrgId,
    filter: &InboxFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: usize,
) -> Result<Vec<ConversationRow>, sqlx::Error> {
    let mut sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM rm_conversations c LEFT JOIN rm_contacts k ON k.contact_id = c.contact_id
         WHERE c.org_id = $1"
    );
    // Values are bound in a fixed order; absent filters compare to themselves.
    sql.push_str(" AND ($2 = 0 OR (c.last_message_at < $3 OR (c.last_message_at = $3 AND c.conversation_id < $4)))");
    sql.push_str(" AND ($5 = 0 OR c.assignee_id = $6)");
    sql.push_str(" AND ($7 = 0 OR c.assignee_id IS NULL)");
    sql.push_str(" AND ($8 = 0 OR c.status = $9)");
    let channels: Vec<Uuid> = filter.channel_ids.iter().flatten().map(|c| c.0).collect();
    if filter.channel_ids.is_some() {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = channels.iter().map(|c| format!("'{}'", c)).collect();
        // Ids are UUIDs we parsed: safe to inline, and it keeps one statement for both dialects.
        match db {
            Database::Sqlite { .. } => {
                let blobs: Vec<String> = channels
                    .iter()
                    .map(|c| format!("x'{}'", c.simple()))
                    .collect();
                sql.push_str(&format!(" AND c.channel_id IN ({})", blobs.join(", ")));
            }
            Database::Postgres { .. } => {
                sql.push_str(&format!(" AND c.channel_id IN ({})", list.join(", ")))
            }
        }
    }
    sql.push_str(" ORDER BY c.last_message_at DESC, c.conversation_id DESC LIMIT $10");
    let (has_after, after_at, after_id) = match after {
        Some((at, id)) => (1i32, micros(at), id),
        None => (0, 0, Uuid::nil()),
    };
    let status = match filter.resolved {
        Some(true) => "RESOLVED",
        _ => "OPEN",
    };
    fetch_all!(
        db,
        &sql,
        [
            org.0,
            has_after,
            after_at,
            after_id,
            i32::from(filter.assignee.is_some()),
            filter.assignee.map_or(Uuid::nil(), |m| m.0),
            i32::from(filter.unassigned),
            i32::from(filter.resolved.is_some()),
            status,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |row| decode_conversation(row)
    )
}

/// One conversation of `org`.
pub async fn conversation(
    db: &Database,
    org: OrgId,
    id: ConversationId,
) -> Result<Option<ConversationRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM rm_conversations c LEFT JOIN rm_contacts k ON k.contact_id = c.contact_id
         WHERE c.org_id = $1 AND c.conversation_id = $2"
    );
    fetch_optional!(db, &sql, [org.0, id.0], |row| decode_conversation(row))
}

/// Conversation `id` of `org` with its channel, in one query (a live
/// update loads this for every subscriber of the organization).
pub async fn conversation_with_channel(
    db: &Database,
    org: OrgId,
    id: ConversationId,
) -> Result<Option<(ConversationRow, Option<crate::channels::ChannelRow>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS}, {} FROM rm_conversations c
         LEFT JOIN rm_contacts k ON k.contact_id = c.contact_id
         LEFT JOIN rm_channels ch ON ch.channel_id = c.channel_id AND ch.org_id = c.org_id
         WHERE c.org_id = $1 AND c.conversation_id = $2",
        crate::channels::JOINED_COLUMNS
    );
    fetch_optional!(db, &sql, [org.0, id.0], |row| {
        let at = CONVERSATION_COLUMN_COUNT;
        // The join found no channel: its id is NULL.
        let channel = match row.try_get::<Option<Uuid>, _>(at)? {
            Some(_) => Some(crate::channels::decode_at(row, at)?),
            None => None,
        };
        Ok((decode_conversation(row)?, channel))
    })
}

/// A message as the inbox shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: Uuid,
    pub conversation_id: ConversationId,
    pub inbound: bool,
    pub sent_at: DateTime<Utc>,
    pub text: Option<String>,
    pub attachments: Vec<InboundAttachment>,
    pub delivery_state: Option<String>,
    pub failure_reason: Option<String>,
    pub author_id: Option<MemberId>,
    pub unsent: bool,
}

fn decode_message<R: Row>(row: &R) -> Result<MessageRow, sqlx::Error>
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Uuid>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let direction: String = row.try_get(2)?;
    let attachments: String = row.try_get(5)?;
    Ok(MessageRow {
        id: row.try_get(0)?,
        conversation_id: ConversationId(row.try_get(1)?),
        inbound: direction == "INBOUND",
        sent_at: instant(row.try_get(3)?)?,
        text: row.try_get(4)?,
        attachments: serde_json::from_str(&attachments)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        delivery_state: row.try_get(6)?,
        failure_reason: row.try_get(7)?,
        author_id: row.try_get::<Option<Uuid>, _>(8)?.map(MemberId),
        unsent: row.try_get(9)?,
    })
}

const MESSAGE_COLUMNS: &str =
    "message_id, conversation_id, direction, sent_at, text, attachments, delivery_state, failure_reason, author_id, unsent";

/// Messages of a conversation in platform time order. `after`/`before` are
/// keyset cursors `(sent_at, message_id)`; `newest_first` pages back from the end.
pub async fn messages(
    db: &Database,
    conversation: ConversationId,
    after: Option<(DateTime<Utc>, Uuid)>,
    before: Option<(DateTime<Utc>, Uuid)>,
    newest_first: bool,
    limit: usize,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let order = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM rm_messages WHERE conversation_id = $1
           AND ($2 = 0 OR sent_at > $3 OR (sent_at = $3 AND message_id > $4))
           AND ($5 = 0 OR sent_at < $6 OR (sent_at = $6 AND message_id < $7))
         ORDER BY sent_at {order}, message_id {order} LIMIT $8"
    );
    let (has_after, after_at, after_id) =
        after.map_or((0i32, 0, Uuid::nil()), |(at, id)| (1, micros(at), id));
    let (has_before, before_at, before_id) =
        before.map_or((0i32, 0, Uuid::nil()), |(at, id)| (1, micros(at), id));
    fetch_all!(
        db,
        &sql,
        [
            conversation.0,
            has_after,
            after_at,
            after_id,
            has_before,
            before_at,
            before_id,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |row| decode_message(row)
    )
}

/// One message of `org` by id.
pub async fn message(
    db: &Database,
    org: OrgId,
    id: Uuid,
) -> Result<Option<MessageRow>, sqlx::Error> {
    let sql =
        format!("SELECT {MESSAGE_COLUMNS} FROM rm_messages WHERE org_id = $1 AND message_id = $2");
    fetch_optional!(db, &sql, [org.0, id], |row| decode_message(row))
}

/// An inbound attachment still to be fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMedia {
    pub message_id: Uuid,
    pub index: u32,
    pub org_id: OrgId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub source: omnibox_domain::conversation::MediaSource,
}

/// Attachments waiting for the media fetcher, oldest first.
pub async fn pending_media(db: &Database, limit: usize) -> Result<Vec<PendingMedia>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT message_id, idx, org_id, conversation_id, channel_id, source FROM rm_media
         WHERE state = 'PENDING'
           AND NOT EXISTS (SELECT 1 FROM rm_conversations c JOIN rm_contacts k ON k.contact_id = c.contact_id
                           WHERE c.conversation_id = rm_media.conversation_id AND k.erased)
         ORDER BY message_id, idx LIMIT $1",
        [i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            let source: String = row.try_get(5)?;
            Ok(PendingMedia {
                message_id: row.try_get(0)?,
                index: u32::try_from(row.try_get::<i32, _>(1)?).unwrap_or_default(),
                org_id: OrgId(row.try_get(2)?),
                conversation_id: ConversationId(row.try_get(3)?),
                channel_id: ChannelId(row.try_get(4)?),
                source: serde_json::from_str(&source)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            })
        }
    )
}

/// A contact of `org` as erasure needs it: whether it exists, and whether
/// it was erased already.
pub async fn contact_erased(
    db: &Database,
    org: OrgId,
    contact: ContactId,
) -> Result<Option<bool>, sqlx::Error> {
    fetch_optional!(
        db,
        "SELECT erased FROM rm_contacts WHERE org_id = $1 AND contact_id = $2",
        [org.0, contact.0],
        |row| row.try_get::<bool, _>(0)
    )
}

/// Reply bubbles waiting to be delivered (queued or being sent), all
/// organizations: the delivery queue's depth.
pub async fn delivery_queue_depth(db: &Database) -> Result<i64, sqlx::Error> {
    Ok(fetch_optional!(
        db,
        "SELECT COUNT(*) FROM rm_deliveries WHERE state IN ('PENDING', 'SENDING')",
        [],
        |row| row.try_get::<i64, _>(0)
    )?
    .unwrap_or(0))
}

/// Contact `contact` of `org`.
pub async fn contact(
    db: &Database,
    org: OrgId,
    contact: ContactId,
) -> Result<Option<ContactRow>, sqlx::Error> {
    fetch_optional!(
        db,
        "SELECT contact_id, platform_user_id, display_name, avatar_url, erased FROM rm_contacts
         WHERE org_id = $1 AND contact_id = $2",
        [org.0, contact.0],
        |row| Ok(ContactRow {
            id: ContactId(row.try_get(0)?),
            platform_user_id: row.try_get(1)?,
            display_name: row.try_get(2)?,
            avatar_url: row.try_get(3)?,
            erased: row.try_get(4)?,
        })
    )
}

/// Whether the customer of conversation `id` was erased.
pub async fn conversation_erased(db: &Database, id: ConversationId) -> Result<bool, sqlx::Error> {
    Ok(fetch_optional!(
        db,
        "SELECT k.erased FROM rm_conversations c JOIN rm_contacts k ON k.contact_id = c.contact_id
         WHERE c.conversation_id = $1",
        [id.0],
        |row| row.try_get::<bool, _>(0)
    )?
    .unwrap_or(false))
}

/// The attachments (message id, index) in conversations with `contact`:
/// the media files erasure deletes.
pub async fn contact_media(
    db: &Database,
    contact: ContactId,
) -> Result<Vec<(Uuid, u32)>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT m.message_id, m.idx FROM rm_media m JOIN rm_conversations c ON c.conversation_id = m.conversation_id
         WHERE c.contact_id = $1 ORDER BY m.message_id, m.idx",
        [contact.0],
        |row| Ok((
            row.try_get::<Uuid, _>(0)?,
            u32::try_from(row.try_get::<i32, _>(1)?).unwrap_or_default()
        ))
    )
}

/// Facebook contacts (organization, contact) whose platform user id is
/// `user_id`, in every organization (one Facebook app serves them all).
pub async fn facebook_contacts(
    db: &Database,
    user_id: &str,
) -> Result<Vec<(OrgId, ContactId)>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT DISTINCT k.org_id, k.contact_id FROM rm_contacts k JOIN rm_conversations c ON c.contact_id = k.contact_id
         WHERE k.platform_user_id = $1 AND c.channel_kind = 'FACEBOOK'",
        [user_id],
        |row| Ok((OrgId(row.try_get(0)?), ContactId(row.try_get(1)?)))
    )
}

/// What Omnibox holds of one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    pub index: u32,
    pub state: String,
    pub storage_key: Option<String>,
    pub size_bytes: Option<i64>,
    pub content_type: Option<String>,
    pub reason: Option<String>,
}

/// The media of one message of `org`.
pub async fn media(
    db: &Database,
    org: OrgId,
    message_id: Uuid,
) -> Result<Vec<MediaRow>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT idx, state, storage_key, size_bytes, content_type, reason FROM rm_media
         WHERE org_id = $1 AND message_id = $2 ORDER BY idx",
        [org.0, message_id],
        |row| Ok(MediaRow {
            index: u32::try_from(row.try_get::<i32, _>(0)?).unwrap_or_default(),
            state: row.try_get(1)?,
            storage_key: row.try_get(2)?,
            size_bytes: row.try_get(3)?,
            content_type: row.try_get(4)?,
            reason: row.try_get(5)?,
        })
    )
}

/// A contact whose profile is still to be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingProfile {
    pub contact_id: ContactId,
    pub org_id: OrgId,
    pub channel_id: ChannelId,
    pub platform_user_id: String,
}

pub async fn pending_profiles(
    db: &Database,
    limit: usize,
) -> Result<Vec<PendingProfile>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT contact_id, org_id, channel_id, platform_user_id FROM rm_contacts
         WHERE profile_state = 'PENDING' ORDER BY contact_id LIMIT $1",
        [i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| Ok(PendingProfile {
            contact_id: ContactId(row.try_get(0)?),
            org_id: OrgId(row.try_get(1)?),
            channel_id: ChannelId(row.try_get(2)?),
            platform_user_id: row.try_get(3)?,
        })
    )
}

/// A reply bubble waiting for the delivery worker.
/// Conversations with bubbles not yet settled (PENDING or SENDING), those
/// waiting longest first: where the delivery worker looks for work. The
/// worker decides from each conversation's events, not from these rows.
pub async fn conversations_with_deliveries(
    db: &Database,
    limit: usize,
) -> Result<Vec<ConversationId>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT conversation_id FROM rm_deliveries WHERE state IN ('PENDING', 'SENDING')
         GROUP BY conversation_id ORDER BY min(queued_at), conversation_id LIMIT $1",
        [i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| Ok(ConversationId(row.try_get(0)?))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A joined read finds the channel's columns right after these.
    #[test]
    fn the_column_count_matches_the_columns() {
        assert_eq!(
            CONVERSATION_COLUMNS.split(',').count(),
            CONVERSATION_COLUMN_COUNT
        );
    }
}
