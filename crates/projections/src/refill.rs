//! How a folded rebuild replaces a projector's tables, inside the one
//! transaction that also moves its checkpoint.
//!
//! Filling a table and then building each index once, by sorting, is far
//! cheaper than inserting every row into every index. On PostgreSQL it is
//! also far cheaper than emptying the old rows first: `DELETE` leaves them
//! dead in the heap and in every index until a vacuum, so each rebuild
//! inserted into indexes twice the size. Measured on 100,000 messages
//! (`psql`, a busy machine): `DELETE` and `COPY` into the indexed table
//! 2.3 s; `COPY` into a bare table and three index builds 0.5 s.
//!
//! - **SQLite**: the tables are emptied and their secondary indexes dropped
//!   and created again after the rows are in. A SQLite write transaction
//!   excludes every other writer, and readers see the old file until it
//!   commits.
//! - **PostgreSQL**: the new rows go into bare tables of the same shape in
//!   a schema of the transaction's own, put first on its `search_path` (so
//!   the projector's statements reach them by their usual names); the
//!   indexes and constraints of the live tables are built on them, then the
//!   live tables are dropped and the new ones moved in. Readers keep the
//!   old tables until the swap, which waits only for the statements
//!   running on them. If anything fails, the transaction rolls back with
//!   the schema in it.

use std::time::Duration;

use uuid::Uuid;

use crate::sql::{sqlite_error, sqlite_execute, PgTx, SqliteTx};
use crate::ReadTx;

/// How long the swap waits for the live tables before letting go of the
/// ones it holds and trying again: readers lock tables one statement at a
/// time, and waiting for all of them in turn while holding some could
/// deadlock with a reader that takes them in another order.
const SWAP_LOCK_TIMEOUT: &str = "100ms";
/// Tries before the swap waits as long as it takes.
const SWAP_ATTEMPTS: u32 = 50;

/// Tables being refilled; [`Refill::finish`] makes the new rows the live
/// ones.
pub enum Refill {
    /// The statements that create the dropped indexes again.
    Sqlite(Vec<String>),
    Postgres(Shadow),
}

impl Refill {
    /// Gets `tables` ready to take every row anew, within `tx`.
    pub async fn start(tx: &mut ReadTx, tables: &[&str]) -> Result<Self, sqlx::Error> {
        match tx {
            ReadTx::Sqlite(sqlite) => {
                for table in tables {
                    sqlite_execute(sqlite, &format!("DELETE FROM {table}"), &[])?;
                }
                Ok(Refill::Sqlite(sqlite_drop_indexes(sqlite, tables)?))
            }
            ReadTx::Postgres(pg) => Ok(Refill::Postgres(Shadow::create(pg, tables).await?)),
        }
    }

    /// Builds the indexes and, on PostgreSQL, swaps the new tables in.
    pub async fn finish(self, tx: &mut ReadTx) -> Result<(), sqlx::Error> {
        match (self, tx) {
            (Refill::Sqlite(indexes), ReadTx::Sqlite(sqlite)) => {
                let connection = sqlite.connection()?;
                for sql in &indexes {
                    connection.execute_batch(sql).map_err(sqlite_error)?;
                }
                Ok(())
            }
            (Refill::Postgres(shadow), ReadTx::Postgres(pg)) => shadow.swap(pg).await,
            _ => Err(sqlx::Error::Protocol(
                "a refill finished on another backend's transaction".into(),
            )),
        }
    }
}

/// Drops the secondary indexes of `tables`, returning the statements that
/// create them again.
fn sqlite_drop_indexes(tx: &SqliteTx, tables: &[&str]) -> Result<Vec<String>, sqlx::Error> {
    let connection = tx.connection()?;
    let mut indexes = Vec::new();
    for table in tables {
        let mut statement = connection
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")
            .map_err(sqlite_error)?;
        let found = statement
            .query_map([table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sqlite_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_error)?;
        for (name, sql) in found {
            connection
                .execute_batch(&format!("DROP INDEX {}", quoted(&name)))
                .map_err(sqlite_error)?;
            indexes.push(sql);
        }
    }
    Ok(indexes)
}

/// New PostgreSQL tables beside the live ones, in a schema of their own.
pub struct Shadow {
    /// The schema holding the new tables (quoted).
    schema: String,
    /// The schema of the live tables (quoted).
    live: String,
    /// The transaction's `search_path` before the shadow schema went first.
    search_path: String,
    /// The live tables, unquoted.
    tables: Vec<String>,
    /// The live tables' indexes and unique constraints, made for the new
    /// tables under the same names.
    indexes: Vec<String>,
}

impl Shadow {
    async fn create(tx: &mut PgTx, tables: &[&str]) -> Result<Self, sqlx::Error> {
        tx.flush().await?;
        let (live, search_path): (String, String) =
            sqlx::query_as("SELECT current_schema(), current_setting('search_path')")
                .fetch_one(&mut **tx)
                .await?;
        let schema = quoted(&format!("omnibox_refill_{}", Uuid::new_v4().simple()));
        let live = quoted(&live);
        let mut ddl = format!("CREATE SCHEMA {schema};");
        let mut indexes = Vec::new();
        for table in tables {
            let name = quoted(table);
            ddl.push_str(&format!(
                "CREATE TABLE {schema}.{name} (LIKE {live}.{name} \
                 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED);"
            ));
            // Each index again, on the new table: a constraint's through its
            // constraint, any other from its definition, `CREATE [UNIQUE]
            // INDEX name ON schema.table USING …`, with the table replaced.
            let statements: Vec<String> = sqlx::query_scalar(
                "SELECT CASE WHEN c.oid IS NOT NULL
                    THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s',
                                $3::text, c.conname, pg_get_constraintdef(c.oid))
                    ELSE format('CREATE %sINDEX %I ON %s%s',
                                CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END,
                                i.relname, $3::text,
                                substr(pg_get_indexdef(x.indexrelid),
                                       strpos(pg_get_indexdef(x.indexrelid), ' USING ')))
                    END
                 FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid
                 LEFT JOIN pg_constraint c
                   ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u', 'x')
                 WHERE x.indrelid = ($1::text || '.' || $2::text)::regclass
                 ORDER BY x.indexrelid",
            )
            .bind(&live)
            .bind(&name)
            .bind(format!("{schema}.{name}"))
            .fetch_all(&mut **tx)
            .await?;
            indexes.extend(statements);
        }
        run(tx, &ddl).await?;
        // The projector's statements name its tables unqualified: they now
        // reach the new ones.
        sqlx::query("SELECT set_config('search_path', $1, true)")
            .bind(format!("{schema}, {search_path}"))
            .execute(&mut **tx)
            .await?;
        Ok(Shadow {
            schema,
            live,
            search_path,
            tables: tables.iter().map(|t| t.to_string()).collect(),
            indexes,
        })
    }

    async fn swap(self, tx: &mut PgTx) -> Result<(), sqlx::Error> {
        tx.flush().await?;
        let Shadow {
            schema,
            live,
            search_path,
            tables,
            indexes,
        } = self;
        run(tx, &indexes.join(";")).await?;
        let live_tables = tables
            .iter()
            .map(|t| format!("{live}.{}", quoted(t)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut swap = format!("DROP TABLE {live_tables};");
        for table in &tables {
            swap.push_str(&format!(
                "ALTER TABLE {schema}.{} SET SCHEMA {live};",
                quoted(table)
            ));
        }
        swap.push_str(&format!("DROP SCHEMA {schema};"));
        let lock_all = format!("LOCK TABLE {live_tables} IN ACCESS EXCLUSIVE MODE");
        let lock = format!(
            "SAVEPOINT refill_swap; SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; {lock_all}"
        );
        let mut attempt = 1;
        loop {
            match run(tx, &lock).await {
                Ok(_) => break,
                Err(error) if lock_not_available(&error) && attempt < SWAP_ATTEMPTS => {
                    run(tx, "ROLLBACK TO SAVEPOINT refill_swap").await?;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) if lock_not_available(&error) => {
                    // Readers never let go all at once: queue behind them.
                    run(
                        tx,
                        &format!(
                            "ROLLBACK TO SAVEPOINT refill_swap; SET LOCAL lock_timeout = 0; {lock_all}"
                        ),
                    )
                    .await?;
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        run(tx, &format!("SET LOCAL lock_timeout = DEFAULT; {swap}")).await?;
        sqlx::query("SELECT set_config('search_path', $1, true)")
            .bind(&search_path)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Runs `sql`, one or more statements without parameters, in the simple
/// query protocol: nothing is prepared or kept for these one-off statements.
async fn run(tx: &mut PgTx, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(&mut **tx, sql).await.map(|_| ())
}

/// PostgreSQL's `lock_not_available`: a `lock_timeout` ran out.
fn lock_not_available(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
