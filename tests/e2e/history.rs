//! History for auditors and analysts: the whole log replayed as NDJSON.

use serde_json::Value;

use crate::faults::omnibox;
use crate::inbound::inbox;
use crate::support::{in_process_on_both_backends, App};

/// `omnibox replay --all` prints every event of the log once, in log order,
/// as one JSON object per line; `--from POSITION` starts after it; an
/// unknown stream is an error, not an empty answer.
async fn the_whole_log_replays_in_order(app: App) {
    let inbox = inbox(app, false).await;
    for file in [
        "facebook/text_message.json",
        "facebook/image_attachment.json",
    ] {
        assert_eq!(inbox.facebook(file).await, 200);
    }
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    let logged = inbox.app.events().await;
    let output = omnibox(&inbox.app, &["replay", "--all"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), logged.len());
    for (line, event) in lines.iter().zip(&logged) {
        assert_eq!(line["id"], event.id.to_string());
        assert_eq!(line["position"], event.position.to_string());
        assert_eq!(line["stream"], event.stream.as_str());
        assert!(
            line["data"].is_object() && line["recordedAt"].is_string(),
            "{line}"
        );
    }
    let from = lines[4]["position"].as_str().expect("position").to_owned();
    let output = omnibox(&inbox.app, &["replay", "--all", "--from", &from]).await;
    assert!(output.status.success());
    let rest: Vec<&str> = std::str::from_utf8(&output.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    assert_eq!(rest.len(), lines.len() - 5);
    let unknown = omnibox(
        &inbox.app,
        &[
            "replay",
            "--stream",
            "conversation-00000000-0000-0000-0000-000000000000",
        ],
    )
    .await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no stream"));
    let both = omnibox(&inbox.app, &["replay", "--all", "--stream", "org-x"]).await;
    assert!(
        !both.status.success(),
        "--all and --stream exclude each other"
    );
}

/// `history(stream: "$all")`: the OWNER reads the organization's events in
/// log order, page by page, and nothing of another organization's; nobody
/// else may; token hashes never appear.
async fn the_organizations_whole_history(app: App) {
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    let other = inbox.app.bootstrap("Other Shop", "other@example.com").await;
    let query = "query($a: String) { history(stream: \"$all\", first: 7, after: $a) { pageInfo { hasNextPage endCursor } nodes { position stream type data } } }";
    let mut after = Value::Null;
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let page = inbox
            .app
            .graphql(&inbox.owner.token, query, serde_json::json!({ "a": after }))
            .await;
        assert!(page["errors"].is_null(), "{page}");
        seen.extend(
            page["data"]["history"]["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .cloned(),
        );
        if page["data"]["history"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["data"]["history"]["pageInfo"]["endCursor"].clone();
    }
    let ours: Vec<_> = inbox
        .app
        .events()
        .await
        .into_iter()
        .filter(|e| {
            e.data.contains(&inbox.owner.org_id)
                || e.stream.as_str() == format!("org-{}", inbox.owner.org_id)
        })
        .collect();
    assert_eq!(seen.len(), ours.len(), "every event of ours, once");
    let text = serde_json::to_string(&seen).expect("json");
    assert!(
        !text.contains(&other.org_id),
        "nothing of another organization"
    );
    assert!(!text.contains("token_sha256"));
    let agent = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation { addMember(email: \"a@example.com\", role: PRIMARY_ADMIN) { token } }",
            serde_json::json!({}),
        )
        .await;
    let token = agent["data"]["addMember"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let refused = inbox
        .app
        .graphql(&token, query, serde_json::json!({ "a": null }))
        .await;
    assert_eq!(
        crate::support::error_code(&refused),
        Some("FORBIDDEN"),
        "{refused}"
    );
}

const AS_OF: &str = "query($id: UUID!, $at: DateTime!) { conversationAsOf(id: $id, at: $at) { status assignee { email } unreadCount window { phase } messages(first: 20) { nodes { direction text deliveryState } } } }";

/// Time travel: `conversationAsOf` and `channelAsOf` show the state their
/// events made up to an instant: assignee, status, messages and their
/// delivery states then; the channel's status then. Another
/// organization's ids answer nothing.
async fn time_travel_shows_what_was_true_then(app: App) {
    let inbox = inbox(app, false).await;
    let before_anything = chrono::Utc::now();
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    inbox.app.settle().await;
    let received = chrono::Utc::now();
    let list = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations { nodes { id } } me { id } }",
            serde_json::json!({}),
        )
        .await;
    let conversation = list["data"]["conversations"]["nodes"][0]["id"].clone();
    let me = list["data"]["me"]["id"].clone();
    inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { id } }",
            serde_json::json!({ "c": conversation, "a": me }),
        )
        .await;
    let sent = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
            serde_json::json!({ "i": { "conversationId": conversation, "bubbles": [{ "text": "ได้เลยครับ" }] } }),
        )
        .await;
    assert!(sent["errors"].is_null(), "{sent}");
    inbox.app.settle().await;
    let queued = chrono::Utc::now();
    omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO)
        .run_once(&inbox.app.state)
        .await
        .expect("delivery");
    inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($c: UUID!) { resolveConversation(conversationId: $c) { id } }",
            serde_json::json!({ "c": conversation }),
        )
        .await;
    inbox.app.settle().await;
    let resolved = chrono::Utc::now();

    let at = |instant: chrono::DateTime<chrono::Utc>| {
        let (app, token, conversation) =
            (&inbox.app, inbox.owner.token.clone(), conversation.clone());
        async move {
            let answer = app
                .graphql(
                    &token,
                    AS_OF,
                    serde_json::json!({ "id": conversation, "at": instant }),
                )
                .await;
            assert!(answer["errors"].is_null(), "{answer}");
            answer["data"]["conversationAsOf"].clone()
        }
    };
    assert!(at(before_anything).await.is_null(), "it did not exist yet");
    let first = at(received).await;
    assert_eq!(first["status"], "OPEN");
    assert!(first["assignee"].is_null());
    assert_eq!(first["unreadCount"], 1);
    assert_eq!(first["window"]["phase"], "UNLIMITED");
    assert_eq!(first["messages"]["nodes"].as_array().map(Vec::len), Some(1));
    let middle = at(queued).await;
    assert_eq!(middle["assignee"]["email"], "owner@example.com");
    let outbound = |v: &Value| {
        v["messages"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|m| m["direction"] == "OUTBOUND")
            .map(|m| m["deliveryState"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(outbound(&middle), ["QUEUED"]);
    let last = at(resolved).await;
    assert_eq!(last["status"], "RESOLVED");
    assert_eq!(outbound(&last), ["DELIVERED"]);

    // The channel then and now.
    let channel_as_of =
        "query($id: UUID!, $at: DateTime!) { channelAsOf(id: $id, at: $at) { name status } }";
    let then = inbox
        .app
        .graphql(
            &inbox.owner.token,
            channel_as_of,
            serde_json::json!({ "id": inbox.line_channel, "at": resolved }),
        )
        .await;
    assert_eq!(then["data"]["channelAsOf"]["status"], "CONNECTED", "{then}");
    let disconnected = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { status } }",
            serde_json::json!({ "id": inbox.line_channel }),
        )
        .await;
    assert_eq!(
        disconnected["data"]["disconnectChannel"]["status"],
        "DISCONNECTED"
    );
    let still = inbox
        .app
        .graphql(
            &inbox.owner.token,
            channel_as_of,
            serde_json::json!({ "id": inbox.line_channel, "at": resolved }),
        )
        .await;
    assert_eq!(
        still["data"]["channelAsOf"]["status"], "CONNECTED",
        "the past does not change"
    );
    let now = inbox
        .app
        .graphql(
            &inbox.owner.token,
            channel_as_of,
            serde_json::json!({ "id": inbox.line_channel, "at": chrono::Utc::now() }),
        )
        .await;
    assert_eq!(now["data"]["channelAsOf"]["status"], "DISCONNECTED");
    let other = inbox.app.bootstrap("Other Shop", "other@example.com").await;
    let hidden = inbox
        .app
        .graphql(
            &other.token,
            AS_OF,
            serde_json::json!({ "id": conversation, "at": resolved }),
        )
        .await;
    assert!(hidden["data"]["conversationAsOf"].is_null(), "{hidden}");
}

/// An event stored in an older shape (a claim without a route, from before
/// events had versions) reads in the current shape everywhere: the
/// delivery worker treats it as the Facebook send it was, history and
/// `replay --all` show it upcast.
async fn old_event_shapes_are_upcast_when_read(app: App) {
    use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    inbox.app.settle().await;
    inbox.app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-23T02:30:00Z")
            .expect("instant")
            .to_utc(),
    );
    let list = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations { nodes { id } } }",
            serde_json::json!({}),
        )
        .await;
    let conversation = list["data"]["conversations"]["nodes"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let queued = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
            serde_json::json!({ "i": { "conversationId": conversation, "bubbles": [{ "text": "old claim" }], "idempotencyKey": "old-shape" } }),
        )
        .await;
    assert!(queued["errors"].is_null(), "{queued}");
    let reply_id = inbox
        .app
        .events()
        .await
        .iter()
        .find(|e| e.event_type == "ReplyQueued")
        .and_then(|e| serde_json::from_str::<Value>(&e.data).ok())
        .and_then(|d| d["reply_id"].as_str().map(str::to_owned))
        .expect("reply id");
    // The old shape, appended as it is to the backend itself.
    let old = String::from_utf8(crate::support::fixture(
        "events/reply_bubble_sending_v1.json",
    ))
    .expect("utf-8")
    .replace("00000000-0000-0000-0000-0000000000c1", &conversation)
    .replace("00000000-0000-0000-0000-0000000000a1", &inbox.owner.org_id)
    .replace("00000000-0000-0000-0000-0000000000b1", &reply_id);
    let raw = inbox.app.state.db.event_store().await.expect("backend");
    raw.append(
        &StreamName::parse(&format!("conversation-{conversation}")).expect("stream"),
        ExpectedRevision::Any,
        vec![NewEvent {
            id: uuid::Uuid::now_v7(),
            event_type: "ReplyBubbleSending".into(),
            data: old.trim().to_owned(),
            metadata: Metadata {
                correlation_id: uuid::Uuid::now_v7(),
                causation_id: None,
                actor: Some("system:delivery".into()),
            },
        }],
    )
    .await
    .expect("append the old shape");
    inbox.app.settle().await;
    // A Facebook claim older than its lease: failed as interrupted, not resent.
    inbox.app.clock.advance(chrono::Duration::minutes(5));
    let recorded =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO)
            .run_once(&inbox.app.state)
            .await
            .expect("delivery");
    assert_eq!(recorded, 1);
    assert!(inbox.app.platform.customer_side().is_empty(), "never sent");
    let failed = inbox
        .app
        .events()
        .await
        .into_iter()
        .find(|e| e.event_type == "ReplyBubbleFailed")
        .expect("failed");
    assert!(failed.data.contains("INTERRUPTED"), "{}", failed.data);
    let history = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "query($s: String!) { history(stream: $s) { nodes { type data } } }",
            serde_json::json!({ "s": format!("conversation-{conversation}") }),
        )
        .await;
    let claim = history["data"]["history"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["type"] == "ReplyBubbleSending")
        .cloned()
        .expect("the old claim");
    assert_eq!(claim["data"]["route"], "FACEBOOK_SEND");
    assert_eq!(claim["data"]["v"], 2);
    let output = omnibox(&inbox.app, &["replay", "--all"]).await;
    let replayed = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = replayed
        .lines()
        .find(|l| l.contains("\"ReplyBubbleSending\""))
        .expect("replayed");
    assert!(line.contains("\"route\":\"FACEBOOK_SEND\""), "{line}");
}

const EVERYTHING: &str = "{ me { id email role } members { id email role available }
  channels { id kind name status externalId assignmentMode }
  conversations(first: 10) { nodes { id unreadCount status assignee { id } lastMessagePreview
    contact { displayName platformUserId }
    messages(first: 10) { nodes { id direction text deliveryState failureReason attachments { kind url contentType sizeBytes } } } } } }";

/// `omnibox export --org` then `omnibox import` into a new store: the same
/// members, channels, conversations, messages, delivery states and media
/// (served from the new store), and the owner's token still works there.
async fn an_export_imports_into_a_fresh_store_identically(app: App) {
    let inbox = inbox(app, true).await;
    for file in [
        "facebook/text_message.json",
        "facebook/image_attachment.json",
        "facebook/postback.json",
    ] {
        assert_eq!(inbox.facebook(file).await, 200, "{file}");
    }
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    assert_eq!(inbox.line("line/image_message.json").await, 200);
    inbox.app.settle().await;
    // LINE prepares content: the first look answers "not ready", the second the bytes.
    let fetcher = omnibox_app::reactors::media::MediaFetcher::default();
    for _ in 0..2 {
        fetcher.run_once(&inbox.app.state).await.expect("media");
        inbox.app.settle().await;
    }
    inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation { addMember(email: \"agent@example.com\", role: AGENT) { token } }",
            serde_json::json!({}),
        )
        .await;
    inbox.app.settle().await;
    let original = inbox
        .app
        .graphql(&inbox.owner.token, EVERYTHING, serde_json::json!({}))
        .await;
    assert!(original["errors"].is_null(), "{original}");

    let export = omnibox(&inbox.app, &["export", "--org", &inbox.owner.org_id]).await;
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let file = std::env::temp_dir().join(format!(
        "omnibox-export-{}.ndjson",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, &export.stdout).expect("write export");

    let backend = if inbox.app.config.database_url.starts_with("postgres") {
        omnibox_store::testing::Backend::Postgres
    } else {
        omnibox_store::testing::Backend::Sqlite
    };
    let target = omnibox_store::testing::TestDatabase::create(backend)
        .await
        .expect("target");
    let media = std::env::temp_dir().join(format!(
        "omnibox-import-media-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let media = media.display().to_string();
    let env = [
        ("OMNIBOX_MEDIA_DIR", media.as_str()),
        ("OMNIBOX_PUBLIC_URL", "https://inbox.example.com"),
    ];
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_omnibox"))
            .env("OMNIBOX_DATABASE_URL", &target.url)
            .env("OMNIBOX_SECRET_KEY", crate::support::TEST_SECRET_KEY)
            .env("OMNIBOX_LOG", "warn")
            .envs(env)
            .args(args)
            .output()
            .expect("run omnibox")
    };
    // Operator commands never create a database: make it first.
    let migrated = run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let file_arg = file.display().to_string();
    let imported = run(&["import", &file_arg]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let again = run(&["import", &file_arg]);
    assert!(!again.status.success(), "only into an empty store");

    let url = target.url.clone();
    // The read models rebuilt from the import equal the original's, row for row.
    let original_rows = crate::rebuild::dump_read_models(&inbox.app.state.db).await;
    let imported = omnibox_store::Database::connect(&url)
        .await
        .expect("the imported store");
    let imported_rows = crate::rebuild::dump_read_models(&imported).await;
    imported.close().await;
    assert!(
        original_rows.lines().count() > 20,
        "a real history:\n{original_rows}"
    );
    assert!(
        original_rows == imported_rows,
        "the imported read models differ:\n--- original\n{original_rows}\n--- imported\n{imported_rows}"
    );
    let server = crate::support::Server::start_at(url, &env, Some(target)).await;
    let copy = server
        .graphql(Some(&inbox.owner.token), EVERYTHING, serde_json::json!({}))
        .await;
    assert_eq!(copy, original, "the imported store answers the same");
    let attachment_url = original.to_string();
    let media_url = attachment_url
        .split("\"url\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stored attachment")
        .replace("https://inbox.example.com", &server.url);
    let served = reqwest::Client::new()
        .get(&media_url)
        .bearer_auth(&inbox.owner.token)
        .send()
        .await
        .expect("GET media");
    assert_eq!(served.status(), 200, "media travelled");
    let _ = std::fs::remove_file(&file);
}

/// Operator commands pointed at a SQLite file that does not exist say so,
/// exit non-zero, and create nothing.
#[test]
fn operator_commands_never_create_a_database() {
    let dir =
        std::env::temp_dir().join(format!("omnibox-missing-{}", uuid::Uuid::new_v4().simple()));
    let file = dir.join("omnibox.db");
    for args in [
        &["rebuild"][..],
        &["replay", "--all"],
        &[
            "replay",
            "--stream",
            "org-00000000-0000-0000-0000-000000000000",
        ],
        &["export", "--org", "00000000-0000-0000-0000-000000000000"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_omnibox"))
            .env(
                "OMNIBOX_DATABASE_URL",
                format!("sqlite://{}", file.display()),
            )
            .env("OMNIBOX_SECRET_KEY", crate::support::TEST_SECRET_KEY)
            .args(args)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("no database"),
            "{args:?}"
        );
        assert!(
            !file.exists() && !dir.exists(),
            "{args:?} created something"
        );
    }
}

in_process_on_both_backends!(
    an_export_imports_into_a_fresh_store_identically,
    old_event_shapes_are_upcast_when_read,
    time_travel_shows_what_was_true_then,
    the_whole_log_replays_in_order,
    the_organizations_whole_history
);
