use chrono::{DateTime, Utc};

use super::ConversationEvent;
use crate::ids::{ChannelId, ConversationId, MemberId, OrgId};
use crate::ChannelKind;

/// A conversation's state as member commands need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub id: Option<ConversationId>,
    pub org_id: Option<OrgId>,
    pub channel_id: Option<ChannelId>,
    pub channel_kind: Option<ChannelKind>,
    pub resolved: bool,
    pub assignee: Option<MemberId>,
    pub unread: u32,
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// Who replies go to.
    pub thread: Option<super::Thread>,
    /// LINE: the newest unused reply token and when its message was sent.
    pub reply_token: Option<(String, DateTime<Utc>)>,
    /// Queued replies not yet settled, bubble by bubble.
    pub outbox: super::Outbox,
}

impl Conversation {
    pub fn evolve(&mut self, event: &ConversationEvent) {
        if self.id.is_none() {
            self.id = Some(event.conversation_id());
            self.org_id = Some(event.org_id());
        }
        self.outbox.evolve(event);
        match event {
            ConversationEvent::MessageReceived {
                channel_id,
                channel_kind,
                sent_at,
                thread,
                reply_token,
                ..
            } => {
                self.thread = Some(thread.clone());
                if let Some(token) = reply_token {
                    if self.reply_token.as_ref().is_none_or(|(_, at)| at < sent_at) {
                        self.reply_token = Some((token.clone(), *sent_at));
                    }
                }
                self.channel_id = Some(*channel_id);
                self.channel_kind = Some(*channel_kind);
                self.resolved = false;
                self.unread = self.unread.saturating_add(1);
                self.last_customer_message_at = self.last_customer_message_at.max(Some(*sent_at));
            }
            ConversationEvent::ConversationMarkedRead { .. } => self.unread = 0,
            ConversationEvent::ConversationAssigned { assignee, .. } => {
                self.assignee = Some(*assignee)
            }
            ConversationEvent::ConversationUnassigned { .. } => self.assignee = None,
            ConversationEvent::ConversationResolved { .. } => self.resolved = true,
            ConversationEvent::ConversationReopened { .. } => self.resolved = false,
            ConversationEvent::MessageEchoed { channel_id, .. }
            | ConversationEvent::MessagesDelivered { channel_id, .. }
            | ConversationEvent::MessagesRead { channel_id, .. }
            | ConversationEvent::MessageUnsent { channel_id, .. } => {
                self.channel_id.get_or_insert(*channel_id);
            }
            ConversationEvent::ReplyQueued { reply_token, .. } => {
                if reply_token.is_some() {
                    self.reply_token = None;
                }
            }
            ConversationEvent::MediaStored { .. }
            | ConversationEvent::MediaFetchFailed { .. }
            | ConversationEvent::ReplyBubbleDelivered { .. }
            | ConversationEvent::ReplyBubbleSending { .. }
            | ConversationEvent::ReplyBubbleDeferred { .. }
            | ConversationEvent::ReplyBubbleFailed { .. } => {}
        }
    }
}

/// What a member asks of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationCommand {
    MarkRead {
        by: MemberId,
    },
    Assign {
        assignee: MemberId,
        by: Option<MemberId>,
    },
    /// A member assigns by hand, having seen the conversation assigned to
    /// `seen`: if it changed meanwhile, the newer choice stands (CONFLICT).
    /// An AGENT may only take an unassigned conversation for itself.
    AssignByHand {
        assignee: MemberId,
        by: MemberId,
        role: crate::org::Role,
        seen: Option<MemberId>,
    },
    Unassign {
        by: MemberId,
    },
    Resolve {
        by: MemberId,
    },
    Reopen {
        by: MemberId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("no such conversation")]
    NotFound,
    #[error("an agent may only take an unassigned conversation for themselves")]
    AgentsTakeOnlyForThemselves,
    #[error("someone else assigned this conversation a moment ago; look again before changing it")]
    AssignedMeanwhile,
}

/// Decides a member's command on `conversation` (of `org`) at `now`.
/// Commands that change nothing record nothing.
pub fn decide(
    conversation: &Conversation,
    org: OrgId,
    command: ConversationCommand,
    now: DateTime<Utc>,
) -> Result<Vec<ConversationEvent>, ConversationError> {
    let (Some(conversation_id), Some(org_id)) = (conversation.id, conversation.org_id) else {
        return Err(ConversationError::NotFound);
    };
    if org_id != org {
        return Err(ConversationError::NotFound);
    }
    let at = now;
    Ok(match command {
        ConversationCommand::MarkRead { by } if conversation.unread > 0 => {
            vec![ConversationEvent::ConversationMarkedRead {
                conversation_id,
                org_id,
                by,
                at,
            }]
        }
        ConversationCommand::Assign { assignee, by } if conversation.assignee != Some(assignee) => {
            vec![ConversationEvent::ConversationAssigned {
                conversation_id,
                org_id,
                assignee,
                by,
                reason: None,
                at,
            }]
        }
        ConversationCommand::AssignByHand {
            assignee,
            by,
            role,
            seen,
        } => {
            if role == crate::org::Role::Agent && (assignee != by || seen.is_some()) {
                return Err(ConversationError::AgentsTakeOnlyForThemselves);
            }
            if conversation.assignee != seen {
                return Err(ConversationError::AssignedMeanwhile);
            }
            if conversation.assignee == Some(assignee) {
                return Ok(vec![]);
            }
            vec![ConversationEvent::ConversationAssigned {
                conversation_id,
                org_id,
                assignee,
                by: Some(by),
                reason: None,
                at,
            }]
        }
        ConversationCommand::Unassign { by } if conversation.assignee.is_some() => {
            vec![ConversationEvent::ConversationUnassigned {
                conversation_id,
                org_id,
                by,
                at,
            }]
        }
        ConversationCommand::Resolve { by } if !conversation.resolved => {
            vec![ConversationEvent::ConversationResolved {
                conversation_id,
                org_id,
                by,
                at,
            }]
        }
        ConversationCommand::Reopen { by } if conversation.resolved => {
            vec![ConversationEvent::ConversationReopened {
                conversation_id,
                org_id,
                by,
                at,
            }]
        }
        _ => vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Thread;
    use crate::ids::ContactId;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805 + s, 0).expect("instant")
    }

    fn received(conversation_id: ConversationId, org_id: OrgId, s: i64) -> ConversationEvent {
        ConversationEvent::MessageReceived {
            conversation_id,
            org_id,
            channel_id: ChannelId::generate(),
            channel_kind: ChannelKind::Facebook,
            contact_id: ContactId::generate(),
            thread: Thread::User("1".into()),
            author: None,
            platform_message_id: format!("m{s}"),
            sent_at: at(s),
            text: Some("hi".into()),
            attachments: vec![],
            postback: None,
            quick_reply_payload: None,
            reply_to: None,
            reply_token: None,
            standby: false,
        }
    }

    #[test]
    fn commands_change_only_what_differs_and_only_in_the_right_organization() {
        let (id, org) = (ConversationId::generate(), OrgId::generate());
        let member = MemberId::generate();
        let mut c = Conversation::default();
        assert_eq!(
            decide(&c, org, ConversationCommand::Resolve { by: member }, at(0)),
            Err(ConversationError::NotFound)
        );
        c.evolve(&received(id, org, 10));
        c.evolve(&received(id, org, 5));
        assert_eq!(
            c.last_customer_message_at,
            Some(at(10)),
            "a late older message does not move it back"
        );
        assert_eq!(c.unread, 2);
        assert_eq!(
            decide(
                &c,
                OrgId::generate(),
                ConversationCommand::Resolve { by: member },
                at(20)
            ),
            Err(ConversationError::NotFound)
        );

        let table = [
            (ConversationCommand::MarkRead { by: member }, 1),
            (
                ConversationCommand::Assign {
                    assignee: member,
                    by: None,
                },
                1,
            ),
            (ConversationCommand::Unassign { by: member }, 0),
            (ConversationCommand::Resolve { by: member }, 1),
            (ConversationCommand::Reopen { by: member }, 0),
        ];
        for (command, expected) in table {
            assert_eq!(
                decide(&c, org, command.clone(), at(20)).map(|e| e.len()),
                Ok(expected),
                "{command:?}"
            );
        }
        for event in
            decide(&c, org, ConversationCommand::Resolve { by: member }, at(20)).expect("resolve")
        {
            c.evolve(&event);
        }
        assert_eq!(
            decide(&c, org, ConversationCommand::Reopen { by: member }, at(21)).map(|e| e.len()),
            Ok(1)
        );
        c.evolve(&received(id, org, 30));
        assert!(!c.resolved, "a new customer message reopens");
    }
}
