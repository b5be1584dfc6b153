//! `omnibox demo`: a throwaway Omnibox with simulated customers.
//!
//! It starts the platform simulator ([`omnibox_api::simulator`]), then a
//! real server on a SQLite file in a fresh temporary folder, with the Graph
//! and LINE API URLs, and the one origin trusted for media, pointing at the
//! simulator. It bootstraps an organization (an owner and two agents),
//! connects one LINE and one Facebook channel through `connectChannel` over
//! HTTP against itself, so the same token checks run as in production, and
//! lets the simulated customers write in. Ctrl-C or SIGTERM stops
//! everything and deletes the folder.
//!
//! Stdout carries what a person needs, one item a line: the inbox link with
//! the owner's token in its fragment (`inbox: http://HOST:PORT/#token=…`),
//! the GraphQL URL, each agent's token, and how to stop. Logs go to stderr.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use omnibox_api::simulator::{Accounts, OmniboxClient, Simulator};
use omnibox_api::{server, AppState, Config};
use omnibox_domain::SystemClock;

const ORGANIZATION: &str = "Baan Suan Ceramics (demo)";
const OWNER: &str = "owner@example.com";
const AGENTS: [&str; 2] = ["mali@example.com", "kenji@example.com"];
/// How long a customer takes to answer an agent's reply.
const CUSTOMERS_ANSWER_AFTER: Duration = Duration::from_secs(4);
/// How long shutdown waits for the reactors' passes in flight.
const REACTOR_GRACE: Duration = Duration::from_secs(10);

/// Runs the demo until Ctrl-C or SIGTERM; a new customer message every
/// `message_every` after the first ones (none if zero).
pub async fn run(message_every: Duration) -> anyhow::Result<()> {
    // Listen for the signals first: once they are handled, a stop request
    // always ends in the folder's removal.
    let mut stop = Stop::listen().context("cannot listen for Ctrl-C and SIGTERM")?;
    let folder = DemoFolder::create()?;
    run_in(&folder.path, message_every, &mut stop).await
}

async fn run_in(folder: &Path, message_every: Duration, stop: &mut Stop) -> anyhow::Result<()> {
    let simulator = Simulator::start(Accounts::generate(), Some(CUSTOMERS_ANSWER_AFTER))
        .await
        .context("cannot start the platform simulator")?;
    let listen = listen_address()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let address = reachable(bound);
    tracing::info!(
        folder = %folder.display(),
        simulator = simulator.url(),
        "starting a demo server with simulated LINE and Facebook customers"
    );
    let app = AppState::open(
        config(folder, bound, address, &simulator)?,
        Arc::new(SystemClock),
    )
    .await?;
    let reactors = app.start_background();
    let serving = tokio::spawn(server::serve(app.clone(), listener, std::future::pending()));
    tracing::info!(address = %bound, backend = app.db.backend(), "listening");
    let url = format!("http://{address}");
    let outcome = tokio::select! {
        outcome = demonstrate(&app, &simulator, &url, message_every) => outcome,
        () = stop.requested() => Ok(()),
    };
    tracing::info!("stopping the demo");
    app.shut_down();
    match serving.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the server stopped with an error"),
        Err(error) => tracing::warn!(%error, "the server task failed"),
    }
    let aborts: Vec<_> = reactors.iter().map(|r| r.abort_handle()).collect();
    let finished = async {
        for reactor in reactors {
            let _ = reactor.await;
        }
    };
    if tokio::time::timeout(REACTOR_GRACE, finished).await.is_err() {
        tracing::warn!("reactors did not finish in time; stopping them");
        aborts.iter().for_each(|reactor| reactor.abort());
    }
    simulator.stop().await;
    app.db.close().await;
    outcome
}

/// Sets the organization up through the running server, prints how to
/// reach it, then plays the customers until the future is dropped.
async fn demonstrate(
    app: &AppState,
    simulator: &Simulator,
    url: &str,
    message_every: Duration,
) -> anyhow::Result<()> {
    let owner = omnibox_app::services::bootstrap::bootstrap(app, ORGANIZATION, OWNER)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo organization: {e}"))?;
    let omnibox = OmniboxClient::new(url)?;
    let mut agents = Vec::with_capacity(AGENTS.len());
    for email in AGENTS {
        let token = omnibox
            .add_member(&owner.token, email, "AGENT")
            .await
            .with_context(|| format!("cannot add the agent {email}"))?;
        agents.push((email, token));
    }
    let target = omnibox
        .connect_channels(&owner.token, simulator)
        .await
        .context("cannot connect the simulated LINE and Facebook channels")?;
    println!("inbox: {url}/#token={}", owner.token);
    println!("graphql: {url}/graphql");
    for (email, token) in &agents {
        println!("agent {email}: {token}");
    }
    println!(
        "Simulated customers are writing in on LINE and Facebook. \
         Press Ctrl-C to stop (the demo's data is deleted)."
    );
    simulator.run_traffic(target, message_every).await;
    Ok(())
}

/// `OMNIBOX_LISTEN` (default 127.0.0.1:8080), read as `serve` reads it.
fn listen_address() -> anyhow::Result<SocketAddr> {
    let listen = std::env::var("OMNIBOX_LISTEN").ok();
    let config =
        Config::from_lookup(|name| (name == "OMNIBOX_LISTEN").then(|| listen.clone()).flatten())?;
    Ok(config.listen)
}

/// Where a browser and the simulator on this machine reach `bound`: an
/// unspecified address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

/// The demo server's configuration: its own database and keys in
/// `folder`, the platforms played by `simulator`. Nothing is read from the
/// environment but the listen address, so a demo never touches a real
/// database or platform.
fn config(
    folder: &Path,
    bound: SocketAddr,
    address: SocketAddr,
    simulator: &Simulator,
) -> anyhow::Result<Config> {
    let accounts = simulator.accounts();
    let vars: HashMap<&str, String> = [
        (
            "OMNIBOX_DATABASE_URL",
            format!("sqlite://{}", folder.join("omnibox.db").display()),
        ),
        (
            "OMNIBOX_MEDIA_DIR",
            folder.join("media").display().to_string(),
        ),
        ("OMNIBOX_LISTEN", bound.to_string()),
        ("OMNIBOX_PUBLIC_URL", format!("http://{address}")),
        (
            "OMNIBOX_SECRET_KEY",
            omnibox_store::secrets::SecretKey::generate().to_base64(),
        ),
        ("OMNIBOX_FACEBOOK_APP_SECRET", accounts.app_secret.clone()),
        (
            "OMNIBOX_FACEBOOK_VERIFY_TOKEN",
            accounts.verify_token.clone(),
        ),
        ("OMNIBOX_FACEBOOK_GRAPH_URL", simulator.graph_url()),
        ("OMNIBOX_LINE_API_URL", simulator.url().to_owned()),
        ("OMNIBOX_LINE_DATA_URL", simulator.url().to_owned()),
        // The simulator's CDN plays the platforms' media hosts.
        ("OMNIBOX_TRUSTED_MEDIA_ORIGIN", simulator.url().to_owned()),
    ]
    .into_iter()
    .collect();
    Ok(Config::from_lookup(|name| vars.get(name).cloned())?)
}

/// A fresh folder under the system's temporary directory, removed with
/// everything in it when dropped.
struct DemoFolder {
    path: PathBuf,
}

impl DemoFolder {
    fn create() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("omnibox-demo-{}", uuid::Uuid::new_v4().simple()));
        omnibox_store::database::create_private_dir(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for DemoFolder {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => tracing::info!(folder = %self.path.display(), "demo data deleted"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(folder = %self.path.display(), %error, "could not delete the demo data")
            }
        }
    }
}

/// Ctrl-C and SIGTERM, listened for from creation on.
struct Stop {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn requested(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
