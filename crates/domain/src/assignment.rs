//! Automatic assignment: round robin among a channel's available agents,
//! optionally capped per agent, oldest waiting conversation first.
//!
//! [`Assigner`] is folded from the log alone (members and their
//! availability, channels and their mode, conversations and their assignee
//! and status, and its own past assignments), and [`Assigner::decide`] is a
//! pure function of that state: replaying the same log gives the same
//! decisions, and the decisions themselves are events, so rebuilding any
//! read model gives the same assignees.
//!
//! A conversation waits when it is open, unassigned, and its channel is in
//! ROUND_ROBIN. Agents are the organization's members with role AGENT who
//! are available and below the channel's cap. The rotation is the agents in
//! id order; each assignment goes to the first eligible agent after the
//! channel's last automatic assignee, so over any stretch in which the same
//! agents are eligible, their counts differ by at most one.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::channel::{AssignmentMode, ChannelEvent};
pub use crate::conversation::AutoAssignment;
use crate::conversation::ConversationEvent;
use crate::ids::{ChannelId, ConversationId, MemberId, OrgId};
use crate::org::{OrgEvent, Role};
use crate::qr::QrEvent;

/// The strategies an automatic assignment names.
pub const ROUND_ROBIN: &str = "ROUND_ROBIN";
pub const QR_CODE: &str = "QR_CODE";

/// One assignment to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub conversation_id: ConversationId,
    pub org_id: OrgId,
    pub assignee: MemberId,
    pub reason: AutoAssignment,
    /// A QR code's choice replaces any current assignee; round robin only
    /// fills an empty one.
    pub overrides: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agent {
    available: bool,
    is_agent: bool,
}

#[derive(Debug, Clone, Default)]
struct Rule {
    org: Option<OrgId>,
    mode: AssignmentMode,
    cap: Option<u32>,
    /// The channel's last automatic assignee: the rotation goes on after it.
    last: Option<MemberId>,
}

#[derive(Debug, Clone)]
struct Waiting {
    org: OrgId,
    channel: ChannelId,
    assignee: Option<MemberId>,
    resolved: bool,
    /// When it last became open and unassigned.
    since: DateTime<Utc>,
    /// The agent of a live QR code the customer sent, until assigned.
    by_code: Option<MemberId>,
}

/// The state automatic assignment decides on, folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Assigner {
    /// Members per organization, ordered by id (the rotation's order).
    members: HashMap<OrgId, BTreeMap<MemberId, Agent>>,
    channels: HashMap<ChannelId, Rule>,
    conversations: HashMap<ConversationId, Waiting>,
    /// Open (unresolved) conversations per assignee.
    open: HashMap<MemberId, u32>,
    /// QR assignment codes by text: (channel, agent, live).
    codes: HashMap<String, (ChannelId, MemberId, bool)>,
    /// Code texts by code id, for revocations.
    code_ids: HashMap<uuid::Uuid, String>,
}

impl Assigner {
    pub fn apply_org(&mut self, event: &OrgEvent) {
        match event {
            OrgEvent::MemberAdded { org_id, member, .. } => {
                self.members.entry(*org_id).or_default().insert(
                    member.member_id,
                    Agent {
                        available: true,
                        is_agent: member.role == Role::Agent,
                    },
                );
            }
            OrgEvent::MemberAvailabilityChanged {
                org_id,
                member_id,
                available,
                ..
            } => {
                if let Some(agent) = self
                    .members
                    .get_mut(org_id)
                    .and_then(|m| m.get_mut(member_id))
                {
                    agent.available = *available;
                }
            }
            OrgEvent::MemberRemoved {
                org_id, member_id, ..
            } => {
                if let Some(members) = self.members.get_mut(org_id) {
                    members.remove(member_id);
                }
            }
            OrgEvent::OrganizationCreated { .. } | OrgEvent::MemberTokenRotated { .. } => {}
        }
    }

    pub fn apply_qr(&mut self, event: &QrEvent) {
        match event {
            QrEvent::QrCodeCreated {
                code_id,
                channel_id,
                agent_id,
                code,
                ..
            } => {
                self.codes
                    .insert(code.clone(), (*channel_id, *agent_id, true));
                self.code_ids.insert(*code_id, code.clone());
            }
            QrEvent::QrCodeRevoked { code_id, .. } => {
                if let Some(entry) = self
                    .code_ids
                    .get(code_id)
                    .and_then(|code| self.codes.get_mut(code))
                {
                    entry.2 = false;
                }
            }
        }
    }

    pub fn apply_channel(&mut self, event: &ChannelEvent) {
        match event {
            ChannelEvent::ChannelConnected {
                channel_id, org_id, ..
            } => self.channels.entry(*channel_id).or_default().org = Some(*org_id),
            ChannelEvent::AssignmentModeChanged {
                channel_id,
                org_id,
                mode,
                max_open_per_agent,
                at,
                ..
            } => {
                let rule = self.channels.entry(*channel_id).or_default();
                rule.org = Some(*org_id);
                let starts =
                    rule.mode != AssignmentMode::RoundRobin && *mode == AssignmentMode::RoundRobin;
                rule.mode = *mode;
                rule.cap = *max_open_per_agent;
                if starts {
                    // Conversations already waiting queue from now.
                    for waiting in self.conversations.values_mut() {
                        if waiting.channel == *channel_id && waiting.since < *at {
                            waiting.since = *at;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    pub fn apply_conversation(&mut self, event: &ConversationEvent) {
        let id = event.conversation_id();
        let before = self
            .conversations
            .get(&id)
            .map(|c| (c.assignee, c.resolved));
        match event {
            ConversationEvent::MessageReceived {
                org_id,
                channel_id,
                sent_at,
                text,
                ..
            } => {
                let by_code = text
                    .as_deref()
                    .map(str::trim)
                    .and_then(|text| self.codes.get(text))
                    .filter(|(channel, _, live)| channel == channel_id && *live)
                    .map(|(_, agent, _)| *agent);
                let waiting = self.conversations.entry(id).or_insert(Waiting {
                    org: *org_id,
                    channel: *channel_id,
                    assignee: None,
                    resolved: false,
                    since: *sent_at,
                    by_code: None,
                });
                if waiting.resolved {
                    waiting.resolved = false;
                    waiting.since = *sent_at;
                }
                if by_code.is_some() {
                    waiting.by_code = by_code;
                }
            }
            ConversationEvent::ConversationAssigned {
                assignee,
                reason,
                at,
                ..
            } => {
                if let Some(waiting) = self.conversations.get_mut(&id) {
                    waiting.assignee = Some(*assignee);
                    waiting.since = *at;
                    waiting.by_code = None;
                    if reason.as_ref().is_some_and(|r| r.strategy == ROUND_ROBIN) {
                        let channel = waiting.channel;
                        self.channels.entry(channel).or_default().last = Some(*assignee);
                    }
                }
            }
            ConversationEvent::ConversationUnassigned { at, .. } => {
                if let Some(waiting) = self.conversations.get_mut(&id) {
                    waiting.assignee = None;
                    waiting.since = *at;
                }
            }
            ConversationEvent::ConversationResolved { .. } => {
                if let Some(waiting) = self.conversations.get_mut(&id) {
                    waiting.resolved = true;
                }
            }
            ConversationEvent::ConversationReopened { at, .. } => {
                if let Some(waiting) = self.conversations.get_mut(&id) {
                    if waiting.resolved {
                        waiting.resolved = false;
                        waiting.since = *at;
                    }
                }
            }
            _ => return,
        }
        let after = self
            .conversations
            .get(&id)
            .map(|c| (c.assignee, c.resolved));
        if let Some((Some(member), false)) = before {
            if let Some(count) = self.open.get_mut(&member) {
                *count = count.saturating_sub(1);
            }
        }
        if let Some((Some(member), false)) = after {
            *self.open.entry(member).or_default() += 1;
        }
    }

    /// Open conversations `member` holds.
    pub fn open_count(&self, member: MemberId) -> u32 {
        self.open.get(&member).copied().unwrap_or(0)
    }

    /// Every assignment due now: per ROUND_ROBIN channel, its waiting
    /// conversations oldest first, each to the next eligible agent; a
    /// conversation no agent can take waits. Decisions in one call respect
    /// each other (caps, rotation).
    pub fn decide(&self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut open = self.open.clone();
        let mut decisions = Vec::new();
        // A customer who came through an agent's QR code goes to that
        // agent, whatever the mode, availability or cap.
        let mut by_code: Vec<(&ConversationId, &Waiting)> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.by_code.is_some() && c.by_code != c.assignee)
            .collect();
        by_code.sort_by_key(|(id, c)| (c.since, **id));
        for (id, conversation) in by_code {
            let Some(agent) = conversation.by_code else {
                continue;
            };
            let known = self
                .members
                .get(&conversation.org)
                .is_some_and(|m| m.contains_key(&agent));
            if !known {
                continue;
            }
            *open.entry(agent).or_default() += 1;
            decisions.push(Decision {
                conversation_id: *id,
                org_id: conversation.org,
                assignee: agent,
                reason: AutoAssignment {
                    strategy: QR_CODE.into(),
                    position: 0,
                    eligible: 1,
                    waited_seconds: (now - conversation.since).num_seconds().max(0),
                },
                overrides: true,
            });
        }
        let mut waiting: Vec<(&ConversationId, &Waiting)> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.assignee.is_none() && !c.resolved && c.by_code.is_none())
            .filter(|(_, c)| {
                self.channels
                    .get(&c.channel)
                    .is_some_and(|r| r.mode == AssignmentMode::RoundRobin)
            })
            .collect();
        waiting.sort_by_key(|(id, c)| (c.since, **id));
        let mut last: HashMap<ChannelId, Option<MemberId>> = HashMap::new();
        for (id, conversation) in waiting {
            let rule = &self.channels[&conversation.channel];
            let Some(members) = self.members.get(&conversation.org) else {
                continue;
            };
            let eligible: Vec<MemberId> = members
                .iter()
                .filter(|(_, a)| a.is_agent && a.available)
                .filter(|(m, _)| {
                    rule.cap
                        .is_none_or(|cap| open.get(*m).copied().unwrap_or(0) < cap)
                })
                .map(|(m, _)| *m)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let previous = *last.entry(conversation.channel).or_insert(rule.last);
            let position =
                previous.map_or(0, |p| eligible.iter().position(|m| *m > p).unwrap_or(0));
            let assignee = eligible[position];
            last.insert(conversation.channel, Some(assignee));
            *open.entry(assignee).or_default() += 1;
            decisions.push(Decision {
                conversation_id: *id,
                org_id: conversation.org,
                assignee,
                reason: AutoAssignment {
                    strategy: ROUND_ROBIN.into(),
                    position: position as u32,
                    eligible: eligible.len() as u32,
                    waited_seconds: (now - conversation.since).num_seconds().max(0),
                },
                overrides: false,
            });
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Thread;
    use crate::ids::ContactId;
    use crate::org::{Email, NewMember, TokenHash};
    use crate::ChannelKind;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805 + s, 0).expect("instant")
    }

    struct World {
        assigner: Assigner,
        org: OrgId,
        channel: ChannelId,
        agents: Vec<MemberId>,
    }

    fn world(agents: usize, cap: Option<u32>) -> World {
        let org = OrgId(uuid::Uuid::from_u128(1));
        let channel = ChannelId(uuid::Uuid::from_u128(2));
        let mut assigner = Assigner::default();
        let mut ids = Vec::new();
        for n in 0..agents {
            let id = MemberId(uuid::Uuid::from_u128(100 + n as u128));
            ids.push(id);
            assigner.apply_org(&OrgEvent::MemberAdded {
                org_id: org,
                member: NewMember {
                    member_id: id,
                    email: Email::parse(&format!("a{n}@example.com")).expect("email"),
                    role: Role::Agent,
                    token_sha256: TokenHash(String::new()),
                },
                added_by: None,
                added_at: at(0),
            });
        }
        assigner.apply_channel(&ChannelEvent::AssignmentModeChanged {
            channel_id: channel,
            org_id: org,
            mode: AssignmentMode::RoundRobin,
            max_open_per_agent: cap,
            by: MemberId(uuid::Uuid::from_u128(9)),
            at: at(0),
        });
        World {
            assigner,
            org,
            channel,
            agents: ids,
        }
    }

    impl World {
        fn customer_writes(&mut self, n: u128, s: i64) -> ConversationId {
            let id = ConversationId(uuid::Uuid::from_u128(1000 + n));
            self.assigner
                .apply_conversation(&ConversationEvent::MessageReceived {
                    conversation_id: id,
                    org_id: self.org,
                    channel_id: self.channel,
                    channel_kind: ChannelKind::Line,
                    contact_id: ContactId(uuid::Uuid::from_u128(5000 + n)),
                    thread: Thread::User(format!("U{n}")),
                    author: None,
                    platform_message_id: format!("m{n}-{s}"),
                    sent_at: at(s),
                    text: None,
                    attachments: vec![],
                    postback: None,
                    quick_reply_payload: None,
                    reply_to: None,
                    reply_token: None,
                    standby: false,
                });
            id
        }

        /// Decides and applies the decisions, as the reactor does.
        fn run(&mut self, s: i64) -> Vec<Decision> {
            let decisions = self.assigner.decide(at(s));
            for d in &decisions {
                self.assigner
                    .apply_conversation(&ConversationEvent::ConversationAssigned {
                        conversation_id: d.conversation_id,
                        org_id: d.org_id,
                        assignee: d.assignee,
                        by: None,
                        reason: Some(d.reason.clone()),
                        at: at(s),
                    });
            }
            decisions
        }

        fn resolve(&mut self, id: ConversationId, s: i64) {
            self.assigner
                .apply_conversation(&ConversationEvent::ConversationResolved {
                    conversation_id: id,
                    org_id: self.org,
                    by: self.agents[0],
                    at: at(s),
                });
        }
    }

    #[test]
    fn agents_take_turns_and_a_returning_agent_rejoins_the_rotation() {
        let mut w = world(3, None);
        for n in 0..9 {
            w.customer_writes(n, n as i64);
        }
        let first: Vec<MemberId> = w.run(10).iter().map(|d| d.assignee).collect();
        assert_eq!(first.len(), 9);
        for agent in &w.agents {
            assert_eq!(first.iter().filter(|a| *a == agent).count(), 3);
        }
        assert_eq!(
            &first[..3],
            &w.agents[..],
            "in rotation order, oldest first"
        );
        w.assigner.apply_org(&OrgEvent::MemberAvailabilityChanged {
            org_id: w.org,
            member_id: w.agents[1],
            available: false,
            changed_at: at(11),
        });
        for n in 9..13 {
            w.customer_writes(n, 12);
        }
        let second: Vec<MemberId> = w.run(13).iter().map(|d| d.assignee).collect();
        assert!(!second.contains(&w.agents[1]), "away agents get nothing");
        assert_eq!(second.len(), 4);
    }

    #[test]
    fn at_the_cap_conversations_wait_and_the_oldest_goes_first() {
        let mut w = world(2, Some(1));
        let a = w.customer_writes(1, 1);
        w.customer_writes(2, 2);
        let third = w.customer_writes(3, 3);
        let fourth = w.customer_writes(4, 4);
        assert_eq!(w.run(5).len(), 2, "one each, then everyone is at the cap");
        assert!(w.run(6).is_empty(), "the others wait");
        w.resolve(a, 7);
        let next = w.run(8);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].conversation_id, third, "oldest waiting first");
        assert_eq!(next[0].reason.waited_seconds, 5);
        assert!(w
            .assigner
            .decide(at(9))
            .iter()
            .all(|d| d.conversation_id != fourth));
    }

    #[test]
    fn a_live_code_sends_the_customer_to_its_agent_whatever_the_rotation() {
        let mut w = world(3, Some(1));
        let code = crate::qr::code_text(&[7; 6]);
        w.assigner.apply_qr(&QrEvent::QrCodeCreated {
            code_id: uuid::Uuid::from_u128(77),
            org_id: w.org,
            channel_id: w.channel,
            agent_id: w.agents[2],
            code: code.clone(),
            line_url: String::new(),
            by: w.agents[0],
            at: at(0),
        });
        let busy = w.customer_writes(1, 1);
        let first = w.run(2);
        assert_eq!(first[0].assignee, w.agents[0]);
        // The customer sends agent 2's code: agent 2 takes over.
        w.assigner
            .apply_conversation(&ConversationEvent::MessageReceived {
                conversation_id: busy,
                org_id: w.org,
                channel_id: w.channel,
                channel_kind: ChannelKind::Line,
                contact_id: ContactId(uuid::Uuid::from_u128(5001)),
                thread: Thread::User("U1".into()),
                author: None,
                platform_message_id: "code".into(),
                sent_at: at(3),
                text: Some(code.clone()),
                attachments: vec![],
                postback: None,
                quick_reply_payload: None,
                reply_to: None,
                reply_token: None,
                standby: false,
            });
        let second = w.run(4);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].assignee, w.agents[2]);
        assert!(second[0].overrides);
        assert_eq!(second[0].reason.strategy, QR_CODE);
        assert!(w.run(5).is_empty(), "once");
        w.assigner.apply_qr(&QrEvent::QrCodeRevoked {
            code_id: uuid::Uuid::from_u128(77),
            org_id: w.org,
            by: w.agents[0],
            at: at(6),
        });
        assert!(!w.assigner.codes[&code].2, "revoked codes assign nobody");
    }

    #[test]
    fn a_customer_reopening_a_resolved_unassigned_conversation_is_assigned_again() {
        let mut w = world(1, None);
        let id = w.customer_writes(1, 1);
        w.run(2);
        w.assigner
            .apply_conversation(&ConversationEvent::ConversationUnassigned {
                conversation_id: id,
                org_id: w.org,
                by: w.agents[0],
                at: at(3),
            });
        w.resolve(id, 4);
        assert!(w.run(5).is_empty(), "resolved: nothing to do");
        w.customer_writes(1, 6);
        assert_eq!(w.run(7).len(), 1, "the customer's message reopened it");
        assert_eq!(w.assigner.open_count(w.agents[0]), 1);
    }
}
