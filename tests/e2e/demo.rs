//! `omnibox demo`: the real binary, its simulated LINE and Facebook
//! customers, a reply that reaches one of them, and a clean stop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::graphql;

/// The `omnibox demo` process, its temporary directory (its `TMPDIR`) and
/// what it logged.
pub(crate) struct Demo {
    child: Child,
    tmp: PathBuf,
    log: Arc<Mutex<String>>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Demo {
    pub(crate) fn start() -> Self {
        let tmp = std::env::temp_dir().join(format!(
            "omnibox-demo-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&tmp).expect("a temporary directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_omnibox"))
            .arg("demo")
            .env("OMNIBOX_LISTEN", "127.0.0.1:0")
            .env("TMPDIR", &tmp)
            .env("OMNIBOX_LOG", "info")
            .env_remove("OMNIBOX_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start omnibox demo");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Self {
            child,
            tmp,
            log,
            lines,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next line on stdout, waiting at most until `deadline`.
    pub(crate) async fn next_line(&mut self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("omnibox demo closed its stdout; log:\n{}", self.log()),
            Err(_) => panic!("omnibox demo printed nothing in time; log:\n{}", self.log()),
        }
    }

    pub(crate) fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    pub(crate) async fn exited(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "omnibox demo did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the temporary directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Asks `query` until `done` accepts the answer's data, at most `bound`.
async fn poll(
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
    bound: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let answer = graphql(url, Some(token), query, variables.clone()).await;
        assert!(answer["errors"].is_null(), "{answer}");
        if done(&answer["data"]) {
            return answer["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in time; last answer: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const INBOX: &str = "{ conversations(first: 50) { nodes { id channelKind window { phase }
    messages(last: 10) { nodes { direction attachments { kind url } } } } } }";

const MESSAGES: &str = "query($id: UUID!) { conversation(id: $id) {
    messages(last: 20) { nodes { id direction deliveryState failureReason } } } }";

/// The conversations' nodes.
fn nodes(data: &Value) -> Vec<Value> {
    data["conversations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_simulated_customers_and_stops_cleanly() {
    let mut demo = Demo::start();

    // The inbox link, then the GraphQL URL and the agents' tokens.
    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox = loop {
        let line = demo.next_line(deadline).await;
        if let Some(inbox) = line.strip_prefix("inbox: ") {
            break inbox.to_owned();
        }
    };
    let (url, token) = inbox.split_once("/#token=").expect("a token fragment");
    let (url, token) = (url.to_owned(), token.to_owned());
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .expect("http://127.0.0.1:PORT");
    assert_ne!(port, 0);
    let mut agents = Vec::new();
    loop {
        let line = demo.next_line(deadline).await;
        if line.starts_with("graphql: ") {
            assert_eq!(line, format!("graphql: {url}/graphql"));
        } else if let Some(agent) = line.strip_prefix("agent ") {
            let (_, agent_token) = agent.split_once(": ").expect("agent EMAIL: TOKEN");
            agents.push(agent_token.to_owned());
        } else if line.contains("Ctrl-C") {
            break;
        }
    }
    assert_eq!(agents.len(), 2);
    let me = graphql(&url, Some(&agents[0]), "{ me { role } }", json!({})).await;
    assert_eq!(me["data"]["me"]["role"], "AGENT", "{me}");

    // Customers on both platforms, a stored image, the aged Facebook windows.
    let data = poll(
        &url,
        &token,
        INBOX,
        json!({}),
        Duration::from_secs(60),
        "the simulated conversations",
        |data| {
            let conversations = nodes(data);
            let kinds: Vec<&str> = conversations
                .iter()
                .filter_map(|c| c["channelKind"].as_str())
                .collect();
            let phases: Vec<&str> = conversations
                .iter()
                .filter_map(|c| c["window"]["phase"].as_str())
                .collect();
            let stored_image = conversations.iter().any(|c| {
                c["messages"]["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
                    .any(|a| a["kind"] == "IMAGE" && a["url"].is_string())
            });
            conversations.len() >= 3
                && kinds.contains(&"LINE")
                && kinds.contains(&"FACEBOOK")
                && phases.contains(&"HUMAN_AGENT")
                && phases.contains(&"CLOSED")
                && stored_image
        },
    )
    .await;

    // A reply in an open Facebook window is delivered (and echoed)...
    let conversation = nodes(&data)
        .into_iter()
        .find(|c| c["channelKind"] == "FACEBOOK" && c["window"]["phase"] == "STANDARD")
        .expect("a Facebook conversation in its standard window");
    let conversation_id = conversation["id"].as_str().expect("id").to_owned();
    let sent = graphql(
        &url,
        Some(&token),
        "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
        json!({ "i": { "conversationId": conversation_id, "bubbles": [{ "text": "Yes, we have it! 😊" }] } }),
    )
    .await;
    assert!(sent["errors"].is_null(), "{sent}");
    let reply_id = sent["data"]["sendReply"][0]["id"]
        .as_str()
        .expect("the reply's message id")
        .to_owned();
    let ours = |data: &Value| -> Vec<Value> {
        data["conversation"]["messages"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    poll(
        &url,
        &token,
        MESSAGES,
        json!({ "id": conversation_id }),
        Duration::from_secs(30),
        "the reply's delivery",
        |data| {
            ours(data)
                .iter()
                .any(|m| m["id"] == reply_id.as_str() && m["deliveryState"] == "DELIVERED")
        },
    )
    .await;
    // ...and the customer answers it.
    poll(
        &url,
        &token,
        MESSAGES,
        json!({ "id": conversation_id }),
        Duration::from_secs(30),
        "the customer's answer",
        |data| {
            let messages = ours(data);
            let reply = messages.iter().position(|m| m["id"] == reply_id.as_str());
            reply.is_some_and(|at| messages[at..].iter().any(|m| m["direction"] == "INBOUND"))
        },
    )
    .await;

    // SIGTERM stops everything and deletes the demo's data.
    demo.sigterm();
    let status = demo.exited(Duration::from_secs(40)).await;
    assert!(status.success(), "{status}; log:\n{}", demo.log());
    let left = entries(&demo.tmp);
    assert!(
        left.is_empty(),
        "left behind: {left:?}; log:\n{}",
        demo.log()
    );
}
