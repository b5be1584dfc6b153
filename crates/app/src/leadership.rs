//! Leadership: which server runs the reactors that must run on one server
//! only (media downloads, profile look-ups, the expiry timer).
//!
//! On PostgreSQL a server leads a role while it holds a session-level
//! advisory lock on a connection of its own (`pg_try_advisory_lock`, keyed
//! by the schema and the role's name). The database releases the lock when
//! that connection ends, so a server that is killed, or cut off from the
//! database, stops leading at once and another takes over within
//! [`RETRY`]. The leader checks its connection every [`RETRY`] and stops
//! its reactor the moment the check fails. Whatever a reactor records is
//! still decided at append time (ids derived from the work, or aggregates'
//! expected revisions), so an overlap during a hand-over records nothing
//! twice. On SQLite there is one server per file: it always leads.

use std::future::Future;
use std::time::Duration;

use omnibox_store::Database;
use sqlx::Connection;

use crate::context::AppContext;

/// How often a follower asks for the lock, and the leader checks it still holds it.
pub const RETRY: Duration = Duration::from_secs(1);

/// Runs `reactor` while this server leads `role`, until shutdown; starts
/// it again each time leadership is won back.
pub async fn run_as_leader<F, Fut>(app: AppContext, role: &'static str, reactor: F)
where
    F: Fn(AppContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Database::Postgres { pool } = &app.db else {
        reactor(app.clone()).await;
        return;
    };
    let pool = pool.clone();
    let key = format!("omnibox:{role}");
    loop {
        let mut connection = tokio::select! {
            _ = app.stopping() => return,
            won = try_lead(&pool, &key) => match won {
                Some(connection) => connection,
                None => {
                    tokio::select! {
                        _ = app.stopping() => return,
                        _ = tokio::time::sleep(RETRY) => continue,
                    }
                }
            },
        };
        tracing::info!(role, "leading");
        let mut running = tokio::spawn(reactor(app.clone()));
        loop {
            tokio::select! {
                _ = &mut running => {
                    // The reactor ended (shutdown): let the lock go with the connection.
                    let _ = connection.close().await;
                    return;
                }
                _ = tokio::time::sleep(RETRY) => {
                    if connection.ping().await.is_err() {
                        tracing::warn!(role, "lost the leadership connection; stopping the reactor");
                        running.abort();
                        break;
                    }
                }
            }
        }
    }
}

/// A connection of its own holding the advisory lock for `key`, if no
/// other server holds it. A follower's attempt borrows a pooled connection
/// and gives it back: only the winner keeps one out of the pool.
async fn try_lead(pool: &sqlx::PgPool, key: &str) -> Option<sqlx::PgConnection> {
    let mut connection = pool.acquire().await.ok()?;
    let won: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ':' || $1, 0))",
    )
    .bind(key)
    .fetch_one(&mut *connection)
    .await
    .ok()?;
    won.then(|| connection.detach())
}
