//! Fan-out of live updates to subscriptions, shared per organization.
//!
//! The projections announce every change on one process-wide bus. Giving
//! each subscription its own receiver on that bus would wake every
//! subscriber for every organization's change, and each would load the
//! same row again. Instead one dispatcher reads the bus and forwards each
//! update only to its organization's channel, wrapped in a [`Shared`] whose
//! rows are loaded once, by whichever subscriber needs them first, and
//! reused by the others.
//!
//! A subscriber that falls behind its organization's channel, or a
//! dispatcher that falls behind the bus, is told how many updates were
//! missed ([`Item::Missed`]) and never slows anyone else.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use omnibox_domain::ids::OrgId;
use omnibox_projections::{LiveUpdate, UpdateBus};
use tokio::sync::{broadcast, OnceCell};

/// Updates kept per organization for a subscriber that has not read them.
const ORG_CAPACITY: usize = 1024;

/// One update as subscriptions see it.
#[derive(Clone)]
pub enum Item {
    Update(Arc<Shared>),
    /// This many updates were lost before they reached the subscriber.
    Missed(u64),
}

/// An update, with the rows subscriptions load for it, loaded once.
pub struct Shared {
    pub update: LiveUpdate,
    conversation: OnceCell<Option<super::Conversation>>,
    message: OnceCell<Option<super::Message>>,
}

impl Shared {
    fn new(update: LiveUpdate) -> Self {
        Self {
            update,
            conversation: OnceCell::new(),
            message: OnceCell::new(),
        }
    }

    /// The conversation row this update left, loaded by the first caller.
    pub(crate) async fn conversation<F>(
        &self,
        load: impl FnOnce() -> F,
    ) -> Option<super::Conversation>
    where
        F: Future<Output = Option<super::Conversation>>,
    {
        self.conversation.get_or_init(load).await.clone()
    }

    /// The message row this update left, loaded by the first caller.
    pub(crate) async fn message<F>(&self, load: impl FnOnce() -> F) -> Option<super::Message>
    where
        F: Future<Output = Option<super::Message>>,
    {
        self.message.get_or_init(load).await.clone()
    }
}

/// Per-organization channels fed from the bus by one dispatcher task,
/// started with the first subscription.
pub struct LiveHub {
    bus: UpdateBus,
    orgs: Arc<Mutex<HashMap<OrgId, broadcast::Sender<Item>>>>,
    dispatcher: OnceLock<()>,
}

impl LiveHub {
    pub fn new(bus: UpdateBus) -> Self {
        Self {
            bus,
            orgs: Arc::default(),
            dispatcher: OnceLock::new(),
        }
    }

    /// `org`'s updates from now on. Must be called inside the runtime.
    pub fn subscribe(&self, org: OrgId) -> broadcast::Receiver<Item> {
        // The dispatcher listens before the first organization channel
        // exists, so nothing published after this call can be missed.
        self.dispatcher.get_or_init(|| {
            let updates = self.bus.subscribe();
            tokio::spawn(dispatch(updates, self.orgs.clone()));
        });
        lock(&self.orgs)
            .entry(org)
            .or_insert_with(|| broadcast::channel(ORG_CAPACITY).0)
            .subscribe()
    }

    /// Organizations with a channel open (for tests and metrics).
    pub fn organizations(&self) -> usize {
        lock(&self.orgs).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn dispatch(
    mut updates: broadcast::Receiver<LiveUpdate>,
    orgs: Arc<Mutex<HashMap<OrgId, broadcast::Sender<Item>>>>,
) {
    loop {
        match updates.recv().await {
            Ok(update) => {
                let org = update.org_id;
                let Some(sender) = lock(&orgs).get(&org).cloned() else {
                    continue;
                };
                if sender
                    .send(Item::Update(Arc::new(Shared::new(update))))
                    .is_err()
                {
                    // Nobody listens any more: drop the channel, unless a
                    // subscriber arrived meanwhile.
                    let mut orgs = lock(&orgs);
                    if orgs.get(&org).is_some_and(|s| s.receiver_count() == 0) {
                        orgs.remove(&org);
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "live updates fell behind the read models");
                for sender in lock(&orgs).values() {
                    let _ = sender.send(Item::Missed(missed));
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnibox_domain::ids::MemberId;
    use omnibox_projections::Change;

    fn update(org: OrgId, n: u64) -> LiveUpdate {
        LiveUpdate {
            org_id: org,
            position: omnibox_store::Position::new(n, n),
            change: Change::Member(MemberId(uuid::Uuid::from_u128(n.into()))),
        }
    }

    #[tokio::test]
    async fn each_organization_hears_only_its_own_updates() {
        let (bus, _) = broadcast::channel(16);
        let hub = LiveHub::new(bus.clone());
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let mut first_a = hub.subscribe(a);
        let mut second_a = hub.subscribe(a);
        let mut only_b = hub.subscribe(b);
        bus.send(update(a, 1)).expect("send");
        bus.send(update(b, 2)).expect("send");
        bus.send(update(a, 3)).expect("send");
        for receiver in [&mut first_a, &mut second_a] {
            for n in [1, 3] {
                let Ok(Item::Update(shared)) = receiver.recv().await else {
                    panic!("an update")
                };
                assert_eq!(shared.update, update(a, n));
            }
        }
        let Ok(Item::Update(shared)) = only_b.recv().await else {
            panic!("an update")
        };
        assert_eq!(shared.update, update(b, 2));
        assert!(only_b.try_recv().is_err(), "b heard nothing of a");
    }

    #[tokio::test]
    async fn a_row_is_loaded_once_for_all_subscribers() {
        let (bus, _) = broadcast::channel(16);
        let hub = LiveHub::new(bus.clone());
        let org = OrgId::generate();
        let mut receivers: Vec<_> = (0..5).map(|_| hub.subscribe(org)).collect();
        bus.send(update(org, 1)).expect("send");
        let loads = std::sync::atomic::AtomicUsize::new(0);
        for receiver in &mut receivers {
            let Ok(Item::Update(shared)) = receiver.recv().await else {
                panic!("an update")
            };
            let message = shared
                .message(|| async {
                    loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    None
                })
                .await;
            assert!(message.is_none());
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn channels_nobody_listens_to_are_dropped() {
        let (bus, _) = broadcast::channel(16);
        let hub = LiveHub::new(bus.clone());
        let org = OrgId::generate();
        drop(hub.subscribe(org));
        assert_eq!(hub.organizations(), 1);
        bus.send(update(org, 1)).expect("send");
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while hub.organizations() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the abandoned organization's channel is dropped");
    }
}
