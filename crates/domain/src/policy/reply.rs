//! Who may reply with what in each window phase, decided before anything is
//! sent, and the evidence each reply keeps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{rfc3339, Window, WindowPhase};
use crate::ChannelKind;

/// Who wrote a reply. Meta accepts HUMAN_AGENT-tagged messages only from a
/// person, so bots and rules must say that they are [`AuthorKind::Automated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorKind {
    Human,
    Automated,
}

/// The Facebook message tag a reply is sent with. Omnibox only ever uses
/// HUMAN_AGENT: the other tags need platform templates or were retired on
/// 2026-04-27.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageTag {
    HumanAgent,
}

/// The Send API's `messaging_type`: RESPONSE inside the standard window,
/// MESSAGE_TAG (with a [`MessageTag`]) after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessagingType {
    Response,
    MessageTag,
}

/// Permission to send one reply, with the facts it was decided on. It is
/// stored in the reply's event so that, in a platform review, every message
/// can show the window phase, tag and author it was sent under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyAllowance {
    pub phase: WindowPhase,
    pub tag: Option<MessageTag>,
    /// `None` on LINE, whose API has no such field.
    pub messaging_type: Option<MessagingType>,
    pub author: AuthorKind,
    pub promotional: bool,
}

/// Why a reply may not be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRefused {
    /// The window is CLOSED: 7 days have passed since the customer's last
    /// message (`closed_at`), or the customer never wrote (`None`).
    #[error("{}", window_closed(*.closed_at))]
    WindowClosed { closed_at: Option<DateTime<Utc>> },
    /// HUMAN_AGENT phase: no tag may carry promotional content.
    #[error(
        "promotional content is not allowed now: the 24-hour window closed at {}; \
         only a human agent may reply, without promotional content, until {}",
        rfc3339(*.standard_window_ended_at),
        rfc3339(*.human_agent_window_ends_at)
    )]
    PromotionalNotAllowed {
        standard_window_ended_at: DateTime<Utc>,
        human_agent_window_ends_at: DateTime<Utc>,
    },
    /// HUMAN_AGENT phase: the tag is for people only.
    #[error(
        "automated replies are not allowed now: the 24-hour window closed at {}; \
         only a human agent may reply, without promotional content, until {}",
        rfc3339(*.standard_window_ended_at),
        rfc3339(*.human_agent_window_ends_at)
    )]
    AutomatedNotAllowed {
        standard_window_ended_at: DateTime<Utc>,
        human_agent_window_ends_at: DateTime<Utc>,
    },
    /// The window was not computed by [`window`](super::window()) for this
    /// channel's kind: a bug in the caller, refused rather than guessed at.
    #[error(
        "a {} channel cannot be in the {} window phase (or its window lacks end times); \
         compute the window for this channel's kind",
        .kind.as_str(),
        .phase.as_str()
    )]
    WindowMismatch {
        kind: ChannelKind,
        phase: WindowPhase,
    },
}

fn window_closed(closed_at: Option<DateTime<Utc>>) -> String {
    match closed_at {
        Some(closed_at) => format!(
            "the messaging window closed at {}, 7 days after the customer's last message; \
             no reply is possible until the customer writes again",
            rfc3339(closed_at)
        ),
        None => "the customer has not written yet; a Facebook Page may only reply \
                 after the customer's first message"
            .to_owned(),
    }
}

/// Decides whether a reply may be sent in `window`, and with which tag.
///
/// Refusing here, before anything is sent, is what keeps a Page out of
/// trouble: Meta answers a reply outside the window with an error, but a
/// promotional or automated message sent under HUMAN_AGENT is delivered and
/// then counts against the Page in a policy review. When a human reply is
/// also promotional, the author is reported first.
pub fn decide_reply(
    kind: ChannelKind,
    window: &Window,
    promotional: bool,
    author: AuthorKind,
) -> Result<ReplyAllowance, ReplyRefused> {
    let allow = |tag, messaging_type| ReplyAllowance {
        phase: window.phase,
        tag,
        messaging_type,
        author,
        promotional,
    };
    match (kind, window.phase) {
        (ChannelKind::Line, WindowPhase::Unlimited) => Ok(allow(None, None)),
        (ChannelKind::Facebook, WindowPhase::Standard) => {
            Ok(allow(None, Some(MessagingType::Response)))
        }
        (ChannelKind::Facebook, WindowPhase::HumanAgent) => {
            let (Some(standard_window_ended_at), Some(human_agent_window_ends_at)) =
                (window.standard_ends_at, window.human_agent_ends_at)
            else {
                return Err(ReplyRefused::WindowMismatch {
                    kind,
                    phase: window.phase,
                });
            };
            match (author, promotional) {
                (AuthorKind::Automated, _) => Err(ReplyRefused::AutomatedNotAllowed {
                    standard_window_ended_at,
                    human_agent_window_ends_at,
                }),
                (AuthorKind::Human, true) => Err(ReplyRefused::PromotionalNotAllowed {
                    standard_window_ended_at,
                    human_agent_window_ends_at,
                }),
                (AuthorKind::Human, false) => Ok(allow(
                    Some(MessageTag::HumanAgent),
                    Some(MessagingType::MessageTag),
                )),
            }
        }
        (ChannelKind::Facebook, WindowPhase::Closed) => Err(ReplyRefused::WindowClosed {
            closed_at: window.human_agent_ends_at,
        }),
        (kind, phase) => Err(ReplyRefused::WindowMismatch { kind, phase }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::window;
    use AuthorKind::{Automated, Human};

    fn t(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    const LAST: &str = "2026-11-23T02:10:05Z";
    const STANDARD_END: &str = "2026-11-24T02:10:05Z";
    const HUMAN_AGENT_END: &str = "2026-11-30T02:10:05Z";

    fn facebook_at(at: &str) -> Window {
        window(ChannelKind::Facebook, Some(t(LAST)), t(at))
    }

    fn allowance(
        phase: WindowPhase,
        tag: Option<MessageTag>,
        messaging_type: Option<MessagingType>,
        author: AuthorKind,
        promotional: bool,
    ) -> ReplyAllowance {
        ReplyAllowance {
            phase,
            tag,
            messaging_type,
            author,
            promotional,
        }
    }

    #[test]
    fn decides_by_phase_author_and_content() {
        use MessagingType::{MessageTag as Tagged, Response};
        use WindowPhase::*;
        let tagged = Some(MessageTag::HumanAgent);
        let line = window(ChannelKind::Line, None, t(LAST));
        let standard = facebook_at("2026-11-24T02:10:04Z");
        let human_agent = facebook_at(STANDARD_END);
        let closed = facebook_at(HUMAN_AGENT_END);
        let never_wrote = window(ChannelKind::Facebook, None, t(LAST));
        let after_standard = ReplyRefused::PromotionalNotAllowed {
            standard_window_ended_at: t(STANDARD_END),
            human_agent_window_ends_at: t(HUMAN_AGENT_END),
        };
        let automated = ReplyRefused::AutomatedNotAllowed {
            standard_window_ended_at: t(STANDARD_END),
            human_agent_window_ends_at: t(HUMAN_AGENT_END),
        };
        // given (kind, window) / when (promotional, author) / then
        let cases = [
            (
                ChannelKind::Line,
                line,
                true,
                Automated,
                Ok(allowance(Unlimited, None, None, Automated, true)),
            ),
            (
                ChannelKind::Line,
                line,
                false,
                Human,
                Ok(allowance(Unlimited, None, None, Human, false)),
            ),
            (
                ChannelKind::Facebook,
                standard,
                true,
                Automated,
                Ok(allowance(Standard, None, Some(Response), Automated, true)),
            ),
            (
                ChannelKind::Facebook,
                standard,
                false,
                Human,
                Ok(allowance(Standard, None, Some(Response), Human, false)),
            ),
            (
                ChannelKind::Facebook,
                human_agent,
                false,
                Human,
                Ok(allowance(HumanAgent, tagged, Some(Tagged), Human, false)),
            ),
            (
                ChannelKind::Facebook,
                human_agent,
                true,
                Human,
                Err(after_standard),
            ),
            (
                ChannelKind::Facebook,
                human_agent,
                false,
                Automated,
                Err(automated),
            ),
            (
                ChannelKind::Facebook,
                human_agent,
                true,
                Automated,
                Err(automated),
            ),
            (
                ChannelKind::Facebook,
                closed,
                false,
                Human,
                Err(ReplyRefused::WindowClosed {
                    closed_at: Some(t(HUMAN_AGENT_END)),
                }),
            ),
            (
                ChannelKind::Facebook,
                never_wrote,
                false,
                Human,
                Err(ReplyRefused::WindowClosed { closed_at: None }),
            ),
        ];
        for (kind, window, promotional, author, then) in cases {
            assert_eq!(
                decide_reply(kind, &window, promotional, author),
                then,
                "{kind:?} {:?} promotional={promotional} {author:?}",
                window.phase
            );
        }
    }

    #[test]
    fn refuses_a_window_of_the_wrong_kind() {
        let facebook = facebook_at(LAST);
        let line = window(ChannelKind::Line, None, t(LAST));
        let human_agent_without_ends = Window {
            phase: WindowPhase::HumanAgent,
            standard_ends_at: None,
            human_agent_ends_at: None,
        };
        let cases = [
            (ChannelKind::Line, facebook),
            (ChannelKind::Facebook, line),
            (ChannelKind::Facebook, human_agent_without_ends),
        ];
        for (kind, window) in cases {
            assert_eq!(
                decide_reply(kind, &window, false, Human),
                Err(ReplyRefused::WindowMismatch {
                    kind,
                    phase: window.phase
                })
            );
        }
    }

    #[test]
    fn refusals_say_which_rule_and_until_when() {
        let cases = [
            (
                decide_reply(
                    ChannelKind::Facebook,
                    &facebook_at(STANDARD_END),
                    true,
                    Human,
                ),
                "promotional content is not allowed now: the 24-hour window closed at \
                 2026-11-24T02:10:05Z; only a human agent may reply, without promotional \
                 content, until 2026-11-30T02:10:05Z",
            ),
            (
                decide_reply(
                    ChannelKind::Facebook,
                    &facebook_at(STANDARD_END),
                    false,
                    Automated,
                ),
                "automated replies are not allowed now: the 24-hour window closed at \
                 2026-11-24T02:10:05Z; only a human agent may reply, without promotional \
                 content, until 2026-11-30T02:10:05Z",
            ),
            (
                decide_reply(
                    ChannelKind::Facebook,
                    &facebook_at(HUMAN_AGENT_END),
                    false,
                    Human,
                ),
                "the messaging window closed at 2026-11-30T02:10:05Z, 7 days after the \
                 customer's last message; no reply is possible until the customer writes again",
            ),
            (
                decide_reply(
                    ChannelKind::Facebook,
                    &window(ChannelKind::Facebook, None, t(LAST)),
                    false,
                    Human,
                ),
                "the customer has not written yet; a Facebook Page may only reply after the \
                 customer's first message",
            ),
        ];
        for (decision, message) in cases {
            assert_eq!(
                decision.map_err(|refused| refused.to_string()),
                Err(message.to_owned())
            );
        }
    }

    #[test]
    fn allowance_serializes_as_evidence() {
        let allowed = decide_reply(
            ChannelKind::Facebook,
            &facebook_at(STANDARD_END),
            false,
            Human,
        )
        .expect("human reply in HUMAN_AGENT");
        let json = serde_json::json!({
            "phase": "HUMAN_AGENT",
            "tag": "HUMAN_AGENT",
            "messaging_type": "MESSAGE_TAG",
            "author": "HUMAN",
            "promotional": false,
        });
        assert_eq!(serde_json::to_value(allowed).expect("serializable"), json);
        assert_eq!(
            serde_json::from_value::<ReplyAllowance>(json).expect("deserializable"),
            allowed
        );
    }
}
