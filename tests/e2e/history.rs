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

in_process_on_both_backends!(
    the_whole_log_replays_in_order,
    the_organizations_whole_history
);
