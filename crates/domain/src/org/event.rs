use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Email, Role};
use crate::ids::{MemberId, OrgId};

/// The SHA-256 of a member's API token, in hex. Tokens are random 256-bit
/// values shown once; only this hash is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(pub String);

/// A member about to join an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    pub member_id: MemberId,
    pub email: Email,
    pub role: Role,
    pub token_sha256: TokenHash,
}

/// What happened to an organization. Versioned by name: a change of shape
/// gets a new variant or an upcaster, never an edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrgEvent {
    OrganizationCreated {
        org_id: OrgId,
        name: String,
        created_at: DateTime<Utc>,
    },
    MemberAdded {
        org_id: OrgId,
        #[serde(flatten)]
        member: NewMember,
        added_by: Option<MemberId>,
        added_at: DateTime<Utc>,
    },
    MemberAvailabilityChanged {
        org_id: OrgId,
        member_id: MemberId,
        available: bool,
        changed_at: DateTime<Utc>,
    },
    /// The member left the organization; their token stops working.
    MemberRemoved {
        org_id: OrgId,
        member_id: MemberId,
        removed_by: MemberId,
        removed_at: DateTime<Utc>,
    },
    /// The member's token was replaced; the old one stops working.
    MemberTokenRotated {
        org_id: OrgId,
        member_id: MemberId,
        token_sha256: TokenHash,
        rotated_at: DateTime<Utc>,
    },
}

impl OrgEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OrgEvent::OrganizationCreated { .. } => "OrganizationCreated",
            OrgEvent::MemberAdded { .. } => "MemberAdded",
            OrgEvent::MemberAvailabilityChanged { .. } => "MemberAvailabilityChanged",
            OrgEvent::MemberRemoved { .. } => "MemberRemoved",
            OrgEvent::MemberTokenRotated { .. } => "MemberTokenRotated",
        }
    }
}
