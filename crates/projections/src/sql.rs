//! One code path for both SQL dialects.
//!
//! Read-model SQL is written once, with `$1` placeholders (which both
//! PostgreSQL and SQLite accept) and types both drivers map alike (UUID,
//! text, integers, booleans, timestamps). The macros below expand the same
//! query for each driver, so nothing is written twice by hand.

use omnibox_store::Database;

/// A read-model transaction on either backend.
pub enum ReadTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl ReadTx {
    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits its turn instead of failing half-way.
    pub async fn begin(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Sqlite {
                read_pool: pool, ..
            } => ReadTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Database::Postgres { pool } => ReadTx::Postgres(pool.begin().await?),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            ReadTx::Sqlite(tx) => tx.commit().await,
            ReadTx::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            ReadTx::Sqlite(tx) => tx.rollback().await,
            ReadTx::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// Runs a statement in a [`ReadTx`]; evaluates to the rows affected.
#[macro_export]
macro_rules! execute {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::ReadTx::Sqlite(tx) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
            $crate::ReadTx::Postgres(tx) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
        }
    };
}

/// Runs a query on a [`Database`] pool and maps every row with `|row| expr`
/// (an expression returning `Result<T, sqlx::Error>`, using `sqlx::Row`).
#[macro_export]
macro_rules! fetch_all {
    ($db:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $map:expr) => {
        match $db {
            omnibox_store::Database::Sqlite { read_pool: pool, .. } => sqlx::query($sql)$(.bind($arg))*.fetch_all(pool).await
                .and_then(|rows| rows.iter().map(|$row| $map).collect::<Result<Vec<_>, sqlx::Error>>()),
            omnibox_store::Database::Postgres { pool } => sqlx::query($sql)$(.bind($arg))*.fetch_all(pool).await
                .and_then(|rows| rows.iter().map(|$row| $map).collect::<Result<Vec<_>, sqlx::Error>>()),
        }
    };
}

/// Like [`fetch_all!`] for at most one row.
#[macro_export]
macro_rules! fetch_optional {
    ($db:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $map:expr) => {
        match $db {
            omnibox_store::Database::Sqlite { read_pool: pool, .. } => sqlx::query($sql)$(.bind($arg))*.fetch_optional(pool).await
                .and_then(|row| row.as_ref().map(|$row| $map).transpose()),
            omnibox_store::Database::Postgres { pool } => sqlx::query($sql)$(.bind($arg))*.fetch_optional(pool).await
                .and_then(|row| row.as_ref().map(|$row| $map).transpose()),
        }
    };
}

/// Like [`fetch_optional!`] inside a [`ReadTx`].
#[macro_export]
macro_rules! fetch_optional_tx {
    ($tx:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $map:expr) => {
        match $tx {
            $crate::ReadTx::Sqlite(tx) => sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut **tx).await
                .and_then(|row| row.as_ref().map(|$row| $map).transpose()),
            $crate::ReadTx::Postgres(tx) => sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut **tx).await
                .and_then(|row| row.as_ref().map(|$row| $map).transpose()),
        }
    };
}
