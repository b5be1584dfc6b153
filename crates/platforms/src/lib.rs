//! The edge between Omnibox and the messaging platforms.
//!
//! This crate owns everything that must be right *before* a webhook body is
//! trusted: signature checks over the raw bytes ([`signature`]), the Facebook
//! subscription handshake, and parsing each platform's payload into
//! platform-shaped Rust types ([`facebook`], [`line`](mod@line)), and the
//! platforms' HTTP APIs ([`client`], [`facebook::graph`], [`line::api`]):
//! one shared HTTP client with timeouts, answers parsed into typed errors
//! (Facebook `error.code`/`error_subcode`, LINE status and `message`), never
//! matched on message text. It produces no domain events: mapping parsed
//! items to commands is the API crate's job, so the platform quirks (sticker
//! duplicates, echoes, standby, redeliveries) are resolved here once and
//! tested against the fixtures.

pub mod client;
pub mod error;
pub mod facebook;
pub mod line;
pub mod signature;
pub mod untrusted;

pub use error::{HandshakeError, ParseError, SignatureError};
pub use signature::{facebook_handshake, verify_facebook_signature, verify_line_signature};

use chrono::{DateTime, Utc};

/// Both platforms stamp events in epoch milliseconds; a value chrono cannot
/// represent is refused rather than clamped, so ordering is never invented.
fn from_millis(millis: i64) -> Result<DateTime<Utc>, ParseError> {
    DateTime::from_timestamp_millis(millis).ok_or(ParseError::TimestampOutOfRange(millis))
}
