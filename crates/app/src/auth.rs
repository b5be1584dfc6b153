//! API tokens: random, shown once, stored only as a SHA-256 hash.
//!
//! A token carries 256 random bits, so a plain (unsalted) hash is enough:
//! nobody can guess an input that hashes to a stored value, and the lookup
//! stays one indexed query.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use omnibox_domain::org::TokenHash;
use omnibox_projections::members::{self, MemberRow};
use omnibox_store::Database;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// The prefix makes leaked tokens easy to recognise in scanners and logs.
const TOKEN_PREFIX: &str = "obx_";

/// A freshly issued token: give `token` to the member once, keep `hash`.
pub struct IssuedToken {
    pub token: String,
    pub hash: TokenHash,
}

pub fn issue_token() -> IssuedToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    IssuedToken { token, hash }
}

pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
}

/// The member a request acts as.
#[derive(Debug, Clone)]
pub struct Session {
    pub member: MemberRow,
}

/// Looks up the member holding `token`.
pub async fn authenticate(db: &Database, token: &str) -> Result<Session, AppError> {
    members::member_by_token(db, &hash_token(token))
        .await?
        .map(|member| Session { member })
        .ok_or(AppError::Unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_only_their_hash_is_kept() {
        let a = issue_token();
        let b = issue_token();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(TOKEN_PREFIX) && a.token.len() > 40);
        assert_eq!(hash_token(&a.token), a.hash);
        assert!(!a.hash.0.contains(&a.token));
    }
}
