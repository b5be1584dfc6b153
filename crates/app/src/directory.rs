//! Which channel a webhook (or a delivery) is for, decided from the log.
//!
//! A webhook names its target by platform id (a Facebook page) or by
//! Omnibox's channel id (LINE's URL). The answer comes from the event store:
//! the channel's own stream, and for a page its reservation stream. The
//! channels read model is not asked, because a rebuild empties it for a
//! moment, and a webhook answered 200 for a channel that looked unknown is
//! lost for good (the platform never retries a 200). A lookup that fails
//! answers an error, which the webhook turns into 503 so the platform
//! retries.
//!
//! Found channels are kept for [`TTL`]; channel commands in this process
//! clear the cache at once, other processes' changes show within the TTL.
//! A channel that was not found is not cached, so a just-connected channel
//! is seen by its first webhook.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use omnibox_domain::channel::{page_reservation_id, Channel, ChannelStatus, PageReservation};
use omnibox_domain::ids::{ChannelId, OrgId};
use omnibox_domain::ChannelKind;
use omnibox_store::EventStore;
use uuid::Uuid;

use crate::commands::{load, CommandError};

/// How long a found channel is trusted without reading its stream again.
const TTL: Duration = Duration::from_secs(1);

/// A connected (or once connected) channel, as its events say.
#[derive(Debug, Clone)]
pub struct KnownChannel {
    pub id: ChannelId,
    pub org_id: OrgId,
    pub kind: ChannelKind,
    /// Everything else the channel's events say (status, secrets, token age).
    pub state: Channel,
}

impl KnownChannel {
    fn from_state(state: Channel) -> Option<Self> {
        Some(Self {
            id: state.id?,
            org_id: state.org_id?,
            kind: state.kind?,
            state,
        })
    }

    /// Whether webhooks for it are taken. EXPIRED channels keep receiving:
    /// a lapsed token must never lose a customer's message.
    pub fn receives(&self) -> bool {
        self.state.recorded_status != Some(ChannelStatus::Disconnected)
    }

    /// The sealed channel secret (LINE) that signs its webhooks.
    pub fn channel_secret(&self) -> Option<Uuid> {
        self.state.channel_secret.as_ref().map(|s| s.id)
    }
}

/// Why a target could not be decided now.
#[derive(Debug, thiserror::Error)]
#[error("the channel's events could not be read: {0}")]
pub struct LookupError(String);

impl<E: std::fmt::Debug> From<CommandError<E>> for LookupError {
    fn from(error: CommandError<E>) -> Self {
        LookupError(format!("{error:?}"))
    }
}

/// Channels looked up from the log, kept for a moment.
#[derive(Default)]
pub struct ChannelDirectory {
    found: Mutex<HashMap<Key, (KnownChannel, Instant)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(ChannelId),
    Page(String),
}

impl ChannelDirectory {
    /// Forgets every cached channel (after a channel command).
    pub fn clear(&self) {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn cached(&self, key: &Key) -> Option<KnownChannel> {
        let found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        found
            .get(key)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(channel, _)| channel.clone())
    }

    fn keep(&self, key: Key, channel: &KnownChannel) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if found.len() > 100_000 {
            found.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        found.insert(key, (channel.clone(), Instant::now()));
    }

    /// The channel with Omnibox id `id`, if it was ever connected.
    pub async fn by_id(
        &self,
        store: &dyn EventStore,
        id: ChannelId,
    ) -> Result<Option<KnownChannel>, LookupError> {
        let key = Key::Id(id);
        if let Some(channel) = self.cached(&key) {
            return Ok(Some(channel));
        }
        let (state, _) = load::<Channel>(store, id.0).await?;
        let found = KnownChannel::from_state(state);
        if let Some(channel) = &found {
            self.keep(key, channel);
        }
        Ok(found)
    }

    /// The channel that holds Facebook page `page_id`, if any organization
    /// ever connected it.
    pub async fn by_page(
        &self,
        store: &dyn EventStore,
        page_id: &str,
    ) -> Result<Option<KnownChannel>, LookupError> {
        let key = Key::Page(page_id.to_owned());
        if let Some(channel) = self.cached(&key) {
            return Ok(Some(channel));
        }
        let (page, _) = load::<PageReservation>(store, page_reservation_id(page_id)).await?;
        let Some((_, channel_id)) = page.holder else {
            return Ok(None);
        };
        let (state, _) = load::<Channel>(store, channel_id.0).await?;
        // The page is reserved before its channel's first event: until that
        // lands, the page is not connected yet.
        let found = KnownChannel::from_state(state).filter(|c| c.kind == ChannelKind::Facebook);
        if let Some(channel) = &found {
            self.keep(key, channel);
        }
        Ok(found)
    }
}
