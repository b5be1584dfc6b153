//! Personal data, sealed per contact so it can be erased (crypto-shredding).
//!
//! The log is never rewritten, yet a customer may ask to be forgotten. So
//! what identifies or quotes a person (display name, avatar URL, message
//! texts, attachment file names) is written into events already sealed with
//! AES-256-GCM under a key of that contact's own, kept here in
//! `personal_keys` (each key itself sealed with `OMNIBOX_SECRET_KEY`).
//! Erasing the contact deletes its keys: every copy of those fields — in the
//! log, the read models, exports and backups — becomes unreadable at once.
//!
//! A sealed field is an ordinary JSON string, so event shapes do not change:
//! `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext)>`. The key id is in
//! the text, so a reader opens a field without knowing whose it is. A string
//! without the prefix is plaintext (events written before sealing existed).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use lru::LruCache;
use rand::RngCore;
use sqlx::Row;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::secrets::SecretKey;
use crate::Database;

/// What every sealed field starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// How long a key (or its absence) is trusted for opening without asking
/// the database while this process does not hear erasures as they happen
/// (a command-line tool, or a server whose LISTEN connection is down):
/// another server's erasure is honoured within this time. A process that
/// hears them ([`PersonalKeys::follow_erasures`]) trusts a key it found
/// until the key is erased or pushed out of memory.
const UNHEARD_TTL: Duration = Duration::from_secs(2);
/// Keys kept in memory for opening; the least recently used go first.
const KEYS_KEPT: usize = 100_000;
/// The PostgreSQL channel erasures are announced on, one per schema (so
/// that databases shared by several tenants, or tests, don't mix).
const ERASED_CHANNEL: &str = "left('omnibox_erased_' || md5(current_schema()), 40)";
/// How long a contact's current key is used for sealing before it is read
/// again. Should another server erase the contact meanwhile, what this one
/// seals with the destroyed key is unreadable from the start: erased too.
const SEALING_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PersonalError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("personal data key {0} cannot be opened with this OMNIBOX_SECRET_KEY")]
    WrongServerKey(Uuid),
    #[error("a sealed field is malformed: {0}")]
    Malformed(String),
}

/// An opened field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Plain(String),
    /// Its contact was erased: the key is gone and so is the text.
    Erased,
}

impl Opened {
    pub fn into_plain(self) -> Option<String> {
        match self {
            Opened::Plain(text) => Some(text),
            Opened::Erased => None,
        }
    }
}

/// Whether `text` is a sealed field.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// A contact's current key, ready to seal with (synchronously).
#[derive(Clone)]
pub struct SealingKey {
    key_id: Uuid,
    /// `None` when sealing is off: fields stay as they are.
    cipher: Option<Arc<Aes256Gcm>>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({})", self.key_id)
    }
}

impl SealingKey {
    /// `plaintext` sealed; empty texts stay empty (they say nothing).
    pub fn seal(&self, plaintext: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return plaintext.to_owned();
        };
        if plaintext.is_empty() || is_sealed(plaintext) {
            return plaintext.to_owned();
        }
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let Ok(ciphertext) = cipher.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: self.key_id.as_bytes(),
            },
        ) else {
            unreachable!("AES-GCM encrypts any message shorter than 64 GiB")
        };
        let mut sealed = Vec::with_capacity(12 + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!(
            "{SEALED_PREFIX}{}:{}",
            self.key_id.simple(),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    pub fn seal_opt(&self, plaintext: Option<String>) -> Option<String> {
        plaintext.map(|text| self.seal(&text))
    }

    pub fn seal_in_place(&self, field: &mut Option<String>) {
        if let Some(text) = field {
            *text = self.seal(text);
        }
    }
}

/// A personal-data key as stored (still sealed with the server key), for
/// export and import between stores that share `OMNIBOX_SECRET_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedKey {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub contact_id: Uuid,
    /// Base64.
    pub nonce: String,
    /// Base64.
    pub wrapped: String,
    pub created_at: i64,
}

/// A key as kept in memory for opening.
struct CachedKey {
    /// `None`: the key is gone (erased).
    cipher: Option<Arc<Aes256Gcm>>,
    /// Whose key it is, so erasing the contact forgets it.
    contact: Option<Uuid>,
    /// When it was read from the table.
    at: Instant,
}

/// A key read from the table: the key and its contact, or `None` when gone.
type Found = Option<(Arc<Aes256Gcm>, Uuid)>;
/// One lookup of a key, shared by everyone who needs that key meanwhile.
type Lookup = Arc<OnceCell<Found>>;

struct Cache {
    /// Contact → its current key, for sealing.
    by_contact: HashMap<Uuid, (SealingKey, Instant)>,
    /// Key id → the key, for opening.
    by_key: LruCache<Uuid, CachedKey>,
    /// Lookups in flight.
    lookups: HashMap<Uuid, Lookup>,
    /// Whether every erasure is heard as it happens, so that a key found is
    /// trusted until its contact is erased.
    hearing: bool,
    /// Bumped by every erasure heard: a lookup begun before it does not
    /// keep what it read, which may be a key erased since.
    generation: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            by_contact: HashMap::new(),
            by_key: LruCache::new(NonZeroUsize::new(KEYS_KEPT).unwrap_or(NonZeroUsize::MIN)),
            lookups: HashMap::new(),
            hearing: false,
            generation: 0,
        }
    }
}

impl Cache {
    /// Something may have been erased unheard, or just was: lookups in
    /// flight must not be kept, nor joined by new readers.
    fn new_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.lookups.clear();
    }

    /// Drops every key kept for opening: an erasure may have gone unheard.
    fn forget_all(&mut self) {
        self.new_generation();
        self.by_key.clear();
    }
}

/// The `personal_keys` table and a cache of it.
#[derive(Clone)]
pub struct PersonalKeys {
    db: Database,
    server: Arc<Aes256Gcm>,
    cache: Arc<Mutex<Cache>>,
    /// Whether new fields are sealed (opening always works).
    sealing: bool,
    /// How long a key is trusted while erasures are not heard.
    unheard_ttl: Duration,
    /// Keys read from the table so far (tests and diagnostics).
    reads: Arc<AtomicU64>,
}

type KeyRow = (Uuid, Uuid, Vec<u8>, Vec<u8>);
/// key id, contact id, nonce, wrapped key, created at.
type StoredKeyRow = (Uuid, Uuid, Vec<u8>, Vec<u8>, i64);

impl PersonalKeys {
    pub fn new(db: Database, server_key: &SecretKey) -> Self {
        Self {
            db,
            server: Arc::new(Aes256Gcm::new(&(*server_key.bytes()).into())),
            cache: Arc::default(),
            sealing: true,
            unheard_ttl: UNHEARD_TTL,
            reads: Arc::default(),
        }
    }

    /// Turns sealing of new fields on or off (off only to measure its cost).
    pub fn sealing(mut self, on: bool) -> Self {
        self.sealing = on;
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unwrap_key(
        &self,
        key_id: Uuid,
        nonce: &[u8],
        wrapped: &[u8],
    ) -> Result<Arc<Aes256Gcm>, PersonalError> {
        if nonce.len() != 12 {
            return Err(PersonalError::WrongServerKey(key_id));
        }
        let key = self
            .server
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: wrapped,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| PersonalError::WrongServerKey(key_id))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| PersonalError::WrongServerKey(key_id))?;
        Ok(Arc::new(Aes256Gcm::new(&key.into())))
    }

    /// The key `contact`'s personal data is sealed with now, made on first use.
    pub async fn for_contact(&self, org: Uuid, contact: Uuid) -> Result<SealingKey, PersonalError> {
        if !self.sealing {
            return Ok(SealingKey {
                key_id: Uuid::nil(),
                cipher: None,
            });
        }
        if let Some((key, at)) = self.cache().by_contact.get(&contact) {
            if at.elapsed() < SEALING_TTL {
                return Ok(key.clone());
            }
        }
        if let Some(key) = self.current(contact).await? {
            return Ok(key);
        }
        // Concurrent first messages of one contact may each make a key: the
        // newest is used from then on, and erasure destroys them all.
        let key_id = Uuid::now_v7();
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let Ok(wrapped) = self.server.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &key,
                aad: key_id.as_bytes(),
            },
        ) else {
            unreachable!("AES-GCM encrypts 32 bytes")
        };
        let created = chrono::Utc::now().timestamp_micros();
        self.insert(key_id, org, contact, &nonce, &wrapped, created, false)
            .await?;
        let sealing = SealingKey {
            key_id,
            cipher: Some(Arc::new(Aes256Gcm::new(&key.into()))),
        };
        self.remember(contact, &sealing);
        Ok(sealing)
    }

    fn remember(&self, contact: Uuid, key: &SealingKey) {
        let now = Instant::now();
        let mut cache = self.cache();
        cache.by_key.put(
            key.key_id,
            CachedKey {
                cipher: key.cipher.clone(),
                contact: Some(contact),
                at: now,
            },
        );
        cache.by_contact.insert(contact, (key.clone(), now));
    }

    /// The contact's newest key in the table.
    async fn current(&self, contact: Uuid) -> Result<Option<SealingKey>, PersonalError> {
        let select = "SELECT key_id, contact_id, nonce, wrapped FROM personal_keys
                      WHERE contact_id = $1 ORDER BY created_at DESC, key_id DESC LIMIT 1";
        let row: Option<KeyRow> = match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(select)
                    .bind(contact)
                    .fetch_optional(pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_as(select)
                    .bind(contact)
                    .fetch_optional(pool)
                    .await?
            }
        };
        let Some((key_id, _, nonce, wrapped)) = row else {
            return Ok(None);
        };
        let key = SealingKey {
            key_id,
            cipher: Some(self.unwrap_key(key_id, &nonce, &wrapped)?),
        };
        self.remember(contact, &key);
        Ok(Some(key))
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &self,
        key_id: Uuid,
        org: Uuid,
        contact: Uuid,
        nonce: &[u8],
        wrapped: &[u8],
        created_at: i64,
        keep_existing: bool,
    ) -> Result<(), PersonalError> {
        let insert = if keep_existing {
            "INSERT INTO personal_keys (key_id, org_id, contact_id, nonce, wrapped, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO NOTHING"
        } else {
            "INSERT INTO personal_keys (key_id, org_id, contact_id, nonce, wrapped, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)"
        };
        // The key need not reach the disk by itself: the event that uses it
        // is appended after it, and that commit's flush of the same WAL
        // (SQLite's file, PostgreSQL's log) carries every earlier record
        // with it. A key that no event uses may be lost, harmlessly.
        match &self.db {
            Database::Sqlite { pool, .. } => {
                let mut connection = pool.acquire().await?;
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *connection)
                    .await?;
                let inserted = sqlx::query(insert)
                    .bind(key_id)
                    .bind(org)
                    .bind(contact)
                    .bind(nonce)
                    .bind(wrapped)
                    .bind(created_at)
                    .execute(&mut *connection)
                    .await;
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *connection)
                    .await?;
                inserted?;
            }
            Database::Postgres { pool } => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(insert)
                    .bind(key_id)
                    .bind(org)
                    .bind(contact)
                    .bind(nonce)
                    .bind(wrapped)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The key with id `key_id`, or `None` when it was destroyed.
    async fn key(&self, key_id: Uuid) -> Result<Option<Arc<Aes256Gcm>>, PersonalError> {
        let (lookup, generation) = {
            let mut cache = self.cache();
            let hearing = cache.hearing;
            if let Some(cached) = cache.by_key.get(&key_id) {
                if (hearing && cached.cipher.is_some()) || cached.at.elapsed() < self.unheard_ttl {
                    return Ok(cached.cipher.clone());
                }
            }
            let generation = cache.generation;
            (cache.lookups.entry(key_id).or_default().clone(), generation)
        };
        // Subscribers opening one update's fields all ask at once: one reads.
        let found = lookup
            .get_or_try_init(|| self.read_key(key_id))
            .await
            .cloned();
        let mut cache = self.cache();
        if cache
            .lookups
            .get(&key_id)
            .is_some_and(|current| Arc::ptr_eq(current, &lookup))
        {
            cache.lookups.remove(&key_id);
        }
        let found = found?;
        if cache.generation == generation {
            cache.by_key.put(
                key_id,
                CachedKey {
                    cipher: found.as_ref().map(|(cipher, _)| cipher.clone()),
                    contact: found.as_ref().map(|(_, contact)| *contact),
                    at: Instant::now(),
                },
            );
        }
        Ok(found.map(|(cipher, _)| cipher))
    }

    async fn read_key(&self, key_id: Uuid) -> Result<Found, PersonalError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let select =
            "SELECT key_id, contact_id, nonce, wrapped FROM personal_keys WHERE key_id = $1";
        let row: Option<KeyRow> = match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(select)
                    .bind(key_id)
                    .fetch_optional(pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_as(select)
                    .bind(key_id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        match row {
            Some((_, contact, nonce, wrapped)) => {
                Ok(Some((self.unwrap_key(key_id, &nonce, &wrapped)?, contact)))
            }
            None => Ok(None),
        }
    }

    /// How many times a key was read from the table (tests, diagnostics).
    pub fn key_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Forgets `contact`'s keys (and any lookup in flight): it was erased,
    /// here or, as heard, on another server.
    fn forget(&self, contact: Uuid, doomed: &[Uuid]) {
        let mut cache = self.cache();
        cache.new_generation();
        let current = cache.by_contact.remove(&contact).map(|(key, _)| key.key_id);
        let theirs: Vec<Uuid> = cache
            .by_key
            .iter()
            .filter(|(_, cached)| cached.contact == Some(contact))
            .map(|(key_id, _)| *key_id)
            .collect();
        let now = Instant::now();
        for key_id in theirs
            .into_iter()
            .chain(doomed.iter().copied())
            .chain(current)
        {
            cache.by_key.put(
                key_id,
                CachedKey {
                    cipher: None,
                    contact: None,
                    at: now,
                },
            );
        }
    }

    /// Hears erasures as they happen, for as long as the process runs, so
    /// that keys found can be trusted until then instead of for two seconds
    /// (see [`UNHEARD_TTL`]). Spawn it in a server.
    ///
    /// On PostgreSQL every erasure is announced with `pg_notify` in the
    /// transaction that deletes the keys; while the LISTEN connection is
    /// down this process falls back to the short trust, and when it is back
    /// it forgets every key it holds (it may have missed an erasure). A
    /// SQLite file has one server, whose erasures are its own.
    pub async fn follow_erasures(self) {
        let pool = match &self.db {
            Database::Sqlite { .. } => {
                self.cache().hearing = true;
                return;
            }
            Database::Postgres { pool } => pool.clone(),
        };
        let channel = crate::listen::channel_name(&pool, ERASED_CHANNEL).await;
        crate::listen::listen_forever(
            &pool,
            &channel,
            |listening| {
                let mut cache = self.cache();
                // Back to listening: an erasure may have been missed.
                if listening {
                    cache.forget_all();
                }
                cache.hearing = listening;
            },
            |payload| match Uuid::try_parse(payload) {
                Ok(contact) => self.forget(contact, &[]),
                // Unreadable: forget everything rather than keep what may
                // be erased.
                Err(_) => self.cache().forget_all(),
            },
        )
        .await;
    }

    /// Opens one field: plaintext passes through, a sealed field is
    /// decrypted, or reported erased when its key is gone.
    pub async fn open(&self, text: &str) -> Result<Opened, PersonalError> {
        let Some(rest) = text.strip_prefix(SEALED_PREFIX) else {
            return Ok(Opened::Plain(text.to_owned()));
        };
        let malformed = || PersonalError::Malformed("not key-id:base64".into());
        let (key_id, sealed) = rest.split_once(':').ok_or_else(malformed)?;
        let key_id = Uuid::try_parse(key_id).map_err(|_| malformed())?;
        let sealed = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| malformed())?;
        if sealed.len() < 12 {
            return Err(malformed());
        }
        let Some(cipher) = self.key(key_id).await? else {
            return Ok(Opened::Erased);
        };
        let (nonce, ciphertext) = sealed.split_at(12);
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| {
                PersonalError::Malformed(format!(
                    "field sealed under {key_id} does not authenticate"
                ))
            })?;
        String::from_utf8(plaintext)
            .map(Opened::Plain)
            .map_err(|_| PersonalError::Malformed("not UTF-8".into()))
    }

    /// Opens an optional field; `None` stays `None`.
    pub async fn open_opt(&self, text: Option<&str>) -> Result<Option<Opened>, PersonalError> {
        match text {
            Some(text) => self.open(text).await.map(Some),
            None => Ok(None),
        }
    }

    /// Opens every sealed string in a JSON document (an event's data):
    /// erased ones become `null`. Returns whether any was erased.
    pub async fn open_json(&self, value: &mut serde_json::Value) -> Result<bool, PersonalError> {
        let mut erased = false;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::String(text) if is_sealed(text) => {
                    match self.open(text).await? {
                        Opened::Plain(plain) => *text = plain,
                        Opened::Erased => {
                            erased = true;
                            *value = serde_json::Value::Null;
                        }
                    }
                }
                serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
                serde_json::Value::Object(fields) => stack.extend(fields.values_mut()),
                _ => {}
            }
        }
        Ok(erased)
    }

    /// Destroys every key of `contact`; returns how many there were. What
    /// was sealed under them can never be read again.
    pub async fn erase(&self, contact: Uuid) -> Result<u64, PersonalError> {
        // Which keys go, so this server forgets exactly those at once.
        let select = "SELECT key_id FROM personal_keys WHERE contact_id = $1";
        let doomed: Vec<Uuid> = match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query_scalar(select)
                    .bind(contact)
                    .fetch_all(pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_scalar(select)
                    .bind(contact)
                    .fetch_all(pool)
                    .await?
            }
        };
        let delete = "DELETE FROM personal_keys WHERE contact_id = $1";
        let deleted = match &self.db {
            Database::Sqlite { pool, .. } => {
                let mut connection = pool.acquire().await?;
                // Zero the deleted rows' bytes in the file instead of
                // leaving them on a free page, then fold the WAL (which
                // still holds the pages as they were) into the file and
                // empty it.
                sqlx::query("PRAGMA secure_delete = ON")
                    .execute(&mut *connection)
                    .await?;
                let deleted = sqlx::query(delete)
                    .bind(contact)
                    .execute(&mut *connection)
                    .await?
                    .rows_affected();
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut *connection)
                    .await?;
                deleted
            }
            Database::Postgres { pool } => {
                // Other servers hear of it when the deletion commits.
                let mut tx = pool.begin().await?;
                let deleted = sqlx::query(delete)
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(&format!("SELECT pg_notify({ERASED_CHANNEL}, $1)"))
                    .bind(contact.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                // Dead tuples keep the (server-sealed) key until vacuumed.
                if let Err(error) = sqlx::query("VACUUM personal_keys").execute(pool).await {
                    tracing::warn!(%error, "could not vacuum personal_keys after an erasure");
                }
                deleted
            }
        };
        self.forget(contact, &doomed);
        Ok(deleted)
    }

    /// The keys of `org`'s contacts as stored (export).
    pub async fn sealed_keys(&self, org: Uuid) -> Result<Vec<SealedKey>, PersonalError> {
        let select = "SELECT key_id, contact_id, nonce, wrapped, created_at FROM personal_keys
                      WHERE org_id = $1 ORDER BY created_at, key_id";
        let rows: Vec<StoredKeyRow> = match &self.db {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(select).bind(org).fetch_all(pool).await?
            }
            Database::Postgres { pool } => sqlx::query_as(select).bind(org).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(
                |(key_id, contact_id, nonce, wrapped, created_at)| SealedKey {
                    key_id,
                    org_id: org,
                    contact_id,
                    nonce: STANDARD.encode(nonce),
                    wrapped: STANDARD.encode(wrapped),
                    created_at,
                },
            )
            .collect())
    }

    /// Stores a key as it came (import); one already there is kept.
    pub async fn put_sealed(&self, key: &SealedKey) -> Result<(), PersonalError> {
        let malformed = || PersonalError::Malformed(format!("key {} is not base64", key.key_id));
        let nonce = STANDARD.decode(&key.nonce).map_err(|_| malformed())?;
        let wrapped = STANDARD.decode(&key.wrapped).map_err(|_| malformed())?;
        // Refuse a key this server could not open, before storing it.
        self.unwrap_key(key.key_id, &nonce, &wrapped)?;
        self.insert(
            key.key_id,
            key.org_id,
            key.contact_id,
            &nonce,
            &wrapped,
            key.created_at,
            true,
        )
        .await
    }

    /// How many keys `contact` has (tests, and erasure reports).
    pub async fn count(&self, contact: Uuid) -> Result<i64, PersonalError> {
        let select = "SELECT COUNT(*) FROM personal_keys WHERE contact_id = $1";
        Ok(match &self.db {
            Database::Sqlite { pool, .. } => sqlx::query(select)
                .bind(contact)
                .fetch_one(pool)
                .await?
                .try_get(0)?,
            Database::Postgres { pool } => sqlx::query(select)
                .bind(contact)
                .fetch_one(pool)
                .await?
                .try_get(0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Backend, TestDatabase};

    async fn keys() -> (PersonalKeys, TestDatabase) {
        let test = TestDatabase::create(Backend::Sqlite).await.expect("sqlite");
        let db = Database::connect(&test.url).await.expect("connect");
        db.migrate().await.expect("migrate");
        (PersonalKeys::new(db, &SecretKey::generate()), test)
    }

    #[tokio::test]
    async fn sealed_fields_open_until_their_contact_is_erased() {
        let (keys, _db) = keys().await;
        let (org, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let for_alice = keys.for_contact(org, alice).await.expect("key");
        let sealed = for_alice.seal("สวัสดี 👋");
        assert!(is_sealed(&sealed) && !sealed.contains("สวัสดี"), "{sealed}");
        assert_ne!(sealed, for_alice.seal("สวัสดี 👋"), "a fresh nonce each time");
        assert_eq!(for_alice.seal(""), "", "nothing to hide");
        let for_bob = keys.for_contact(org, bob).await.expect("key").seal("bob's");
        assert_eq!(
            keys.open(&sealed).await.unwrap(),
            Opened::Plain("สวัสดี 👋".into())
        );
        assert_eq!(
            keys.open("plain").await.unwrap(),
            Opened::Plain("plain".into())
        );

        let mut event = serde_json::json!({ "text": sealed, "other": [for_bob.clone(), 3] });
        assert!(!keys.open_json(&mut event).await.unwrap());
        assert_eq!(event["text"], "สวัสดี 👋");

        assert_eq!(keys.erase(alice).await.unwrap(), 1);
        assert_eq!(keys.open(&sealed).await.unwrap(), Opened::Erased);
        assert_eq!(
            keys.open(&for_bob).await.unwrap(),
            Opened::Plain("bob's".into())
        );
        let mut event = serde_json::json!({ "text": sealed, "other": [for_bob, 3] });
        assert!(keys.open_json(&mut event).await.unwrap());
        assert_eq!(
            event,
            serde_json::json!({ "text": null, "other": ["bob's", 3] })
        );
        // A new message after the erasure gets a new key.
        let again = keys.for_contact(org, alice).await.expect("key").seal("new");
        assert_eq!(
            keys.open(&again).await.unwrap(),
            Opened::Plain("new".into())
        );
    }

    #[tokio::test]
    async fn tampered_or_foreign_fields_are_errors_not_plaintext() {
        let (keys, _db) = keys().await;
        let sealed = keys
            .for_contact(Uuid::now_v7(), Uuid::now_v7())
            .await
            .expect("key")
            .seal("hello");
        let mut tampered = sealed.clone();
        let last = tampered.pop().expect("char");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(keys.open(&tampered).await.is_err());
        for malformed in ["sealed:v1:", "sealed:v1:nope:abc", "sealed:v1:0190:!!"] {
            assert!(keys.open(malformed).await.is_err(), "{malformed}");
        }
        // Another server key cannot open this store's keys.
        let (other, _other_db) = keys_on(&keys).await;
        assert!(matches!(
            other.open(&sealed).await,
            Err(PersonalError::WrongServerKey(_))
        ));
    }

    #[tokio::test]
    async fn found_keys_are_trusted_only_while_erasures_are_heard() {
        let (mut keys, _db) = keys().await;
        keys.unheard_ttl = Duration::ZERO;
        let (org, alice) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = keys.for_contact(org, alice).await.expect("key").seal("hi");
        let reads = keys.key_reads();
        keys.open(&sealed).await.expect("open");
        keys.open(&sealed).await.expect("open");
        assert_eq!(keys.key_reads(), reads + 2, "not hearing: read every time");

        keys.clone().follow_erasures().await;
        keys.open(&sealed).await.expect("open");
        keys.open(&sealed).await.expect("open");
        assert_eq!(
            keys.key_reads(),
            reads + 2,
            "hearing: what was read is kept"
        );
        keys.erase(alice).await.expect("erase");
        assert_eq!(keys.open(&sealed).await.unwrap(), Opened::Erased);
    }

    #[tokio::test]
    async fn concurrent_openers_of_one_key_read_it_once() {
        let (keys, _db) = keys().await;
        let sealed = keys
            .for_contact(Uuid::now_v7(), Uuid::now_v7())
            .await
            .expect("key")
            .seal("hello");
        // Another process: nothing in memory yet.
        let fresh = PersonalKeys::new(keys.db.clone(), &SecretKey::generate());
        let fresh = PersonalKeys {
            server: keys.server.clone(),
            ..fresh
        };
        let opened = futures_util::future::join_all((0..20).map(|_| fresh.open(&sealed))).await;
        for opened in opened {
            assert_eq!(opened.expect("open"), Opened::Plain("hello".into()));
        }
        assert_eq!(fresh.key_reads(), 1);
    }

    #[tokio::test]
    async fn another_servers_erasure_is_heard_at_once() {
        let Some(test) = TestDatabase::create(Backend::Postgres).await else {
            return;
        };
        let server = SecretKey::generate();
        let mut here = PersonalKeys::new(test.connect().await, &server);
        let mut there = PersonalKeys::new(test.connect().await, &server);
        // Only hearing the erasure can make `there` notice it in time.
        here.unheard_ttl = Duration::from_secs(3600);
        there.unheard_ttl = Duration::from_secs(3600);
        let listening = tokio::spawn(there.clone().follow_erasures());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !there.cache().hearing {
            assert!(Instant::now() < deadline, "never started hearing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (org, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let alices = here.for_contact(org, alice).await.expect("key").seal("a");
        let bobs = here.for_contact(org, bob).await.expect("key").seal("b");
        assert_eq!(
            there.open(&alices).await.unwrap(),
            Opened::Plain("a".into())
        );
        assert_eq!(there.open(&bobs).await.unwrap(), Opened::Plain("b".into()));

        here.erase(alice).await.expect("erase");
        while there.open(&alices).await.unwrap() != Opened::Erased {
            assert!(Instant::now() < deadline, "the erasure was not heard");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reads = there.key_reads();
        assert_eq!(there.open(&bobs).await.unwrap(), Opened::Plain("b".into()));
        assert_eq!(there.key_reads(), reads, "the other contact's key is kept");
        listening.abort();
    }

    /// The same database under another server key.
    async fn keys_on(keys: &PersonalKeys) -> (PersonalKeys, ()) {
        (
            PersonalKeys::new(keys.db.clone(), &SecretKey::generate()),
            (),
        )
    }
}
