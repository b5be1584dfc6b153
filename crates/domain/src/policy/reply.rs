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
        "this {} window does not fit a {} channel; compute the window from the \
         channel's kind and the customer's last message",
        .phase.as_str(),
        .kind.as_str()
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
/// Decided before anything is sent: Meta refuses a reply outside the window
/// only when it arrives, possibly after earlier bubbles went out, and cannot
/// check at all whether a tagged message was promotional or automated. So
/// Omnibox checks, and the [`ReplyAllowance`] is the record that it did.
/// When an automated reply is also promotional, the automation is reported.
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
    use ChannelKind::{Facebook, Line};

    fn t(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    const LAST: &str = "2026-11-23T02:10:05Z";
    const STANDARD_END: &str = "2026-11-24T02:10:05Z";
    const HUMAN_AGENT_END: &str = "2026-11-30T02:10:05Z";

    fn facebook_at(at: &str) -> Window {
        window(Facebook, Some(t(LAST)), t(at))
    }

    #[test]
    fn decides_by_phase_author_and_content() {
        use MessagingType::{MessageTag as Tagged, Response};
        use WindowPhase::*;
        let human_agent_tag = Some(MessageTag::HumanAgent);
        let line = window(Line, None, t(LAST));
        let standard = facebook_at("2026-11-24T02:10:04Z");
        let human_agent = facebook_at(STANDARD_END);
        let closed = facebook_at(HUMAN_AGENT_END);
        let never_wrote = window(Facebook, None, t(LAST));
        let no_promotion = ReplyRefused::PromotionalNotAllowed {
            standard_window_ended_at: t(STANDARD_END),
            human_agent_window_ends_at: t(HUMAN_AGENT_END),
        };
        let no_automation = ReplyRefused::AutomatedNotAllowed {
            standard_window_ended_at: t(STANDARD_END),
            human_agent_window_ends_at: t(HUMAN_AGENT_END),
        };
        let closed_at = |closed_at| ReplyRefused::WindowClosed { closed_at };
        // given (kind, window) / when (promotional, author) / then (phase, tag, messaging type)
        #[rustfmt::skip]
        let cases = [
            (Line, line, true, Automated, Ok((Unlimited, None, None))),
            (Line, line, false, Human, Ok((Unlimited, None, None))),
            (Facebook, standard, true, Automated, Ok((Standard, None, Some(Response)))),
            (Facebook, standard, false, Human, Ok((Standard, None, Some(Response)))),
            (Facebook, human_agent, false, Human, Ok((HumanAgent, human_agent_tag, Some(Tagged)))),
            (Facebook, human_agent, true, Human, Err(no_promotion)),
            (Facebook, human_agent, false, Automated, Err(no_automation)),
            (Facebook, human_agent, true, Automated, Err(no_automation)),
            (Facebook, closed, false, Human, Err(closed_at(Some(t(HUMAN_AGENT_END))))),
            (Facebook, never_wrote, false, Human, Err(closed_at(None))),
        ];
        for (kind, window, promotional, author, then) in cases {
            let decision = decide_reply(kind, &window, promotional, author);
            let context = format!(
                "{kind:?} {:?} promotional={promotional} {author:?}",
                window.phase
            );
            if let Ok(allowance) = decision {
                assert_eq!(
                    (allowance.author, allowance.promotional),
                    (author, promotional),
                    "{context}"
                );
            }
            assert_eq!(
                decision.map(|allowance| (
                    allowance.phase,
                    allowance.tag,
                    allowance.messaging_type
                )),
                then,
                "{context}"
            );
        }
    }

    #[test]
    fn refuses_a_window_of_the_wrong_kind() {
        let human_agent_without_ends = Window {
            phase: WindowPhase::HumanAgent,
            standard_ends_at: None,
            human_agent_ends_at: None,
        };
        let cases = [
            (Line, facebook_at(LAST)),
            (Facebook, window(Line, None, t(LAST))),
            (Facebook, human_agent_without_ends),
        ];
        for (kind, window) in cases {
            let phase = window.phase;
            assert_eq!(
                decide_reply(kind, &window, false, Human),
                Err(ReplyRefused::WindowMismatch { kind, phase })
            );
        }
    }

    #[test]
    fn refusals_say_which_rule_and_until_when() {
        // given (window) / when (promotional, author) / then (message)
        let cases = [
            (
                facebook_at(STANDARD_END),
                true,
                Human,
                "promotional content is not allowed now: the 24-hour window closed at \
                 2026-11-24T02:10:05Z; only a human agent may reply, without promotional \
                 content, until 2026-11-30T02:10:05Z",
            ),
            (
                facebook_at(STANDARD_END),
                false,
                Automated,
                "automated replies are not allowed now: the 24-hour window closed at \
                 2026-11-24T02:10:05Z; only a human agent may reply, without promotional \
                 content, until 2026-11-30T02:10:05Z",
            ),
            (
                facebook_at(HUMAN_AGENT_END),
                false,
                Human,
                "the messaging window closed at 2026-11-30T02:10:05Z, 7 days after the \
                 customer's last message; no reply is possible until the customer writes again",
            ),
            (
                window(Facebook, None, t(LAST)),
                false,
                Human,
                "the customer has not written yet; a Facebook Page may only reply after the \
                 customer's first message",
            ),
        ];
        for (window, promotional, author, message) in cases {
            assert_eq!(
                decide_reply(Facebook, &window, promotional, author).map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
        }
    }

    #[test]
    fn allowance_serializes_as_evidence() {
        let allowed = decide_reply(Facebook, &facebook_at(STANDARD_END), false, Human)
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
