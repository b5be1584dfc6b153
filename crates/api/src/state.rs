//! What every handler shares: the application's context, plus what only
//! the HTTP layer needs (open connections and sockets, member changes for
//! the sockets to re-check their tokens).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use omnibox_app::{AppContext, Config, StartError};
use omnibox_domain::Clock;

/// Shared by every request; cheap to clone. Dereferences to the
/// application's [`AppContext`], so handlers reach the store, read models
/// and clients as `app.store`, `app.db`, ….
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub context: AppContext,
    /// Members who changed (removed, token rotated, …), for open sockets to
    /// check their token again; rare, so every socket may listen.
    pub member_changes: tokio::sync::broadcast::Sender<omnibox_domain::ids::MemberId>,
    /// Open subscription WebSockets, so shutdown can wait for their close frames.
    pub sockets: OpenSockets,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::ops::Deref for Inner {
    type Target = AppContext;
    fn deref(&self) -> &AppContext {
        &self.context
    }
}

impl AppState {
    /// Opens the application (see [`AppContext::open`]) and adds what the
    /// HTTP layer keeps. Projectors and reactors are not started: call
    /// [`AppState::start_background`].
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let context = AppContext::open(config, clock).await?;
        let (member_changes, _) = tokio::sync::broadcast::channel(256);
        tokio::spawn(forward_member_changes(
            context.bus.subscribe(),
            member_changes.clone(),
        ));
        Ok(Self(Arc::new(Inner {
            context,
            member_changes,
            sockets: Default::default(),
        })))
    }

    /// Starts following the log with every projector, and the reactors
    /// (delivery, media, profiles, the expiry timer, automatic assignment);
    /// returns the reactors, which end once [`AppContext::shut_down`] was
    /// called and their current pass is over.
    pub fn start_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.context.start_projections();
        omnibox_app::reactors::start(&self.context)
    }
}

/// Copies the bus's member changes onto their own small channel.
async fn forward_member_changes(
    mut updates: tokio::sync::broadcast::Receiver<omnibox_projections::LiveUpdate>,
    members: tokio::sync::broadcast::Sender<omnibox_domain::ids::MemberId>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match updates.recv().await {
            Ok(update) => {
                if let omnibox_projections::Change::Member(id) = update.change {
                    let _ = members.send(id);
                }
            }
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Counts open connections or subscription WebSockets; shutdown waits
/// until they closed.
#[derive(Default)]
pub struct OpenSockets {
    open: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

pub struct SocketGuard<'a>(&'a OpenSockets);

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl OpenSockets {
    /// How many subscription WebSockets are open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Counts one more open socket, until the guard is dropped.
    pub fn open(&self) -> SocketGuard<'_> {
        self.open.fetch_add(1, Ordering::SeqCst);
        SocketGuard(self)
    }

    /// Waits until no socket is open, at most `grace`.
    pub async fn closed(&self, grace: std::time::Duration) {
        let _ = tokio::time::timeout(grace, async {
            loop {
                let changed = self.changed.notified();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}
