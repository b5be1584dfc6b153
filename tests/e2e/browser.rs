//! The web inbox and GraphiQL in a real browser: headless Chromium (the
//! Debian `chromium` package, which `.ci/run` installs) driven over the
//! Chrome DevTools Protocol. The pages are served by the binary's router
//! with their embedded assets; the browser has no other origin to reach.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::inbound::inbox;
use crate::support::{in_process_on_both_backends, App};

/// Where screenshots are kept for a person to look at after a run.
fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}

/// A headless Chromium and one page in it.
struct Browser {
    process: std::process::Child,
    socket: crate::support::Socket,
    session: String,
    next_id: u64,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Browser {
    /// Starts Chromium with no network beyond loopback and opens `url`.
    async fn open(url: &str) -> Self {
        use std::io::BufRead;
        let profile = TempDir(std::env::temp_dir().join(format!(
            "omnibox-chromium-{}",
            uuid::Uuid::new_v4().simple()
        )));
        let mut process = std::process::Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // Anything but loopback fails: the pages must need nothing else.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("chromium (apt-get install chromium; .ci/run does)");
        let stderr = process.stderr.take().expect("stderr");
        let endpoint = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| {
                    line.split_once("DevTools listening on ")
                        .map(|(_, url)| url.trim().to_owned())
                })
        })
        .await
        .expect("read stderr")
        .expect("Chromium printed its DevTools address");
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("DevTools socket");
        let mut browser = Self {
            process,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().expect("session").to_owned();
        browser.call_page("Page.enable", json!({})).await;
        browser.call_page("Runtime.enable", json!({})).await;
        browser
            .call_page("Page.navigate", json!({ "url": url }))
            .await;
        browser
    }

    /// Sends one DevTools command and waits for its answer (events that
    /// arrive meanwhile are dropped).
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send to Chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let message = tokio::time::timeout_at(deadline.into(), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method}"))
                .expect("socket open")
                .expect("message");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    async fn call_page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params).await
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call_page(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is true, or panics after `bound`, with a
    /// screenshot of what the page showed then.
    async fn wait_for(&mut self, what: &str, expression: &str, bound: Duration) {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if self.eval(expression).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shot = self
            .screenshot(&format!("failed-{}", what.replace(' ', "-")))
            .await;
        let body = self.eval("document.body.innerText").await;
        panic!("{what}: not within {bound:?} (screenshot {shot}):\n{body}");
    }

    /// Saves a PNG screenshot among the test artifacts; its path.
    async fn screenshot(&mut self, name: &str) -> String {
        use base64::Engine;
        let shot = self
            .call_page("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("PNG");
        let path = artifacts().join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path.display().to_string()
    }
}

/// Signed in from the link's `#token=`, the inbox shows conversations as
/// they arrive, across channels; a reply typed into the page is sent and
/// shown DELIVERED when the platform accepts it.
async fn the_web_inbox_shows_conversations_live_and_sends_replies(app: App) {
    let inbox = inbox(app, false).await;
    let app = &inbox.app;
    let mut browser = Browser::open(&format!("{}/#token={}", app.url, inbox.owner.token)).await;
    browser
        .wait_for(
            "live",
            "document.querySelector('#live-status')?.dataset.state === 'live'",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        browser.eval("location.hash").await,
        json!(""),
        "the token leaves the address bar"
    );
    // Three customers write while the page is open.
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    crate::erasure::post(app, "7300000000000001", "m-browser-1", "สวัสดีค่ะ 🙏", None).await;
    crate::erasure::post(
        app,
        "7300000000000002",
        "m-browser-2",
        "¿Tienen envío a Chiang Mai?",
        None,
    )
    .await;
    browser
        .wait_for(
            "three conversations",
            "document.querySelectorAll('#conversation-list [data-conversation-id]').length >= 3",
            Duration::from_secs(20),
        )
        .await;
    let kinds = browser
        .eval("[...document.querySelectorAll('#conversation-list [data-conversation-id]')].map(r => r.dataset.channelKind).sort().join(',')")
        .await;
    assert_eq!(
        kinds,
        json!("FACEBOOK,FACEBOOK,LINE"),
        "both channels in one list"
    );

    // Open the LINE conversation and reply through the page.
    browser
        .eval("document.querySelector('#conversation-list [data-channel-kind=\"LINE\"]').click(), true")
        .await;
    browser
        .wait_for(
            "the thread",
            "document.querySelectorAll('#messages [data-message-id]').length >= 1",
            Duration::from_secs(20),
        )
        .await;
    browser
        .eval("(() => { const t = document.querySelector('#reply-text'); t.value = 'ส่งพรุ่งนี้ค่ะ 📦'; t.dispatchEvent(new Event('input', { bubbles: true })); document.querySelector('#reply-send').click(); return true; })()")
        .await;
    browser
        .wait_for(
            "the reply queued",
            "[...document.querySelectorAll('#messages [data-delivery]')].some(m => m.innerText.includes('ส่งพรุ่งนี้ค่ะ'))",
            Duration::from_secs(20),
        )
        .await;
    let worker = omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        worker.run_once(&app.state).await.expect("delivery");
        app.settle().await;
        if browser
            .eval("[...document.querySelectorAll('#messages [data-delivery=\"DELIVERED\"]')].some(m => m.innerText.includes('ส่งพรุ่งนี้ค่ะ'))")
            .await
            == json!(true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reply never showed DELIVERED"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.platform.customer_side(),
        ["ส่งพรุ่งนี้ค่ะ 📦"],
        "the customer received the reply once"
    );
    let shot = browser.screenshot(&format!("inbox-{}", backend(app))).await;
    assert!(std::path::Path::new(&shot).exists());
}

fn backend(app: &App) -> &'static str {
    if app.config.database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    }
}

/// GraphiQL at `/graphql` renders its editor from the binary's own assets,
/// with every other host unreachable.
async fn graphiql_renders_offline(app: App) {
    let mut browser = Browser::open(&format!("{}/graphql", app.url)).await;
    browser
        .wait_for(
            "the GraphiQL editor",
            "!!document.querySelector('.graphiql-container .graphiql-query-editor')",
            Duration::from_secs(30),
        )
        .await;
    let external = browser
        .eval("performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin) && !n.startsWith('data:') && !n.startsWith('blob:') && !n.startsWith('ws'))")
        .await;
    assert_eq!(external, json!([]), "no request left the server's origin");
    browser
        .screenshot(&format!("graphiql-{}", backend(&app)))
        .await;
}

/// The five-minute tour as a person takes it: `omnibox demo`, its `inbox:`
/// link opened in a browser, simulated customers arriving live, a reply
/// typed into the page and delivered by the simulated platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_works_in_a_browser() {
    let mut demo = crate::demo::Demo::start();
    let deadline = Instant::now() + Duration::from_secs(60);
    let link = loop {
        let line = demo.next_line(deadline).await;
        if let Some(link) = line.strip_prefix("inbox: ") {
            break link.to_owned();
        }
    };
    let mut browser = Browser::open(&link).await;
    browser
        .wait_for(
            "three conversations, live",
            "document.querySelectorAll('#conversation-list [data-conversation-id]').length >= 3 \
             && document.querySelector('#live-status')?.dataset.state === 'live'",
            Duration::from_secs(60),
        )
        .await;
    browser
        .eval("document.querySelector('#conversation-list [data-channel-kind=\"LINE\"]').click(), true")
        .await;
    browser
        .wait_for(
            "the thread",
            "document.querySelectorAll('#messages [data-message-id]').length >= 1",
            Duration::from_secs(30),
        )
        .await;
    browser
        .eval("(() => { const t = document.querySelector('#reply-text'); t.value = 'Thank you! It ships today 📦'; t.dispatchEvent(new Event('input', { bubbles: true })); document.querySelector('#reply-send').click(); return true; })()")
        .await;
    browser
        .wait_for(
            "the reply delivered",
            "[...document.querySelectorAll('#messages [data-delivery=\"DELIVERED\"]')].some(m => m.innerText.includes('It ships today'))",
            Duration::from_secs(60),
        )
        .await;
    let shot = browser.screenshot("demo-inbox").await;
    assert!(std::path::Path::new(&shot).exists());
    drop(browser);
    demo.sigterm();
    assert!(demo.exited(Duration::from_secs(40)).await.success());
}

in_process_on_both_backends!(
    the_web_inbox_shows_conversations_live_and_sends_replies,
    graphiql_renders_offline
);
