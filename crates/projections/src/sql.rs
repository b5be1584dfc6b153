//! One code path for both SQL dialects.
//!
//! Read-model SQL is written once, with `$1` placeholders (which both
//! PostgreSQL and SQLite accept) and types both drivers map alike (UUID,
//! text, integers, booleans, timestamps). The macros below expand the same
//! query for each driver, so nothing is written twice by hand.

use omnibox_store::Database;
use uuid::Uuid;

/// A read-model transaction on either backend.
pub enum ReadTx {
    /// A plain connection to the read-model file: statements run directly,
    /// without a hand-off to a worker thread each (see
    /// [`omnibox_store::database::SqliteWriters`]).
    Sqlite(SqliteTx),
    Postgres(PgTx),
}

/// A PostgreSQL read-model transaction, with the writes put off until its
/// next statement or its commit.
///
/// Each statement is a round trip, and a live batch's task waits for each
/// answer behind everything else the server is doing: at a thousand
/// messages a second with a thousand subscribers, one statement per
/// received message made a batch take seconds. The received messages of a
/// batch (pure writes: nothing reads their result) are therefore kept here
/// and written together by one statement, just before any other statement
/// of the transaction runs (so the order of writes and reads is kept) or
/// at the commit. Reach the connection only through [`execute!`],
/// [`fetch_optional_tx!`] or after [`PgTx::flush`].
pub struct PgTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// Received messages not written yet, in order.
    pub(crate) receives: Vec<Receive>,
}

impl PgTx {
    /// Writes what was put off. Every statement of the transaction runs
    /// after this.
    pub async fn flush(&mut self) -> Result<(), sqlx::Error> {
        if self.receives.is_empty() {
            return Ok(());
        }
        let receives = std::mem::take(&mut self.receives);
        receive_all(&mut self.tx, &receives).await
    }
}

impl std::ops::Deref for PgTx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }
}

/// A `BEGIN IMMEDIATE` transaction on a plain SQLite connection; rolled
/// back if dropped before [`ReadTx::commit`].
pub struct SqliteTx {
    connection: Option<rusqlite::Connection>,
    writers: omnibox_store::database::SqliteWriters,
    /// This process's write turn on the file, held until the end. Declared
    /// last: it is released after the connection went back to the pool.
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteTx {
    async fn begin(writers: &omnibox_store::database::SqliteWriters) -> Result<Self, sqlx::Error> {
        // Writers in this process queue fairly for the file; SQLite's own
        // busy wait only ever meets another process's transaction.
        let turn = writers.turn().await;
        let connection = writers.take().map_err(sqlite_error)?;
        match connection.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => Ok(Self {
                connection: Some(connection),
                writers: writers.clone(),
                _turn: turn,
            }),
            Err(error) => {
                writers.give(connection);
                Err(sqlite_error(error))
            }
        }
    }

    /// The open connection (present until the transaction ends).
    /// (Finishing consumes the transaction, so the error cannot happen.)
    pub fn connection(&self) -> Result<&rusqlite::Connection, sqlx::Error> {
        self.connection
            .as_ref()
            .ok_or_else(|| sqlx::Error::Protocol("the transaction already ended".into()))
    }

    fn finish(mut self, sql: &str) -> Result<(), sqlx::Error> {
        let Some(connection) = self.connection.take() else {
            return Ok(());
        };
        let outcome = connection.execute_batch(sql).map_err(sqlite_error);
        if outcome.is_ok() {
            self.writers.give(connection);
        }
        outcome
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            if connection.execute_batch("ROLLBACK").is_ok() {
                self.writers.give(connection);
            }
        }
    }
}

/// A SQLite error in the type every read-model function returns.
pub fn sqlite_error(error: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Database(Box::new(SqliteFailure(error)))
}

#[derive(Debug)]
struct SqliteFailure(rusqlite::Error);

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        "SQLite statement failed"
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code.to_string().into()),
            _ => None,
        }
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _)
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                match e.extended_code {
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                        sqlx::error::ErrorKind::UniqueViolation
                    }
                    rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                        sqlx::error::ErrorKind::ForeignKeyViolation
                    }
                    rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => {
                        sqlx::error::ErrorKind::NotNullViolation
                    }
                    rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => {
                        sqlx::error::ErrorKind::CheckViolation
                    }
                    _ => sqlx::error::ErrorKind::Other,
                }
            }
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

/// Prepares `sql` (cached per connection) and binds `args` to its `$n`
/// placeholders: a placeholder used twice is one parameter in SQLite, so
/// each is bound by its number, as sqlx does.
fn prepare<'c>(
    connection: &'c rusqlite::Connection,
    sql: &str,
    args: &[&dyn Arg],
) -> Result<rusqlite::CachedStatement<'c>, sqlx::Error> {
    let mut statement = connection.prepare_cached(sql).map_err(sqlite_error)?;
    for index in 1..=statement.parameter_count() {
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=args.len()).contains(n))
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!("{sql}: placeholder {index} is not bound"))
            })?;
        statement
            .raw_bind_parameter(index, args[number - 1])
            .map_err(sqlite_error)?;
    }
    Ok(statement)
}

/// Runs one statement in a SQLite read-model transaction; the rows changed.
pub fn sqlite_execute(tx: &SqliteTx, sql: &str, args: &[&dyn Arg]) -> Result<u64, sqlx::Error> {
    let mut statement = prepare(tx.connection()?, sql, args)?;
    statement
        .raw_execute()
        .map(|n| n as u64)
        .map_err(sqlite_error)
}

/// Runs one query in a SQLite read-model transaction and maps its first row.
pub fn sqlite_fetch_optional<T>(
    tx: &SqliteTx,
    sql: &str,
    args: &[&dyn Arg],
    map: impl FnOnce(&SqliteRow<'_>) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    let mut statement = prepare(tx.connection()?, sql, args)?;
    let mut rows = statement.raw_query();
    match rows.next().map_err(sqlite_error)? {
        Some(row) => map(&SqliteRow(row)).map(Some),
        None => Ok(None),
    }
}

/// A row of a SQLite read-model query, read like an sqlx row.
pub struct SqliteRow<'r>(&'r rusqlite::Row<'r>);

impl SqliteRow<'_> {
    pub fn try_get<T: rusqlite::types::FromSql, I: rusqlite::RowIndex>(
        &self,
        index: I,
    ) -> Result<T, sqlx::Error> {
        self.0.get(index).map_err(sqlite_error)
    }
}

/// A value bound to a read-model statement on SQLite, encoded as sqlx
/// encodes it (so rows written either way read back alike): UUIDs as 16-byte
/// blobs, instants as RFC 3339 text.
pub trait Arg {
    fn sqlite(&self) -> rusqlite::types::ToSqlOutput<'_>;
}

macro_rules! arg_as_sqlite {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
                rusqlite::ToSql::to_sql(self).unwrap_or(rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null))
            }
        }
    )*};
}

arg_as_sqlite!(i64, i32, bool, f64, String, str, uuid::Uuid);

impl Arg for chrono::DateTime<chrono::Utc> {
    fn sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Text(
            self.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        ))
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        (**self).sqlite()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn sqlite(&self) -> rusqlite::types::ToSqlOutput<'_> {
        match self {
            Some(value) => value.sqlite(),
            None => rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null),
        }
    }
}

impl rusqlite::ToSql for dyn Arg + '_ {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.sqlite())
    }
}

impl ReadTx {
    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits its turn instead of failing half-way.
    ///
    /// Neither backend waits for the disk at commit. Read models are derived
    /// from the log and each projector's checkpoint commits with its writes,
    /// so a crash can only lose the last few transactions whole, and they
    /// are applied again from the log. (SQLite: `synchronous = NORMAL`;
    /// PostgreSQL: `synchronous_commit = off` for these transactions only,
    /// so they stop queueing for WAL flushes beside the log's appends.)
    pub async fn begin(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Sqlite { writers, .. } => ReadTx::Sqlite(SqliteTx::begin(writers).await?),
            Database::Postgres { pool } => ReadTx::Postgres(PgTx {
                tx: pool
                    .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await?,
                receives: Vec::new(),
            }),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            ReadTx::Sqlite(tx) => tx.finish("COMMIT"),
            ReadTx::Postgres(mut tx) => {
                tx.flush().await?;
                tx.tx.commit().await
            }
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            ReadTx::Sqlite(tx) => tx.finish("ROLLBACK"),
            ReadTx::Postgres(tx) => tx.tx.rollback().await,
        }
    }
}

/// Runs a statement in a [`ReadTx`]; evaluates to the rows affected.
#[macro_export]
macro_rules! execute {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::ReadTx::Sqlite(tx) => $crate::sql::sqlite_execute(tx, $sql, &[$(&$arg as &dyn $crate::sql::Arg),*]),
            $crate::ReadTx::Postgres(tx) => match tx.flush().await {
                Ok(()) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
                Err(error) => Err(error),
            },
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
            $crate::ReadTx::Sqlite(tx) => $crate::sql::sqlite_fetch_optional(tx, $sql, &[$(&$arg as &dyn $crate::sql::Arg),*], |$row| $map),
            $crate::ReadTx::Postgres(tx) => match tx.flush().await {
                Ok(()) => sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut **tx).await
                    .and_then(|row| row.as_ref().map(|$row| $map).transpose()),
                Err(error) => Err(error),
            },
        }
    };
}

/// A value as PostgreSQL's binary `COPY` format carries it: the length
/// (-1 for NULL), then the bytes of the column type's binary form. The
/// server then copies UUIDs and integers instead of parsing their text,
/// which was a third of the time `COPY` took in its text format.
///
/// The Rust type must match the column's: `Uuid` for `UUID`, `i64` for
/// `BIGINT`, `i32` for `INTEGER`, `bool` for `BOOLEAN`, `str` for `TEXT`.
/// A mismatch is refused by the server, not misread.
pub trait CopyBinary {
    fn copy_binary(&self, out: &mut Vec<u8>);
}

/// The binary `COPY` stream's header: signature, flags, no extension.
pub const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary `COPY` stream's trailer: a row of -1 columns.
pub const COPY_BINARY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

fn copy_field(bytes: &[u8], out: &mut Vec<u8>) {
    // Fields are far below 2 GiB: a text column holds at most one message.
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

macro_rules! copy_as_bytes {
    ($($t:ty => |$v:ident| $bytes:expr),* $(,)?) => {$(
        impl CopyBinary for $t {
            fn copy_binary(&self, out: &mut Vec<u8>) {
                let $v = self;
                copy_field($bytes, out);
            }
        }
    )*};
}

copy_as_bytes!(
    i64 => |v| &v.to_be_bytes(),
    i32 => |v| &v.to_be_bytes(),
    bool => |v| &[u8::from(*v)],
    uuid::Uuid => |v| v.as_bytes(),
    str => |v| v.as_bytes(),
    String => |v| v.as_bytes(),
);

impl<T: CopyBinary + ?Sized> CopyBinary for &T {
    fn copy_binary(&self, out: &mut Vec<u8>) {
        (**self).copy_binary(out);
    }
}

impl<T: CopyBinary> CopyBinary for Option<T> {
    fn copy_binary(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.copy_binary(out),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
}

/// `COPY table (columns) FROM STDIN` in the binary format, for an `INSERT
/// INTO table (columns) VALUES (…)` statement. With `FREEZE`: the rows go
/// into a table created by the same transaction (see [`crate::refill`]),
/// so they are written as already visible to everyone, and no later read
/// or vacuum has to mark them so.
pub fn copy_statement(insert: &str) -> String {
    let target = insert
        .split("VALUES")
        .next()
        .unwrap_or(insert)
        .trim()
        .trim_start_matches("INSERT INTO")
        .trim();
    format!("COPY {target} FROM STDIN WITH (FORMAT binary, FREEZE)")
}

/// How an inbound message (or several: `excluded` then holds their count
/// and the latest) lands on a conversation that exists, after its
/// `unread_count`.
#[macro_export]
macro_rules! inbound_on_conflict {
    () => {
        "status = 'OPEN',
                 last_customer_message_at = CASE
                     WHEN rm_conversations.last_customer_message_at IS NULL
                       OR rm_conversations.last_customer_message_at < excluded.last_customer_message_at
                     THEN excluded.last_customer_message_at ELSE rm_conversations.last_customer_message_at END,
                 last_message_preview = CASE WHEN rm_conversations.last_message_at <= excluded.last_message_at
                     THEN excluded.last_message_preview ELSE rm_conversations.last_message_preview END,
                 last_message_at = CASE WHEN rm_conversations.last_message_at <= excluded.last_message_at
                     THEN excluded.last_message_at ELSE rm_conversations.last_message_at END"
    };
}

/// A received message whose three writes (contact, conversation, message)
/// a PostgreSQL transaction has put off (see [`PgTx`]).
pub(crate) struct Receive {
    pub(crate) contact_id: Uuid,
    pub(crate) contact_org_id: Uuid,
    pub(crate) contact_channel_id: Uuid,
    pub(crate) platform_user_id: String,
    pub(crate) conversation_id: Uuid,
    pub(crate) org_id: Uuid,
    pub(crate) channel_id: Uuid,
    pub(crate) channel_kind: String,
    pub(crate) conversation_contact_id: Uuid,
    pub(crate) thread_kind: &'static str,
    pub(crate) thread_id: String,
    pub(crate) sent_at: i64,
    pub(crate) preview: String,
    pub(crate) message_id: Uuid,
    pub(crate) message_conversation_id: Uuid,
    pub(crate) message_org_id: Uuid,
    pub(crate) message_sent_at: i64,
    pub(crate) direction: &'static str,
    pub(crate) platform_message_id: Option<String>,
    pub(crate) text: Option<String>,
    /// JSON array.
    pub(crate) attachments: String,
    pub(crate) delivery_state: Option<&'static str>,
    pub(crate) author_id: Option<Uuid>,
}

/// Every put-off [`Receive`] as one statement: the same writes as
/// the inbox's one-by-one statements for each in order. Contacts are deduplicated (the first
/// wins, as `DO NOTHING` would have it), each conversation comes once with
/// its count of messages and its latest one (the last of equal times, as
/// `<=` would have it), and every message is inserted.
pub(crate) const RECEIVE_ALL: &str = concat!(
    "WITH contact AS (
        INSERT INTO rm_contacts (contact_id, org_id, channel_id, platform_user_id, profile_state)
        SELECT id, org, channel, platform_user, 'PENDING'
        FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS c(id, org, channel, platform_user)
        ON CONFLICT (contact_id) DO NOTHING),
     conversation AS (
        INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
                 thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, status)
        SELECT id, org, channel, kind, contact, thread_kind, thread_id, at, preview, at, unread, 'OPEN'
        FROM UNNEST($5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::uuid[], $10::text[], $11::text[],
                    $12::int8[], $13::text[], $14::int4[])
             AS c(id, org, channel, kind, contact, thread_kind, thread_id, at, preview, unread)
        ON CONFLICT (conversation_id) DO UPDATE SET
                 unread_count = rm_conversations.unread_count + excluded.unread_count,
                 ",
    crate::inbound_on_conflict!(),
    ")
     INSERT INTO rm_messages (message_id, conversation_id, org_id, direction, platform_message_id, sent_at, text,
         attachments, delivery_state, failure_reason, author_id, unsent)
     SELECT id, conversation, org, direction, platform_id, sent_at, text, attachments, state, NULL, author, false
     FROM UNNEST($15::uuid[], $16::uuid[], $17::uuid[], $18::text[], $19::text[], $20::int8[], $21::text[],
                 $22::text[], $23::text[], $24::uuid[])
          AS m(id, conversation, org, direction, platform_id, sent_at, text, attachments, state, author)"
);

/// One conversation's part of a batch of [`Receive`]s: the first of them
/// (its columns), how many there are, and the latest.
struct Landing<'a> {
    first: &'a Receive,
    count: i32,
    latest: &'a Receive,
}

/// Writes `receives` with [`RECEIVE_ALL`].
pub(crate) async fn receive_all(
    connection: &mut sqlx::PgConnection,
    receives: &[Receive],
) -> Result<(), sqlx::Error> {
    let mut seen_contacts = std::collections::HashSet::new();
    let contacts: Vec<&Receive> = receives
        .iter()
        .filter(|r| seen_contacts.insert(r.contact_id))
        .collect();
    let mut landing_of: std::collections::HashMap<Uuid, usize> = Default::default();
    let mut landings: Vec<Landing<'_>> = Vec::new();
    for r in receives {
        if let Some(&at) = landing_of.get(&r.conversation_id) {
            let landing = &mut landings[at];
            landing.count += 1;
            if landing.latest.sent_at <= r.sent_at {
                landing.latest = r;
            }
        } else {
            landing_of.insert(r.conversation_id, landings.len());
            landings.push(Landing {
                first: r,
                count: 1,
                latest: r,
            });
        }
    }
    fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        rows.iter().map(f).collect()
    }
    sqlx::query(RECEIVE_ALL)
        .bind(column(&contacts, |r| r.contact_id))
        .bind(column(&contacts, |r| r.contact_org_id))
        .bind(column(&contacts, |r| r.contact_channel_id))
        .bind(column(&contacts, |r| r.platform_user_id.as_str()))
        .bind(column(&landings, |l| l.first.conversation_id))
        .bind(column(&landings, |l| l.first.org_id))
        .bind(column(&landings, |l| l.first.channel_id))
        .bind(column(&landings, |l| l.first.channel_kind.as_str()))
        .bind(column(&landings, |l| l.first.conversation_contact_id))
        .bind(column(&landings, |l| l.first.thread_kind))
        .bind(column(&landings, |l| l.first.thread_id.as_str()))
        .bind(column(&landings, |l| l.latest.sent_at))
        .bind(column(&landings, |l| l.latest.preview.as_str()))
        .bind(column(&landings, |l| l.count))
        .bind(column(receives, |r| r.message_id))
        .bind(column(receives, |r| r.message_conversation_id))
        .bind(column(receives, |r| r.message_org_id))
        .bind(column(receives, |r| r.direction))
        .bind(column(receives, |r| r.platform_message_id.as_deref()))
        .bind(column(receives, |r| r.message_sent_at))
        .bind(column(receives, |r| r.text.as_deref()))
        .bind(column(receives, |r| r.attachments.as_str()))
        .bind(column(receives, |r| r.delivery_state))
        .bind(column(receives, |r| r.author_id))
        .execute(connection)
        .await?;
    Ok(())
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    #[test]
    fn copy_binary_writes_lengths_then_network_order_bytes() {
        let mut out = Vec::new();
        "ab".copy_binary(&mut out);
        None::<String>.copy_binary(&mut out);
        Some(true).copy_binary(&mut out);
        (-5i64).copy_binary(&mut out);
        7i32.copy_binary(&mut out);
        assert_eq!(
            out,
            [
                &[0, 0, 0, 2, b'a', b'b'][..],
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 1, 1],
                &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb],
                &[0, 0, 0, 4, 0, 0, 0, 7],
            ]
            .concat()
        );
        assert_eq!(COPY_BINARY_HEADER.len(), 19);
        assert_eq!(
            copy_statement("INSERT INTO rm_x (a, b)\n     VALUES ($1, $2)"),
            "COPY rm_x (a, b) FROM STDIN WITH (FORMAT binary, FREEZE)"
        );
    }
}
