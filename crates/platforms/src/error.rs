//! Why a webhook request was refused. Each enum maps to one HTTP answer at the
//! API edge: signature → 401, handshake → 403, parse → 400.

/// A webhook body whose signature cannot be trusted; nothing from it may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header at all: not from the platform, or a proxy dropped it.
    #[error("signature header is missing")]
    Missing,
    /// The header is present but not in the platform's format.
    #[error("signature header is malformed")]
    Malformed,
    /// Well-formed, but not the MAC of this body under our secret.
    #[error("signature does not match the body")]
    Mismatch,
}

/// A Facebook `GET` subscription request that must be answered with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// `hub.mode` is absent or not `subscribe`.
    #[error("hub.mode is not `subscribe`")]
    NotSubscribe,
    /// `hub.verify_token` is absent or differs from our configured token.
    #[error("hub.verify_token does not match")]
    TokenMismatch,
    /// Nothing to echo back, so the subscription cannot be confirmed.
    #[error("hub.challenge is missing")]
    MissingChallenge,
}

/// A signed body that is not a webhook payload we can read. Unknown event
/// kinds are *not* errors (they parse as `Unsupported`); these are.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or a known kind whose fields do not have the documented shape.
    #[error("webhook body does not have the documented shape: {0}")]
    Json(#[from] serde_json::Error),
    /// A Facebook body for another product (e.g. `instagram`) reached the Page endpoint.
    #[error("Facebook webhook object is `{0}`, expected `page`")]
    UnexpectedObject(String),
    /// A known Facebook item without the PSID that names the conversation.
    #[error("Facebook `{kind}` item does not name the customer's PSID")]
    MissingCustomer {
        /// The item kind, as the JSON key that carried it.
        kind: &'static str,
    },
    /// An epoch-millisecond value outside what a timestamp can hold.
    #[error("timestamp {0} ms is out of range")]
    TimestampOutOfRange(i64),
}
