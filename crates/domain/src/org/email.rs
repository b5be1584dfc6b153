use std::fmt;

use serde::{Deserialize, Serialize};

/// An e-mail address, trimmed and lower-cased. Only a plausible address can
/// be held: one `@`, a non-empty local part, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an e-mail address")]
pub struct EmailError(pub String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let email = text.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid {
            Ok(Self(email))
        } else {
            Err(EmailError(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_or_refused() {
        assert_eq!(
            Email::parse("  Somchai@Example.CO.TH ").map(|e| e.0),
            Ok("somchai@example.co.th".into())
        );
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@b",
            "a@.com",
            "a@com.",
            "a b@example.com",
            "a@b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
