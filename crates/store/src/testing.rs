//! Throwaway databases for tests: each test owns one, so tests run in parallel.
//!
//! PostgreSQL tests connect to `OMNIBOX_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and work in a fresh schema
//! that is dropped afterwards. When the server cannot be reached they are
//! skipped with a message, unless `OMNIBOX_REQUIRE_POSTGRES=1` (CI sets it),
//! in which case they fail.
//!
//! EventStoreDB / KurrentDB tests (feature `eventstoredb`) connect to
//! `OMNIBOX_TEST_EVENTSTOREDB_URL` (e.g. `esdb://127.0.0.1:2113?tls=false`)
//! and put their streams under a prefix of their own, so each sees only its
//! own `$all`. There is no default server: unset, they are skipped with a
//! message, unless `OMNIBOX_REQUIRE_EVENTSTOREDB=1`. The streams stay on the
//! server afterwards: point the tests at a throwaway one.

use std::path::PathBuf;

use sqlx::Connection;
use uuid::Uuid;

use crate::Database;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The kinds of database a test can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is removed when dropped.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Schema { admin_url: String, schema: String },
}

impl TestDatabase {
    /// A fresh database of `backend`, or `None` when PostgreSQL is not
    /// reachable and not required.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("omnibox-test-{}", Uuid::new_v4().simple()));
        let url = format!("sqlite://{}", dir.join("omnibox.db").display());
        Self {
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("OMNIBOX_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let required = std::env::var("OMNIBOX_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let schema = format!("omnibox_test_{}", Uuid::new_v4().simple());
        let created = async {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        }
        .await;
        if let Err(error) = created {
            assert!(!required, "PostgreSQL is required (OMNIBOX_REQUIRE_POSTGRES=1) but {admin_url} failed: {error}");
            eprintln!("skipping a PostgreSQL test: {admin_url} is not reachable ({error}); set OMNIBOX_REQUIRE_POSTGRES=1 to fail instead");
            return None;
        }
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        Some(Self {
            url,
            cleanup: Cleanup::Schema { admin_url, schema },
        })
    }

    /// Connects and migrates.
    pub async fn connect(&self) -> Database {
        let db = Database::connect(&self.url)
            .await
            .expect("connect to the test database");
        db.migrate().await.expect("migrate the test database");
        db
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { admin_url, schema } => {
                let (admin_url, schema) = (admin_url.clone(), schema.clone());
                // Drop may run inside an async runtime: do the async work on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    runtime.block_on(async {
                        let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut conn)
                            .await
                            .ok()?;
                        conn.close().await.ok()
                    })
                })
                .join();
            }
        }
    }
}

/// An EventStoreDB / KurrentDB log that one test owns: the server of
/// `OMNIBOX_TEST_EVENTSTOREDB_URL`, under a stream prefix of its own.
#[cfg(feature = "eventstoredb")]
pub struct TestEventStoreDb {
    pub settings: crate::eventstoredb::EventStoreDbSettings,
}

#[cfg(feature = "eventstoredb")]
impl TestEventStoreDb {
    pub const URL_VARIABLE: &'static str = "OMNIBOX_TEST_EVENTSTOREDB_URL";

    /// A fresh prefix on the test server, or `None` when no server is
    /// configured and none is required.
    pub fn create() -> Option<Self> {
        let required = std::env::var("OMNIBOX_REQUIRE_EVENTSTOREDB").is_ok_and(|v| v == "1");
        let url = std::env::var(Self::URL_VARIABLE)
            .ok()
            .filter(|url| !url.trim().is_empty());
        let Some(url) = url else {
            assert!(
                !required,
                "EventStoreDB is required (OMNIBOX_REQUIRE_EVENTSTOREDB=1) but {} is not set",
                Self::URL_VARIABLE
            );
            eprintln!(
                "skipping an EventStoreDB test: {} is not set (e.g. esdb://127.0.0.1:2113?tls=false)",
                Self::URL_VARIABLE
            );
            return None;
        };
        let prefix = format!("t{}_", Uuid::new_v4().simple());
        let settings = crate::eventstoredb::EventStoreDbSettings::parse(url.trim())
            .and_then(|settings| settings.with_stream_prefix(&prefix))
            .unwrap_or_else(|e| panic!("{}: {e}", Self::URL_VARIABLE));
        Some(Self { settings })
    }

    /// Connects a store (each call a client of its own, as another process
    /// would have).
    pub async fn connect(&self) -> std::sync::Arc<dyn crate::EventStore> {
        let store = crate::eventstoredb::EventStoreDbStore::connect(self.settings.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", Self::URL_VARIABLE));
        std::sync::Arc::new(store)
    }
}
