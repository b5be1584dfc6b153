//! The messaging platforms a channel can belong to.

use serde::{Deserialize, Serialize};

/// Which platform a channel (and everything received through it) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChannelKind {
    /// A LINE Official Account, identified by its bot user id.
    Line,
    /// A Facebook Page, identified by its page id; customers write through Messenger.
    Facebook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Line => "LINE",
            ChannelKind::Facebook => "FACEBOOK",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ChannelKind::Line, ChannelKind::Facebook]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}
