//! Starting the real server and talking to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omnibox_store::testing::{Backend, TestDatabase};

use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The secrets the reference fixtures are signed with.
pub const FACEBOOK_APP_SECRET: &str = "fixture-app-secret";
pub const LINE_CHANNEL_SECRET: &str = "fixture-channel-secret";

/// A fixture's exact bytes.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn hmac_sha256(key: &str, body: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// `X-Hub-Signature-256` for `body`.
pub fn facebook_signature(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(FACEBOOK_APP_SECRET, body))
    )
}

/// `x-line-signature` for `body`.
pub fn line_signature(body: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(LINE_CHANNEL_SECRET, body))
}

/// A fixed key for tests, so no development key file is written anywhere.
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=";

/// An `omnibox serve` process on its own database and a free port.
pub struct Server {
    child: Child,
    pub url: String,
    pub database_url: String,
    log: Arc<Mutex<String>>,
    /// The database this server created (the first of several sharing one).
    _database: Option<TestDatabase>,
}

pub struct Bootstrapped {
    pub org_id: String,
    pub user_id: String,
    pub token: String,
}

fn omnibox(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omnibox"));
    command
        .env("OMNIBOX_DATABASE_URL", database_url)
        .env("OMNIBOX_SECRET_KEY", TEST_SECRET_KEY)
        .env("OMNIBOX_LOG", "info")
        .env(
            "OMNIBOX_MEDIA_DIR",
            std::env::temp_dir().join("omnibox-test-media"),
        )
        .env_remove("OMNIBOX_LOG_FORMAT");
    command
}

impl Server {
    /// Starts a server on a fresh database of `backend`; `None` when
    /// PostgreSQL is unavailable and not required.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let database_url = database.url.clone();
        Some(Self::spawn(database_url, env, Some(database)).await)
    }

    /// Another server process on `other`'s database (several servers, one log).
    pub async fn beside(other: &Server, env: &[(&str, &str)]) -> Self {
        Self::spawn(other.database_url.clone(), env, None).await
    }

    /// A server on `database_url` (which may carry connection options),
    /// owning `database` if given.
    pub async fn start_at(
        database_url: String,
        env: &[(&str, &str)],
        database: Option<TestDatabase>,
    ) -> Self {
        Self::spawn(database_url, env, database).await
    }

    async fn spawn(
        database_url: String,
        env: &[(&str, &str)],
        database: Option<TestDatabase>,
    ) -> Self {
        let mut child = omnibox(&database_url)
            .envs(env.iter().copied())
            .arg("serve")
            .env("OMNIBOX_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start omnibox serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = oneshot::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    if let Some(address) = line
                        .split("address=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        if let Some(tx) = address_tx.take() {
                            let _ = tx.send(address.to_owned());
                        }
                    }
                }
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(60), address_rx)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "server did not start; log:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                )
            })
            .expect("server printed its address");
        Self {
            child,
            url: format!("http://{address}"),
            database_url,
            log,
            _database: database,
        }
    }

    /// Stops the process at once, as a crash or `kill -9` would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (an orderly stop), without waiting.
    pub fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the process to exit, at most `bound`; its exit status.
    pub async fn exited(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs another `omnibox` command against the same database.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        omnibox(&self.database_url)
            .args(args)
            .output()
            .expect("run omnibox")
    }

    pub fn bootstrap(&self, org: &str, owner: &str) -> Bootstrapped {
        let output = self.run(&["bootstrap", "--org", org, "--owner", owner]);
        assert!(
            output.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value =
            serde_json::from_slice(&output.stdout).expect("bootstrap prints one JSON line");
        let field = |name: &str| {
            answer[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {answer}"))
                .to_owned()
        };
        Bootstrapped {
            org_id: field("orgId"),
            user_id: field("userId"),
            token: field("token"),
        }
    }

    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        graphql(&self.url, token, query, variables).await
    }

    pub fn ws_url(&self) -> String {
        format!("{}/graphql", self.url.replacen("http", "ws", 1))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a GraphQL request to the server at `url`.
pub async fn graphql(url: &str, token: Option<&str>, query: &str, variables: Value) -> Value {
    try_graphql(url, token, query, variables)
        .await
        .expect("POST /graphql with a JSON answer")
}

/// POSTs a GraphQL request to a server that may die before it answers.
pub async fn try_graphql(
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Result<Value, reqwest::Error> {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await?.json().await
}

/// The server in this test's process, on a clock the test moves by hand,
/// with a platform stand-in for Facebook and LINE.
pub struct App {
    pub state: omnibox_api::AppState,
    pub url: String,
    pub clock: Arc<omnibox_domain::ManualClock>,
    pub platform: crate::platform::Platform,
    pub config: omnibox_api::Config,
    server: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
}

/// The instant every in-process test starts at.
pub fn start_of_test() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
        .expect("instant")
        .to_utc()
}

impl App {
    pub async fn start(backend: Backend) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let platform = crate::platform::Platform::start().await;
        let media_dir =
            std::env::temp_dir().join(format!("omnibox-media-{}", uuid::Uuid::new_v4().simple()));
        let vars: std::collections::HashMap<&str, String> = [
            ("OMNIBOX_DATABASE_URL", database.url.clone()),
            ("OMNIBOX_LISTEN", "127.0.0.1:0".to_owned()),
            ("OMNIBOX_PUBLIC_URL", "https://inbox.example.com".to_owned()),
            ("OMNIBOX_SECRET_KEY", TEST_SECRET_KEY.to_owned()),
            ("OMNIBOX_FACEBOOK_GRAPH_URL", platform.url.clone()),
            ("OMNIBOX_LINE_API_URL", platform.url.clone()),
            // The stand-in's CDN plays the platforms' media hosts.
            ("OMNIBOX_TRUSTED_MEDIA_ORIGIN", platform.url.clone()),
            (
                "OMNIBOX_FACEBOOK_APP_SECRET",
                FACEBOOK_APP_SECRET.to_owned(),
            ),
            (
                "OMNIBOX_FACEBOOK_VERIFY_TOKEN",
                "fixture-verify-token".to_owned(),
            ),
            ("OMNIBOX_MEDIA_DIR", media_dir.display().to_string()),
            // Slow platform answers fail fast in tests.
            ("OMNIBOX_PLATFORM_TIMEOUT_MS", "1000".to_owned()),
        ]
        .into_iter()
        .collect();
        let config =
            omnibox_api::Config::from_lookup(|name| vars.get(name).cloned()).expect("config");
        let clock = Arc::new(omnibox_domain::ManualClock::new(start_of_test()));
        let state = omnibox_api::AppState::open(config.clone(), clock.clone())
            .await
            .expect("open");
        state.projections.spawn();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let serving = state.clone();
        let server = tokio::spawn(async move {
            let _ = omnibox_api::server::serve(serving, listener, std::future::pending()).await;
        });
        Some(Self {
            state,
            url,
            clock,
            platform,
            config,
            server,
            _database: database,
        })
    }

    /// Another process's view of the same database (a restart).
    pub async fn reopen(&self) -> omnibox_api::AppState {
        omnibox_api::AppState::open(self.config.clone(), self.clock.clone())
            .await
            .expect("reopen")
    }

    pub async fn bootstrap(&self, org: &str, owner: &str) -> Bootstrapped {
        let created = omnibox_app::services::bootstrap::bootstrap(&self.state, org, owner)
            .await
            .expect("bootstrap");
        Bootstrapped {
            org_id: created.org_id.to_string(),
            user_id: created.user_id.to_string(),
            token: created.token,
        }
    }

    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        graphql(&self.url, Some(token), query, variables).await
    }

    /// The position of the newest committed event (below any read horizon).
    async fn head(&self) -> omnibox_store::Position {
        use sqlx::Row;
        match &self.state.db {
            omnibox_store::Database::Sqlite { pool, .. } => sqlx::query("SELECT coalesce(max(position), 0) FROM events")
                .fetch_one(pool)
                .await
                .map(|row| {
                    let p = row.get::<i64, _>(0) as u64;
                    omnibox_store::Position::new(p, p)
                }),
            omnibox_store::Database::Postgres { pool } => sqlx::query(
                "SELECT coalesce(max(tx_id), 0), coalesce(max(seq), 0) FROM events WHERE tx_id = (SELECT max(tx_id) FROM events)",
            )
            .fetch_one(pool)
            .await
            .map(|row| omnibox_store::Position::new(row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64)),
        }
        .expect("head of the log")
    }

    /// Waits until every read model shows everything committed so far (a
    /// webhook's 200 means committed; read models follow asynchronously).
    pub async fn settle(&self) {
        let head = self.head().await;
        assert!(
            self.state
                .projections
                .wait_for(head, std::time::Duration::from_secs(30))
                .await,
            "read models did not catch up"
        );
    }

    /// Every event committed so far, in order. On PostgreSQL a commit can
    /// stay below the read horizon for a moment (other transactions running):
    /// this reads until it has reached the newest committed event.
    pub async fn events(&self) -> Vec<omnibox_store::RecordedEvent> {
        let head = self.head().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.state.store.read_all(after, 1000).await.expect("read");
            match page.last() {
                Some(last) => {
                    after = Some(last.position);
                    all.extend(page);
                }
                None if after.unwrap_or_default() >= head
                    || std::time::Instant::now() > deadline =>
                {
                    return all
                }
                None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Runs `$test(app)` against each backend, in process.
macro_rules! in_process_on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let app = $crate::support::App::start(omnibox_store::testing::Backend::Sqlite).await.expect("sqlite");
                super::$test(app).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(app) = $crate::support::App::start(omnibox_store::testing::Backend::Postgres).await {
                    super::$test(app).await;
                }
            })+
        }
    };
}
pub(crate) use in_process_on_both_backends;

/// The `extensions.code` of the first error, if any.
pub fn error_code(answer: &Value) -> Option<&str> {
    answer["errors"][0]["extensions"]["code"].as_str()
}

/// Runs `$test(server)` against each backend.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let server = $crate::support::Server::start(omnibox_store::testing::Backend::Sqlite).await.expect("sqlite");
                super::$test(server).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(server) = $crate::support::Server::start(omnibox_store::testing::Backend::Postgres).await {
                    super::$test(server).await;
                }
            })+
        }
    };
}
pub(crate) use on_both_backends;

/// The bytes of a file SQLite has open in this process, read by a child
/// process. Closing a descriptor of the file here would drop every POSIX
/// lock this process holds on it (SQLite's, too): a second process (an
/// operator command) would then take itself for the only user, reset the
/// shared WAL index and delete the WAL under the server's feet.
pub fn read_live_sqlite_file(path: &str) -> Option<Vec<u8>> {
    let output = std::process::Command::new("cat")
        .arg(path)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("cat");
    output.status.success().then_some(output.stdout)
}

/// Everything the database holds, as text: the SQLite files' bytes, or every
/// row of every table of the PostgreSQL schema.
pub async fn database_dump(app: &App) -> String {
    use sqlx::Row;
    match &app.state.db {
        omnibox_store::Database::Sqlite {
            path, read_path, ..
        } => {
            let mut text = String::new();
            for file in [path, read_path] {
                for suffix in ["", "-wal"] {
                    if let Some(bytes) =
                        read_live_sqlite_file(&format!("{}{suffix}", file.display()))
                    {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            }
            text
        }
        omnibox_store::Database::Postgres { pool } => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(pool)
            .await
            .expect("tables");
            let mut text = String::new();
            for table in tables {
                let rows = sqlx::query(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                    .fetch_all(pool)
                    .await
                    .expect("rows");
                for row in rows {
                    text.push_str(&row.try_get::<String, _>(0).expect("text"));
                    text.push('\n');
                }
            }
            text
        }
    }
}

/// A GraphQL WebSocket client of the in-process server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `app`'s `/graphql` on `protocol` (`graphql-transport-ws`
/// or `graphql-ws`), initialises it with `token`, checks the acknowledgement,
/// then starts `query` with `variables` as operation "1" (`start` is the
/// protocol's word for it: `subscribe` or `start`).
pub async fn subscribe(
    app: &App,
    protocol: &str,
    token: &str,
    start: &str,
    query: &str,
    variables: Value,
) -> Socket {
    let url = format!("{}/graphql", app.url.replacen("http", "ws", 1));
    subscribe_url(&url, protocol, token, start, query, variables).await
}

/// [`subscribe`] on the server whose GraphQL WebSocket is at `url`.
pub async fn subscribe_url(
    url: &str,
    protocol: &str,
    token: &str,
    start: &str,
    query: &str,
    variables: Value,
) -> Socket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("init");
    let ack = socket.next().await.expect("ack").expect("ack");
    assert!(
        ack.to_text().unwrap_or_default().contains("connection_ack"),
        "{ack:?}"
    );
    let subscribe =
        json!({ "id": "1", "type": start, "payload": { "query": query, "variables": variables } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    socket
}

/// Reads `socket` until the server's close frame (at most 10 s); its code.
pub async fn close_code(socket: &mut Socket) -> Option<u16> {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a close frame in time")
            .expect("a message")
            .expect("no error");
        if let tokio_tungstenite::tungstenite::Message::Close(frame) = message {
            return frame.map(|f| u16::from(f.code));
        }
    }
}
