//! Platform secrets, encrypted at rest.
//!
//! Page tokens and LINE channel secrets must never be written into the event
//! log (it is replayed, exported and shown to auditors). They are sealed with
//! AES-256-GCM under `OMNIBOX_SECRET_KEY` into the `secrets` table; events
//! carry a [`SecretRef`]: the row's id and a keyed fingerprint, so a reader
//! can tell that a token changed without learning it.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::Database;

/// File name of the development key written beside the database when no
/// key is configured.
pub const DEV_KEY_FILE: &str = "omnibox-dev-secret.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("OMNIBOX_SECRET_KEY must be 32 bytes in standard base64 (e.g. `openssl rand -base64 32`): {0}")]
    MalformedKey(String),
    #[error("could not read or write the development key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no secret {0}")]
    NotFound(Uuid),
    #[error("secret {0} cannot be decrypted with this key (wrong OMNIBOX_SECRET_KEY?)")]
    Undecryptable(Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The 256-bit key that seals stored secrets.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Where the key came from; a generated one deserves a loud warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    DevFile { path: PathBuf, created: bool },
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| SecretError::MalformedKey(e.to_string()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SecretError::MalformedKey(format!("decodes to {} bytes, not 32", b.len()))
        })?;
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The configured key, or else the development key in `data_dir`,
    /// created on first use.
    pub fn configured_or_dev(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, KeySource), SecretError> {
        if let Some(text) = configured {
            return Ok((Self::from_base64(text)?, KeySource::Configured));
        }
        let path = data_dir.join(DEV_KEY_FILE);
        let io = |source| SecretError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((
                Self::from_base64(&text)?,
                KeySource::DevFile {
                    path,
                    created: false,
                },
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(&path, key.to_base64().as_bytes()).map_err(io)?;
                Ok((
                    key,
                    KeySource::DevFile {
                        path,
                        created: true,
                    },
                ))
            }
            Err(error) => Err(io(error)),
        }
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

/// A secret in memory. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What an event stores in place of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub id: Uuid,
    /// First 16 hex digits of HMAC-SHA256 under a key derived from the
    /// secret key: equal secrets match, but the value cannot be guessed from it.
    pub fingerprint: String,
}

/// The encrypted secrets table.
#[derive(Clone)]
pub struct Secrets {
    db: Database,
    cipher: Aes256Gcm,
    fingerprint_key: [u8; 32],
}

impl Secrets {
    pub fn new(db: Database, key: &SecretKey) -> Self {
        let fingerprint_key: [u8; 32] = Sha256::new()
            .chain_update(b"omnibox secret fingerprint v1")
            .chain_update(key.0)
            .finalize()
            .into();
        Self {
            db,
            cipher: Aes256Gcm::new(&key.0.into()),
            fingerprint_key,
        }
    }

    /// A keyed fingerprint of `plaintext`.
    pub fn fingerprint(&self, plaintext: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(plaintext.as_bytes());
        hex_prefix(&mac.finalize().into_bytes())
    }

    /// Seals and stores `plaintext`; `purpose` says what it is (never the value).
    pub async fn put(&self, purpose: &str, plaintext: &Secret) -> Result<SecretRef, SecretError> {
        let id = Uuid::now_v7();
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable(id))?;
        let insert = "INSERT INTO secrets (secret_id, purpose, nonce, ciphertext, created_at) VALUES ($1, $2, $3, $4, $5)";
        match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query(insert)
                    .bind(id)
                    .bind(purpose)
                    .bind(&nonce[..])
                    .bind(&ciphertext)
                    .bind(Utc::now().to_rfc3339())
                    .execute(pool)
                    .await?;
            }
            Database::Postgres { pool } => {
                sqlx::query(insert)
                    .bind(id)
                    .bind(purpose)
                    .bind(&nonce[..])
                    .bind(&ciphertext)
                    .bind(Utc::now())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(SecretRef {
            id,
            fingerprint: self.fingerprint(plaintext.expose()),
        })
    }

    /// Opens a stored secret.
    pub async fn get(&self, id: Uuid) -> Result<Secret, SecretError> {
        let select = "SELECT nonce, ciphertext FROM secrets WHERE secret_id = $1";
        let (nonce, ciphertext): (Vec<u8>, Vec<u8>) = match &self.db {
            Database::Sqlite { pool, .. } => sqlx::query(select)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?,
            Database::Postgres { pool } => sqlx::query(select)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?,
        }
        .ok_or(SecretError::NotFound(id))?;
        if nonce.len() != 12 {
            return Err(SecretError::Undecryptable(id));
        }
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable(id))?;
        String::from_utf8(plaintext)
            .map(Secret)
            .map_err(|_| SecretError::Undecryptable(id))
    }
}

/// A secret as stored: still sealed, for moving an organization between
/// stores that share `OMNIBOX_SECRET_KEY` (export and import).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedSecret {
    pub id: Uuid,
    pub purpose: String,
    /// Base64.
    pub nonce: String,
    /// Base64.
    pub ciphertext: String,
}

impl Secrets {
    /// Secret `id` as stored (still sealed), if there is one.
    pub async fn sealed(&self, id: Uuid) -> Result<Option<SealedSecret>, SecretError> {
        use base64::Engine;
        let select = "SELECT purpose, nonce, ciphertext FROM secrets WHERE secret_id = $1";
        let row: Option<(String, Vec<u8>, Vec<u8>)> = match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(select).bind(id).fetch_optional(pool).await?
            }
            Database::Postgres { pool } => {
                sqlx::query_as(select).bind(id).fetch_optional(pool).await?
            }
        };
        let engine = base64::engine::general_purpose::STANDARD;
        Ok(row.map(|(purpose, nonce, ciphertext)| SealedSecret {
            id,
            purpose,
            nonce: engine.encode(nonce),
            ciphertext: engine.encode(ciphertext),
        }))
    }

    /// Stores a sealed secret as it came (import); one already there is kept.
    pub async fn put_sealed(&self, sealed: &SealedSecret) -> Result<(), SecretError> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let nonce = engine
            .decode(&sealed.nonce)
            .map_err(|_| SecretError::Undecryptable(sealed.id))?;
        let ciphertext = engine
            .decode(&sealed.ciphertext)
            .map_err(|_| SecretError::Undecryptable(sealed.id))?;
        let insert = "INSERT INTO secrets (secret_id, purpose, nonce, ciphertext, created_at) VALUES ($1, $2, $3, $4, $5)
                      ON CONFLICT (secret_id) DO NOTHING";
        match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query(insert)
                    .bind(sealed.id)
                    .bind(&sealed.purpose)
                    .bind(nonce)
                    .bind(ciphertext)
                    .bind(Utc::now().to_rfc3339())
                    .execute(pool)
                    .await?;
            }
            Database::Postgres { pool } => {
                sqlx::query(insert)
                    .bind(sealed.id)
                    .bind(&sealed.purpose)
                    .bind(nonce)
                    .bind(ciphertext)
                    .bind(Utc::now())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
