//! Parsing a LINE webhook body (`{"destination":…,"events":[…]}`).
//!
//! `events` may be empty (the console's Verify button sends exactly that), and
//! LINE adds event and message types over time: those are kept as
//! `Unsupported` so the webhook still answers 2xx instead of logging errors.
//! Field names follow LINE's, in snake case.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{Map, Value};

use crate::{from_millis, ParseError};

/// One POST: the events for one Official Account.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// The bot user id of the receiving account (`U` + 32 hex).
    pub destination: String,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// ULID, unchanged on redelivery: the deduplication key for events that
    /// carry no message id.
    pub webhook_event_id: String,
    /// When the event happened (unchanged on redelivery); order by this.
    pub timestamp: DateTime<Utc>,
    pub mode: Mode,
    /// Absent on account-level events such as `botSuspended`.
    pub source: Option<Source>,
    /// LINE resent this event because an earlier delivery failed.
    pub is_redelivery: bool,
    /// Single use, valid about a minute; only on events that can be answered.
    pub reply_token: Option<String>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Active,
    /// Another channel handles the chat: record, never send. A mode LINE may
    /// add later also lands here, because not answering is the safe default.
    #[serde(other)]
    Standby,
}

/// Where the event happened. Replies to a group or room go to its id, not the user's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    #[serde(rename_all = "camelCase")]
    User { user_id: String },
    /// `user_id` is only present on some events, and only from iOS/Android users.
    #[serde(rename_all = "camelCase")]
    Group {
        group_id: String,
        user_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Room {
        room_id: String,
        user_id: Option<String>,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Message(Message),
    /// Friend added, or unblocked when `is_unblocked`.
    Follow {
        is_unblocked: bool,
    },
    /// The user blocked the account.
    Unfollow,
    Postback(Postback),
    /// The user took back message `message_id`; its content must be hidden.
    Unsend {
        message_id: String,
    },
    /// join, leave, memberJoined, beacon, … named by their `type`.
    Unsupported {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Numeric string, unique per message: the idempotency key.
    pub id: String,
    /// Lets a reply quote this message.
    pub quote_token: Option<String>,
    /// The message this one quotes.
    pub quoted_message_id: Option<String>,
    /// For the mark-as-read API.
    pub mark_as_read_token: Option<String>,
    pub content: MessageContent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(Text),
    Image(Media),
    Video(Media),
    Audio(Media),
    File(File),
    Location(Location),
    Sticker(Sticker),
    /// A message type this crate does not model, named by its `type`.
    Unsupported {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Text {
    /// LINE emoji appear here as placeholders such as `(love)`, described by `emojis`.
    pub text: String,
    #[serde(default)]
    pub emojis: Vec<Emoji>,
    pub mention: Option<Mention>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Emoji {
    pub index: u32,
    pub length: u32,
    pub product_id: String,
    pub emoji_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mention {
    pub mentionees: Vec<Mentionee>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mentionee {
    pub index: u32,
    pub length: u32,
    #[serde(rename = "type")]
    pub kind: MentioneeKind,
    pub user_id: Option<String>,
    /// The mention names this account: the message is addressed to us.
    #[serde(default)]
    pub is_self: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MentioneeKind {
    User,
    /// `@All`.
    All,
    #[serde(other)]
    Unsupported,
}

/// Image, video or audio.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    pub content_provider: ContentProvider,
    /// Milliseconds, for video and audio.
    pub duration: Option<u64>,
    /// Set when the user sent several images at once; each arrives as its own event.
    pub image_set: Option<ImageSet>,
}

/// Where the bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentProvider {
    /// Fetch from the content endpoint with the message id, promptly: LINE
    /// deletes content after an unstated period.
    Line,
    #[serde(rename_all = "camelCase")]
    External {
        original_content_url: Option<String>,
        preview_image_url: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageSet {
    pub id: String,
    pub index: Option<u32>,
    pub total: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub file_name: String,
    /// Bytes.
    pub file_size: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Location {
    pub title: Option<String>,
    pub address: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
}

/// Sticker images cannot be downloaded; render them from the ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sticker {
    pub package_id: String,
    pub sticker_id: String,
    /// A string, not an enum: LINE documents that new values may appear.
    pub sticker_resource_type: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Text of a message sticker.
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Postback {
    /// Opaque to LINE: whatever the action that was tapped carries.
    pub data: String,
    /// What a date/time picker or rich-menu switch returned.
    pub params: Option<Map<String, Value>>,
}

/// Reads a webhook body whose signature has already been verified.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook, ParseError> {
    let body: RawBody = serde_json::from_slice(body)?;
    Ok(Webhook {
        destination: body.destination,
        events: body
            .events
            .into_iter()
            .map(RawEvent::into_event)
            .collect::<Result<_, _>>()?,
    })
}

#[derive(Deserialize)]
struct RawBody {
    destination: String,
    events: Vec<RawEvent>,
}

/// The kind-specific object sits under a key named like the kind, so it is
/// kept as JSON until `type` says which one to read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    mode: Mode,
    timestamp: i64,
    source: Option<Source>,
    webhook_event_id: String,
    delivery_context: RawDeliveryContext,
    reply_token: Option<String>,
    #[serde(flatten)]
    payload: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeliveryContext {
    is_redelivery: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFollow {
    is_unblocked: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUnsend {
    message_id: String,
}

/// Like [`RawEvent`]: the content fields depend on `type`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    quote_token: Option<String>,
    quoted_message_id: Option<String>,
    mark_as_read_token: Option<String>,
    #[serde(flatten)]
    content: Map<String, Value>,
}

impl RawEvent {
    fn into_event(mut self) -> Result<Event, ParseError> {
        let kind = match self.kind.as_str() {
            "message" => {
                EventKind::Message(take::<RawMessage>(&mut self.payload, "message")?.try_into()?)
            }
            "follow" => EventKind::Follow {
                is_unblocked: take::<RawFollow>(&mut self.payload, "follow")?.is_unblocked,
            },
            "unfollow" => EventKind::Unfollow,
            "postback" => EventKind::Postback(take(&mut self.payload, "postback")?),
            "unsend" => EventKind::Unsend {
                message_id: take::<RawUnsend>(&mut self.payload, "unsend")?.message_id,
            },
            _ => EventKind::Unsupported { kind: self.kind },
        };
        Ok(Event {
            webhook_event_id: self.webhook_event_id,
            timestamp: from_millis(self.timestamp)?,
            mode: self.mode,
            source: self.source,
            is_redelivery: self.delivery_context.is_redelivery,
            reply_token: self.reply_token,
            kind,
        })
    }
}

impl TryFrom<RawMessage> for Message {
    type Error = serde_json::Error;

    fn try_from(raw: RawMessage) -> Result<Self, Self::Error> {
        let fields = Value::Object(raw.content);
        let content = match raw.kind.as_str() {
            "text" => MessageContent::Text(serde_json::from_value(fields)?),
            "image" => MessageContent::Image(serde_json::from_value(fields)?),
            "video" => MessageContent::Video(serde_json::from_value(fields)?),
            "audio" => MessageContent::Audio(serde_json::from_value(fields)?),
            "file" => MessageContent::File(serde_json::from_value(fields)?),
            "location" => MessageContent::Location(serde_json::from_value(fields)?),
            "sticker" => MessageContent::Sticker(serde_json::from_value(fields)?),
            _ => MessageContent::Unsupported { kind: raw.kind },
        };
        Ok(Message {
            id: raw.id,
            quote_token: raw.quote_token,
            quoted_message_id: raw.quoted_message_id,
            mark_as_read_token: raw.mark_as_read_token,
            content,
        })
    }
}

/// Reads the object under `key`; a missing one is reported like any other
/// missing field.
fn take<T: DeserializeOwned>(
    payload: &mut Map<String, Value>,
    key: &str,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(payload.remove(key).unwrap_or(Value::Null))
}
