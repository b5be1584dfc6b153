//! What an operator watches: `/metrics` read by a classic Prometheus text
//! parser, with every family the runbook names.

use serde_json::{json, Value};

use crate::inbound::inbox;
use crate::support::{in_process_on_both_backends, App};

/// The families an operator relies on, as the classic parser names them
/// (counters without their `_total`).
const FAMILIES: &[&str] = &[
    "omnibox_webhooks",
    "omnibox_messages_received",
    "omnibox_messages_sent",
    "omnibox_delivery_queue_depth",
    "omnibox_delivery_outcomes",
    "omnibox_delivery_retries",
    "omnibox_projection_lag_events",
    "omnibox_projection_running",
    "omnibox_websocket_subscribers",
    "omnibox_platform_call_duration_seconds",
    "omnibox_platform_call_errors",
    "omnibox_build_info",
    "omnibox_http_requests",
];

/// Parses `text` with the Python `prometheus_client` classic parser (which
/// `.ci/run` installs) into {family: {type, samples: [[name, labels, value]]}}.
fn parse_classic(text: &str) -> Value {
    use std::io::Write;
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {"type": family.type,
                        "samples": [[s.name, s.labels, s.value] for s in family.samples]}
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: pip install prometheus_client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("parser");
    assert!(
        output.status.success(),
        "the classic parser refused /metrics (is prometheus_client installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("parser output")
}

fn sample(families: &Value, family: &str, name: &str, labels: &Value) -> Option<f64> {
    families[family]["samples"]
        .as_array()?
        .iter()
        .find(|s| {
            s[0] == name
                && labels
                    .as_object()
                    .is_some_and(|want| want.iter().all(|(k, v)| &s[1][k] == v))
        })
        .and_then(|s| s[2].as_f64())
}

async fn metrics_are_classic_text_with_every_family(app: App) {
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    let forged = reqwest::Client::new()
        .post(format!("{}/webhooks/facebook", inbox.app.url))
        .header("X-Hub-Signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), 401);
    inbox.app.settle().await;
    let conversations = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations(first: 5) { nodes { id channelKind } } }",
            json!({}),
        )
        .await;
    let line = conversations["data"]["conversations"]["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|c| c["channelKind"] == "LINE"))
        .expect("a LINE conversation")["id"]
        .clone();
    let sent = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
            json!({ "i": { "conversationId": line, "bubbles": [{ "text": "on its way" }] } }),
        )
        .await;
    assert!(sent["errors"].is_null(), "{sent}");
    inbox.app.settle().await;
    let queued = parse_classic(&metrics(&inbox.app, None).await.1);
    assert_eq!(
        sample(
            &queued,
            "omnibox_delivery_queue_depth",
            "omnibox_delivery_queue_depth",
            &json!({})
        ),
        Some(1.0),
        "one bubble waits"
    );
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    worker.run_once(&inbox.app.state).await.expect("delivery");
    inbox.app.settle().await;

    let (content_type, text) = metrics(&inbox.app, None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!text.contains("# EOF"), "classic text has no EOF marker");
    let families = parse_classic(&text);
    for family in FAMILIES {
        assert!(
            families.get(family).is_some(),
            "no {family} in /metrics:\n{text}"
        );
    }
    let counted = |family: &str, labels: Value| {
        sample(&families, family, &format!("{family}_total"), &labels).unwrap_or(0.0)
    };
    assert_eq!(
        counted(
            "omnibox_webhooks",
            json!({ "platform": "facebook", "outcome": "accepted" })
        ),
        1.0
    );
    assert_eq!(
        counted(
            "omnibox_webhooks",
            json!({ "platform": "line", "outcome": "accepted" })
        ),
        1.0
    );
    assert_eq!(
        counted(
            "omnibox_webhooks",
            json!({ "platform": "facebook", "outcome": "bad_signature" })
        ),
        1.0
    );
    assert_eq!(
        counted("omnibox_messages_received", json!({ "platform": "line" })),
        1.0
    );
    assert_eq!(
        counted("omnibox_messages_sent", json!({ "platform": "line" })),
        1.0
    );
    assert_eq!(
        counted(
            "omnibox_delivery_outcomes",
            json!({ "platform": "line", "outcome": "delivered" })
        ),
        1.0
    );
    assert_eq!(
        sample(
            &families,
            "omnibox_delivery_queue_depth",
            "omnibox_delivery_queue_depth",
            &json!({})
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &families,
            "omnibox_platform_call_duration_seconds",
            "omnibox_platform_call_duration_seconds_count",
            &json!({ "platform": "line" })
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &families,
            "omnibox_projection_lag_events",
            "omnibox_projection_lag_events",
            &json!({ "projection": "inbox" })
        ),
        Some(0.0),
        "caught up after settling"
    );
    assert_eq!(
        sample(
            &families,
            "omnibox_build_info",
            "omnibox_build_info",
            &json!({ "version": env!("CARGO_PKG_VERSION") })
        ),
        Some(1.0)
    );

    // OpenMetrics when asked for.
    let (content_type, text) = metrics(
        &inbox.app,
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));
}

async fn metrics(app: &App, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", app.url));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let answer = request.send().await.expect("GET /metrics");
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, answer.text().await.expect("text"))
}

in_process_on_both_backends!(metrics_are_classic_text_with_every_family);

fn omnibox(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_omnibox"))
        .args(args)
        .env_remove("OMNIBOX_DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run omnibox")
}

/// Start-up checks every setting and prints each problem once, with the
/// variable's name; nothing is created.
#[test]
fn bad_settings_stop_start_up_each_named_once() {
    let dir =
        std::env::temp_dir().join(format!("omnibox-config-{}", uuid::Uuid::new_v4().simple()));
    let database = format!("sqlite://{}/omnibox.db", dir.display());
    let output = omnibox(
        &["serve"],
        &[
            ("OMNIBOX_DATABASE_URL", database.as_str()),
            ("OMNIBOX_LISTEN", "no-such-host.invalid:8080"),
            ("OMNIBOX_PUBLIC_URL", "inbox.example.com"),
            ("OMNIBOX_PLATFORM_TIMEOUT_MS", "ten"),
            ("OMNIBOX_LOG", "omnibox=chatty"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "OMNIBOX_LISTEN",
        "OMNIBOX_PUBLIC_URL",
        "OMNIBOX_PLATFORM_TIMEOUT_MS",
        "OMNIBOX_LOG ",
    ] {
        assert_eq!(stderr.matches(name).count(), 1, "{name} once in:\n{stderr}");
    }
    assert!(!dir.exists(), "nothing created");

    // A media folder that cannot be written stops start-up, named.
    let file = std::env::temp_dir().join(format!(
        "omnibox-not-a-dir-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, b"a file").expect("file");
    let media = file.join("media");
    let output = omnibox(&["migrate"], &[("OMNIBOX_DATABASE_URL", database.as_str())]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = omnibox(
        &["bootstrap", "--org", "Shop", "--owner", "owner@example.com"],
        &[
            ("OMNIBOX_DATABASE_URL", database.as_str()),
            ("OMNIBOX_MEDIA_DIR", &media.display().to_string()),
        ],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("OMNIBOX_MEDIA_DIR"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TOML config file sets what the environment does not; unknown keys
/// are refused with the known ones listed.
#[test]
fn a_config_file_adds_to_the_environment() {
    let dir = std::env::temp_dir().join(format!("omnibox-toml-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("omnibox.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = \"sqlite://{}/from-file.db\"\nplatform_timeout_ms = 5000\nseal_personal_data = true\n",
            dir.display()
        ),
    )
    .expect("write");
    let config = file.display().to_string();
    let output = omnibox(&["--config", &config, "migrate"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dir.join("from-file.db").exists(),
        "the file's database was used"
    );
    let bootstrap = omnibox(
        &["bootstrap", "--org", "Shop", "--owner", "owner@example.com"],
        &[("OMNIBOX_CONFIG", config.as_str())],
    );
    assert!(
        bootstrap.status.success(),
        "OMNIBOX_CONFIG names the file too"
    );
    assert!(
        String::from_utf8_lossy(&bootstrap.stderr).contains("from-file.db"),
        "operator commands say which database they use"
    );

    std::fs::write(&file, "databse_url = \"sqlite://x.db\"\n").expect("write");
    let output = omnibox(&["--config", &config, "migrate"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("databse_url") && stderr.contains("database_url"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command line helps: suggestions for typos, every variable in
/// `serve --help`, the projections in `rebuild --help`.
#[test]
fn the_command_line_explains_itself() {
    let typo = omnibox(&["reubild"], &[]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("similar subcommand exists: 'rebuild'"));
    let serve = String::from_utf8_lossy(&omnibox(&["serve", "--help"], &[]).stdout).into_owned();
    for (name, ..) in omnibox_app::config::VARIABLES {
        assert!(serve.contains(name), "{name} missing from serve --help");
    }
    let rebuild =
        String::from_utf8_lossy(&omnibox(&["rebuild", "--help"], &[]).stdout).into_owned();
    for projection in ["members", "channels", "inbox", "templates", "qr_codes"] {
        assert!(
            rebuild.contains(projection),
            "{projection} missing from rebuild --help"
        );
    }
    let wrong = omnibox(&["rebuild", "--projection", "inbx"], &[]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("inbox"));
}
