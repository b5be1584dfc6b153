//! What every service and reactor shares: the store, the read models, the
//! clock, the platform clients, the media store, and the shutdown signal.

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

use crate::config::Config;
use crate::directory::ChannelDirectory;
use crate::media_store::{check_writable, LocalMediaStore, MediaStore};
use crate::metrics::{InstrumentedStore, Metrics};
use crate::upcasting::UpcastingStore;

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

/// Shared by every service, reactor and request; cheap to clone.
#[derive(Clone)]
pub struct AppContext(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Database,
    pub store: Arc<dyn EventStore>,
    pub secrets: Secrets,
    /// Per-contact keys sealing personal data in events (erasure).
    pub personal: omnibox_store::personal::PersonalKeys,
    pub projections: Projections,
    pub bus: UpdateBus,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub graph: GraphClient,
    pub line: LineClient,
    /// The shared platform HTTP client.
    pub http: reqwest::Client,
    /// The client for URLs that came in payloads (public https only).
    pub untrusted: omnibox_platforms::untrusted::UntrustedFetcher,
    pub media: Arc<dyn MediaStore>,
    /// Channels as their events say, for webhooks and deliveries.
    pub directory: ChannelDirectory,
    /// This server, as the sender of the live updates it announces.
    pub node: omnibox_projections::NodeId,
    /// Becomes true when the server starts shutting down (SIGTERM).
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for AppContext {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppContext {
    /// Connects to the configured database, brings its schema up to date,
    /// opens the log and the secrets, and catches the read models up.
    /// Projectors are not started: call [`AppContext::start_projections`].
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
            Arc::new(UpcastingStore::new(db.event_store().await?)),
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
        check_writable(&media_dir).map_err(|source| StartError::MediaDir {
            dir: media_dir.clone(),
            source,
        })?;
        let media: Arc<dyn MediaStore> = Arc::new(LocalMediaStore::new(media_dir));
        projections.catch_up().await?;
        Ok(Self(Arc::new(Inner {
            config,
            db,
            store,
            secrets,
            personal,
            projections,
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
        })))
    }

    /// Starts following the log with every projector, and listening for
    /// the other servers' commits and erasures.
    pub fn start_projections(&self) {
        self.projections.spawn();
        tokio::spawn(self.personal.clone().follow_erasures());
        tokio::spawn(omnibox_projections::follow_other_servers(
            self.db.clone(),
            self.bus.clone(),
            self.node,
        ));
    }

    /// Starts shutting down: reactors finish their pass and stop, and
    /// whatever else waits on [`AppContext::stopping`] (the HTTP server, its
    /// WebSockets) winds down.
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
