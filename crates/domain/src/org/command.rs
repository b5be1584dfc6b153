use chrono::{DateTime, Utc};

use super::{NewMember, OrgEvent, Organization, Role};
use crate::ids::{MemberId, OrgId};

/// What someone asks of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgCommand {
    /// Creates the organization with its first owner (the CLI's `bootstrap`).
    Create {
        org_id: OrgId,
        name: String,
        owner: NewMember,
    },
    AddMember {
        by: MemberId,
        member: NewMember,
    },
    SetAvailability {
        member_id: MemberId,
        available: bool,
    },
    /// Removes a member (OWNER or PRIMARY_ADMIN; never the owner).
    RemoveMember {
        by: MemberId,
        member_id: MemberId,
    },
    /// Replaces a member's token with the one hashed as `token_sha256`.
    RotateToken {
        member_id: MemberId,
        token_sha256: super::TokenHash,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("no such organization")]
    NotFound,
    #[error("an organization needs a name of 1 to 200 characters")]
    InvalidName,
    #[error("only an OWNER or PRIMARY_ADMIN may add members, and only an OWNER may add another OWNER (you are {0:?})")]
    Forbidden(Role),
    #[error("{0} is already a member of this organization")]
    EmailTaken(String),
    #[error("no such member")]
    MemberNotFound,
    #[error("the new member's role must be given with an owner only at creation")]
    OwnerRequired,
    #[error("only an OWNER or PRIMARY_ADMIN may remove members (you are {0:?})")]
    RemoveForbidden(Role),
    #[error("the organization's owner cannot be removed")]
    OwnerCannotBeRemoved,
}

/// Decides what a command does to `org`, as of `now`.
pub fn decide(
    org: &Organization,
    command: OrgCommand,
    now: DateTime<Utc>,
) -> Result<Vec<OrgEvent>, OrgError> {
    match command {
        OrgCommand::Create {
            org_id,
            name,
            owner,
        } => {
            if org.exists() {
                return Err(OrgError::AlreadyExists);
            }
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(OrgError::InvalidName);
            }
            if owner.role != Role::Owner {
                return Err(OrgError::OwnerRequired);
            }
            Ok(vec![
                OrgEvent::OrganizationCreated {
                    org_id,
                    name,
                    created_at: now,
                },
                OrgEvent::MemberAdded {
                    org_id,
                    member: owner,
                    added_by: None,
                    added_at: now,
                },
            ])
        }
        OrgCommand::AddMember { by, member } => {
            let org_id = org.id.ok_or(OrgError::NotFound)?;
            let granter = org.member(by).ok_or(OrgError::MemberNotFound)?;
            if !granter.role.may_grant(member.role) {
                return Err(OrgError::Forbidden(granter.role));
            }
            if org.members.iter().any(|m| m.email == member.email) {
                return Err(OrgError::EmailTaken(member.email.to_string()));
            }
            Ok(vec![OrgEvent::MemberAdded {
                org_id,
                member,
                added_by: Some(by),
                added_at: now,
            }])
        }
        OrgCommand::SetAvailability {
            member_id,
            available,
        } => {
            let org_id = org.id.ok_or(OrgError::NotFound)?;
            let member = org.member(member_id).ok_or(OrgError::MemberNotFound)?;
            if member.available == available {
                return Ok(vec![]);
            }
            Ok(vec![OrgEvent::MemberAvailabilityChanged {
                org_id,
                member_id,
                available,
                changed_at: now,
            }])
        }
        OrgCommand::RemoveMember { by, member_id } => {
            let org_id = org.id.ok_or(OrgError::NotFound)?;
            let remover = org.member(by).ok_or(OrgError::MemberNotFound)?;
            if !remover.role.can_administer() {
                return Err(OrgError::RemoveForbidden(remover.role));
            }
            let member = org.member(member_id).ok_or(OrgError::MemberNotFound)?;
            if member.role == Role::Owner {
                return Err(OrgError::OwnerCannotBeRemoved);
            }
            Ok(vec![OrgEvent::MemberRemoved {
                org_id,
                member_id,
                removed_by: by,
                removed_at: now,
            }])
        }
        OrgCommand::RotateToken {
            member_id,
            token_sha256,
        } => {
            let org_id = org.id.ok_or(OrgError::NotFound)?;
            org.member(member_id).ok_or(OrgError::MemberNotFound)?;
            Ok(vec![OrgEvent::MemberTokenRotated {
                org_id,
                member_id,
                token_sha256,
                rotated_at: now,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::{Email, TokenHash};

    #[test]
    fn owners_and_primary_admins_remove_anyone_but_the_owner() {
        let (mut events, owner) = created();
        let admin = new_member("admin@example.com", Role::PrimaryAdmin);
        let agent = new_member("agent@example.com", Role::Agent);
        let (admin_id, agent_id) = (admin.member_id, agent.member_id);
        for member in [admin, agent] {
            events.extend(
                decide(
                    &given(&events),
                    OrgCommand::AddMember { by: owner, member },
                    now(),
                )
                .expect("add"),
            );
        }
        let org = given(&events);
        let remove =
            |by, member_id| decide(&org, OrgCommand::RemoveMember { by, member_id }, now());
        assert_eq!(
            remove(agent_id, admin_id),
            Err(OrgError::RemoveForbidden(Role::Agent))
        );
        assert_eq!(remove(admin_id, owner), Err(OrgError::OwnerCannotBeRemoved));
        assert_eq!(remove(owner, owner), Err(OrgError::OwnerCannotBeRemoved));
        let removed = remove(admin_id, agent_id).expect("removed");
        let mut after = org.clone();
        removed.iter().for_each(|e| after.evolve(e));
        assert!(after.member(agent_id).is_none());
        assert_eq!(
            decide(
                &after,
                OrgCommand::RemoveMember {
                    by: owner,
                    member_id: agent_id
                },
                now()
            ),
            Err(OrgError::MemberNotFound),
            "removed once"
        );
        assert_eq!(
            decide(
                &after,
                OrgCommand::RotateToken {
                    member_id: agent_id,
                    token_sha256: TokenHash("11".repeat(32))
                },
                now()
            ),
            Err(OrgError::MemberNotFound),
            "a removed member has no token to rotate"
        );
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_399_805, 0).expect("valid instant")
    }

    fn new_member(email: &str, role: Role) -> NewMember {
        NewMember {
            member_id: MemberId::generate(),
            email: Email::parse(email).expect("valid email"),
            role,
            token_sha256: TokenHash("00".repeat(32)),
        }
    }

    fn given(events: &[OrgEvent]) -> Organization {
        let mut org = Organization::default();
        events.iter().for_each(|e| org.evolve(e));
        org
    }

    fn created() -> (Vec<OrgEvent>, MemberId) {
        let owner = new_member("owner@example.com", Role::Owner);
        let owner_id = owner.member_id;
        let events = decide(
            &Organization::default(),
            OrgCommand::Create {
                org_id: OrgId::generate(),
                name: " Acme ".into(),
                owner,
            },
            now(),
        )
        .expect("created");
        (events, owner_id)
    }

    #[test]
    fn creating_an_organization_adds_its_owner() {
        let (events, owner) = created();
        let org = given(&events);
        assert_eq!(org.name, "Acme");
        assert_eq!(org.member(owner).map(|m| m.role), Some(Role::Owner));
        let again = OrgCommand::Create {
            org_id: org.id.expect("id"),
            name: "Acme".into(),
            owner: new_member("x@example.com", Role::Owner),
        };
        assert_eq!(decide(&org, again, now()), Err(OrgError::AlreadyExists));
    }

    #[test]
    fn adding_members_follows_roles_and_unique_emails() {
        let (mut history, owner) = created();
        let admin = new_member("admin@example.com", Role::PrimaryAdmin);
        let admin_id = admin.member_id;
        history.extend(
            decide(
                &given(&history),
                OrgCommand::AddMember {
                    by: owner,
                    member: admin,
                },
                now(),
            )
            .expect("owner adds"),
        );
        let agent = new_member("agent@example.com", Role::Agent);
        let agent_id = agent.member_id;
        history.extend(
            decide(
                &given(&history),
                OrgCommand::AddMember {
                    by: admin_id,
                    member: agent,
                },
                now(),
            )
            .expect("admin adds"),
        );
        let org = given(&history);

        let cases = [
            (
                agent_id,
                new_member("new@example.com", Role::Agent),
                Err(OrgError::Forbidden(Role::Agent)),
            ),
            (
                admin_id,
                new_member("new@example.com", Role::Owner),
                Err(OrgError::Forbidden(Role::PrimaryAdmin)),
            ),
            (
                owner,
                new_member("AGENT@example.com", Role::Agent),
                Err(OrgError::EmailTaken("agent@example.com".into())),
            ),
            (
                MemberId::generate(),
                new_member("new@example.com", Role::Agent),
                Err(OrgError::MemberNotFound),
            ),
        ];
        for (by, member, expected) in cases {
            assert_eq!(
                decide(&org, OrgCommand::AddMember { by, member }, now()).map(|_| ()),
                expected
            );
        }
    }

    #[test]
    fn availability_changes_only_when_it_differs() {
        let (history, owner) = created();
        let org = given(&history);
        assert_eq!(
            decide(
                &org,
                OrgCommand::SetAvailability {
                    member_id: owner,
                    available: true
                },
                now()
            ),
            Ok(vec![])
        );
        let events = decide(
            &org,
            OrgCommand::SetAvailability {
                member_id: owner,
                available: false,
            },
            now(),
        )
        .expect("changed");
        assert_eq!(events.len(), 1);
        assert!(
            !given(&[history, events].concat())
                .member(owner)
                .expect("member")
                .available
        );
    }
}
