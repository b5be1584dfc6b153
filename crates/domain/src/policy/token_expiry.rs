//! When a channel's access token is expected to stop working.

use chrono::{DateTime, TimeDelta, Utc};

use super::deadline;
use crate::ChannelKind;

/// How long a Facebook page token keeps working without the channel sending
/// a message. A product approximation of Meta's 90-day data-access and
/// unused-permission expiries; a Send API OAuth error (code 190) is the real
/// signal and expires the channel at once, whatever this says.
pub const FACEBOOK_TOKEN_IDLE_LIFETIME: TimeDelta = TimeDelta::days(90);

/// When the channel's token is expected to lapse, so that the inbox can warn
/// before it does: 90 days after the later of the last (re)authorization and
/// the last successful send, since both prove the token was in use.
///
/// `None` for LINE, which has no idle expiry: a LINE token's lifetime, if
/// any, is fixed when it is issued.
pub fn token_expires_at(
    kind: ChannelKind,
    last_authorized_at: DateTime<Utc>,
    last_successful_send_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match kind {
        ChannelKind::Line => None,
        ChannelKind::Facebook => {
            let last_use = last_successful_send_at.map_or(last_authorized_at, |sent_at| {
                sent_at.max(last_authorized_at)
            });
            Some(deadline(last_use, FACEBOOK_TOKEN_IDLE_LIFETIME))
        }
    }
}

/// Whether a token expiring at `expires_at` has lapsed at `at`. The expiry
/// instant itself is already too late.
pub fn is_token_expired(expires_at: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|expires_at| at >= expires_at)
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

    #[test]
    fn expires_90_days_after_the_later_of_authorization_and_send() {
        let authorized = t("2026-01-01T00:00:00Z");
        // given (kind, last authorized, last sent) / then (expires at)
        #[rustfmt::skip]
        let cases = [
            (Line, authorized, Some(t("2026-02-01T00:00:00Z")), None),
            (Facebook, authorized, None, Some(t("2026-04-01T00:00:00Z"))),
            (Facebook, authorized, Some(t("2026-02-01T00:00:00Z")), Some(t("2026-05-02T00:00:00Z"))),
            (Facebook, authorized, Some(t("2025-12-01T00:00:00Z")), Some(t("2026-04-01T00:00:00Z"))),
            (Facebook, authorized, Some(authorized), Some(t("2026-04-01T00:00:00Z"))),
        ];
        for (kind, authorized, sent, then) in cases {
            assert_eq!(
                token_expires_at(kind, authorized, sent),
                then,
                "{kind:?} {sent:?}"
            );
        }
    }

    #[test]
    fn expired_from_the_expiry_instant_on() {
        let expires_at = t("2026-04-01T00:00:00Z");
        // given (expires at) / when (at) / then (expired)
        let cases = [
            (None, expires_at, false),
            (
                Some(expires_at),
                expires_at - TimeDelta::nanoseconds(1),
                false,
            ),
            (Some(expires_at), expires_at, true),
            (Some(expires_at), t("2027-01-01T00:00:00Z"), true),
        ];
        for (expires_at, at, then) in cases {
            assert_eq!(
                is_token_expired(expires_at, at),
                then,
                "{expires_at:?} {at}"
            );
        }
    }
}
