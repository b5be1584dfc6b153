//! The reactors: work that talks to the platforms, found through a read
//! model, decided from the log, and recorded as events, never while a
//! request waits. All of them run under [`start`] until the context's
//! shutdown signal ([`AppContext::shut_down`]).

pub mod assignment;
pub mod delivery;
pub mod expiry;
pub mod media;
pub mod profiles;

use crate::context::AppContext;
use crate::leadership::run_as_leader;

/// Starts the reactors: the delivery worker on every server, and the
/// expiry timer, media fetcher, profile fetcher and automatic assignment
/// on the leader only. Each ends once [`AppContext::shut_down`] was called
/// and its current pass is over; the handles say when.
pub fn start(app: &AppContext) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        // Every server delivers: each bubble is claimed in the log.
        tokio::spawn(delivery::run_delivery_worker(app.clone())),
        // One server at a time downloads media, looks up profiles,
        // expires tokens and assigns conversations automatically.
        tokio::spawn(run_as_leader(
            app.clone(),
            "expiry timer",
            expiry::run_expiry_timer,
        )),
        tokio::spawn(run_as_leader(
            app.clone(),
            "media fetcher",
            media::run_media_fetcher,
        )),
        tokio::spawn(run_as_leader(
            app.clone(),
            "profile fetcher",
            profiles::run_profile_fetcher,
        )),
        tokio::spawn(run_as_leader(
            app.clone(),
            "automatic assignment",
            assignment::run_auto_assigner,
        )),
    ]
}
