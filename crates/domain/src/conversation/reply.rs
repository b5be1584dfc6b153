//! Deciding a reply: every product rule, checked before anything is queued.

use chrono::{DateTime, Duration, Utc};

use super::{Conversation, ConversationEvent};
use crate::channel::ChannelStatus;
use crate::ids::{MemberId, OrgId, TemplateId};
use crate::policy::{self, AuthorKind, Bubble, BubbleRefused, ReplyRefused};

/// A LINE reply token is usable for about a minute after its message; past
/// this age the push API is used instead.
pub const REPLY_TOKEN_LIFETIME: Duration = Duration::seconds(50);

/// What a member asks to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRequest {
    pub reply_id: uuid::Uuid,
    pub author: MemberId,
    pub bubbles: Vec<Bubble>,
    pub promotional: bool,
    pub template_id: Option<TemplateId>,
    /// LINE only: the agent persona the customer sees.
    pub sender: Option<policy::Sender>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("no such conversation")]
    NotFound,
    #[error("{0}")]
    ChannelNotConnected(String),
    #[error(transparent)]
    Window(#[from] ReplyRefused),
    #[error(transparent)]
    Bubbles(#[from] BubbleRefused),
    #[error(transparent)]
    Sender(#[from] policy::SenderRefused),
}

/// Decides a reply in `conversation` (of `org`), whose channel is in
/// `channel_status`, at `now`.
pub fn decide_reply(
    conversation: &Conversation,
    org: OrgId,
    channel_status: ChannelStatus,
    request: ReplyRequest,
    now: DateTime<Utc>,
) -> Result<Vec<ConversationEvent>, ReplyError> {
    let (Some(conversation_id), Some(org_id), Some(channel_id), Some(kind), Some(recipient)) = (
        conversation.id,
        conversation.org_id,
        conversation.channel_id,
        conversation.channel_kind,
        conversation.thread.clone(),
    ) else {
        return Err(ReplyError::NotFound);
    };
    if org_id != org {
        return Err(ReplyError::NotFound);
    }
    match channel_status {
        ChannelStatus::Connected => {}
        ChannelStatus::Expired => {
            return Err(ReplyError::ChannelNotConnected(
                "the channel's connection expired: an owner or primary admin must reauthorize it before replies can be sent".into(),
            ))
        }
        ChannelStatus::Disconnected => {
            return Err(ReplyError::ChannelNotConnected("the channel is disconnected; connect it again to reply".into()))
        }
    }
    let window = policy::window(kind, conversation.last_customer_message_at, now);
    let evidence = policy::decide_reply(kind, &window, request.promotional, AuthorKind::Human)?;
    let bubbles = policy::check_bubbles(kind, &request.bubbles)?;
    let sender = request
        .sender
        .map(|sender| policy::check_sender(kind, sender))
        .transpose()?;
    let reply_token = conversation
        .reply_token
        .as_ref()
        .filter(|(_, sent_at)| now - *sent_at < REPLY_TOKEN_LIFETIME)
        .map(|(token, _)| token.clone());
    Ok(vec![ConversationEvent::ReplyQueued {
        conversation_id,
        org_id,
        channel_id,
        channel_kind: kind,
        reply_id: request.reply_id,
        recipient,
        bubbles,
        evidence,
        author: request.author,
        template_id: request.template_id,
        reply_token,
        sender,
        queued_at: now,
    }])
}

/// The id of bubble `index` of reply `reply_id`: one message per bubble.
/// Reply ids are UUIDv7, so adding the index keeps bubbles in order, after
/// earlier replies and before later ones (the low bits are random, far from
/// overflowing into the variant bits).
pub fn reply_message_id(reply_id: uuid::Uuid, index: u32) -> uuid::Uuid {
    uuid::Uuid::from_u128(reply_id.as_u128().wrapping_add(u128::from(index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Thread;
    use crate::ids::{ChannelId, ContactId, ConversationId};
    use crate::policy::{AttachmentRef, MessageTag};
    use crate::ChannelKind;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805, 0).expect("instant") + Duration::hours(hours)
    }

    fn conversation(kind: ChannelKind, token: Option<&str>) -> (Conversation, OrgId) {
        let org = OrgId::generate();
        let mut c = Conversation::default();
        c.evolve(&ConversationEvent::MessageReceived {
            conversation_id: ConversationId::generate(),
            org_id: org,
            channel_id: ChannelId::generate(),
            channel_kind: kind,
            contact_id: ContactId::generate(),
            thread: Thread::User("U1".into()),
            author: Some("U1".into()),
            platform_message_id: "m1".into(),
            sent_at: at(0),
            text: Some("hi".into()),
            attachments: vec![],
            postback: None,
            quick_reply_payload: None,
            reply_to: None,
            reply_token: token.map(str::to_owned),
            standby: false,
        });
        (c, org)
    }

    fn request(bubbles: Vec<Bubble>, promotional: bool) -> ReplyRequest {
        ReplyRequest {
            reply_id: uuid::Uuid::from_u128(1),
            author: MemberId::generate(),
            bubbles,
            promotional,
            template_id: None,
            sender: None,
        }
    }

    fn text(t: &str) -> Bubble {
        Bubble::Text(t.into())
    }

    #[test]
    fn facebook_replies_follow_the_window() {
        let (c, org) = conversation(ChannelKind::Facebook, None);
        let ok = |hours, promo| {
            decide_reply(
                &c,
                org,
                ChannelStatus::Connected,
                request(vec![text("hello")], promo),
                at(hours),
            )
        };
        let standard = ok(1, true).expect("standard allows promotional");
        let ConversationEvent::ReplyQueued { evidence, .. } = &standard[0] else {
            panic!("queued")
        };
        assert_eq!(evidence.tag, None);
        let human = ok(30, false).expect("human agent");
        let ConversationEvent::ReplyQueued { evidence, .. } = &human[0] else {
            panic!("queued")
        };
        assert_eq!(evidence.tag, Some(MessageTag::HumanAgent));
        assert!(matches!(
            ok(30, true),
            Err(ReplyError::Window(
                ReplyRefused::PromotionalNotAllowed { .. }
            ))
        ));
        assert!(matches!(
            ok(24 * 7, false),
            Err(ReplyError::Window(ReplyRefused::WindowClosed { .. }))
        ));
    }

    #[test]
    fn channel_state_bubbles_and_organization_are_checked_first() {
        let (c, org) = conversation(ChannelKind::Facebook, None);
        for status in [ChannelStatus::Expired, ChannelStatus::Disconnected] {
            let refused = decide_reply(&c, org, status, request(vec![text("x")], false), at(1));
            assert!(
                matches!(refused, Err(ReplyError::ChannelNotConnected(_))),
                "{status:?}"
            );
        }
        assert_eq!(
            decide_reply(
                &c,
                OrgId::generate(),
                ChannelStatus::Connected,
                request(vec![text("x")], false),
                at(1)
            ),
            Err(ReplyError::NotFound)
        );
        let six = vec![text("x"); 6];
        assert!(matches!(
            decide_reply(
                &c,
                org,
                ChannelStatus::Connected,
                request(six, false),
                at(1)
            ),
            Err(ReplyError::Bubbles(_))
        ));
        let exe = Bubble::Attachment(AttachmentRef {
            url: "https://x.example/a.exe".into(),
            file_name: "a.exe".into(),
            size_bytes: 10,
        });
        assert!(matches!(
            decide_reply(
                &c,
                org,
                ChannelStatus::Connected,
                request(vec![exe], false),
                at(1)
            ),
            Err(ReplyError::Bubbles(_))
        ));
    }

    #[test]
    fn a_fresh_line_reply_token_is_used_once() {
        let (mut c, org) = conversation(ChannelKind::Line, Some("token-1"));
        let fresh = decide_reply(
            &c,
            org,
            ChannelStatus::Connected,
            request(vec![text("x")], false),
            at(0) + Duration::seconds(10),
        )
        .expect("ok");
        let ConversationEvent::ReplyQueued {
            reply_token,
            evidence,
            ..
        } = &fresh[0]
        else {
            panic!("queued")
        };
        assert_eq!(reply_token.as_deref(), Some("token-1"));
        assert_eq!(evidence.phase, crate::policy::WindowPhase::Unlimited);
        c.evolve(&fresh[0]);
        let again = decide_reply(
            &c,
            org,
            ChannelStatus::Connected,
            request(vec![text("y")], false),
            at(0) + Duration::seconds(20),
        )
        .expect("ok");
        let ConversationEvent::ReplyQueued { reply_token, .. } = &again[0] else {
            panic!("queued")
        };
        assert_eq!(reply_token, &None, "single use: the next reply is pushed");
        let (c, org) = conversation(ChannelKind::Line, Some("token-2"));
        let stale = decide_reply(
            &c,
            org,
            ChannelStatus::Connected,
            request(vec![text("x")], false),
            at(1),
        )
        .expect("ok");
        let ConversationEvent::ReplyQueued { reply_token, .. } = &stale[0] else {
            panic!("queued")
        };
        assert_eq!(reply_token, &None, "an hour-old token is not tried");
    }

    #[test]
    fn the_agent_persona_goes_to_line_and_is_refused_on_facebook() {
        let mai = policy::Sender {
            name: "Mai".into(),
            icon_url: Some("https://cdn.example.com/mai.png".into()),
        };
        let (c, org) = conversation(ChannelKind::Line, None);
        let mut with_sender = request(vec![text("x")], false);
        with_sender.sender = Some(mai.clone());
        let queued = decide_reply(
            &c,
            org,
            ChannelStatus::Connected,
            with_sender.clone(),
            at(1),
        )
        .expect("ok");
        let ConversationEvent::ReplyQueued { sender, .. } = &queued[0] else {
            panic!("queued")
        };
        assert_eq!(sender.as_ref(), Some(&mai));
        let (c, org) = conversation(ChannelKind::Facebook, None);
        assert_eq!(
            decide_reply(&c, org, ChannelStatus::Connected, with_sender, at(1)),
            Err(ReplyError::Sender(policy::SenderRefused::Facebook))
        );
    }
}
