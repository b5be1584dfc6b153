use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, MemberId, OrgId};
use crate::ChannelKind;

/// A stored secret as events know it: its row and a keyed fingerprint,
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub id: uuid::Uuid,
    pub fingerprint: String,
}

/// How new conversations on a channel get an assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentMode {
    /// Only by hand (or by QR code on LINE).
    #[default]
    Off,
    /// Round robin among available agents.
    RoundRobin,
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentMode::Off => "OFF",
            AssignmentMode::RoundRobin => "ROUND_ROBIN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [AssignmentMode::Off, AssignmentMode::RoundRobin]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// Why a channel's connection expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryReason {
    /// 90 days passed since the token was last authorized or used to send.
    IdleDeadline { deadline: DateTime<Utc> },
    /// The platform rejected the token (Facebook OAuth error 190).
    TokenRejected { code: i64, subcode: Option<i64> },
}

/// What happened to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ChannelEvent {
    /// Connected (or reconnected after a disconnect) with a checked token.
    ChannelConnected {
        channel_id: ChannelId,
        org_id: OrgId,
        kind: ChannelKind,
        external_id: String,
        name: String,
        access_token: SecretRef,
        channel_secret: Option<SecretRef>,
        by: MemberId,
        at: DateTime<Utc>,
    },
    /// A new token replaced the old one; the 90 days start again.
    ChannelReauthorized {
        channel_id: ChannelId,
        org_id: OrgId,
        name: String,
        access_token: SecretRef,
        by: MemberId,
        at: DateTime<Utc>,
    },
    /// The token was used successfully to send (restarts the 90 days).
    ChannelTokenUsed {
        channel_id: ChannelId,
        org_id: OrgId,
        at: DateTime<Utc>,
    },
    ChannelConnectionExpired {
        channel_id: ChannelId,
        org_id: OrgId,
        reason: ExpiryReason,
        at: DateTime<Utc>,
    },
    ChannelDisconnected {
        channel_id: ChannelId,
        org_id: OrgId,
        by: MemberId,
        at: DateTime<Utc>,
    },
    AssignmentModeChanged {
        channel_id: ChannelId,
        org_id: OrgId,
        mode: AssignmentMode,
        /// Open conversations an agent may hold before automatic assignment
        /// passes them over (absent: no cap).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_open_per_agent: Option<u32>,
        by: MemberId,
        at: DateTime<Utc>,
    },
}

impl ChannelEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ChannelEvent::ChannelConnected { .. } => "ChannelConnected",
            ChannelEvent::ChannelReauthorized { .. } => "ChannelReauthorized",
            ChannelEvent::ChannelTokenUsed { .. } => "ChannelTokenUsed",
            ChannelEvent::ChannelConnectionExpired { .. } => "ChannelConnectionExpired",
            ChannelEvent::ChannelDisconnected { .. } => "ChannelDisconnected",
            ChannelEvent::AssignmentModeChanged { .. } => "AssignmentModeChanged",
        }
    }

    pub fn org_id(&self) -> OrgId {
        match self {
            ChannelEvent::ChannelConnected { org_id, .. }
            | ChannelEvent::ChannelReauthorized { org_id, .. }
            | ChannelEvent::ChannelTokenUsed { org_id, .. }
            | ChannelEvent::ChannelConnectionExpired { org_id, .. }
            | ChannelEvent::ChannelDisconnected { org_id, .. }
            | ChannelEvent::AssignmentModeChanged { org_id, .. } => *org_id,
        }
    }

    pub fn channel_id(&self) -> ChannelId {
        match self {
            ChannelEvent::ChannelConnected { channel_id, .. }
            | ChannelEvent::ChannelReauthorized { channel_id, .. }
            | ChannelEvent::ChannelTokenUsed { channel_id, .. }
            | ChannelEvent::ChannelConnectionExpired { channel_id, .. }
            | ChannelEvent::ChannelDisconnected { channel_id, .. }
            | ChannelEvent::AssignmentModeChanged { channel_id, .. } => *channel_id,
        }
    }
}
