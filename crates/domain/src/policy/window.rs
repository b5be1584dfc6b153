//! The Facebook messaging window: how long after a customer's last message a
//! Page may still answer, and under which rules.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::deadline;
use crate::ChannelKind;

/// How long after the customer's last message a Page may send anything,
/// promotional content included (Meta's standard messaging window).
pub const STANDARD_WINDOW: TimeDelta = TimeDelta::hours(24);

/// How long after the customer's last message a human agent may still answer
/// with the HUMAN_AGENT tag. Counted from the message, like
/// [`STANDARD_WINDOW`], not from the end of the standard window.
pub const HUMAN_AGENT_WINDOW: TimeDelta = TimeDelta::days(7);

/// Which rules a reply falls under at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WindowPhase {
    /// Facebook, under 24 h since the customer's last message: anything goes.
    Standard,
    /// Facebook, from 24 h to 7 days: only a human agent, with the HUMAN_AGENT
    /// tag, and nothing promotional.
    HumanAgent,
    /// Facebook, 7 days or more since the customer's last message, or no
    /// message yet: Meta refuses every reply.
    Closed,
    /// LINE, which has no messaging window.
    Unlimited,
}

impl WindowPhase {
    /// The name the API and the event log use.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowPhase::Standard => "STANDARD",
            WindowPhase::HumanAgent => "HUMAN_AGENT",
            WindowPhase::Closed => "CLOSED",
            WindowPhase::Unlimited => "UNLIMITED",
        }
    }
}

/// The window of one conversation at one instant. It carries the instants its
/// phases end so that an inbox can show a countdown and a refusal can say
/// until when a reply was possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub phase: WindowPhase,
    /// When STANDARD ends (or ended); `None` on LINE and before the
    /// customer's first message.
    pub standard_ends_at: Option<DateTime<Utc>>,
    /// When HUMAN_AGENT ends (or ended), which is when the window closes;
    /// `None` on LINE and before the customer's first message.
    pub human_agent_ends_at: Option<DateTime<Utc>>,
}

/// The messaging window of a conversation at `at`.
///
/// `last_customer_message_at` is the platform's timestamp of the customer's
/// last message, not the time its webhook arrived: Meta measures from its own
/// clock, and a late or retried webhook must not lengthen the window. Meta
/// also reopens the window on reactions and postbacks; counting messages only
/// can make the window look shorter than Meta's, never longer, so a reply
/// allowed here is never refused by Meta for being late.
///
/// An `at` before the last message (clocks that disagree) is STANDARD.
pub fn window(
    kind: ChannelKind,
    last_customer_message_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Window {
    let last = match (kind, last_customer_message_at) {
        (ChannelKind::Line, _) => return Window::without_ends(WindowPhase::Unlimited),
        (ChannelKind::Facebook, None) => return Window::without_ends(WindowPhase::Closed),
        (ChannelKind::Facebook, Some(last)) => last,
    };
    let standard_ends_at = deadline(last, STANDARD_WINDOW);
    let human_agent_ends_at = deadline(last, HUMAN_AGENT_WINDOW);
    let phase = if at < standard_ends_at {
        WindowPhase::Standard
    } else if at < human_agent_ends_at {
        WindowPhase::HumanAgent
    } else {
        WindowPhase::Closed
    };
    Window {
        phase,
        standard_ends_at: Some(standard_ends_at),
        human_agent_ends_at: Some(human_agent_ends_at),
    }
}

impl Window {
    fn without_ends(phase: WindowPhase) -> Self {
        Window {
            phase,
            standard_ends_at: None,
            human_agent_ends_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::{Facebook, Line};

    fn t(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    const LAST: &str = "2026-11-23T02:10:05Z";
    const STANDARD_END: &str = "2026-11-24T02:10:05Z";
    const HUMAN_AGENT_END: &str = "2026-11-30T02:10:05Z";

    #[test]
    fn phase_by_time_since_the_last_customer_message() {
        use WindowPhase::*;
        let nanosecond = TimeDelta::nanoseconds(1);
        // given (kind, last customer message) / when (at) / then (phase)
        #[rustfmt::skip]
        let cases = [
            (Line, None, t(LAST), Unlimited),
            (Line, Some(t(LAST)), t("2027-06-01T00:00:00Z"), Unlimited),
            (Facebook, None, t(LAST), Closed),
            (Facebook, Some(t(LAST)), t("2026-11-23T02:10:04Z"), Standard),
            (Facebook, Some(t(LAST)), t(LAST), Standard),
            (Facebook, Some(t(LAST)), t(STANDARD_END) - nanosecond, Standard),
            (Facebook, Some(t(LAST)), t(STANDARD_END), HumanAgent),
            (Facebook, Some(t(LAST)), t(HUMAN_AGENT_END) - nanosecond, HumanAgent),
            (Facebook, Some(t(LAST)), t(HUMAN_AGENT_END), Closed),
            (Facebook, Some(t(LAST)), t("2027-01-01T00:00:00Z"), Closed),
        ];
        for (kind, last, at, phase) in cases {
            assert_eq!(
                window(kind, last, at).phase,
                phase,
                "{kind:?} last={last:?} at={at}"
            );
        }
    }

    #[test]
    fn ends_are_known_only_after_a_facebook_message() {
        let cases = [
            (Line, Some(t(LAST)), None, None),
            (Facebook, None, None, None),
            (
                Facebook,
                Some(t(LAST)),
                Some(t(STANDARD_END)),
                Some(t(HUMAN_AGENT_END)),
            ),
        ];
        for (kind, last, standard_ends_at, human_agent_ends_at) in cases {
            let window = window(kind, last, t(LAST));
            assert_eq!(
                window.standard_ends_at, standard_ends_at,
                "{kind:?} {last:?}"
            );
            assert_eq!(
                window.human_agent_ends_at, human_agent_ends_at,
                "{kind:?} {last:?}"
            );
        }
    }

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let last = DateTime::<Utc>::MAX_UTC - TimeDelta::hours(1);
        let window = window(Facebook, Some(last), last);
        assert_eq!(window.phase, WindowPhase::Standard);
        assert_eq!(window.human_agent_ends_at, Some(DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn serializes_with_the_api_names() {
        let window = window(Facebook, Some(t(LAST)), t(STANDARD_END));
        assert_eq!(
            serde_json::to_value(window).expect("serializable"),
            serde_json::json!({
                "phase": "HUMAN_AGENT",
                "standard_ends_at": STANDARD_END,
                "human_agent_ends_at": HUMAN_AGENT_END,
            })
        );
        for phase in [
            WindowPhase::Standard,
            WindowPhase::HumanAgent,
            WindowPhase::Closed,
            WindowPhase::Unlimited,
        ] {
            assert_eq!(
                serde_json::to_value(phase).expect("serializable"),
                serde_json::json!(phase.as_str())
            );
        }
    }
}
