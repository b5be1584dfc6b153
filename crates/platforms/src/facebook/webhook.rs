//! Parsing a Messenger webhook body (`{"object":"page","entry":[…]}`).
//!
//! Meta batches freely: one POST can hold several entries for several Pages,
//! each with several items, under `messaging` or (when another app owns the
//! thread) `standby`. Every item becomes one [`Event`] tagged with its Page, so
//! the caller can route a mixed batch page by page. Kinds we do not model are
//! kept as [`EventKind::Unsupported`] so the webhook still answers 200: Meta
//! disables subscriptions that keep failing.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{from_millis, ParseError};

/// One item of a webhook batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The Page the entry was delivered for (`entry.id`).
    pub page_id: String,
    /// Delivered under `standby`: another app controls the thread, so Omnibox
    /// may record the item but must not answer it.
    pub standby: bool,
    /// When it happened; Meta omits it on some delivery receipts. Order by this,
    /// never by arrival: retries arrive out of order.
    pub timestamp: Option<DateTime<Utc>>,
    pub kind: EventKind,
    /// A digest of the item's own JSON (hex SHA-256): what identifies an
    /// item that has no message id or no timestamp (a `changes` item, a
    /// receipt without a time), the same however Meta batches it.
    pub fingerprint: String,
}

/// What happened. `psid` is always the customer's page-scoped id: the sender of
/// inbound items, the recipient of echoes.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The customer wrote to the Page.
    Message { psid: String, message: Message },
    /// The Page wrote to the customer (through our app or another tool, told
    /// apart by `app_id`); `metadata` is what we set on the Send API call.
    Echo {
        psid: String,
        app_id: Option<u64>,
        metadata: Option<String>,
        message: Message,
    },
    /// The customer tapped a button. Standby postbacks carry no `payload`.
    Postback {
        psid: String,
        mid: Option<String>,
        title: Option<String>,
        payload: Option<String>,
    },
    /// Everything the Page sent up to `watermark` reached the customer.
    Delivery {
        psid: String,
        mids: Vec<String>,
        watermark: DateTime<Utc>,
    },
    /// The customer has seen everything the Page sent up to `watermark`.
    Read {
        psid: String,
        watermark: DateTime<Utc>,
    },
    /// A kind Omnibox does not handle (referral, reaction, optin, a `changes`
    /// field, …), named by its JSON key; empty if the item carried no payload.
    Unsupported { kind: String },
}

/// The content of a message or echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Meta's message id: the idempotency key across retries.
    pub mid: String,
    pub text: Option<String>,
    /// Stickers are collapsed: Meta's transition period sends one sticker as
    /// two attachments sharing a `sticker_id`, which must not become two pictures.
    pub attachments: Vec<Attachment>,
    /// The payload of the quick-reply button tapped; the visible text is in `text`.
    pub quick_reply_payload: Option<String>,
    /// The `mid` this message replies to.
    pub reply_to_mid: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// A signed CDN URL that expires: download it promptly.
    pub url: Option<String>,
    pub title: Option<String>,
    pub sticker_id: Option<u64>,
    pub coordinates: Option<Coordinates>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentKind {
    Image,
    Video,
    Audio,
    File,
    Sticker,
    Location,
    /// A shared link (`fallback` on the wire).
    Link,
    /// Templates, reels, posts and future types, by their wire name.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Coordinates {
    pub lat: f64,
    pub long: f64,
}

/// Reads a webhook body whose signature has already been verified.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let body: RawBody = serde_json::from_slice(body)?;
    if body.object != "page" {
        return Err(ParseError::UnexpectedObject(body.object));
    }
    let mut events = Vec::new();
    for entry in body.entry {
        let items = entry.messaging.into_iter().map(|item| (item, false));
        let items = items.chain(entry.standby.into_iter().map(|item| (item, true)));
        for (raw, standby) in items {
            let item: RawItem = serde_json::from_str(raw.get())?;
            events.push(Event {
                page_id: entry.id.clone(),
                standby,
                timestamp: item.timestamp.map(from_millis).transpose()?,
                kind: item.into_kind()?,
                fingerprint: fingerprint(&raw),
            });
        }
        for raw in entry.changes {
            let change: RawChange = serde_json::from_str(raw.get())?;
            events.push(Event {
                page_id: entry.id.clone(),
                standby: false,
                timestamp: None,
                kind: EventKind::Unsupported { kind: change.field },
                fingerprint: fingerprint(&raw),
            });
        }
    }
    Ok(events)
}

#[derive(Deserialize)]
struct RawBody {
    object: String,
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    id: String,
    #[serde(default)]
    messaging: Vec<Box<RawValue>>,
    #[serde(default)]
    standby: Vec<Box<RawValue>>,
    #[serde(default)]
    changes: Vec<Box<RawValue>>,
}

fn fingerprint(raw: &RawValue) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(raw.get().as_bytes()))
}

#[derive(Deserialize)]
struct RawChange {
    field: String,
}

/// The kind of an item is whichever payload key it carries.
#[derive(Deserialize)]
struct RawItem {
    #[serde(default)]
    sender: RawParty,
    #[serde(default)]
    recipient: RawParty,
    timestamp: Option<i64>,
    message: Option<RawMessage>,
    postback: Option<RawPostback>,
    delivery: Option<RawDelivery>,
    read: Option<RawRead>,
    /// Every other key, to name an unsupported kind.
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// Plugin guests are named by `user_ref` instead of `id`, so `id` is optional
/// here and only required by the kinds that need a PSID.
#[derive(Default, Deserialize)]
struct RawParty {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    mid: String,
    text: Option<String>,
    #[serde(default)]
    is_echo: bool,
    app_id: Option<u64>,
    metadata: Option<String>,
    quick_reply: Option<RawQuickReply>,
    reply_to: Option<RawReplyTo>,
    #[serde(default)]
    attachments: Vec<RawAttachment>,
}

#[derive(Deserialize)]
struct RawQuickReply {
    payload: String,
}

#[derive(Deserialize)]
struct RawReplyTo {
    mid: String,
}

/// Older link shares put `url` and `title` beside a null `payload`.
#[derive(Deserialize)]
struct RawAttachment {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    title: Option<String>,
    payload: Option<RawPayload>,
}

#[derive(Default, Deserialize)]
struct RawPayload {
    url: Option<String>,
    title: Option<String>,
    sticker_id: Option<u64>,
    coordinates: Option<Coordinates>,
}

#[derive(Deserialize)]
struct RawPostback {
    mid: Option<String>,
    title: Option<String>,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct RawDelivery {
    #[serde(default)]
    mids: Vec<String>,
    watermark: i64,
}

#[derive(Deserialize)]
struct RawRead {
    watermark: i64,
}

impl RawItem {
    fn into_kind(self) -> Result<EventKind, ParseError> {
        let psid = |party: RawParty, kind| party.id.ok_or(ParseError::MissingCustomer { kind });
        Ok(if let Some(mut message) = self.message {
            if message.is_echo {
                EventKind::Echo {
                    psid: psid(self.recipient, "message")?,
                    app_id: message.app_id,
                    metadata: message.metadata.take(),
                    message: message.into(),
                }
            } else {
                EventKind::Message {
                    psid: psid(self.sender, "message")?,
                    message: message.into(),
                }
            }
        } else if let Some(postback) = self.postback {
            EventKind::Postback {
                psid: psid(self.sender, "postback")?,
                mid: postback.mid,
                title: postback.title,
                payload: postback.payload,
            }
        } else if let Some(delivery) = self.delivery {
            EventKind::Delivery {
                psid: psid(self.sender, "delivery")?,
                mids: delivery.mids,
                watermark: from_millis(delivery.watermark)?,
            }
        } else if let Some(read) = self.read {
            EventKind::Read {
                psid: psid(self.sender, "read")?,
                watermark: from_millis(read.watermark)?,
            }
        } else {
            EventKind::Unsupported {
                kind: self.other.keys().next().cloned().unwrap_or_default(),
            }
        })
    }
}

impl From<RawMessage> for Message {
    fn from(raw: RawMessage) -> Self {
        Message {
            mid: raw.mid,
            text: raw.text,
            attachments: collapse_stickers(raw.attachments.into_iter().map(Attachment::from)),
            quick_reply_payload: raw.quick_reply.map(|reply| reply.payload),
            reply_to_mid: raw.reply_to.map(|reply| reply.mid),
        }
    }
}

impl From<RawAttachment> for Attachment {
    fn from(raw: RawAttachment) -> Self {
        let payload = raw.payload.unwrap_or_default();
        // Anything carrying a sticker id is a sticker, whatever its `type`:
        // before the transition Meta sent stickers typed `image`.
        let kind = match (payload.sticker_id, raw.kind.as_str()) {
            (Some(_), _) | (None, "sticker") => AttachmentKind::Sticker,
            (None, "image") => AttachmentKind::Image,
            (None, "video") => AttachmentKind::Video,
            (None, "audio") => AttachmentKind::Audio,
            (None, "file") => AttachmentKind::File,
            (None, "location") => AttachmentKind::Location,
            (None, "fallback") => AttachmentKind::Link,
            (None, _) => AttachmentKind::Other(raw.kind),
        };
        Attachment {
            kind,
            url: payload.url.or(raw.url),
            title: payload.title.or(raw.title),
            sticker_id: payload.sticker_id,
            coordinates: payload.coordinates,
        }
    }
}

/// Keeps the first attachment of each `sticker_id`, borrowing a URL from a
/// duplicate if the first had none.
fn collapse_stickers(attachments: impl Iterator<Item = Attachment>) -> Vec<Attachment> {
    let mut kept: Vec<Attachment> = Vec::new();
    for attachment in attachments {
        let duplicate = attachment
            .sticker_id
            .and_then(|id| kept.iter_mut().find(|seen| seen.sticker_id == Some(id)));
        match duplicate {
            Some(seen) => seen.url = seen.url.take().or(attachment.url),
            None => kept.push(attachment),
        }
    }
    kept
}
