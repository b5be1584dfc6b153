use super::{Email, OrgEvent, Role};
use crate::ids::{MemberId, OrgId};

/// A member as the organization's decisions need to know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub email: Email,
    pub role: Role,
    pub available: bool,
}

/// An organization folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Organization {
    pub id: Option<OrgId>,
    pub name: String,
    pub members: Vec<Member>,
}

impl Organization {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn evolve(&mut self, event: &OrgEvent) {
        match event {
            OrgEvent::OrganizationCreated { org_id, name, .. } => {
                self.id = Some(*org_id);
                self.name.clone_from(name);
            }
            OrgEvent::MemberAdded { member, .. } => self.members.push(Member {
                id: member.member_id,
                email: member.email.clone(),
                role: member.role,
                available: true,
            }),
            OrgEvent::MemberAvailabilityChanged {
                member_id,
                available,
                ..
            } => {
                if let Some(member) = self.members.iter_mut().find(|m| m.id == *member_id) {
                    member.available = *available;
                }
            }
            OrgEvent::MemberRemoved { member_id, .. } => {
                self.members.retain(|m| m.id != *member_id)
            }
            // Only the token's hash changed, which decisions never read.
            OrgEvent::MemberTokenRotated { .. } => {}
        }
    }
}
