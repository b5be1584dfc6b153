use serde::{Deserialize, Serialize};

/// What a member may do in their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    PrimaryAdmin,
    Admin,
    Agent,
}

impl Role {
    /// Adding members, and connecting, reauthorizing or disconnecting
    /// channels, is for the organization's owners and primary admins only.
    pub fn can_administer(self) -> bool {
        matches!(self, Role::Owner | Role::PrimaryAdmin)
    }

    /// Whether a member in this role may give someone `role`: nobody grants
    /// more than they hold, and only an owner makes another owner.
    pub fn may_grant(self, role: Role) -> bool {
        self.can_administer() && (role != Role::Owner || self == Role::Owner)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::PrimaryAdmin => "PRIMARY_ADMIN",
            Role::Admin => "ADMIN",
            Role::Agent => "AGENT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Role::Owner, Role::PrimaryAdmin, Role::Admin, Role::Agent]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_grant_what() {
        use Role::*;
        let table = [
            (Owner, Owner, true),
            (Owner, PrimaryAdmin, true),
            (Owner, Agent, true),
            (PrimaryAdmin, Owner, false),
            (PrimaryAdmin, PrimaryAdmin, true),
            (PrimaryAdmin, Agent, true),
            (Admin, Agent, false),
            (Agent, Agent, false),
        ];
        for (granter, role, allowed) in table {
            assert_eq!(
                granter.may_grant(role),
                allowed,
                "{granter:?} grants {role:?}"
            );
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Owner, Role::PrimaryAdmin, Role::Admin, Role::Agent] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
