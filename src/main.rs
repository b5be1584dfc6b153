//! `omnibox`: the server and its operator commands.
//!
//! Every command reads the same configuration (environment variables, see
//! the README) and talks to the same database. Logs go to stderr; commands
//! that answer something (bootstrap, replay, export-schema) print it on
//! stdout, so their output can be piped.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use omnibox_api::{server, AppState, Config};
use omnibox_domain::{Clock, SystemClock};
use omnibox_store::{Direction, EventStore, StreamName};
use tracing_subscriber::EnvFilter;

mod demo;

/// mimalloc instead of the system's allocator: a webhook, a live batch or
/// a rebuild allocates many short strings and maps, and with glibc's
/// allocator a third of a PostgreSQL rebuild's time went to `malloc` and
/// `free`. With mimalloc the process spent 0.71 to 1.00 s of CPU per
/// rebuild of 100,000 events instead of 1.12 to 1.28 s (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "omnibox",
    version,
    about = "Event-sourced shared inbox for LINE Official Accounts and Facebook Pages"
)]
struct Cli {
    /// A TOML file of settings (`database_url = "…"`, `listen = "…"`: the
    /// environment variables' names without `OMNIBOX_`, in lower case). The
    /// environment wins over the file.
    #[arg(long, global = true, env = "OMNIBOX_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (webhooks, GraphQL, health, metrics) on OMNIBOX_LISTEN.
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Create an organization and its OWNER; print {"orgId","userId","token"}.
    Bootstrap {
        /// The organization's name.
        #[arg(long)]
        org: String,
        /// The owner's email address.
        #[arg(long)]
        owner: String,
    },
    /// Rebuild read models from the start of the log.
    Rebuild {
        /// Only this projection (default: all of them).
        #[arg(long, value_parser = ["members", "channels", "inbox", "templates", "qr_codes"])]
        projection: Option<String>,
    },
    /// Print events as NDJSON: one stream's (`--stream NAME`), or the whole
    /// log in order (`--all`, optionally after `--from POSITION`), streamed
    /// in constant memory.
    Replay {
        /// The stream to print, e.g. `conversation-<uuid>`.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        stream: Option<String>,
        /// Print the whole log, every organization, in log order.
        #[arg(long)]
        all: bool,
        /// With --all: start after this position (as printed in `position`).
        #[arg(long, requires = "all")]
        from: Option<String>,
    },
    /// Print the GraphQL schema (SDL).
    ExportSchema,
    /// Write one organization's complete history (events, its sealed
    /// platform secrets, its media files) as NDJSON on stdout.
    Export {
        /// The organization's id.
        #[arg(long)]
        org: uuid::Uuid,
    },
    /// Append an export into an empty store (same OMNIBOX_SECRET_KEY as the
    /// source); read models are then built from it.
    Import {
        /// The file `omnibox export` wrote.
        file: std::path::PathBuf,
    },
    /// A temporary server with simulated LINE and Facebook customers, on a
    /// database deleted at exit; prints the inbox URL with an owner token.
    Demo {
        /// Seconds between simulated customer messages after the first
        /// ones (0: none).
        #[arg(long, default_value_t = 6)]
        message_every: u64,
    },
}

/// Settings from a TOML file, as the environment variables they stand for.
fn config_file(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let known: Vec<&str> = omnibox_app::config::VARIABLES
        .iter()
        .map(|(name, ..)| *name)
        .collect();
    let mut settings = std::collections::HashMap::new();
    let mut unknown = Vec::new();
    for (key, value) in table {
        let name = format!("OMNIBOX_{}", key.to_ascii_uppercase());
        if !known.contains(&name.as_str()) {
            unknown.push(key);
            continue;
        }
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => anyhow::bail!(
                "{key} in {}: a {} is not a string, number or boolean",
                path.display(),
                other.type_str()
            ),
        };
        settings.insert(name, value);
    }
    if !unknown.is_empty() {
        let names: Vec<String> = known
            .iter()
            .map(|n| n.trim_start_matches("OMNIBOX_").to_ascii_lowercase())
            .collect();
        anyhow::bail!(
            "unknown settings in {}: {} (known: {})",
            path.display(),
            unknown.join(", "),
            names.join(", ")
        );
    }
    Ok(settings)
}

/// `serve --help`'s list of every environment variable.
fn variables_help() -> String {
    let mut text =
        String::from("Environment (a --config file may set the same, the environment wins):\n");
    for (name, default, what, _) in omnibox_app::config::VARIABLES {
        text.push_str(&format!("  {name}\n      {what} [default: {default}]\n"));
    }
    #[cfg(feature = "eventstoredb")]
    text.push_str(
        "  OMNIBOX_EVENTSTORE_URL\n      esdb://… or kurrentdb://…: keep the event log in EventStoreDB / KurrentDB \
         (environment only, not a --config file) [default: the log in OMNIBOX_DATABASE_URL]\n",
    );
    text
}

fn init_logging(lookup: &impl Fn(&str) -> Option<String>) {
    let filter = lookup("OMNIBOX_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if lookup("OMNIBOX_LOG_FORMAT").is_some_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // The EventStoreDB client compiles a second rustls provider in: settle
    // on one before anything builds a TLS configuration.
    #[cfg(feature = "eventstoredb")]
    omnibox_store::eventstoredb::install_crypto_provider();
    let command =
        Cli::command().mut_subcommand("serve", |serve| serve.after_long_help(variables_help()));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let file = match cli.config.as_deref().map(config_file).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let lookup = move |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| file.get(name).cloned())
    };
    init_logging(&lookup);
    match run(cli.command, lookup).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    if let Command::ExportSchema = command {
        print!("{}", omnibox_api::graphql::sdl());
        return Ok(());
    }
    if let Command::Demo { message_every } = command {
        // Its own configuration: never the environment's database.
        return demo::run(std::time::Duration::from_secs(message_every)).await;
    }
    let config = Config::from_lookup(lookup)?;
    if !matches!(command, Command::Serve) {
        tracing::info!(
            database = %omnibox_app::config::redact_url(&config.database_url),
            "using this database"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Operator commands read an existing database; only these make one.
    if !matches!(
        command,
        Command::Serve | Command::Migrate | Command::Bootstrap { .. }
    ) {
        require_existing_database(&config.database_url)?;
    }
    match command {
        Command::Serve => serve(config, clock).await,
        Command::Migrate => {
            let db = omnibox_store::Database::connect(&config.database_url).await?;
            db.migrate().await?;
            tracing::info!(backend = db.backend(), "database schema is up to date");
            Ok(())
        }
        Command::Bootstrap { org, owner } => bootstrap(config, clock, &org, &owner).await,
        Command::Rebuild { projection } => rebuild(config, clock, projection.as_deref()).await,
        Command::Replay {
            stream: Some(stream),
            ..
        } => replay(config, clock, &stream).await,
        Command::Replay { from, .. } => replay_all(config, from.as_deref()).await,
        Command::ExportSchema | Command::Demo { .. } => Ok(()),
        Command::Export { org } => export(config, clock, org).await,
        Command::Import { file } => import(config, clock, &file).await,
    }
}

/// Refuses a SQLite file that does not exist (an operator command pointed
/// at the wrong place would otherwise create an empty database and report
/// nothing). PostgreSQL refuses a missing database by itself.
fn require_existing_database(url: &str) -> anyhow::Result<()> {
    if let Some(path) = omnibox_store::database::sqlite_path(url) {
        if !path.exists() {
            anyhow::bail!(
                "there is no database at {} (OMNIBOX_DATABASE_URL); `omnibox migrate` or `omnibox serve` creates one",
                path.display()
            );
        }
    }
    Ok(())
}

async fn serve(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let listen = config.listen;
    let app = AppState::open(config, clock).await?;
    let reactors = app.start_background();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, backend = app.db.backend(), log = app.store.backend(), "listening");
    server::serve(app.clone(), listener, shutdown_signal()).await?;
    tracing::info!("no longer serving; waiting for the reactors' passes in flight");
    // A delivery pass in flight records what the platforms answered; it is
    // bounded by the platform timeout.
    let reactors = async {
        for reactor in reactors {
            let _ = reactor.await;
        }
    };
    if tokio::time::timeout(REACTOR_GRACE, reactors).await.is_err() {
        tracing::warn!(
            "reactors did not finish in time; claims they hold are taken over after their lease"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long shutdown waits for the reactors' passes in flight.
const REACTOR_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn bootstrap(
    config: Config,
    clock: Arc<dyn Clock>,
    org_name: &str,
    owner: &str,
) -> anyhow::Result<()> {
    let app = AppState::open(config, clock).await?;
    let created = omnibox_app::services::bootstrap::bootstrap(&app, org_name, owner)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string(&created)?);
    Ok(())
}

async fn rebuild(config: Config, clock: Arc<dyn Clock>, only: Option<&str>) -> anyhow::Result<()> {
    let app = AppState::open(config, clock).await?;
    let runners = app.projections.runners();
    let selected: Vec<_> = runners
        .iter()
        .filter(|r| only.is_none_or(|name| r.name() == name))
        .collect();
    if selected.is_empty() {
        let known: Vec<_> = runners.iter().map(|r| r.name()).collect();
        anyhow::bail!(
            "no projection {:?}; known: {}",
            only.unwrap_or_default(),
            known.join(", ")
        );
    }
    let total = app.db.count_events().await?;
    for runner in selected {
        // A bar with total, percent and time left on a terminal; nothing
        // when stderr is a file or a pipe.
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        }
        .with_message(format!("rebuilding {}", runner.name()));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} events {percent}% ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let started = std::time::Instant::now();
        let applied = runner.rebuild_reporting(&|n| bar.set_position(n)).await?;
        bar.finish_and_clear();
        let rate = applied as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "rebuilt {}: {applied} events in {:.2?} ({rate:.0} events/s)",
            runner.name(),
            started.elapsed()
        );
    }
    Ok(())
}

async fn export(config: Config, clock: Arc<dyn Clock>, org: uuid::Uuid) -> anyhow::Result<()> {
    let app = AppState::open(config, clock).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let moved =
        omnibox_app::services::transfer::export(&app, omnibox_domain::ids::OrgId(org), &mut out)
            .await?;
    eprintln!(
        "exported {} events, {} secrets, {} personal-data keys, {} media files",
        moved.events, moved.secrets, moved.personal_keys, moved.media
    );
    Ok(())
}

async fn import(
    config: Config,
    clock: Arc<dyn Clock>,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let input = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let app = AppState::open(config, clock).await?;
    let moved = omnibox_app::services::transfer::import(&app, input).await?;
    app.projections.catch_up().await?;
    eprintln!(
        "imported {} events, {} secrets, {} personal-data keys, {} media files",
        moved.events, moved.secrets, moved.personal_keys, moved.media
    );
    Ok(())
}

/// One event as a line of NDJSON, its personal fields opened (`null` once
/// their contact was erased).
async fn event_line(
    event: &omnibox_store::RecordedEvent,
    personal: &omnibox_store::personal::PersonalKeys,
) -> anyhow::Result<String> {
    let mut data: serde_json::Value = serde_json::from_str(&event.data)?;
    personal.open_json(&mut data).await?;
    Ok(serde_json::json!({
        "position": event.position.to_string(),
        "stream": event.stream.as_str(),
        "revision": event.revision,
        "type": event.event_type,
        "recordedAt": event.recorded_at,
        "id": event.id,
        "data": data,
        "metadata": event.metadata,
    })
    .to_string())
}

async fn replay(config: Config, clock: Arc<dyn Clock>, stream: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let stream = StreamName::parse(stream)?;
    let app = AppState::open(config, clock).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut from = 0;
    loop {
        let events = app
            .store
            .read_stream(&stream, from, Direction::Forwards, 1000)
            .await?;
        if from == 0 && events.is_empty() {
            anyhow::bail!("no stream {stream} in this log");
        }
        for event in &events {
            writeln!(out, "{}", event_line(event, &app.personal).await?)?;
        }
        match events.last() {
            Some(last) if events.len() == 1000 => from = last.revision + 1,
            _ => {
                out.flush()?;
                return Ok(());
            }
        }
    }
}

/// Events read per page by `replay --all`: the memory it holds at once.
const REPLAY_PAGE: usize = 1000;

/// The whole log as NDJSON on stdout, page by page (constant memory), with
/// a running count on stderr when that is a terminal.
async fn replay_all(config: Config, from: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut after = from
        .map(|p| {
            p.parse::<omnibox_store::Position>()
                .map_err(|e| anyhow::anyhow!("--from {p:?}: {e}"))
        })
        .transpose()?;
    let db = omnibox_store::Database::connect(&config.database_url).await?;
    db.migrate().await?;
    let store = omnibox_app::upcasting::UpcastingStore::new(db.event_store().await?);
    let (key, _) = omnibox_store::secrets::SecretKey::configured_or_dev(
        config.secret_key.as_deref(),
        &db.data_dir(),
    )?;
    let personal = omnibox_store::personal::PersonalKeys::new(db.clone(), &key);
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new_spinner().with_message("replaying the log");
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {pos} events ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    loop {
        let events = store.read_all(after, REPLAY_PAGE).await?;
        for event in &events {
            writeln!(out, "{}", event_line(event, &personal).await?)?;
        }
        bar.inc(events.len() as u64);
        match events.last() {
            Some(last) => after = Some(last.position),
            None => break,
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}
