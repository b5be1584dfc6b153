//! Proof that a webhook request came from the platform.
//!
//! Both platforms sign their own serialisation of the body (Meta escapes
//! non-ASCII as `\uXXXX` and `/` as `\/`, LINE sends raw UTF-8), so the MAC is
//! always checked over the bytes exactly as received, before any parsing.
//! Every comparison goes through hmac's constant-time `verify_slice`, so a
//! forger learns nothing from how long a refusal takes.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{HandshakeError, SignatureError};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag; anything else cannot be a signature.
const TAG_LEN: usize = 32;

/// Checks `X-Hub-Signature-256: sha256=<hex>`, keyed with the Facebook app secret.
pub fn verify_facebook_signature(
    app_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let hex_tag = header
        .ok_or(SignatureError::Missing)?
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let tag = hex::decode(hex_tag).map_err(|_| SignatureError::Malformed)?;
    verify(app_secret, body, &tag)
}

/// Checks `x-line-signature: <base64>`, keyed with the LINE channel secret.
pub fn verify_line_signature(
    channel_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let tag = STANDARD
        .decode(header.ok_or(SignatureError::Missing)?.trim())
        .map_err(|_| SignatureError::Malformed)?;
    verify(channel_secret, body, &tag)
}

/// Answers Meta's `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
/// with the challenge to echo back, proving we own the callback URL.
pub fn facebook_handshake(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    verify_token: &str,
) -> Result<String, HandshakeError> {
    if mode != Some("subscribe") {
        return Err(HandshakeError::NotSubscribe);
    }
    if !token.is_some_and(|token| same_secret(verify_token.as_bytes(), token.as_bytes())) {
        return Err(HandshakeError::TokenMismatch);
    }
    challenge
        .map(str::to_owned)
        .ok_or(HandshakeError::MissingChallenge)
}

fn verify(secret: &[u8], body: &[u8], tag: &[u8]) -> Result<(), SignatureError> {
    if tag.len() != TAG_LEN {
        return Err(SignatureError::Malformed);
    }
    // HMAC accepts keys of any length, so this cannot fail; refusing is the
    // safe reading should it ever do so.
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| SignatureError::Mismatch)
}

/// Compares two secrets in constant time by comparing their MACs under a
/// fixed key: the tags always have the same length, so neither the position
/// of the first difference nor the expected token's length leaks.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let tag = |value: &[u8]| HmacSha256::new(&Default::default()).chain_update(value);
    tag(given)
        .verify_slice(&tag(expected).finalize().into_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"secret";
    const BODY: &[u8] = b"{\"events\":[]}";

    fn facebook_header(body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(SECRET).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn facebook_signature_errors_are_distinct() {
        let header = facebook_header(BODY);
        assert_eq!(
            verify_facebook_signature(SECRET, Some(&header), BODY),
            Ok(())
        );
        assert_eq!(
            verify_facebook_signature(SECRET, None, BODY),
            Err(SignatureError::Missing)
        );
        for malformed in ["", "sha1=abcd", "sha256=zz", "sha256=abcd", &header[7..]] {
            assert_eq!(
                verify_facebook_signature(SECRET, Some(malformed), BODY),
                Err(SignatureError::Malformed),
                "{malformed:?}"
            );
        }
        assert_eq!(
            verify_facebook_signature(b"other", Some(&header), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn line_signature_errors_are_distinct() {
        let mut mac = HmacSha256::new_from_slice(SECRET).expect("any key length");
        mac.update(BODY);
        let header = STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(verify_line_signature(SECRET, Some(&header), BODY), Ok(()));
        assert_eq!(
            verify_line_signature(SECRET, None, BODY),
            Err(SignatureError::Missing)
        );
        for malformed in ["", "not base64!", "c2hvcnQ="] {
            assert_eq!(
                verify_line_signature(SECRET, Some(malformed), BODY),
                Err(SignatureError::Malformed),
                "{malformed:?}"
            );
        }
        assert_eq!(
            verify_line_signature(SECRET, Some(&header), b"{\"events\":[ ]}"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_our_token() {
        let token = "fixture-verify-token";
        let answer = |mode, given, challenge| facebook_handshake(mode, given, challenge, token);
        assert_eq!(
            answer(Some("subscribe"), Some(token), Some("1158201444")),
            Ok("1158201444".to_owned())
        );
        assert_eq!(
            answer(Some("subscribe"), Some("fixture-verify-tokeN"), Some("1")),
            Err(HandshakeError::TokenMismatch)
        );
        assert_eq!(
            answer(Some("subscribe"), Some("fixture-verify-token2"), Some("1")),
            Err(HandshakeError::TokenMismatch)
        );
        assert_eq!(
            answer(Some("subscribe"), None, Some("1")),
            Err(HandshakeError::TokenMismatch)
        );
        assert_eq!(
            answer(Some("unsubscribe"), Some(token), Some("1")),
            Err(HandshakeError::NotSubscribe)
        );
        assert_eq!(
            answer(None, Some(token), Some("1")),
            Err(HandshakeError::NotSubscribe)
        );
        assert_eq!(
            answer(Some("subscribe"), Some(token), None),
            Err(HandshakeError::MissingChallenge)
        );
    }
}
