use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{AssignmentMode, SecretRef};
use super::ChannelEvent;
use crate::ids::{ChannelId, OrgId};
use crate::policy::{is_token_expired, token_expires_at};
use crate::ChannelKind;

/// A channel's connection as members see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChannelStatus {
    Connected,
    /// "Connection expired": still receives; replies wait for reauthorization.
    Expired,
    /// Neither receives nor sends; its history stays readable.
    Disconnected,
}

impl ChannelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Connected => "CONNECTED",
            ChannelStatus::Expired => "EXPIRED",
            ChannelStatus::Disconnected => "DISCONNECTED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ChannelStatus::Connected,
            ChannelStatus::Expired,
            ChannelStatus::Disconnected,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A channel folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    pub id: Option<ChannelId>,
    pub org_id: Option<OrgId>,
    pub kind: Option<ChannelKind>,
    pub external_id: String,
    pub name: String,
    /// The status events recorded (the idle deadline may have passed since:
    /// see [`Channel::status_at`]).
    pub recorded_status: Option<ChannelStatus>,
    pub authorized_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub access_token: Option<SecretRef>,
    pub channel_secret: Option<SecretRef>,
    pub assignment_mode: AssignmentMode,
    /// Open conversations per agent before automatic assignment passes over.
    pub max_open_per_agent: Option<u32>,
}

impl Channel {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// When the token stops working if nothing happens (Facebook only).
    pub fn token_expires_at(&self) -> Option<DateTime<Utc>> {
        match (self.kind, self.authorized_at) {
            (Some(kind), Some(authorized)) => token_expires_at(kind, authorized, self.last_used_at),
            _ => None,
        }
    }

    /// The status at `at`: a passed deadline counts even before the timer
    /// has recorded it.
    pub fn status_at(&self, at: DateTime<Utc>) -> Option<ChannelStatus> {
        match self.recorded_status? {
            ChannelStatus::Connected if is_token_expired(self.token_expires_at(), at) => {
                Some(ChannelStatus::Expired)
            }
            status => Some(status),
        }
    }

    pub fn evolve(&mut self, event: &ChannelEvent) {
        match event {
            ChannelEvent::ChannelConnected {
                channel_id,
                org_id,
                kind,
                external_id,
                name,
                access_token,
                channel_secret,
                at,
                ..
            } => {
                self.id = Some(*channel_id);
                self.org_id = Some(*org_id);
                self.kind = Some(*kind);
                self.external_id.clone_from(external_id);
                self.name.clone_from(name);
                self.recorded_status = Some(ChannelStatus::Connected);
                self.authorized_at = Some(*at);
                self.last_used_at = None;
                self.access_token = Some(access_token.clone());
                self.channel_secret.clone_from(channel_secret);
            }
            ChannelEvent::ChannelReauthorized {
                name,
                access_token,
                at,
                ..
            } => {
                self.name.clone_from(name);
                self.recorded_status = Some(ChannelStatus::Connected);
                self.authorized_at = Some(*at);
                self.last_used_at = None;
                self.access_token = Some(access_token.clone());
            }
            ChannelEvent::ChannelTokenUsed { at, .. } => {
                self.last_used_at = self.last_used_at.max(Some(*at));
            }
            ChannelEvent::ChannelConnectionExpired { .. } => {
                self.recorded_status = Some(ChannelStatus::Expired)
            }
            ChannelEvent::ChannelDisconnected { .. } => {
                self.recorded_status = Some(ChannelStatus::Disconnected)
            }
            ChannelEvent::AssignmentModeChanged {
                mode,
                max_open_per_agent,
                ..
            } => {
                self.assignment_mode = *mode;
                self.max_open_per_agent = *max_open_per_agent;
            }
        }
    }
}
