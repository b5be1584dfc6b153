//! The expiry timer: channels whose token sat unused past its deadline
//! are expired (see [`expire_due_channels`]).

use crate::context::AppContext;
use crate::services::channels::expire_due_channels;

/// How often the expiry timer looks, in production.
pub const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the expiry timer until the process stops.
pub async fn run_expiry_timer(app: AppContext) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tokio::select! {
            _ = app.stopping() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = expire_due_channels(&app).await {
            tracing::warn!(
                ?error,
                "expiry timer tick failed; trying again at the next tick"
            );
        }
    }
}
