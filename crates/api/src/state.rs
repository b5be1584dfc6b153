//! What every handler shares: the store, the read models, the clock, …

use std::sync::Arc;
use std::time::Duration;

use omnibox_domain::Clock;
use omnibox_platforms::client::http_client;
use omnibox_platforms::facebook::GraphClient;
use omnibox_platforms::line::LineClient;
use omnibox_projections::channels::ChannelsProjector;
use omnibox_projections::inbox::InboxProjector;
use omnibox_projections::members::MembersProjector;
use omnibox_projections::{ProjectionRunner, Projections, UpdateBus};
use omnibox_store::secrets::{KeySource, SecretKey, Secrets};
use omnibox_store::{Database, EventStore, Position};

use crate::metrics::{InstrumentedStore, Metrics};
use crate::Config;

/// How long a mutation waits for the read models to show its own write.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);
/// Live updates kept for a subscriber that has not read them yet.
const BUS_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] omnibox_store::StoreError),
    #[error("secret key: {0}")]
    Secret(#[from] omnibox_store::secrets::SecretError),
    #[error("read models: {0}")]
    Projection(#[from] omnibox_projections::ProjectionError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("OMNIBOX_MEDIA_DIR: cannot write media files into {}: {source}", .dir.display())]
    MediaDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Database,
    pub store: Arc<dyn EventStore>,
    pub secrets: Secrets,
    /// Per-contact keys sealing personal data in events (erasure).
    pub personal: omnibox_store::personal::PersonalKeys,
    pub projections: Projections,
    pub bus: UpdateBus,
    /// The bus's updates per organization, for subscriptions.
    pub live: crate::live::LiveHub,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub graph: GraphClient,
    pub line: LineClient,
    /// The shared platform HTTP client.
    pub http: reqwest::Client,
    /// The client for URLs that came in payloads (public https only).
    pub untrusted: omnibox_platforms::untrusted::UntrustedFetcher,
    pub media: Arc<dyn crate::media::MediaStore>,
    /// Channels as their events say, for webhooks and deliveries.
    pub directory: crate::directory::ChannelDirectory,
    /// This server, as the sender of the live updates it announces.
    pub node: omnibox_projections::NodeId,
    /// Becomes true when the server starts shutting down (SIGTERM).
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Members who changed (removed, token rotated, …), for open sockets to
    /// check their token again; rare, so every socket may listen.
    pub member_changes: tokio::sync::broadcast::Sender<omnibox_domain::ids::MemberId>,
    /// Open subscription WebSockets, so shutdown can wait for their close frames.
    pub sockets: crate::server::OpenSockets,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connects to the configured database, brings its schema up to date,
    /// opens the log and the secrets, and catches the read models up.
    /// Projectors are not started: call [`AppState::start_projections`].
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let db = Database::connect(&config.database_url).await?;
        db.migrate().await?;
        let (key, source) =
            SecretKey::configured_or_dev(config.secret_key.as_deref(), &db.data_dir())?;
        if let KeySource::DevFile { path, created } = &source {
            tracing::warn!(
                path = %path.display(),
                created,
                "OMNIBOX_SECRET_KEY is not set: platform secrets are encrypted with a development key kept beside the database. \
                 Set OMNIBOX_SECRET_KEY (32 random bytes, base64) in production."
            );
        }
        let secrets = Secrets::new(db.clone(), &key);
        let personal = omnibox_store::personal::PersonalKeys::new(db.clone(), &key)
            .sealing(config.seal_personal_data);
        if !config.seal_personal_data {
            tracing::warn!(
                "OMNIBOX_SEAL_PERSONAL_DATA is off: customers' names and texts are stored in plain text and cannot be erased"
            );
        }
        let metrics = Arc::new(Metrics::new());
        // Readers see current event shapes only (see `upcasting`).
        let store: Arc<dyn EventStore> = Arc::new(InstrumentedStore::new(
            Arc::new(crate::upcasting::UpcastingStore::new(
                db.event_store().await?,
            )),
            metrics.clone(),
        ));
        let (bus, _) = tokio::sync::broadcast::channel(BUS_CAPACITY);
        let node = omnibox_projections::NodeId::generate();
        let runner = |projector: Arc<dyn omnibox_projections::Projector>| {
            ProjectionRunner::new(db.clone(), store.clone(), projector, bus.clone(), node)
        };
        let projections = Projections::new(vec![
            runner(Arc::new(MembersProjector)),
            runner(Arc::new(ChannelsProjector)),
            runner(Arc::new(InboxProjector)),
            runner(Arc::new(omnibox_projections::templates::TemplatesProjector)),
            runner(Arc::new(omnibox_projections::qr_codes::QrCodesProjector)),
        ]);
        let http = http_client(config.platform_timeout)?;
        let untrusted = omnibox_platforms::untrusted::UntrustedFetcher::new(
            config.platform_timeout,
            config.trusted_media_origin.clone(),
        )?;
        let graph = GraphClient::new(http.clone(), &config.facebook_graph_url);
        let line = LineClient::new(http.clone(), &config.line_api_url, &config.line_data_url);
        let media_dir = config
            .media_dir
            .clone()
            .unwrap_or_else(|| db.data_dir().join("omnibox-media"));
        crate::media::check_writable(&media_dir).map_err(|source| StartError::MediaDir {
            dir: media_dir.clone(),
            source,
        })?;
        let media: Arc<dyn crate::media::MediaStore> =
            Arc::new(crate::media::LocalMediaStore::new(media_dir));
        projections.catch_up().await?;
        let (member_changes, _) = tokio::sync::broadcast::channel(256);
        tokio::spawn(forward_member_changes(
            bus.subscribe(),
            member_changes.clone(),
        ));
        Ok(Self(Arc::new(Inner {
            config,
            db,
            store,
            secrets,
            personal,
            projections,
            live: crate::live::LiveHub::new(bus.clone()),
            bus,
            clock,
            metrics,
            graph,
            line,
            http,
            untrusted,
            media,
            directory: Default::default(),
            node,
            shutdown: tokio::sync::watch::Sender::new(false),
            member_changes,
            sockets: Default::default(),
        })))
    }

    /// Starts following the log with every projector, and the reactors
    /// (delivery, media, profiles, the expiry timer); returns the reactors,
    /// which end once [`AppState::shut_down`] was called and their current
    /// pass is over.
    pub fn start_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.projections.spawn();
        tokio::spawn(omnibox_projections::follow_other_servers(
            self.db.clone(),
            self.bus.clone(),
            self.node,
        ));
        use crate::leadership::run_as_leader;
        vec![
            // Every server delivers: each bubble is claimed in the log.
            tokio::spawn(crate::delivery::run_delivery_worker(self.clone())),
            // One server at a time downloads media, looks up profiles,
            // expires tokens and assigns conversations automatically.
            tokio::spawn(run_as_leader(
                self.clone(),
                "expiry timer",
                crate::channels::run_expiry_timer,
            )),
            tokio::spawn(run_as_leader(
                self.clone(),
                "media fetcher",
                crate::media::run_media_fetcher,
            )),
            tokio::spawn(run_as_leader(
                self.clone(),
                "profile fetcher",
                crate::profiles::run_profile_fetcher,
            )),
            tokio::spawn(run_as_leader(
                self.clone(),
                "automatic assignment",
                crate::assignment::run_auto_assigner,
            )),
        ]
    }

    /// Starts shutting down: reactors finish their pass and stop, WebSockets
    /// close with a close frame, the HTTP server takes no new connections.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has started.
    pub async fn stopping(&self) {
        let mut stopping = self.shutdown.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Waits for a live update or `pause`, whichever comes first, then lets
    /// a burst of updates settle; false once shutdown has started (the
    /// reactor's loop ends).
    pub async fn next_pass(
        &self,
        updates: &mut tokio::sync::broadcast::Receiver<omnibox_projections::LiveUpdate>,
        pause: Duration,
    ) -> bool {
        tokio::select! {
            _ = self.stopping() => return false,
            _ = tokio::time::timeout(pause, updates.recv()) => {}
        }
        // A burst of changes is one pass, not one pass per change.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while updates.try_recv().is_ok() {}
        !*self.shutdown.borrow()
    }

    /// Waits until the read models show `position` (a mutation's own write).
    pub async fn read_your_writes(&self, position: Option<Position>) {
        if let Some(position) = position {
            if !self
                .projections
                .wait_for(position, READ_YOUR_WRITES_TIMEOUT)
                .await
            {
                tracing::warn!(%position, "read models are behind; answering from what they show");
            }
        }
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
