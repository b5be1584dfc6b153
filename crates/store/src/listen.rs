//! PostgreSQL `LISTEN`, kept up for as long as the process runs.
//!
//! Several parts of a server hear other servers through notifications (new
//! commits, live updates, erasures). Each needs the same thing: a session
//! connection that listens, is re-established when it drops, and tells its
//! user when it starts and stops listening, since what was said in between
//! is lost.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

/// Pause before trying again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// The name SQL expression `name` gives in this connection's schema
/// (channels are per schema, so tenants or tests sharing a database do not
/// wake each other), asked until the database answers.
pub async fn channel_name(pool: &PgPool, name: &str) -> String {
    loop {
        match sqlx::query_scalar(&format!("SELECT {name}"))
            .fetch_one(pool)
            .await
        {
            Ok(channel) => return channel,
            Err(error) => {
                tracing::warn!(%error, "cannot name a notification channel; retrying in 1 s");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Listens on `channel` until the process stops, calling `heard` with each
/// notification's payload. `listening(true)` is called each time a
/// connection starts listening and `listening(false)` each time it is lost:
/// notifications sent in between were missed.
pub async fn listen_forever(
    pool: &PgPool,
    channel: &str,
    mut listening: impl FnMut(bool),
    mut heard: impl FnMut(&str),
) {
    loop {
        let listened: Result<(), sqlx::Error> = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(channel).await?;
            listening(true);
            // `None`: the connection was lost. The listener would reconnect
            // on the next call, but what was said meanwhile is gone: start
            // over, saying so.
            while let Some(notification) = listener.try_recv().await? {
                heard(notification.payload());
            }
            Ok(())
        }
        .await;
        listening(false);
        match listened {
            Ok(()) => tracing::warn!(channel, "lost a LISTEN connection; reconnecting"),
            Err(error) => {
                tracing::warn!(%error, channel, "cannot LISTEN; retrying in 1 s");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
