//! Showing the agent to the customer.
//!
//! LINE lets a message carry a `sender` (a name and a square PNG icon) that
//! the customer sees instead of the account's own; Facebook never shows the
//! agent, so a persona on a Facebook reply is refused rather than dropped.

use serde::{Deserialize, Serialize};

use crate::ChannelKind;

/// LINE shows at most 20 characters of a sender name.
pub const MAX_SENDER_NAME_CHARS: usize = 20;
/// LINE accepts an icon URL of at most 2000 characters.
pub const MAX_SENDER_ICON_URL_CHARS: usize = 2000;

/// The agent as the customer sees them on LINE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// Why a sender persona may not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderRefused {
    #[error(
        "Facebook never shows the agent's name or picture to the customer; send without a sender"
    )]
    Facebook,
    #[error("the sender name is empty; give the name the customer should see")]
    EmptyName,
    #[error(
        "the sender name is {length} characters long; LINE shows at most {MAX_SENDER_NAME_CHARS}"
    )]
    NameTooLong { length: usize },
    #[error("LINE refuses a sender name that contains \"LINE\"; choose another name")]
    NameMentionsLine,
    #[error(
        "the sender icon must be an https URL of at most {MAX_SENDER_ICON_URL_CHARS} characters"
    )]
    BadIconUrl,
}

/// Checks a sender persona for a reply on `kind`.
pub fn check_sender(kind: ChannelKind, sender: Sender) -> Result<Sender, SenderRefused> {
    if kind == ChannelKind::Facebook {
        return Err(SenderRefused::Facebook);
    }
    let name = sender.name.trim();
    if name.is_empty() {
        return Err(SenderRefused::EmptyName);
    }
    let length = name.chars().count();
    if length > MAX_SENDER_NAME_CHARS {
        return Err(SenderRefused::NameTooLong { length });
    }
    if name.to_uppercase().contains("LINE") {
        return Err(SenderRefused::NameMentionsLine);
    }
    if let Some(url) = &sender.icon_url {
        if !url.starts_with("https://")
            || url.len() == "https://".len()
            || url.chars().count() > MAX_SENDER_ICON_URL_CHARS
        {
            return Err(SenderRefused::BadIconUrl);
        }
    }
    Ok(Sender {
        name: name.to_owned(),
        icon_url: sender.icon_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(name: &str, icon: Option<&str>) -> Sender {
        Sender {
            name: name.into(),
            icon_url: icon.map(str::to_owned),
        }
    }

    #[test]
    fn line_accepts_a_short_name_and_an_https_icon() {
        let checked = check_sender(
            ChannelKind::Line,
            sender("  Mai (Support) ", Some("https://cdn.example.com/mai.png")),
        );
        assert_eq!(
            checked,
            Ok(sender(
                "Mai (Support)",
                Some("https://cdn.example.com/mai.png")
            ))
        );
        assert_eq!(
            check_sender(ChannelKind::Line, sender("Mai", None)),
            Ok(sender("Mai", None))
        );
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let table = [
            (
                ChannelKind::Facebook,
                sender("Mai", None),
                SenderRefused::Facebook,
            ),
            (
                ChannelKind::Line,
                sender("   ", None),
                SenderRefused::EmptyName,
            ),
            (
                ChannelKind::Line,
                sender(&"あ".repeat(21), None),
                SenderRefused::NameTooLong { length: 21 },
            ),
            (
                ChannelKind::Line,
                sender("Online desk", None),
                SenderRefused::NameMentionsLine,
            ),
            (
                ChannelKind::Line,
                sender("Mai", Some("http://cdn.example.com/mai.png")),
                SenderRefused::BadIconUrl,
            ),
            (
                ChannelKind::Line,
                sender("Mai", Some(&format!("https://{}", "a".repeat(2000)))),
                SenderRefused::BadIconUrl,
            ),
        ];
        for (kind, input, refused) in table {
            assert_eq!(
                check_sender(kind, input.clone()),
                Err(refused),
                "{input:?} on {kind:?}"
            );
        }
    }

    #[test]
    fn twenty_characters_are_counted_as_characters_not_bytes() {
        assert!(check_sender(ChannelKind::Line, sender(&"あ".repeat(20), None)).is_ok());
    }
}
