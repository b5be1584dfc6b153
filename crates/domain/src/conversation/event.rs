use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, ContactId, ConversationId, MemberId, OrgId};
use crate::ChannelKind;

/// Who a conversation is with: one platform user, or a LINE group or room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Thread {
    User(String),
    Group(String),
    Room(String),
}

impl Thread {
    /// A stable text key, unique per thread on a channel.
    pub fn key(&self) -> String {
        match self {
            Thread::User(id) => format!("user:{id}"),
            Thread::Group(id) => format!("group:{id}"),
            Thread::Room(id) => format!("room:{id}"),
        }
    }

    /// The id the platform sends to (PSID, LINE userId, groupId or roomId).
    pub fn platform_id(&self) -> &str {
        match self {
            Thread::User(id) | Thread::Group(id) | Thread::Room(id) => id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// Where an inbound attachment's bytes can be fetched, for a short while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MediaSource {
    /// A signed, expiring URL (Facebook CDN, LINE external provider).
    Url { url: String },
    /// LINE's content endpoint for this message.
    LineContent { message_id: String },
    /// Nothing to download (stickers, locations, links).
    None,
}

/// An attachment as the platform described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundAttachment {
    pub kind: AttachmentKind,
    pub source: MediaSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A shared link (LINK) or the sticker's platform id (STICKER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// A button the customer tapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Postback {
    pub title: Option<String>,
    pub payload: Option<String>,
}

/// Why automatic assignment chose a member: recorded in the event, so
/// history explains every assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoAssignment {
    /// [`crate::assignment::ROUND_ROBIN`] or [`crate::assignment::QR_CODE`].
    pub strategy: String,
    /// The chosen agent's place (from 0) in the channel's rotation of
    /// eligible agents at that moment, and how many were eligible.
    pub position: u32,
    pub eligible: u32,
    /// How long the conversation waited unassigned, in seconds.
    pub waited_seconds: i64,
}

tag_first_enum! {
    #[tag = "type"]
    /// What happened in a conversation (`conversation-<id>`).
    #[derive(Debug, Clone, PartialEq)]
    pub enum ConversationEvent {
        /// The customer wrote, or tapped a button (`postback`): customer
        /// activity that opens the messaging window.
        MessageReceived {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            channel_kind: ChannelKind,
            contact_id: ContactId,
            thread: Thread,
            /// The platform user who wrote (differs from the thread in groups).
            author: Option<String>,
            platform_message_id: String,
            /// The platform's timestamp, never the time the webhook arrived.
            sent_at: DateTime<Utc>,
            text: Option<String>,
            attachments: Vec<InboundAttachment>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            postback: Option<Postback>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            quick_reply_payload: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reply_to: Option<String>,
            /// LINE's single-use reply token (valid about a minute).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reply_token: Option<String>,
            /// Delivered while another app controlled the thread.
            #[serde(default)]
            standby: bool,
        },
        /// The page sent a message (Facebook echo): ours, or another tool's.
        MessageEchoed {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            platform_message_id: String,
            sent_at: DateTime<Utc>,
            app_id: Option<u64>,
            metadata: Option<String>,
            text: Option<String>,
            attachments: Vec<InboundAttachment>,
            /// The customer the page wrote to, whose key seals `text` (absent
            /// in events written before personal data was sealed).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            contact_id: Option<ContactId>,
        },
        /// Everything the page sent up to `watermark` reached the customer.
        MessagesDelivered {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            watermark: DateTime<Utc>,
            platform_message_ids: Vec<String>,
        },
        /// The customer read everything up to `watermark`.
        MessagesRead {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            watermark: DateTime<Utc>,
        },
        /// A member read the conversation: its unread count starts again from 0.
        ConversationMarkedRead {
            conversation_id: ConversationId,
            org_id: OrgId,
            by: MemberId,
            at: DateTime<Utc>,
        },
        ConversationAssigned {
            conversation_id: ConversationId,
            org_id: OrgId,
            assignee: MemberId,
            by: Option<MemberId>,
            /// Why automatic assignment chose this member (absent when a member
            /// assigned by hand).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reason: Option<AutoAssignment>,
            at: DateTime<Utc>,
        },
        ConversationUnassigned {
            conversation_id: ConversationId,
            org_id: OrgId,
            by: MemberId,
            at: DateTime<Utc>,
        },
        ConversationResolved {
            conversation_id: ConversationId,
            org_id: OrgId,
            by: MemberId,
            at: DateTime<Utc>,
        },
        ConversationReopened {
            conversation_id: ConversationId,
            org_id: OrgId,
            by: MemberId,
            at: DateTime<Utc>,
        },
        /// An inbound attachment's bytes are in Omnibox's media store.
        MediaStored {
            conversation_id: ConversationId,
            org_id: OrgId,
            message_id: uuid::Uuid,
            index: u32,
            storage_key: String,
            size_bytes: u64,
            content_type: Option<String>,
            at: DateTime<Utc>,
        },
        /// An inbound attachment could not be fetched (expired, gone, too large).
        MediaFetchFailed {
            conversation_id: ConversationId,
            org_id: OrgId,
            message_id: uuid::Uuid,
            index: u32,
            reason: String,
            at: DateTime<Utc>,
        },
        /// A member's reply, decided legal at `queued_at` (the evidence says
        /// under which window phase, tag and author kind), waiting for delivery.
        ReplyQueued {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            channel_kind: ChannelKind,
            reply_id: uuid::Uuid,
            recipient: Thread,
            bubbles: Vec<crate::policy::CheckedBubble>,
            evidence: crate::policy::ReplyAllowance,
            author: MemberId,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            template_id: Option<crate::ids::TemplateId>,
            /// LINE: the customer's fresh reply token this reply may use (free of quota).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reply_token: Option<String>,
            /// LINE: the agent persona shown to the customer.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            sender: Option<crate::policy::Sender>,
            queued_at: DateTime<Utc>,
        },
        /// The platform accepted bubble `index` of a reply.
        ReplyBubbleDelivered {
            conversation_id: ConversationId,
            org_id: OrgId,
            reply_id: uuid::Uuid,
            index: u32,
            platform_message_id: Option<String>,
            at: DateTime<Utc>,
        },
        /// The worker is about to hand bubble `index` to a platform that has no
        /// idempotency key (Facebook's Send API). If the process stops before the
        /// outcome is recorded, this mark keeps a restart from sending it again.
        ReplyBubbleSending {
            conversation_id: ConversationId,
            org_id: OrgId,
            reply_id: uuid::Uuid,
            index: u32,
            /// The call this claim is for. Version 2 of this event: version 1
            /// had no route (every claim then was a Facebook send); the
            /// upcaster in [`crate::upcast`] adds it when an old event is read.
            route: super::SendRoute,
            at: DateTime<Utc>,
        },
        /// The platform answered a send of bubble `index` with "not now"
        /// (throttling, a server error, an expired token): it was not delivered
        /// and waits to be sent again.
        ReplyBubbleDeferred {
            conversation_id: ConversationId,
            org_id: OrgId,
            reply_id: uuid::Uuid,
            index: u32,
            reason: String,
            /// LINE refused the reply token before anything was sent: push next.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            reply_token_refused: bool,
            /// The call may have reached the platform (a timeout after it was
            /// sent): never retried through another route.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            ambiguous: bool,
            at: DateTime<Utc>,
        },
        /// Bubble `index` of a reply will not be delivered.
        ReplyBubbleFailed {
            conversation_id: ConversationId,
            org_id: OrgId,
            reply_id: uuid::Uuid,
            index: u32,
            code: Option<String>,
            reason: String,
            at: DateTime<Utc>,
        },
        /// The customer unsent a message (LINE); history keeps that it existed.
        MessageUnsent {
            conversation_id: ConversationId,
            org_id: OrgId,
            channel_id: ChannelId,
            platform_message_id: String,
            at: DateTime<Utc>,
        },
    }
}

impl ConversationEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ConversationEvent::MessageReceived { .. } => "MessageReceived",
            ConversationEvent::MessageEchoed { .. } => "MessageEchoed",
            ConversationEvent::MessagesDelivered { .. } => "MessagesDelivered",
            ConversationEvent::MessagesRead { .. } => "MessagesRead",
            ConversationEvent::ConversationMarkedRead { .. } => "ConversationMarkedRead",
            ConversationEvent::ConversationAssigned { .. } => "ConversationAssigned",
            ConversationEvent::ConversationUnassigned { .. } => "ConversationUnassigned",
            ConversationEvent::ConversationResolved { .. } => "ConversationResolved",
            ConversationEvent::ConversationReopened { .. } => "ConversationReopened",
            ConversationEvent::MediaStored { .. } => "MediaStored",
            ConversationEvent::MediaFetchFailed { .. } => "MediaFetchFailed",
            ConversationEvent::ReplyQueued { .. } => "ReplyQueued",
            ConversationEvent::ReplyBubbleDelivered { .. } => "ReplyBubbleDelivered",
            ConversationEvent::ReplyBubbleSending { .. } => "ReplyBubbleSending",
            ConversationEvent::ReplyBubbleDeferred { .. } => "ReplyBubbleDeferred",
            ConversationEvent::ReplyBubbleFailed { .. } => "ReplyBubbleFailed",
            ConversationEvent::MessageUnsent { .. } => "MessageUnsent",
        }
    }

    pub fn conversation_id(&self) -> ConversationId {
        match self {
            ConversationEvent::MessageReceived {
                conversation_id, ..
            }
            | ConversationEvent::MessageEchoed {
                conversation_id, ..
            }
            | ConversationEvent::MessagesDelivered {
                conversation_id, ..
            }
            | ConversationEvent::MessagesRead {
                conversation_id, ..
            }
            | ConversationEvent::ConversationMarkedRead {
                conversation_id, ..
            }
            | ConversationEvent::ConversationAssigned {
                conversation_id, ..
            }
            | ConversationEvent::ConversationUnassigned {
                conversation_id, ..
            }
            | ConversationEvent::ConversationResolved {
                conversation_id, ..
            }
            | ConversationEvent::ConversationReopened {
                conversation_id, ..
            }
            | ConversationEvent::MediaStored {
                conversation_id, ..
            }
            | ConversationEvent::MediaFetchFailed {
                conversation_id, ..
            }
            | ConversationEvent::ReplyQueued {
                conversation_id, ..
            }
            | ConversationEvent::ReplyBubbleDelivered {
                conversation_id, ..
            }
            | ConversationEvent::ReplyBubbleSending {
                conversation_id, ..
            }
            | ConversationEvent::ReplyBubbleDeferred {
                conversation_id, ..
            }
            | ConversationEvent::ReplyBubbleFailed {
                conversation_id, ..
            }
            | ConversationEvent::MessageUnsent {
                conversation_id, ..
            } => *conversation_id,
        }
    }

    pub fn org_id(&self) -> OrgId {
        match self {
            ConversationEvent::MessageReceived { org_id, .. }
            | ConversationEvent::MessageEchoed { org_id, .. }
            | ConversationEvent::MessagesDelivered { org_id, .. }
            | ConversationEvent::MessagesRead { org_id, .. }
            | ConversationEvent::ConversationMarkedRead { org_id, .. }
            | ConversationEvent::ConversationAssigned { org_id, .. }
            | ConversationEvent::ConversationUnassigned { org_id, .. }
            | ConversationEvent::ConversationResolved { org_id, .. }
            | ConversationEvent::ConversationReopened { org_id, .. }
            | ConversationEvent::MediaStored { org_id, .. }
            | ConversationEvent::MediaFetchFailed { org_id, .. }
            | ConversationEvent::ReplyQueued { org_id, .. }
            | ConversationEvent::ReplyBubbleDelivered { org_id, .. }
            | ConversationEvent::ReplyBubbleSending { org_id, .. }
            | ConversationEvent::ReplyBubbleDeferred { org_id, .. }
            | ConversationEvent::ReplyBubbleFailed { org_id, .. }
            | ConversationEvent::MessageUnsent { org_id, .. } => *org_id,
        }
    }
}

tag_first_enum! {
    #[tag = "type"]
    /// What happened to a customer as a channel knows them (`contact-<id>`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ContactEvent {
        /// Added the LINE account as a friend, or unblocked it.
        ContactFollowed {
            contact_id: ContactId,
            org_id: OrgId,
            channel_id: ChannelId,
            platform_user_id: String,
            unblocked: bool,
            at: DateTime<Utc>,
        },
        /// The platform's profile for the contact (name, picture).
        ContactProfileUpdated {
            contact_id: ContactId,
            org_id: OrgId,
            display_name: Option<String>,
            avatar_url: Option<String>,
            at: DateTime<Utc>,
        },
        /// The platform had no profile to give (not a friend, no permission).
        ContactProfileUnavailable {
            contact_id: ContactId,
            org_id: OrgId,
            reason: String,
            at: DateTime<Utc>,
        },
        /// The contact's personal data was erased: its keys are destroyed, so
        /// every field sealed under them (name, avatar, texts, file names) is
        /// unreadable, and its media files are deleted.
        ContactErased {
            contact_id: ContactId,
            org_id: OrgId,
            /// The member who erased it; absent for a platform's deletion request.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            by: Option<MemberId>,
            /// Why, in words ("asked by an owner", "Facebook data deletion request").
            reason: String,
            at: DateTime<Utc>,
        },
        /// Blocked the LINE account: pushes are accepted but not delivered.
        ContactUnfollowed {
            contact_id: ContactId,
            org_id: OrgId,
            channel_id: ChannelId,
            platform_user_id: String,
            at: DateTime<Utc>,
        },
    }
}

impl ContactEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ContactEvent::ContactFollowed { .. } => "ContactFollowed",
            ContactEvent::ContactUnfollowed { .. } => "ContactUnfollowed",
            ContactEvent::ContactProfileUpdated { .. } => "ContactProfileUpdated",
            ContactEvent::ContactProfileUnavailable { .. } => "ContactProfileUnavailable",
            ContactEvent::ContactErased { .. } => "ContactErased",
        }
    }

    /// Seals the personal fields (name, avatar URL) with `seal`.
    pub fn seal_personal(&mut self, seal: impl Fn(&str) -> String) {
        if let ContactEvent::ContactProfileUpdated {
            display_name,
            avatar_url,
            ..
        } = self
        {
            for field in [display_name, avatar_url].into_iter().flatten() {
                *field = seal(field);
            }
        }
    }
}

impl InboundAttachment {
    fn seal_personal(&mut self, seal: &impl Fn(&str) -> String) {
        for field in [&mut self.file_name, &mut self.title].into_iter().flatten() {
            *field = seal(field);
        }
    }
}

impl ConversationEvent {
    /// The contact whose key seals this event's personal fields, if it has any.
    pub fn personal_data_owner(&self) -> Option<ContactId> {
        match self {
            ConversationEvent::MessageReceived { contact_id, .. } => Some(*contact_id),
            ConversationEvent::MessageEchoed { contact_id, .. } => *contact_id,
            _ => None,
        }
    }

    /// Seals what a customer said or was sent (texts, attachment file
    /// names and titles, the texts of replies) with `seal`. An assignment code is left as it is:
    /// Omnibox made it, and the assigner must read it.
    pub fn seal_personal(&mut self, seal: impl Fn(&str) -> String) {
        let (text, attachments) = match self {
            ConversationEvent::MessageReceived {
                text, attachments, ..
            }
            | ConversationEvent::MessageEchoed {
                text, attachments, ..
            } => (text, attachments),
            ConversationEvent::ReplyQueued { bubbles, .. } => {
                for bubble in bubbles {
                    if let crate::policy::CheckedBubble::Text(text) = bubble {
                        *text = seal(text);
                    }
                }
                return;
            }
            _ => return,
        };
        if let Some(text) = text.as_mut().filter(|t| !crate::qr::is_assignment_code(t)) {
            *text = seal(text);
        }
        for attachment in attachments {
            attachment.seal_personal(&seal);
        }
    }
}

/// Webhook items with no conversation to go to (`inbound-<channel id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InboundEvent {
    /// A kind Omnibox does not handle yet: kept, never dropped silently.
    UnsupportedEventReceived {
        org_id: OrgId,
        channel_id: ChannelId,
        kind: String,
        platform_event_id: Option<String>,
        at: Option<DateTime<Utc>>,
    },
}

impl InboundEvent {
    pub fn event_type(&self) -> &'static str {
        "UnsupportedEventReceived"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (ConversationEvent, ContactEvent) {
        let channel_id = ChannelId(uuid::Uuid::from_u128(3));
        let org_id = OrgId(uuid::Uuid::from_u128(2));
        let contact_id = ContactId(uuid::Uuid::from_u128(4));
        let at = DateTime::from_timestamp(1_700_000_000, 5_000_000).expect("instant");
        let received = ConversationEvent::MessageReceived {
            conversation_id: ConversationId(uuid::Uuid::from_u128(1)),
            org_id,
            channel_id,
            channel_kind: ChannelKind::Line,
            contact_id,
            thread: Thread::Group("C1".into()),
            author: Some("U1".into()),
            platform_message_id: "m1".into(),
            sent_at: at,
            text: Some("สวัสดี \"hi\"\n".into()),
            attachments: vec![InboundAttachment {
                kind: AttachmentKind::Image,
                source: MediaSource::LineContent {
                    message_id: "m1".into(),
                },
                file_name: None,
                size_bytes: Some(12),
                title: None,
                reference: None,
                latitude: Some(13.75),
                longitude: None,
            }],
            postback: None,
            quick_reply_payload: Some("q".into()),
            reply_to: None,
            reply_token: Some("token".into()),
            standby: true,
        };
        let followed = ContactEvent::ContactFollowed {
            contact_id,
            org_id,
            channel_id,
            platform_user_id: "U1".into(),
            unblocked: false,
            at,
        };
        (received, followed)
    }

    /// The same JSON with its keys sorted, as an upcaster writes it: the
    /// tag is no longer first.
    fn sorted(text: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        let sorted = value.to_string();
        assert!(!sorted.starts_with(r#"{"type""#), "{sorted}");
        sorted
    }

    #[test]
    fn events_read_back_whether_the_tag_comes_first_or_not() {
        let (received, followed) = sample();
        let text = serde_json::to_string(&received).expect("json");
        assert!(text.starts_with(r#"{"type":"MessageReceived","#), "{text}");
        for text in [text.clone(), sorted(&text)] {
            let back: ConversationEvent = serde_json::from_str(&text).expect(&text);
            assert_eq!(back, received);
        }
        let text = serde_json::to_string(&followed).expect("json");
        for text in [text.clone(), sorted(&text)] {
            let back: ContactEvent = serde_json::from_str(&text).expect(&text);
            assert_eq!(back, followed);
        }
    }

    #[test]
    fn an_event_written_before_a_field_existed_takes_its_default() {
        let text = r#"{"type":"MessageEchoed","conversation_id":"00000000-0000-0000-0000-000000000001","org_id":"00000000-0000-0000-0000-000000000002","channel_id":"00000000-0000-0000-0000-000000000003","platform_message_id":"m","sent_at":"2024-01-01T00:00:00Z","app_id":null,"metadata":null,"text":"t","attachments":[]}"#;
        for text in [text.to_owned(), sorted(text)] {
            match serde_json::from_str::<ConversationEvent>(&text).expect(&text) {
                ConversationEvent::MessageEchoed { contact_id, .. } => assert_eq!(contact_id, None),
                other => panic!("{other:?}"),
            }
        }
    }
}
