//! QR assignment codes (LINE only): a printed QR code tied to an agent.
//!
//! The QR holds a LINE link that opens the official account's chat with a
//! short code pre-filled (`https://line.me/R/oaMessage/@<basic id>/?<code>`);
//! the customer sends it as an ordinary text message, and the conversation
//! goes to the code's agent. LINE passes no parameter through an add-friend
//! link, so the code travels in the message itself. One stream per code
//! (`qrcode-<id>`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, MemberId, OrgId};

/// The stream category of QR assignment codes.
pub const CATEGORY: &str = "qrcode";

/// What a code's text looks like: `#OBX-` and six characters from an
/// alphabet without look-alikes.
const PREFIX: &str = "#OBX-";
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const LENGTH: usize = 6;

/// A new code's text from `random` bytes (at least six).
pub fn code_text(random: &[u8]) -> String {
    let mut text = String::from(PREFIX);
    text.extend(
        random
            .iter()
            .take(LENGTH)
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char),
    );
    text
}

/// Whether a customer's message is an assignment code (and nothing else):
/// the text a scanned QR pre-fills.
pub fn is_assignment_code(text: &str) -> bool {
    let text = text.trim();
    text.len() == PREFIX.len() + LENGTH
        && text.starts_with(PREFIX)
        && text[PREFIX.len()..].bytes().all(|b| ALPHABET.contains(&b))
}

/// The LINE link that opens `basic_id`'s chat with `code` pre-filled.
pub fn line_url(basic_id: &str, code: &str) -> String {
    let basic_id = if basic_id.starts_with('@') {
        basic_id.to_owned()
    } else {
        format!("@{basic_id}")
    };
    let encoded: String = code
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("https://line.me/R/oaMessage/{basic_id}/?{encoded}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum QrEvent {
    QrCodeCreated {
        code_id: uuid::Uuid,
        org_id: OrgId,
        channel_id: ChannelId,
        agent_id: MemberId,
        code: String,
        line_url: String,
        by: MemberId,
        at: DateTime<Utc>,
    },
    QrCodeRevoked {
        code_id: uuid::Uuid,
        org_id: OrgId,
        by: MemberId,
        at: DateTime<Utc>,
    },
}

impl QrEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            QrEvent::QrCodeCreated { .. } => "QrCodeCreated",
            QrEvent::QrCodeRevoked { .. } => "QrCodeRevoked",
        }
    }
}

/// A code folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QrCode {
    pub id: Option<uuid::Uuid>,
    pub org_id: Option<OrgId>,
    pub channel_id: Option<ChannelId>,
    pub agent_id: Option<MemberId>,
    pub code: String,
    pub line_url: String,
    pub revoked: bool,
}

impl QrCode {
    pub fn evolve(&mut self, event: &QrEvent) {
        match event {
            QrEvent::QrCodeCreated {
                code_id,
                org_id,
                channel_id,
                agent_id,
                code,
                line_url,
                ..
            } => {
                self.id = Some(*code_id);
                self.org_id = Some(*org_id);
                self.channel_id = Some(*channel_id);
                self.agent_id = Some(*agent_id);
                self.code.clone_from(code);
                self.line_url.clone_from(line_url);
            }
            QrEvent::QrCodeRevoked { .. } => self.revoked = true,
        }
    }

    /// Whether it still assigns.
    pub fn live(&self) -> bool {
        self.id.is_some() && !self.revoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_look_like_codes_and_nothing_else_does() {
        let code = code_text(&[0, 1, 2, 3, 31, 200]);
        assert!(is_assignment_code(&code), "{code}");
        assert!(is_assignment_code(&format!("  {code}\n")));
        for text in [
            "hello",
            "#OBX-",
            "#OBX-ABCDE",
            "#OBX-ABCDEFG",
            "#OBX-ABCDE0",
            "please #OBX-ABCDEF",
        ] {
            assert!(!is_assignment_code(text), "{text}");
        }
    }

    #[test]
    fn the_link_pre_fills_the_code_in_the_official_accounts_chat() {
        assert_eq!(
            line_url("@siamshop", "#OBX-AB2CD3"),
            "https://line.me/R/oaMessage/@siamshop/?%23OBX-AB2CD3"
        );
        assert_eq!(
            line_url("siamshop", "#OBX-AB2CD3"),
            "https://line.me/R/oaMessage/@siamshop/?%23OBX-AB2CD3"
        );
    }
}
