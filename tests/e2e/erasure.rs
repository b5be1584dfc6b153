//! Erasure without rewriting history: a contact's personal data is sealed
//! under its own key, and erasing the contact destroys the key and its
//! media files. Afterwards nothing of what it said can be read anywhere —
//! GraphQL, history, replay, export, a rebuild, the database's raw bytes —
//! while everyone else's conversations stay whole.

use hmac::{Mac, SimpleHmac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::faults::omnibox;
use crate::inbound::inbox;
use crate::support::{error_code, facebook_signature, in_process_on_both_backends, App};

const PAGE: &str = "104729381650237";
/// The name the platform stand-in gives every Facebook customer.
const PROFILE_NAME: &str = "Nattaya Srisuk";

const EVERYTHING: &str =
    "{ conversations(first: 20) { nodes { id unreadCount status lastMessagePreview
    contact { id displayName avatarUrl platformUserId erased }
    messages(first: 20) { nodes { id direction text erased deliveryState
      attachments { kind url fileName sizeBytes } } } } } }";

/// Posts a signed Facebook webhook: `text` from `psid`, with an image at
/// `image` when given.
pub(crate) async fn post(app: &App, psid: &str, mid: &str, text: &str, image: Option<&str>) {
    let at = crate::support::start_of_test().timestamp_millis() + 1_000;
    let mut message = json!({ "mid": mid, "text": text });
    if let Some(url) = image {
        message["attachments"] = json!([{ "type": "image", "payload": { "url": url } }]);
    }
    let body = json!({ "object": "page", "entry": [{ "id": PAGE, "time": at, "messaging": [{
        "sender": { "id": psid }, "recipient": { "id": PAGE }, "timestamp": at, "message": message }] }] })
    .to_string();
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/facebook", app.url))
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", facebook_signature(body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("POST")
        .status();
    assert_eq!(status, 200);
}

/// Runs the profile and media fetchers until they have nothing to do.
async fn fetch_profiles_and_media(app: &App) {
    app.settle().await;
    let profiles = omnibox_app::reactors::profiles::ProfileFetcher::default();
    let media = omnibox_app::reactors::media::MediaFetcher::default();
    for _ in 0..3 {
        profiles.run_once(&app.state).await.expect("profiles");
        media.run_once(&app.state).await.expect("media");
        app.settle().await;
    }
}

/// Every byte the store and the media folder hold: the SQLite files and
/// their WAL files, or this PostgreSQL database's files and the server's
/// WAL (after a checkpoint, so what was written is on disk).
async fn raw_bytes(app: &App) -> Vec<u8> {
    let mut bytes = Vec::new();
    let read_dir = |dir: &std::path::Path, bytes: &mut Vec<u8>| {
        for entry in walk(dir) {
            if let Ok(content) = std::fs::read(&entry) {
                bytes.extend_from_slice(&content);
            }
        }
    };
    match &app.state.db {
        omnibox_store::Database::Sqlite {
            path, read_path, ..
        } => {
            for file in [path, read_path] {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let name = format!("{}{suffix}", file.display());
                    if let Some(content) = crate::support::read_live_sqlite_file(&name) {
                        bytes.extend_from_slice(&content);
                    }
                }
            }
        }
        omnibox_store::Database::Postgres { pool } => {
            sqlx::query("CHECKPOINT")
                .execute(pool)
                .await
                .expect("CHECKPOINT (the tests connect as a superuser)");
            let data: String = sqlx::query_scalar("SHOW data_directory")
                .fetch_one(pool)
                .await
                .expect("data directory");
            let database: i64 = sqlx::query_scalar(
                "SELECT oid::bigint FROM pg_database WHERE datname = current_database()",
            )
            .fetch_one(pool)
            .await
            .expect("database oid");
            let data = std::path::Path::new(&data);
            let files = walk(&data.join("base").join(database.to_string()));
            assert!(
                !files.is_empty(),
                "the PostgreSQL data directory must be readable by the tests (run them as root or postgres)"
            );
            read_dir(&data.join("base").join(database.to_string()), &mut bytes);
            read_dir(&data.join("pg_wal"), &mut bytes);
        }
    }
    if let Some(media) = &app.config.media_dir {
        read_dir(media, &mut bytes);
    }
    bytes
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

fn conversation_with<'a>(answer: &'a Value, psid: &str) -> &'a Value {
    answer["data"]["conversations"]["nodes"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|c| c["contact"]["platformUserId"] == psid)
        .unwrap_or_else(|| panic!("no conversation with {psid}: {answer}"))
}

/// The whole promise, on one organization with two customers.
async fn an_erased_contact_is_gone_everywhere_and_only_it(app: App) {
    let inbox = inbox(app, false).await;
    let app = &inbox.app;
    let owner = &inbox.owner.token;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (erased, kept) = ("7100000000000001", "7100000000000002");
    let secret_text = format!("my address is 12 Secret Lane {run}");
    let secret_reply = format!("we will visit 12 Secret Lane {run} tomorrow");
    let kept_text = format!("please keep this order {run}");
    let image = format!("{}/cdn/erased-{run}.png", app.platform.url);
    let image_bytes = format!("cdn-bytes-erased-{run}.png");
    post(
        app,
        erased,
        &format!("m-e1-{run}"),
        &secret_text,
        Some(&image),
    )
    .await;
    post(app, kept, &format!("m-k1-{run}"), &kept_text, None).await;
    fetch_profiles_and_media(app).await;

    let before = app.graphql(owner, EVERYTHING, json!({})).await;
    assert!(before["errors"].is_null(), "{before}");
    let target = conversation_with(&before, erased).clone();
    let contact_id = target["contact"]["id"]
        .as_str()
        .expect("contact")
        .to_owned();
    assert_eq!(target["contact"]["displayName"], PROFILE_NAME, "{target}");
    let inbound = &target["messages"]["nodes"][0];
    assert_eq!(inbound["text"], secret_text.as_str());
    let media_url = inbound["attachments"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("the image was stored: {target}"))
        .replace("https://inbox.example.com", &app.url);

    // An agent's reply to that customer is theirs too.
    let sent = app
        .graphql(
            owner,
            "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }",
            json!({ "i": { "conversationId": target["id"], "bubbles": [{ "text": secret_reply }] } }),
        )
        .await;
    assert!(sent["errors"].is_null(), "{sent}");
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    worker.run_once(&app.state).await.expect("delivery");
    app.settle().await;

    // Sealed from the start: no name or text of anyone in plaintext at
    // rest, only the image (media files are deleted, not sealed).
    let raw = raw_bytes(app).await;
    for plaintext in [
        &secret_text,
        &secret_reply,
        &kept_text,
        &PROFILE_NAME.to_owned(),
    ] {
        assert!(
            !holds(&raw, plaintext),
            "{plaintext:?} is stored in plaintext"
        );
    }
    assert!(
        holds(&raw, &image_bytes),
        "the image is in the media folder"
    );
    let wrapped_key: Option<Vec<u8>> = match &app.state.db {
        omnibox_store::Database::Sqlite { pool, .. } => Some(
            sqlx::query_scalar("SELECT wrapped FROM personal_keys WHERE contact_id = $1")
                .bind(uuid::Uuid::parse_str(&contact_id).expect("uuid"))
                .fetch_one(pool)
                .await
                .expect("the contact has a key"),
        ),
        omnibox_store::Database::Postgres { .. } => None,
    };

    // Only an OWNER or PRIMARY_ADMIN may erase.
    let agent = app
        .graphql(
            owner,
            "mutation { addMember(email: \"agent@example.com\", role: AGENT) { token } }",
            json!({}),
        )
        .await;
    let agent = agent["data"]["addMember"]["token"]
        .as_str()
        .expect("agent")
        .to_owned();
    app.settle().await;
    let unchanged = app.graphql(owner, EVERYTHING, json!({})).await;
    const ERASE: &str =
        "mutation($id: UUID!) { eraseContact(contactId: $id) { id displayName platformUserId erased } }";
    let refused = app
        .graphql(&agent, ERASE, json!({ "id": contact_id }))
        .await;
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
    let unknown = app
        .graphql(owner, ERASE, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"), "{unknown}");
    app.settle().await;
    assert_eq!(
        app.graphql(owner, EVERYTHING, json!({})).await,
        unchanged,
        "refused erasures change nothing"
    );

    let done = app.graphql(owner, ERASE, json!({ "id": contact_id })).await;
    assert!(done["errors"].is_null(), "{done}");
    assert_eq!(
        done["data"]["eraseContact"],
        json!({ "id": contact_id, "displayName": null, "platformUserId": erased, "erased": true })
    );
    assert_eq!(
        app.state
            .personal
            .count(uuid::Uuid::parse_str(&contact_id).expect("uuid"))
            .await
            .expect("count"),
        0,
        "its keys are destroyed"
    );
    app.settle().await;

    // GraphQL: the contact and its messages show as erased; times, counts,
    // kinds and delivery states remain; the other customer is whole.
    let after = app.graphql(owner, EVERYTHING, json!({})).await;
    assert!(after["errors"].is_null(), "{after}");
    let gone = conversation_with(&after, erased);
    assert_eq!(gone["contact"]["erased"], true, "{gone}");
    assert!(gone["contact"]["displayName"].is_null() && gone["contact"]["avatarUrl"].is_null());
    assert!(gone["lastMessagePreview"].is_null(), "{gone}");
    let messages = gone["messages"]["nodes"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "both messages still exist: {gone}");
    for message in messages {
        assert!(message["text"].is_null(), "{message}");
        assert_eq!(message["erased"], true, "{message}");
    }
    let by_direction = |direction: &str| {
        messages
            .iter()
            .find(|m| m["direction"] == direction)
            .unwrap_or_else(|| panic!("no {direction} message: {gone}"))
    };
    assert_eq!(by_direction("INBOUND")["attachments"][0]["kind"], "IMAGE");
    assert_eq!(by_direction("OUTBOUND")["deliveryState"], "DELIVERED");
    assert_eq!(gone["unreadCount"], target["unreadCount"]);
    let whole = conversation_with(&after, kept);
    assert_eq!(
        whole,
        conversation_with(&before, kept),
        "the other customer is untouched"
    );
    assert_eq!(whole["messages"]["nodes"][0]["text"], kept_text.as_str());
    assert_eq!(whole["contact"]["displayName"], PROFILE_NAME);
    let media = reqwest::Client::new()
        .get(&media_url)
        .bearer_auth(owner)
        .send()
        .await
        .expect("GET media");
    assert_eq!(media.status(), 404, "the image is deleted");

    // History, replay and export hold nothing of it either.
    let history = app
        .graphql(
            owner,
            "query($s: String!) { history(stream: $s, first: 50) { edges { node { type data } } } }",
            json!({ "s": format!("conversation-{}", target["id"].as_str().expect("id")) }),
        )
        .await;
    assert!(history["errors"].is_null(), "{history}");
    let history = history.to_string();
    assert!(history.contains("MessageReceived") && history.contains("ReplyQueued"));
    assert!(!history.contains("Secret Lane"), "{history}");
    let replay = omnibox(app, &["replay", "--all"]).await;
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let replay = String::from_utf8_lossy(&replay.stdout);
    assert!(!replay.contains("Secret Lane"));
    assert!(
        replay.contains(&kept_text),
        "replay opens what is not erased"
    );
    assert!(replay.contains("ContactErased"));
    let export = omnibox(app, &["export", "--org", &inbox.owner.org_id]).await;
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(!export.contains("Secret Lane") && !export.contains(&image_bytes));
    assert!(
        export.contains("personal_key"),
        "the other contact's key travels"
    );

    // The raw bytes: nothing of the erased contact, and (SQLite) not even
    // its destroyed key; the other contact's text is still readable above.
    let raw = raw_bytes(app).await;
    for plaintext in [&secret_text, &secret_reply, &image_bytes] {
        assert!(
            !holds(&raw, plaintext),
            "{plaintext:?} survived the erasure"
        );
    }
    if let Some(wrapped) = wrapped_key {
        assert!(
            memchr::memmem::find(&raw, &wrapped).is_none(),
            "the destroyed key's bytes remain in the SQLite files"
        );
    }

    // A rebuild gives the same answers.
    for runner in app.state.projections.runners() {
        runner.rebuild().await.expect("rebuild");
    }
    assert_eq!(app.graphql(owner, EVERYTHING, json!({})).await, after);

    // A late profile lookup or message does not bring the name back.
    fetch_profiles_and_media(app).await;
    let again = app.graphql(owner, EVERYTHING, json!({})).await;
    assert!(conversation_with(&again, erased)["contact"]["displayName"].is_null());
}

fn signed_request(secret: &str, payload: &Value) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = engine.encode(payload.to_string());
    let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(payload.as_bytes());
    format!("{}.{payload}", engine.encode(mac.finalize().into_bytes()))
}

async fn post_deletion(app: &App, signed: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/webhooks/facebook/data-deletion", app.url))
        .form(&[("signed_request", signed)])
        .send()
        .await
        .expect("POST")
}

/// Meta's user data deletion callback: a request signed with the app
/// secret erases the Facebook contacts with that user id and answers a
/// confirmation code and a status URL; a forged one changes nothing.
async fn facebook_data_deletion_requests_erase_the_user(app: App) {
    let inbox = inbox(app, false).await;
    let app = &inbox.app;
    let owner = &inbox.owner.token;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (leaving, staying) = ("7200000000000001", "7200000000000002");
    post(
        app,
        leaving,
        &format!("m-l-{run}"),
        &format!("bye {run}"),
        None,
    )
    .await;
    post(
        app,
        staying,
        &format!("m-s-{run}"),
        &format!("hi {run}"),
        None,
    )
    .await;
    fetch_profiles_and_media(app).await;
    let before = app.graphql(owner, EVERYTHING, json!({})).await;

    let payload =
        json!({ "algorithm": "HMAC-SHA256", "issued_at": 1_795_400_000, "user_id": leaving });
    let forged = post_deletion(app, &signed_request("not-the-app-secret", &payload)).await;
    assert_eq!(forged.status(), 401);
    let garbage = post_deletion(app, "no-signature-here").await;
    assert_eq!(garbage.status(), 401);
    app.settle().await;
    assert_eq!(
        app.graphql(owner, EVERYTHING, json!({})).await,
        before,
        "nothing changed"
    );

    let answer = post_deletion(
        app,
        &signed_request(crate::support::FACEBOOK_APP_SECRET, &payload),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.expect("JSON");
    let code = answer["confirmation_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let url = answer["url"].as_str().expect("url");
    assert_eq!(
        url,
        format!("https://inbox.example.com/data-deletion/{code}")
    );
    app.settle().await;
    let after = app.graphql(owner, EVERYTHING, json!({})).await;
    assert_eq!(
        conversation_with(&after, leaving)["contact"]["erased"],
        true
    );
    assert!(conversation_with(&after, leaving)["messages"]["nodes"][0]["text"].is_null());
    assert_eq!(
        conversation_with(&after, staying),
        conversation_with(&before, staying)
    );
    let status = reqwest::get(format!("{}/data-deletion/{code}", app.url))
        .await
        .expect("GET status");
    assert_eq!(status.status(), 200);
    let status = status.text().await.expect("text");
    assert!(
        status.contains("completed") && status.contains("1 conversation contact"),
        "{status}"
    );
    let unknown = reqwest::get(format!(
        "{}/data-deletion/{}",
        app.url,
        uuid::Uuid::new_v4().simple()
    ))
    .await
    .expect("GET");
    assert_eq!(unknown.status(), 404);
}

in_process_on_both_backends!(
    an_erased_contact_is_gone_everywhere_and_only_it,
    facebook_data_deletion_requests_erase_the_user
);
