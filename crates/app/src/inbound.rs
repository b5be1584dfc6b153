//! From parsed webhook items to events: one append per item, each with an
//! id derived from the item's platform id, so redeliveries store nothing new.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use omnibox_domain::conversation::{
    contact_id, conversation_id, inbound_event_id, AttachmentKind, ContactEvent, ConversationEvent,
    InboundAttachment, InboundEvent, MediaSource, Postback, Thread,
};
use omnibox_domain::ids::ConversationId;
use omnibox_platforms::{facebook, line};
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use serde::Serialize;
use uuid::Uuid;

use crate::context::AppContext;
use crate::directory::KnownChannel;

/// One event to append to one stream.
#[derive(Debug)]
pub struct Append {
    pub stream: StreamName,
    pub event: NewEvent,
    /// An event with personal fields: its `data` is written by [`seal`].
    unsealed: Option<Box<ConversationEvent>>,
}

/// What storing a webhook's appends did.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub items: usize,
    /// How many were customers' messages (`MessageReceived`).
    pub messages: usize,
}

/// Why a webhook's appends could not all be stored (the platform retries,
/// which the derived ids make harmless).
#[derive(Debug, thiserror::Error)]
pub enum StoreFailed {
    #[error(transparent)]
    Seal(#[from] omnibox_store::personal::PersonalError),
    #[error(transparent)]
    Store(#[from] omnibox_store::StoreError),
}

/// Seals `appends` and appends every one concurrently (they share group
/// commits); answers once all are durable.
pub async fn store(app: &AppContext, mut appends: Vec<Append>) -> Result<Stored, StoreFailed> {
    seal(&mut appends, &app.personal).await?;
    let messages = appends
        .iter()
        .filter(|a| a.event.event_type == "MessageReceived")
        .count();
    let items = appends.len();
    let results = join_all(appends.into_iter().map(|append| async move {
        app.store
            .append(&append.stream, ExpectedRevision::Any, vec![append.event])
            .await
    }))
    .await;
    match results.into_iter().find_map(Result::err) {
        None => Ok(Stored { items, messages }),
        Some(error) => Err(error.into()),
    }
}

/// Seals the personal fields of `appends` with their contacts' keys and
/// writes their data. Call before storing them.
pub async fn seal(
    appends: &mut [Append],
    keys: &omnibox_store::personal::PersonalKeys,
) -> Result<(), omnibox_store::personal::PersonalError> {
    for append in appends {
        let Some(mut event) = append.unsealed.take() else {
            continue;
        };
        if let Some(owner) = event.personal_data_owner() {
            let key = keys.for_contact(event.org_id().0, owner.0).await?;
            event.seal_personal(|text| key.seal(text));
        }
        append.event.data = serde_json::to_string(&event)
            .map_err(|e| omnibox_store::personal::PersonalError::Malformed(e.to_string()))?;
    }
    Ok(())
}

fn append<E: Serialize>(
    category: &str,
    stream_id: Uuid,
    id: Uuid,
    event_type: &str,
    event: &E,
    correlation_id: Uuid,
    actor: &str,
) -> Option<Append> {
    let stream = StreamName::new(category, stream_id).ok()?;
    let data = serde_json::to_string(event).ok()?;
    Some(Append {
        stream,
        event: NewEvent {
            id,
            event_type: event_type.to_owned(),
            data,
            metadata: Metadata {
                correlation_id,
                causation_id: None,
                actor: Some(actor.to_owned()),
            },
        },
        unsealed: None,
    })
}

/// A conversation event; one with personal fields waits for [`seal`].
fn conversation(
    event: ConversationEvent,
    id: Uuid,
    conversation: ConversationId,
    correlation: Uuid,
    actor: &str,
) -> Option<Append> {
    if event.personal_data_owner().is_none() {
        return append(
            ConversationId::CATEGORY,
            conversation.0,
            id,
            event.event_type(),
            &event,
            correlation,
            actor,
        );
    }
    Some(Append {
        stream: StreamName::new(ConversationId::CATEGORY, conversation.0).ok()?,
        event: NewEvent {
            id,
            event_type: event.event_type().to_owned(),
            data: String::new(),
            metadata: Metadata {
                correlation_id: correlation,
                causation_id: None,
                actor: Some(actor.to_owned()),
            },
        },
        unsealed: Some(Box::new(event)),
    })
}

/// An item Omnibox keeps but does not show. Its id comes from `identity`
/// (LINE's webhook event id, or the digest of a Facebook item), so two
/// different items never share one and a redelivered item stores nothing.
fn unsupported(
    channel: &KnownChannel,
    kind: String,
    platform_event_id: Option<String>,
    identity: &str,
    at: Option<DateTime<Utc>>,
    correlation: Uuid,
    actor: &str,
) -> Option<Append> {
    let id = inbound_event_id(
        channel.id,
        &format!("unsupported:{kind}"),
        identity,
        at.unwrap_or_default(),
    );
    let event = InboundEvent::UnsupportedEventReceived {
        org_id: channel.org_id,
        channel_id: channel.id,
        kind,
        platform_event_id,
        at,
    };
    append(
        "inbound",
        channel.id.0,
        id,
        event.event_type(),
        &event,
        correlation,
        actor,
    )
}

/// A customer's message or button tap, before the ids that follow from it.
struct Received {
    /// Kind of platform item, part of the derived event id.
    kind: &'static str,
    thread: Thread,
    /// Who wrote; also names the contact (else the thread does).
    author: Option<String>,
    platform_message_id: String,
    sent_at: DateTime<Utc>,
    text: Option<String>,
    attachments: Vec<InboundAttachment>,
    postback: Option<Postback>,
    quick_reply_payload: Option<String>,
    reply_to: Option<String>,
    reply_token: Option<String>,
    standby: bool,
}

impl Received {
    fn new(
        kind: &'static str,
        thread: Thread,
        author: Option<String>,
        platform_message_id: String,
        sent_at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            thread,
            author,
            platform_message_id,
            sent_at,
            text: None,
            attachments: Vec::new(),
            postback: None,
            quick_reply_payload: None,
            reply_to: None,
            reply_token: None,
            standby: false,
        }
    }

    fn append(self, channel: &KnownChannel, correlation: Uuid, actor: &str) -> Option<Append> {
        let conversation_id = conversation_id(channel.id, &self.thread);
        let contact = self
            .author
            .clone()
            .unwrap_or_else(|| self.thread.platform_id().to_owned());
        let id = inbound_event_id(
            channel.id,
            self.kind,
            &self.platform_message_id,
            self.sent_at,
        );
        let event = ConversationEvent::MessageReceived {
            conversation_id,
            org_id: channel.org_id,
            channel_id: channel.id,
            channel_kind: channel.kind,
            contact_id: contact_id(channel.id, &contact),
            thread: self.thread,
            author: self.author,
            platform_message_id: self.platform_message_id,
            sent_at: self.sent_at,
            text: self.text,
            attachments: self.attachments,
            postback: self.postback,
            quick_reply_payload: self.quick_reply_payload,
            reply_to: self.reply_to,
            reply_token: self.reply_token,
            standby: self.standby,
        };
        conversation(event, id, conversation_id, correlation, actor)
    }
}

/// Facebook items for one page (its channel), as appends.
///
/// Longer than most functions on purpose: one match arm per kind of item,
/// read as one table from the platform's kinds to our events.
pub fn facebook_events(
    channel: &KnownChannel,
    events: Vec<facebook::Event>,
    correlation: Uuid,
) -> Vec<Append> {
    const ACTOR: &str = "platform:facebook";
    let mut appends = Vec::with_capacity(events.len());
    for event in events {
        let standby = event.standby;
        let at = event.timestamp;
        let mapped = match (event.kind, at) {
            (facebook::EventKind::Message { psid, message }, Some(at)) => Received {
                text: message.text,
                attachments: message
                    .attachments
                    .into_iter()
                    .map(facebook_attachment)
                    .collect(),
                quick_reply_payload: message.quick_reply_payload,
                reply_to: message.reply_to_mid,
                standby,
                ..Received::new(
                    "message",
                    Thread::User(psid.clone()),
                    Some(psid),
                    message.mid,
                    at,
                )
            }
            .append(channel, correlation, ACTOR),
            (
                facebook::EventKind::Echo {
                    psid,
                    app_id,
                    metadata,
                    message,
                },
                Some(at),
            ) => {
                let contact = contact_id(channel.id, &psid);
                let conversation_id = conversation_id(channel.id, &Thread::User(psid));
                let id = inbound_event_id(channel.id, "echo", &message.mid, at);
                let event = ConversationEvent::MessageEchoed {
                    conversation_id,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    platform_message_id: message.mid,
                    sent_at: at,
                    app_id,
                    metadata,
                    text: message.text,
                    attachments: message
                        .attachments
                        .into_iter()
                        .map(facebook_attachment)
                        .collect(),
                    contact_id: Some(contact),
                };
                conversation(event, id, conversation_id, correlation, ACTOR)
            }
            (
                facebook::EventKind::Postback {
                    psid,
                    mid,
                    title,
                    payload,
                },
                Some(at),
            ) => {
                let platform_id =
                    mid.unwrap_or_else(|| format!("postback:{psid}:{}", at.timestamp_millis()));
                Received {
                    text: title.clone(),
                    postback: Some(Postback { title, payload }),
                    standby,
                    ..Received::new(
                        "postback",
                        Thread::User(psid.clone()),
                        Some(psid),
                        platform_id,
                        at,
                    )
                }
                .append(channel, correlation, ACTOR)
            }
            (
                facebook::EventKind::Delivery {
                    psid,
                    mids,
                    watermark,
                },
                _,
            ) => {
                let conversation_id = conversation_id(channel.id, &Thread::User(psid.clone()));
                let id = inbound_event_id(
                    channel.id,
                    "delivery",
                    &format!("{psid}:{}", watermark.timestamp_millis()),
                    watermark,
                );
                let event = ConversationEvent::MessagesDelivered {
                    conversation_id,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    watermark,
                    platform_message_ids: mids,
                };
                conversation(event, id, conversation_id, correlation, ACTOR)
            }
            (facebook::EventKind::Read { psid, watermark }, _) => {
                let conversation_id = conversation_id(channel.id, &Thread::User(psid.clone()));
                let id = inbound_event_id(
                    channel.id,
                    "read",
                    &format!("{psid}:{}", watermark.timestamp_millis()),
                    watermark,
                );
                let event = ConversationEvent::MessagesRead {
                    conversation_id,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    watermark,
                };
                conversation(event, id, conversation_id, correlation, ACTOR)
            }
            (facebook::EventKind::Unsupported { kind }, at) => unsupported(
                channel,
                kind,
                None,
                &event.fingerprint,
                at,
                correlation,
                ACTOR,
            ),
            (_, None) => unsupported(
                channel,
                "item without timestamp".into(),
                None,
                &event.fingerprint,
                None,
                correlation,
                ACTOR,
            ),
        };
        appends.extend(mapped);
    }
    appends
}

fn facebook_attachment(attachment: facebook::Attachment) -> InboundAttachment {
    use facebook::AttachmentKind as Fb;
    let kind = match &attachment.kind {
        Fb::Image => AttachmentKind::Image,
        Fb::Video => AttachmentKind::Video,
        Fb::Audio => AttachmentKind::Audio,
        Fb::File => AttachmentKind::File,
        Fb::Sticker => AttachmentKind::Sticker,
        Fb::Location => AttachmentKind::Location,
        Fb::Link => AttachmentKind::Link,
        Fb::Other(_) => AttachmentKind::Other,
    };
    let downloadable = matches!(
        kind,
        AttachmentKind::Image
            | AttachmentKind::Video
            | AttachmentKind::Audio
            | AttachmentKind::File
    );
    let (source, reference) = match (downloadable, attachment.url) {
        (true, Some(url)) => (MediaSource::Url { url }, None),
        (false, url) if kind == AttachmentKind::Link || kind == AttachmentKind::Other => {
            (MediaSource::None, url)
        }
        _ => (MediaSource::None, None),
    };
    let reference = match kind {
        AttachmentKind::Sticker => attachment.sticker_id.map(|id| id.to_string()),
        _ => reference,
    };
    InboundAttachment {
        kind,
        source,
        file_name: None,
        size_bytes: None,
        title: attachment.title,
        reference,
        latitude: attachment.coordinates.as_ref().map(|c| c.lat),
        longitude: attachment.coordinates.as_ref().map(|c| c.long),
    }
}

/// LINE events for one channel, as appends.
///
/// Longer than most functions on purpose: one match arm per kind of event
/// and source, read as one table from the platform's kinds to our events.
pub fn line_events(
    channel: &KnownChannel,
    events: Vec<line::Event>,
    correlation: Uuid,
) -> Vec<Append> {
    const ACTOR: &str = "platform:line";
    let mut appends = Vec::with_capacity(events.len());
    for event in events {
        let at = event.timestamp;
        let (thread, author) = match &event.source {
            Some(line::Source::User { user_id }) => {
                (Some(Thread::User(user_id.clone())), Some(user_id.clone()))
            }
            Some(line::Source::Group { group_id, user_id }) => {
                (Some(Thread::Group(group_id.clone())), user_id.clone())
            }
            Some(line::Source::Room { room_id, user_id }) => {
                (Some(Thread::Room(room_id.clone())), user_id.clone())
            }
            Some(line::Source::Unsupported) | None => (None, None),
        };
        let standby = event.mode == line::Mode::Standby;
        let event_id = event.webhook_event_id.clone();
        let mapped = match (event.kind, thread) {
            (line::EventKind::Message(message), Some(thread)) => {
                match line_content(message.content, &message.id) {
                    Ok((text, attachments)) => Received {
                        text,
                        attachments,
                        reply_to: message.quoted_message_id,
                        reply_token: event.reply_token,
                        standby,
                        ..Received::new("message", thread, author, message.id, at)
                    }
                    .append(channel, correlation, ACTOR),
                    Err(kind) => unsupported(
                        channel,
                        format!("message:{kind}"),
                        Some(message.id.clone()),
                        &message.id,
                        Some(at),
                        correlation,
                        ACTOR,
                    ),
                }
            }
            (line::EventKind::Postback(postback), Some(thread)) => Received {
                postback: Some(Postback {
                    title: None,
                    payload: Some(postback.data),
                }),
                reply_token: event.reply_token,
                standby,
                ..Received::new("postback", thread, author, event_id, at)
            }
            .append(channel, correlation, ACTOR),
            (line::EventKind::Unsend { message_id }, Some(thread)) => {
                let conversation_id = conversation_id(channel.id, &thread);
                let id = inbound_event_id(channel.id, "unsend", &message_id, at);
                let event = ConversationEvent::MessageUnsent {
                    conversation_id,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    platform_message_id: message_id,
                    at,
                };
                conversation(event, id, conversation_id, correlation, ACTOR)
            }
            (line::EventKind::Follow { is_unblocked }, Some(Thread::User(user))) => {
                let contact = contact_id(channel.id, &user);
                let id = inbound_event_id(channel.id, "follow", &event_id, at);
                let event = ContactEvent::ContactFollowed {
                    contact_id: contact,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    platform_user_id: user,
                    unblocked: is_unblocked,
                    at,
                };
                append(
                    "contact",
                    contact.0,
                    id,
                    event.event_type(),
                    &event,
                    correlation,
                    ACTOR,
                )
            }
            (line::EventKind::Unfollow, Some(Thread::User(user))) => {
                let contact = contact_id(channel.id, &user);
                let id = inbound_event_id(channel.id, "unfollow", &event_id, at);
                let event = ContactEvent::ContactUnfollowed {
                    contact_id: contact,
                    org_id: channel.org_id,
                    channel_id: channel.id,
                    platform_user_id: user,
                    at,
                };
                append(
                    "contact",
                    contact.0,
                    id,
                    event.event_type(),
                    &event,
                    correlation,
                    ACTOR,
                )
            }
            (line::EventKind::Unsupported { kind }, _) => unsupported(
                channel,
                kind,
                Some(event_id.clone()),
                &event_id,
                Some(at),
                correlation,
                ACTOR,
            ),
            (other, _) => unsupported(
                channel,
                format!("{} from an unsupported source", line_kind(&other)),
                Some(event_id.clone()),
                &event_id,
                Some(at),
                correlation,
                ACTOR,
            ),
        };
        appends.extend(mapped);
    }
    appends
}

fn line_kind(kind: &line::EventKind) -> &'static str {
    match kind {
        line::EventKind::Message(_) => "message",
        line::EventKind::Follow { .. } => "follow",
        line::EventKind::Unfollow => "unfollow",
        line::EventKind::Postback(_) => "postback",
        line::EventKind::Unsend { .. } => "unsend",
        line::EventKind::Unsupported { .. } => "unsupported",
    }
}

/// A LINE message's text and attachments, or the name of a message type we
/// do not handle.
fn line_content(
    content: line::MessageContent,
    message_id: &str,
) -> Result<(Option<String>, Vec<InboundAttachment>), String> {
    let attachment = |kind, source| InboundAttachment {
        kind,
        source,
        file_name: None,
        size_bytes: None,
        title: None,
        reference: None,
        latitude: None,
        longitude: None,
    };
    let media = |kind, media: line::Media| {
        let source = match media.content_provider {
            line::ContentProvider::Line => MediaSource::LineContent {
                message_id: message_id.to_owned(),
            },
            line::ContentProvider::External {
                original_content_url: Some(url),
                ..
            } => MediaSource::Url { url },
            line::ContentProvider::External { .. } => MediaSource::None,
        };
        attachment(kind, source)
    };
    Ok(match content {
        line::MessageContent::Text(text) => (Some(text.text), Vec::new()),
        line::MessageContent::Image(m) => (None, vec![media(AttachmentKind::Image, m)]),
        line::MessageContent::Video(m) => (None, vec![media(AttachmentKind::Video, m)]),
        line::MessageContent::Audio(m) => (None, vec![media(AttachmentKind::Audio, m)]),
        line::MessageContent::File(file) => (
            None,
            vec![InboundAttachment {
                file_name: Some(file.file_name),
                size_bytes: Some(file.file_size),
                ..attachment(
                    AttachmentKind::File,
                    MediaSource::LineContent {
                        message_id: message_id.to_owned(),
                    },
                )
            }],
        ),
        line::MessageContent::Location(location) => (
            None,
            vec![InboundAttachment {
                title: location.title.or(location.address),
                latitude: Some(location.latitude),
                longitude: Some(location.longitude),
                ..attachment(AttachmentKind::Location, MediaSource::None)
            }],
        ),
        line::MessageContent::Sticker(sticker) => (
            sticker.text,
            vec![InboundAttachment {
                reference: Some(format!("{}/{}", sticker.package_id, sticker.sticker_id)),
                ..attachment(AttachmentKind::Sticker, MediaSource::None)
            }],
        ),
        line::MessageContent::Unsupported { kind } => return Err(kind),
    })
}
