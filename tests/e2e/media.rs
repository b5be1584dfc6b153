//! Inbound media fetched into Omnibox's store and served to members only;
//! contact profiles looked up after first contact.

use serde_json::{json, Value};

use crate::inbound::inbox;
use crate::support::{facebook_signature, in_process_on_both_backends, App};

const MESSAGES: &str = "query { conversations { nodes { contact { displayName platformUserId }
  messages { nodes { id attachments { kind url contentType sizeBytes } } } } } }";

async fn attachments(app: &App, token: &str) -> Vec<Value> {
    let answer = app.graphql(token, MESSAGES, json!({})).await;
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"]["conversations"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .flat_map(|c| {
            c["messages"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn facebook_image(url: &str, mid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "object": "page", "entry": [{ "id": "104729381650237", "time": 1795399900118_i64, "messaging": [{
        "sender": { "id": "6602957718843910" }, "recipient": { "id": "104729381650237" }, "timestamp": 1795399900118_i64,
        "message": { "mid": mid, "attachments": [{ "type": "image", "payload": { "url": url } }] } }] }] }))
    .expect("json")
}

async fn media_is_fetched_stored_and_served_to_members_only(app: App) {
    let inbox = inbox(app, false).await;
    let fetcher = omnibox_app::reactors::media::MediaFetcher::default();
    let post = |body: Vec<u8>| {
        let url = format!("{}/webhooks/facebook", inbox.app.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("X-Hub-Signature-256", facebook_signature(&body))
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert_eq!(
        post(facebook_image(
            &format!("{}/cdn/photo.png", inbox.app.platform.url),
            "m_media_1"
        ))
        .await,
        200
    );
    assert_eq!(
        post(facebook_image(
            &format!("{}/cdn/missing.png", inbox.app.platform.url),
            "m_media_2"
        ))
        .await,
        200
    );
    assert_eq!(inbox.line("line/image_message.json").await, 200);
    inbox.app.settle().await;

    // First pass: the CDN files are fetched (or found gone); LINE answers 202 "not ready".
    assert_eq!(fetcher.run_once(&inbox.app.state).await.expect("pass"), 2);
    // Second pass: LINE's content is ready.
    assert_eq!(fetcher.run_once(&inbox.app.state).await.expect("pass"), 1);
    inbox.app.settle().await;
    assert_eq!(
        fetcher.run_once(&inbox.app.state).await.expect("pass"),
        0,
        "nothing left to fetch"
    );

    let found = attachments(&inbox.app, &inbox.owner.token).await;
    let stored: Vec<&Value> = found.iter().filter(|a| a["url"].is_string()).collect();
    assert_eq!(stored.len(), 2, "{found:?}");
    assert_eq!(
        found.iter().filter(|a| a["url"].is_null()).count(),
        1,
        "the expired one is not pretended"
    );
    let line_image = stored
        .iter()
        .find(|a| a["contentType"] == "image/jpeg")
        .expect("the LINE image");
    let url = line_image["url"]
        .as_str()
        .expect("url")
        .replace("https://inbox.example.com", &inbox.app.url);
    let fetched = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&inbox.owner.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-type"], "image/jpeg");
    assert!(fetched
        .text()
        .await
        .expect("bytes")
        .starts_with("line-image-bytes-"));
    let line_request = inbox
        .app
        .platform
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/content"))
        .expect("content request");
    assert_eq!(
        line_request.authorization.as_deref(),
        Some("Bearer line-token")
    );

    let stranger = inbox.app.bootstrap("Elsewhere", "x@example.com").await;
    let theirs = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&stranger.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        theirs.status(),
        404,
        "another organization's media does not exist for them"
    );
    assert_eq!(reqwest::get(&url).await.expect("GET").status(), 401);
}

async fn profiles_are_looked_up_after_first_contact(app: App) {
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    assert_eq!(inbox.line("line/multiple_events.json").await, 200);
    inbox.app.settle().await;
    let fetcher = omnibox_app::reactors::profiles::ProfileFetcher::default();
    let recorded = fetcher.run_once(&inbox.app.state).await.expect("pass");
    assert!(recorded >= 3, "{recorded}");
    inbox.app.settle().await;
    let answer = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({}))
        .await;
    let names: Vec<(String, Value)> = answer["data"]["conversations"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|c| {
            (
                c["contact"]["platformUserId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                c["contact"]["displayName"].clone(),
            )
        })
        .collect();
    assert!(
        names.contains(&("7294018365520341".into(), json!("Nattaya Srisuk"))),
        "{names:?}"
    );
    assert!(
        names.contains(&(
            "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a".into(),
            json!("Somchai J.")
        )),
        "{names:?}"
    );
    assert!(
        names.contains(&("U1c7d3e9f0a2b4c6d8e0f1a3b5c7d9e1f".into(), Value::Null)),
        "LU2 has no profile: {names:?}"
    );
    assert_eq!(
        fetcher.run_once(&inbox.app.state).await.expect("pass"),
        0,
        "each profile is looked up once"
    );
}

in_process_on_both_backends!(
    media_is_fetched_stored_and_served_to_members_only,
    profiles_are_looked_up_after_first_contact
);
