//! A conversation's outbox: queued replies, bubble by bubble, as the
//! conversation's events say, and the rules for handing them to a platform
//! exactly once and in order.
//!
//! The delivery worker never decides from a read model. It loads the
//! conversation, asks [`Outbox::next`] what is due, and *claims* it with a
//! `ReplyBubbleSending` event appended at the revision it read: of two
//! servers that read the same revision, one append wins and the other's
//! decision is taken again on the new state, where the bubble is no longer
//! queued. Every outcome is decided the same way, so a late answer and a
//! timer never both record one.
//!
//! Order: the head of the outbox (the oldest reply with a bubble not yet
//! delivered or failed) holds back everything behind it, so a throttled
//! bubble is resent before the next one is sent.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{reply_message_id, ConversationEvent, Thread};
use crate::ids::{ChannelId, ConversationId, OrgId};
use crate::policy::{CheckedBubble, ReplyAllowance, Sender};

/// How long a claimed bubble may stay unanswered before the claim counts as
/// abandoned (its server stopped mid-call), by default. It must be longer
/// than any platform call; servers may configure another.
pub const CLAIM_LEASE: Duration = Duration::minutes(2);

/// Which platform call a claim is for; it decides what an abandoned claim
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SendRoute {
    /// Facebook's Send API, one bubble a call, no idempotency key.
    FacebookSend,
    /// LINE's reply API with the customer's single-use reply token.
    LineReply,
    /// LINE's push API with `X-Line-Retry-Key` = the reply id: a repeat is
    /// never delivered twice.
    LinePush,
}

/// Where one bubble stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BubbleState {
    Queued,
    /// Claimed by a worker at `since`, for `route`.
    Sending {
        since: DateTime<Utc>,
        route: SendRoute,
    },
    Delivered,
    Failed,
}

impl BubbleState {
    fn settled(self) -> bool {
        matches!(self, BubbleState::Delivered | BubbleState::Failed)
    }
}

/// One queued reply and its bubbles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundReply {
    pub reply_id: uuid::Uuid,
    pub channel_id: ChannelId,
    pub recipient: Thread,
    pub evidence: ReplyAllowance,
    pub reply_token: Option<String>,
    pub sender: Option<Sender>,
    pub queued_at: DateTime<Utc>,
    /// `(index, bubble, state)`, in index order.
    pub bubbles: Vec<(u32, CheckedBubble, BubbleState)>,
    /// LINE refused the reply token (used or expired) before anything was
    /// sent with it: push instead.
    pub reply_token_refused: bool,
    /// A reply-token call may have reached LINE without an answer. From then
    /// on this reply is never pushed (that could deliver it twice): the
    /// token is tried again, and a refusal means it was probably delivered.
    pub reply_ambiguous: bool,
}

impl OutboundReply {
    fn bubble_mut(&mut self, index: u32) -> Option<&mut BubbleState> {
        self.bubbles
            .iter_mut()
            .find(|(i, _, _)| *i == index)
            .map(|(_, _, state)| state)
    }

    /// The route a fresh claim of this LINE reply takes.
    pub fn line_route(&self) -> SendRoute {
        match &self.reply_token {
            Some(_) if !self.reply_token_refused => SendRoute::LineReply,
            _ => SendRoute::LinePush,
        }
    }
}

/// What the worker should do next in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextDelivery {
    /// Send these bubbles of `reply` (Facebook: one; LINE: every unsettled
    /// bubble of the reply, in one request).
    Send {
        reply: OutboundReply,
        indexes: Vec<u32>,
    },
    /// The head is claimed, by this or another worker; `abandoned` once the
    /// claim outlived [`CLAIM_LEASE`].
    InFlight {
        reply_id: uuid::Uuid,
        index: u32,
        route: SendRoute,
        abandoned: bool,
    },
}

/// The unsettled replies of a conversation, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pub replies: Vec<OutboundReply>,
}

/// Why a delivery step was not taken: the state moved on (another worker
/// claimed or settled the bubble). Nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bubble {index} of reply {reply_id} is not where the step expected it")]
pub struct StaleStep {
    pub reply_id: uuid::Uuid,
    pub index: u32,
}

/// A platform's answer to a send, as the outbox records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; one platform message id per bubble where known.
    Delivered(Vec<Option<String>>),
    /// Will not be delivered (a refusal a person can act on).
    Failed {
        code: Option<String>,
        reason: String,
    },
    /// Not sent; try again later (throttling, 5xx, never connected, the
    /// token rejected, or LINE's reply token refused: see the flags).
    Deferred {
        reason: String,
        reply_token_refused: bool,
        ambiguous: bool,
    },
}

impl Outbox {
    pub(super) fn evolve(&mut self, event: &ConversationEvent) {
        match event {
            ConversationEvent::ReplyQueued {
                channel_id,
                reply_id,
                recipient,
                bubbles,
                evidence,
                reply_token,
                sender,
                queued_at,
                ..
            } => {
                if self.replies.iter().any(|r| r.reply_id == *reply_id) {
                    return;
                }
                self.replies.push(OutboundReply {
                    reply_id: *reply_id,
                    channel_id: *channel_id,
                    recipient: recipient.clone(),
                    evidence: *evidence,
                    reply_token: reply_token.clone(),
                    sender: sender.clone(),
                    queued_at: *queued_at,
                    bubbles: (0..)
                        .zip(bubbles.iter())
                        .map(|(i, b)| (i, b.clone(), BubbleState::Queued))
                        .collect(),
                    reply_token_refused: false,
                    reply_ambiguous: false,
                });
            }
            ConversationEvent::ReplyBubbleSending {
                reply_id,
                index,
                route,
                at,
                ..
            } => self.step(*reply_id, *index, |reply, state| {
                *state = BubbleState::Sending {
                    since: *at,
                    route: *route,
                };
                let _ = reply;
            }),
            ConversationEvent::ReplyBubbleDeferred {
                reply_id,
                index,
                reply_token_refused,
                ambiguous,
                ..
            } => self.step(*reply_id, *index, |reply, state| {
                if !state.settled() {
                    *state = BubbleState::Queued;
                }
                reply.reply_token_refused |= *reply_token_refused;
                reply.reply_ambiguous |= *ambiguous;
            }),
            ConversationEvent::ReplyBubbleDelivered {
                reply_id, index, ..
            } => self.settle(*reply_id, *index, BubbleState::Delivered),
            ConversationEvent::ReplyBubbleFailed {
                reply_id, index, ..
            } => self.settle(*reply_id, *index, BubbleState::Failed),
            ConversationEvent::MessageEchoed {
                metadata: Some(metadata),
                ..
            } => {
                // Facebook's echo of our own message names it in the metadata.
                let Some(ours) = metadata
                    .strip_prefix("omnibox:msg:")
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                else {
                    return;
                };
                let found = self.replies.iter().find_map(|r| {
                    r.bubbles
                        .iter()
                        .find(|(i, _, _)| reply_message_id(r.reply_id, *i) == ours)
                        .map(|(i, _, _)| (r.reply_id, *i))
                });
                if let Some((reply_id, index)) = found {
                    self.settle(reply_id, index, BubbleState::Delivered);
                }
            }
            _ => {}
        }
    }

    fn step(
        &mut self,
        reply_id: uuid::Uuid,
        index: u32,
        change: impl FnOnce(&mut OutboundReply, &mut BubbleState),
    ) {
        let Some(reply) = self.replies.iter_mut().find(|r| r.reply_id == reply_id) else {
            return;
        };
        let Some(mut state) = reply.bubble_mut(index).copied() else {
            return;
        };
        if state.settled() {
            return;
        }
        change(reply, &mut state);
        if let Some(slot) = reply.bubble_mut(index) {
            *slot = state;
        }
    }

    fn settle(&mut self, reply_id: uuid::Uuid, index: u32, to: BubbleState) {
        self.step(reply_id, index, |_, state| *state = to);
        self.replies
            .retain(|r| !r.bubbles.iter().all(|(_, _, state)| state.settled()));
    }

    /// What is due next, if anything: the head of the outbox. A claim older
    /// than `lease` counts as abandoned.
    pub fn next(
        &self,
        kind_is_line: bool,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Option<NextDelivery> {
        let reply = self.replies.first()?;
        let (index, _, state) = reply.bubbles.iter().find(|(_, _, s)| !s.settled())?;
        match state {
            BubbleState::Sending { since, route } => Some(NextDelivery::InFlight {
                reply_id: reply.reply_id,
                index: *index,
                route: *route,
                abandoned: now - *since >= lease,
            }),
            _ if kind_is_line => Some(NextDelivery::Send {
                reply: reply.clone(),
                indexes: reply
                    .bubbles
                    .iter()
                    .filter(|(_, _, s)| !s.settled())
                    .map(|(i, _, _)| *i)
                    .collect(),
            }),
            _ => Some(NextDelivery::Send {
                reply: reply.clone(),
                indexes: vec![*index],
            }),
        }
    }

    fn state_of(&self, reply_id: uuid::Uuid, index: u32) -> Option<BubbleState> {
        self.replies
            .iter()
            .find(|r| r.reply_id == reply_id)?
            .bubbles
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, _, s)| *s)
    }
}

/// The conversation a delivery step is decided in.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub conversation_id: ConversationId,
    pub org_id: OrgId,
}

/// Claims bubbles `indexes` of `reply_id` for `route`: only if each is
/// still queued at the head of the outbox.
pub fn decide_claim(
    outbox: &Outbox,
    place: Place,
    reply_id: uuid::Uuid,
    indexes: &[u32],
    route: SendRoute,
    now: DateTime<Utc>,
) -> Result<Vec<ConversationEvent>, StaleStep> {
    let head = outbox.replies.first().map(|r| r.reply_id);
    indexes
        .iter()
        .map(|&index| match outbox.state_of(reply_id, index) {
            Some(BubbleState::Queued) if head == Some(reply_id) => {
                Ok(ConversationEvent::ReplyBubbleSending {
                    conversation_id: place.conversation_id,
                    org_id: place.org_id,
                    reply_id,
                    index,
                    route,
                    at: now,
                })
            }
            _ => Err(StaleStep { reply_id, index }),
        })
        .collect()
}

/// Records `outcome` for bubbles `indexes` of `reply_id`, which a claim made
/// at `claimed_at` holds: only if the claim still stands (no timer or other
/// worker settled or re-claimed them meanwhile).
pub fn decide_outcome(
    outbox: &Outbox,
    place: Place,
    reply_id: uuid::Uuid,
    indexes: &[u32],
    claimed_at: DateTime<Utc>,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<Vec<ConversationEvent>, StaleStep> {
    let mut events = Vec::new();
    for (n, &index) in indexes.iter().enumerate() {
        match outbox.state_of(reply_id, index) {
            Some(BubbleState::Sending { since, .. }) if since == claimed_at => {}
            _ => return Err(StaleStep { reply_id, index }),
        }
        let (conversation_id, org_id) = (place.conversation_id, place.org_id);
        events.push(match outcome {
            Outcome::Delivered(ids) => ConversationEvent::ReplyBubbleDelivered {
                conversation_id,
                org_id,
                reply_id,
                index,
                platform_message_id: ids.get(n).cloned().flatten(),
                at: now,
            },
            Outcome::Failed { code, reason } => ConversationEvent::ReplyBubbleFailed {
                conversation_id,
                org_id,
                reply_id,
                index,
                code: code.clone(),
                reason: reason.clone(),
                at: now,
            },
            Outcome::Deferred {
                reason,
                reply_token_refused,
                ambiguous,
            } => ConversationEvent::ReplyBubbleDeferred {
                conversation_id,
                org_id,
                reply_id,
                index,
                reason: reason.clone(),
                reply_token_refused: *reply_token_refused,
                ambiguous: *ambiguous,
                at: now,
            },
        });
    }
    Ok(events)
}

/// What an abandoned claim (its worker stopped mid-call) becomes, decided
/// only if it is still the claim the worker saw:
/// - a Facebook send may have reached the customer, and Facebook has no
///   idempotency key: FAILED, saying so, never sent again (an echo that
///   arrives meanwhile marks it delivered instead);
/// - a LINE reply-token call may have reached LINE: back to the queue,
///   marked ambiguous, so it is only ever retried with the same token;
/// - a LINE push carries a retry key: back to the queue, pushed again.
pub fn decide_abandoned(
    outbox: &Outbox,
    place: Place,
    reply_id: uuid::Uuid,
    index: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<ConversationEvent>, StaleStep> {
    let stale = StaleStep { reply_id, index };
    let Some(BubbleState::Sending { since, route }) = outbox.state_of(reply_id, index) else {
        return Err(stale);
    };
    if now - since < lease {
        return Err(stale);
    }
    let claimed: Vec<u32> = outbox
        .replies
        .iter()
        .find(|r| r.reply_id == reply_id)
        .map(|r| {
            r.bubbles
                .iter()
                .filter(|(_, _, s)| *s == BubbleState::Sending { since, route })
                .map(|(i, _, _)| *i)
                .collect()
        })
        .unwrap_or_default();
    let outcome = match route {
        SendRoute::FacebookSend => Outcome::Failed {
            code: Some("INTERRUPTED".into()),
            reason: "the server stopped while handing this message to Facebook, and no echo confirmed it; \
                     it was not sent again, to avoid a duplicate"
                .into(),
        },
        SendRoute::LineReply => Outcome::Deferred {
            reason: "the server stopped during a reply-token call to LINE".into(),
            reply_token_refused: false,
            ambiguous: true,
        },
        SendRoute::LinePush => Outcome::Deferred {
            reason: "the server stopped during a push to LINE; pushing again with the same retry key"
                .into(),
            reply_token_refused: false,
            ambiguous: false,
        },
    };
    decide_outcome(outbox, place, reply_id, &claimed, since, &outcome, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AuthorKind, WindowPhase};
    use crate::ChannelKind;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805 + s, 0).expect("instant")
    }

    fn place() -> Place {
        Place {
            conversation_id: ConversationId(uuid::Uuid::from_u128(1)),
            org_id: OrgId(uuid::Uuid::from_u128(2)),
        }
    }

    fn queued(reply: u128, bubbles: usize, token: bool) -> ConversationEvent {
        ConversationEvent::ReplyQueued {
            conversation_id: place().conversation_id,
            org_id: place().org_id,
            channel_id: ChannelId(uuid::Uuid::from_u128(3)),
            channel_kind: ChannelKind::Line,
            reply_id: uuid::Uuid::from_u128(reply),
            recipient: Thread::User("U1".into()),
            bubbles: (0..bubbles)
                .map(|n| CheckedBubble::Text(format!("step {n}")))
                .collect(),
            evidence: ReplyAllowance {
                phase: WindowPhase::Unlimited,
                tag: None,
                messaging_type: None,
                author: AuthorKind::Human,
                promotional: false,
            },
            author: crate::ids::MemberId(uuid::Uuid::from_u128(4)),
            template_id: None,
            reply_token: token.then(|| "rt".to_owned()),
            sender: None,
            queued_at: at(0),
        }
    }

    fn apply(outbox: &mut Outbox, decide: impl FnOnce(&Outbox) -> Vec<ConversationEvent>) {
        let events = decide(outbox);
        for event in &events {
            outbox.evolve(event);
        }
    }

    #[test]
    fn a_claim_holds_the_head_and_a_second_claim_is_stale() {
        let mut outbox = Outbox::default();
        apply(&mut outbox, |_| {
            vec![queued(10, 2, false), queued(20, 1, false)]
        });
        let Some(NextDelivery::Send { reply, indexes }) = outbox.next(false, at(1), CLAIM_LEASE)
        else {
            panic!("the head is due");
        };
        assert_eq!(
            (reply.reply_id, indexes.clone()),
            (uuid::Uuid::from_u128(10), vec![0])
        );
        let claim = decide_claim(
            &outbox,
            place(),
            reply.reply_id,
            &indexes,
            SendRoute::FacebookSend,
            at(1),
        )
        .expect("claim");
        apply(&mut outbox, |_| claim);
        assert!(
            decide_claim(
                &outbox,
                place(),
                reply.reply_id,
                &indexes,
                SendRoute::FacebookSend,
                at(1)
            )
            .is_err(),
            "a second worker that read the old state decides again and finds it claimed"
        );
        assert!(
            decide_claim(
                &outbox,
                place(),
                uuid::Uuid::from_u128(20),
                &[0],
                SendRoute::FacebookSend,
                at(1)
            )
            .is_err(),
            "a later reply waits for the head"
        );
        assert!(matches!(
            outbox.next(false, at(2), CLAIM_LEASE),
            Some(NextDelivery::InFlight {
                abandoned: false,
                ..
            })
        ));
    }

    #[test]
    fn a_deferred_bubble_goes_out_before_the_ones_behind_it() {
        let mut outbox = Outbox::default();
        apply(&mut outbox, |_| {
            vec![
                queued(10, 1, false),
                queued(20, 1, false),
                queued(30, 1, false),
            ]
        });
        let first = uuid::Uuid::from_u128(10);
        let second = uuid::Uuid::from_u128(20);
        for (reply, outcome) in [
            (first, Outcome::Delivered(vec![Some("m1".into())])),
            (
                second,
                Outcome::Deferred {
                    reason: "613".into(),
                    reply_token_refused: false,
                    ambiguous: false,
                },
            ),
        ] {
            apply(&mut outbox, |o| {
                decide_claim(o, place(), reply, &[0], SendRoute::FacebookSend, at(1))
                    .expect("claim")
            });
            apply(&mut outbox, |o| {
                decide_outcome(o, place(), reply, &[0], at(1), &outcome, at(2)).expect("outcome")
            });
        }
        let Some(NextDelivery::Send { reply, .. }) = outbox.next(false, at(3), CLAIM_LEASE) else {
            panic!("due");
        };
        assert_eq!(
            reply.reply_id, second,
            "the throttled step is still first in line"
        );
    }

    #[test]
    fn an_outcome_needs_the_claim_it_answers() {
        let mut outbox = Outbox::default();
        apply(&mut outbox, |_| vec![queued(10, 1, false)]);
        let id = uuid::Uuid::from_u128(10);
        apply(&mut outbox, |o| {
            decide_claim(o, place(), id, &[0], SendRoute::FacebookSend, at(0)).expect("claim")
        });
        assert!(
            decide_abandoned(&outbox, place(), id, 0, at(60), CLAIM_LEASE).is_err(),
            "not abandoned yet"
        );
        let failed =
            decide_abandoned(&outbox, place(), id, 0, at(200), CLAIM_LEASE).expect("abandoned");
        assert!(
            matches!(&failed[..], [ConversationEvent::ReplyBubbleFailed { code: Some(c), .. }] if c == "INTERRUPTED")
        );
        apply(&mut outbox, |_| failed);
        let late = Outcome::Delivered(vec![None]);
        assert!(
            decide_outcome(&outbox, place(), id, &[0], at(0), &late, at(201)).is_err(),
            "a late answer does not record a second outcome"
        );
        assert!(outbox.replies.is_empty());
    }

    #[test]
    fn an_ambiguous_reply_token_call_is_never_pushed() {
        let mut outbox = Outbox::default();
        apply(&mut outbox, |_| vec![queued(10, 2, true)]);
        let id = uuid::Uuid::from_u128(10);
        let Some(NextDelivery::Send { reply, indexes }) = outbox.next(true, at(0), CLAIM_LEASE)
        else {
            panic!("due");
        };
        assert_eq!(
            indexes,
            vec![0, 1],
            "LINE sends a reply's bubbles in one request"
        );
        assert_eq!(reply.line_route(), SendRoute::LineReply);
        apply(&mut outbox, |o| {
            decide_claim(o, place(), id, &indexes, SendRoute::LineReply, at(0)).expect("claim")
        });
        let timeout = Outcome::Deferred {
            reason: "timeout".into(),
            reply_token_refused: false,
            ambiguous: true,
        };
        apply(&mut outbox, |o| {
            decide_outcome(o, place(), id, &indexes, at(0), &timeout, at(1)).expect("deferred")
        });
        let reply = &outbox.replies[0];
        assert!(reply.reply_ambiguous);
        assert_eq!(
            reply.line_route(),
            SendRoute::LineReply,
            "never push after an ambiguous reply"
        );

        let mut refused = Outbox::default();
        apply(&mut refused, |_| vec![queued(10, 1, true)]);
        apply(&mut refused, |o| {
            decide_claim(o, place(), id, &[0], SendRoute::LineReply, at(0)).expect("claim")
        });
        let gone = Outcome::Deferred {
            reason: "400".into(),
            reply_token_refused: true,
            ambiguous: false,
        };
        apply(&mut refused, |o| {
            decide_outcome(o, place(), id, &[0], at(0), &gone, at(1)).expect("deferred")
        });
        assert_eq!(
            refused.replies[0].line_route(),
            SendRoute::LinePush,
            "a refused token falls back to push"
        );
    }

    #[test]
    fn an_echo_of_our_message_settles_it() {
        let mut outbox = Outbox::default();
        apply(&mut outbox, |_| vec![queued(10, 1, false)]);
        let id = uuid::Uuid::from_u128(10);
        apply(&mut outbox, |o| {
            decide_claim(o, place(), id, &[0], SendRoute::FacebookSend, at(0)).expect("claim")
        });
        outbox.evolve(&ConversationEvent::MessageEchoed {
            conversation_id: place().conversation_id,
            org_id: place().org_id,
            channel_id: ChannelId(uuid::Uuid::from_u128(3)),
            platform_message_id: "m.1".into(),
            sent_at: at(1),
            app_id: None,
            metadata: Some(format!("omnibox:msg:{}", reply_message_id(id, 0))),
            text: None,
            attachments: vec![],
            contact_id: None,
        });
        assert!(outbox.replies.is_empty());
    }
}
