//! Where inbound media bytes live: a trait, and local files by default.

use std::path::PathBuf;

use async_trait::async_trait;
use uuid::Uuid;

/// Where media bytes live. Local files by default; an object store can
/// implement the same two calls.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    async fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()>;
    async fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Removes `key`'s bytes; `false` when there were none.
    async fn delete(&self, key: &str) -> std::io::Result<bool>;
}

/// Media as files in a folder, written atomically (temporary file, then rename).
pub struct LocalMediaStore {
    dir: PathBuf,
}

impl LocalMediaStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "invalid media key",
            ));
        }
        Ok(self.dir.join(key))
    }
}

#[async_trait]
impl MediaStore for LocalMediaStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key)?;
        let (dir, temporary) = (
            self.dir.clone(),
            self.dir.join(format!(".{key}.{}", Uuid::new_v4().simple())),
        );
        let bytes = bytes.to_vec();
        // Customers' files: readable by this user only.
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            omnibox_store::database::create_private_dir(&dir)?;
            let mut file = omnibox_store::database::create_private_file(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn delete(&self, key: &str) -> std::io::Result<bool> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// Creates `dir` if needed and proves a file can be written there, so a
/// read-only or mistyped media folder stops start-up instead of every fetch.
pub fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    omnibox_store::database::create_private_dir(dir)?;
    let probe = dir.join(format!(".write-check-{}", Uuid::new_v4().simple()));
    omnibox_store::database::create_private_file(&probe)?;
    std::fs::remove_file(&probe)
}

/// Where attachment `index` of message `message_id` is kept.
pub fn storage_key(message_id: Uuid, index: u32) -> String {
    format!("{}-{index}", message_id.simple())
}
