use chrono::{DateTime, Utc};

use super::event::{AssignmentMode, SecretRef};
use super::page::{PageEvent, PageReservation};
use super::{Channel, ChannelEvent, ChannelStatus, ExpiryReason};
use crate::ids::{ChannelId, MemberId, OrgId};
use crate::org::Role;
use crate::ChannelKind;

/// The member asking, as the decision needs to know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    pub member_id: MemberId,
    pub org_id: OrgId,
    pub role: Role,
}

/// What someone asks of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelCommand {
    Connect {
        by: Requester,
        channel_id: ChannelId,
        kind: ChannelKind,
        external_id: String,
        name: String,
        access_token: SecretRef,
        channel_secret: Option<SecretRef>,
    },
    Reauthorize {
        by: Requester,
        name: String,
        access_token: SecretRef,
    },
    Disconnect {
        by: Requester,
    },
    SetAssignmentMode {
        by: Requester,
        mode: AssignmentMode,
        max_open_per_agent: Option<u32>,
    },
    /// A send succeeded with the current token.
    RecordTokenUse {
        at: DateTime<Utc>,
    },
    /// The idle deadline passed, or the platform rejected the token.
    Expire {
        reason: ExpiryReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("only an OWNER or PRIMARY_ADMIN may connect, reauthorize or disconnect channels (you are {})", .0.as_str())]
    Forbidden(Role),
    #[error("no such channel")]
    NotFound,
    #[error("this Facebook page is connected to another organization; moving it is an operator-only transfer")]
    PageTaken,
    #[error("the channel is disconnected; connect it again instead")]
    Disconnected,
    #[error("agents cannot change how conversations are assigned")]
    AgentsCannotConfigure,
}

fn require_admin(by: &Requester) -> Result<(), ChannelError> {
    if by.role.can_administer() {
        Ok(())
    } else {
        Err(ChannelError::Forbidden(by.role))
    }
}

/// The channel of `by`'s organization, or NotFound (another organization's
/// channel does not exist for them).
fn own<'a>(channel: &'a Channel, by: &Requester) -> Result<&'a Channel, ChannelError> {
    match channel.org_id {
        Some(org) if org == by.org_id => Ok(channel),
        _ => Err(ChannelError::NotFound),
    }
}

/// Decides what a command does to `channel` at `now`.
///
/// One match arm per command, each a few checks and the events: kept as
/// one table of the channel's rules rather than split, hence the length.
pub fn decide(
    channel: &Channel,
    command: ChannelCommand,
    now: DateTime<Utc>,
) -> Result<Vec<ChannelEvent>, ChannelError> {
    match command {
        ChannelCommand::Connect {
            by,
            channel_id,
            kind,
            external_id,
            name,
            access_token,
            channel_secret,
        } => {
            require_admin(&by)?;
            if channel.exists() {
                own(channel, &by)?;
            }
            Ok(vec![ChannelEvent::ChannelConnected {
                channel_id,
                org_id: by.org_id,
                kind,
                external_id,
                name,
                access_token,
                channel_secret,
                by: by.member_id,
                at: now,
            }])
        }
        ChannelCommand::Reauthorize {
            by,
            name,
            access_token,
        } => {
            require_admin(&by)?;
            let channel = own(channel, &by)?;
            if channel.recorded_status == Some(ChannelStatus::Disconnected) {
                return Err(ChannelError::Disconnected);
            }
            Ok(vec![ChannelEvent::ChannelReauthorized {
                channel_id: channel.id.ok_or(ChannelError::NotFound)?,
                org_id: by.org_id,
                name,
                access_token,
                by: by.member_id,
                at: now,
            }])
        }
        ChannelCommand::Disconnect { by } => {
            require_admin(&by)?;
            let channel = own(channel, &by)?;
            if channel.recorded_status == Some(ChannelStatus::Disconnected) {
                return Ok(vec![]);
            }
            Ok(vec![ChannelEvent::ChannelDisconnected {
                channel_id: channel.id.ok_or(ChannelError::NotFound)?,
                org_id: by.org_id,
                by: by.member_id,
                at: now,
            }])
        }
        ChannelCommand::SetAssignmentMode {
            by,
            mode,
            max_open_per_agent,
        } => {
            if by.role == Role::Agent {
                return Err(ChannelError::AgentsCannotConfigure);
            }
            let channel = own(channel, &by)?;
            if channel.assignment_mode == mode && channel.max_open_per_agent == max_open_per_agent {
                return Ok(vec![]);
            }
            Ok(vec![ChannelEvent::AssignmentModeChanged {
                channel_id: channel.id.ok_or(ChannelError::NotFound)?,
                org_id: by.org_id,
                mode,
                max_open_per_agent,
                by: by.member_id,
                at: now,
            }])
        }
        ChannelCommand::RecordTokenUse { at } => {
            let (Some(channel_id), Some(org_id)) = (channel.id, channel.org_id) else {
                return Err(ChannelError::NotFound);
            };
            let stale = channel.last_used_at.is_some_and(|last| last >= at);
            if channel.recorded_status != Some(ChannelStatus::Connected) || stale {
                return Ok(vec![]);
            }
            Ok(vec![ChannelEvent::ChannelTokenUsed {
                channel_id,
                org_id,
                at,
            }])
        }
        ChannelCommand::Expire { reason } => {
            let (Some(channel_id), Some(org_id)) = (channel.id, channel.org_id) else {
                return Err(ChannelError::NotFound);
            };
            if channel.recorded_status != Some(ChannelStatus::Connected) {
                return Ok(vec![]);
            }
            // A deadline that moved (the token was used or renewed since the
            // timer looked) or has not come yet expires nothing.
            if let ExpiryReason::IdleDeadline { deadline } = &reason {
                if channel.token_expires_at() != Some(*deadline) || *deadline > now {
                    return Ok(vec![]);
                }
            }
            Ok(vec![ChannelEvent::ChannelConnectionExpired {
                channel_id,
                org_id,
                reason,
                at: now,
            }])
        }
    }
}

/// Claims `page_id` for `org` (reusing the channel id it already holds
/// there), or refuses it if another organization holds it.
pub fn claim_page(
    page: &PageReservation,
    page_id: &str,
    org: OrgId,
    new_channel: ChannelId,
    now: DateTime<Utc>,
) -> Result<(Vec<PageEvent>, ChannelId), ChannelError> {
    match page.holder {
        None => Ok((
            vec![PageEvent::PageClaimed {
                page_id: page_id.to_owned(),
                org_id: org,
                channel_id: new_channel,
                at: now,
            }],
            new_channel,
        )),
        Some((holder, channel_id)) if holder == org => Ok((vec![], channel_id)),
        Some(_) => Err(ChannelError::PageTaken),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805, 0).expect("instant") + Duration::days(days)
    }

    fn secret(n: u8) -> SecretRef {
        SecretRef {
            id: uuid::Uuid::from_u128(n.into()),
            fingerprint: format!("{n:016x}"),
        }
    }

    fn requester(org: OrgId, role: Role) -> Requester {
        Requester {
            member_id: MemberId::generate(),
            org_id: org,
            role,
        }
    }

    fn given(events: &[ChannelEvent]) -> Channel {
        let mut channel = Channel::default();
        events.iter().for_each(|e| channel.evolve(e));
        channel
    }

    fn connected(org: OrgId, kind: ChannelKind) -> Vec<ChannelEvent> {
        decide(
            &Channel::default(),
            ChannelCommand::Connect {
                by: requester(org, Role::Owner),
                channel_id: ChannelId::generate(),
                kind,
                external_id: "104729381650237".into(),
                name: "Siam Shop".into(),
                access_token: secret(1),
                channel_secret: None,
            },
            t(0),
        )
        .expect("connected")
    }

    #[test]
    fn only_owners_and_primary_admins_manage_channels() {
        let org = OrgId::generate();
        let history = connected(org, ChannelKind::Facebook);
        let channel = given(&history);
        for role in [Role::Admin, Role::Agent] {
            let by = requester(org, role);
            assert_eq!(
                decide(&channel, ChannelCommand::Disconnect { by }, t(1)),
                Err(ChannelError::Forbidden(role))
            );
            let reauth = ChannelCommand::Reauthorize {
                by,
                name: "x".into(),
                access_token: secret(2),
            };
            assert_eq!(
                decide(&channel, reauth, t(1)),
                Err(ChannelError::Forbidden(role))
            );
        }
        for role in [Role::Owner, Role::PrimaryAdmin] {
            assert!(decide(
                &channel,
                ChannelCommand::Disconnect {
                    by: requester(org, role)
                },
                t(1)
            )
            .is_ok());
        }
        let stranger = requester(OrgId::generate(), Role::Owner);
        assert_eq!(
            decide(&channel, ChannelCommand::Disconnect { by: stranger }, t(1)),
            Err(ChannelError::NotFound)
        );
    }

    #[test]
    fn a_facebook_token_expires_90_days_after_its_last_use_or_authorization() {
        let org = OrgId::generate();
        let mut history = connected(org, ChannelKind::Facebook);
        let channel = given(&history);
        assert_eq!(channel.token_expires_at(), Some(t(90)));
        assert_eq!(channel.status_at(t(89)), Some(ChannelStatus::Connected));
        assert_eq!(channel.status_at(t(90)), Some(ChannelStatus::Expired));

        history.extend(
            decide(
                &channel,
                ChannelCommand::RecordTokenUse { at: t(30) },
                t(30),
            )
            .expect("used"),
        );
        let channel = given(&history);
        assert_eq!(channel.token_expires_at(), Some(t(120)));
        // The timer saw the old deadline: expiring by it now does nothing.
        let stale = ChannelCommand::Expire {
            reason: ExpiryReason::IdleDeadline { deadline: t(90) },
        };
        assert_eq!(decide(&channel, stale, t(91)), Ok(vec![]));
        let early = ChannelCommand::Expire {
            reason: ExpiryReason::IdleDeadline { deadline: t(120) },
        };
        assert_eq!(decide(&channel, early.clone(), t(119)), Ok(vec![]));
        let expired = decide(&channel, early.clone(), t(120)).expect("expires");
        assert_eq!(expired.len(), 1);
        history.extend(expired);
        let channel = given(&history);
        assert_eq!(channel.recorded_status, Some(ChannelStatus::Expired));
        assert_eq!(decide(&channel, early, t(121)), Ok(vec![]), "exactly once");

        let by = requester(org, Role::Owner);
        history.extend(
            decide(
                &channel,
                ChannelCommand::Reauthorize {
                    by,
                    name: "Siam Shop".into(),
                    access_token: secret(3),
                },
                t(200),
            )
            .expect("reauthorized"),
        );
        let channel = given(&history);
        assert_eq!(channel.status_at(t(200)), Some(ChannelStatus::Connected));
        assert_eq!(channel.token_expires_at(), Some(t(290)));
    }

    #[test]
    fn a_rejected_token_expires_at_once_and_line_never_idles_out() {
        let channel = given(&connected(OrgId::generate(), ChannelKind::Facebook));
        let rejected = ChannelCommand::Expire {
            reason: ExpiryReason::TokenRejected {
                code: 190,
                subcode: Some(463),
            },
        };
        assert_eq!(decide(&channel, rejected, t(1)).map(|e| e.len()), Ok(1));

        let line = given(&connected(OrgId::generate(), ChannelKind::Line));
        assert_eq!(line.token_expires_at(), None);
        assert_eq!(line.status_at(t(10_000)), Some(ChannelStatus::Connected));
    }

    #[test]
    fn disconnecting_is_idempotent_and_blocks_reauthorization() {
        let org = OrgId::generate();
        let mut history = connected(org, ChannelKind::Facebook);
        let by = requester(org, Role::Owner);
        history.extend(
            decide(&given(&history), ChannelCommand::Disconnect { by }, t(1))
                .expect("disconnected"),
        );
        let channel = given(&history);
        assert_eq!(channel.status_at(t(1)), Some(ChannelStatus::Disconnected));
        assert_eq!(
            decide(&channel, ChannelCommand::Disconnect { by }, t(2)),
            Ok(vec![])
        );
        let reauth = ChannelCommand::Reauthorize {
            by,
            name: "x".into(),
            access_token: secret(2),
        };
        assert_eq!(
            decide(&channel, reauth, t(2)),
            Err(ChannelError::Disconnected)
        );
        assert_eq!(
            decide(&channel, ChannelCommand::RecordTokenUse { at: t(3) }, t(3)),
            Ok(vec![])
        );
    }

    #[test]
    fn one_page_one_organization_for_ever() {
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let mut page = PageReservation::default();
        let (events, channel) =
            claim_page(&page, "104729381650237", a, ChannelId::generate(), t(0)).expect("claimed");
        events.iter().for_each(|e| page.evolve(e));
        let (again, same) = claim_page(&page, "104729381650237", a, ChannelId::generate(), t(1))
            .expect("reconnect");
        assert!(again.is_empty());
        assert_eq!(
            same, channel,
            "a reconnect reuses the channel and its history"
        );
        assert_eq!(
            claim_page(&page, "104729381650237", b, ChannelId::generate(), t(1)).map(|_| ()),
            Err(ChannelError::PageTaken)
        );
    }
}
