//! Starting the real server and talking to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omnibox_store::testing::{Backend, TestDatabase};

use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A fixed key for tests, so no development key file is written anywhere.
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=";

/// An `omnibox serve` process on its own database and a free port.
pub struct Server {
    child: Child,
    pub url: String,
    pub database_url: String,
    log: Arc<Mutex<String>>,
    _database: TestDatabase,
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
        .env_remove("OMNIBOX_LOG_FORMAT");
    command
}

impl Server {
    /// Starts a server on a fresh database of `backend`; `None` when
    /// PostgreSQL is unavailable and not required.
    pub async fn start(backend: Backend) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let database_url = database.url.clone();
        let mut child = omnibox(&database_url)
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
        Some(Self {
            child,
            url: format!("http://{address}"),
            database_url,
            log,
            _database: database,
        })
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
        let mut request = reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("a JSON answer")
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
