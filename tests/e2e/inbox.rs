//! The inbox read side through GraphQL: ordering by platform time, unread
//! counts, windows, filters, pagination, member actions, live updates.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::inbound::inbox;
use crate::support::{error_code, in_process_on_both_backends, subscribe, App, Socket};

const LIST: &str = "query($c: [UUID!], $a: UUID, $u: Boolean, $s: ConversationStatus, $f: Int, $after: String) {
  conversations(channelIds: $c, assigneeId: $a, unassigned: $u, status: $s, first: $f, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id channelKind channel { id kind } contact { platformUserId } lastMessageAt lastMessagePreview unreadCount status assignee { email } }
  } }";

const ONE: &str = "query($id: UUID!, $at: DateTime) { conversation(id: $id) {
  id unreadCount lastMessageAt lastMessagePreview status
  window(at: $at) { phase standardEndsAt humanAgentEndsAt }
  messages(first: 10) { nodes { direction sentAt text attachments { kind url } deliveryState unsent } }
  latest: messages(last: 2) { pageInfo { hasPreviousPage } nodes { sentAt } }
} }";

async fn conversations(app: &App, token: &str, vars: Value) -> Value {
    let answer = app.graphql(token, LIST, vars).await;
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"]["conversations"].clone()
}

async fn the_inbox_follows_platform_time_not_arrival(app: App) {
    let inbox = inbox(app, false).await;
    for file in [
        "facebook/text_message.json",
        "facebook/image_attachment.json",
        "facebook/echo_message.json",
        "facebook/sticker_transition.json",
    ] {
        assert_eq!(inbox.facebook(file).await, 200);
    }
    inbox.app.settle().await;
    let list = conversations(&inbox.app, &inbox.owner.token, json!({})).await;
    let row = &list["nodes"][0];
    assert_eq!(list["nodes"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(row["channelKind"], "FACEBOOK");
    assert_eq!(row["channel"]["kind"], "FACEBOOK");
    assert_eq!(row["contact"]["platformUserId"], "7294018365520341");
    assert_eq!(
        row["lastMessageAt"], "2026-11-23T02:12:31.880+00:00",
        "the echo is the newest; the older sticker is not"
    );
    assert_eq!(
        row["unreadCount"], 3,
        "text, image and sticker; not our echo"
    );
    let id = row["id"].as_str().expect("id").to_owned();

    let one = inbox
        .app
        .graphql(
            &inbox.owner.token,
            ONE,
            json!({ "id": id, "at": "2026-11-23T03:00:00Z" }),
        )
        .await;
    let c = &one["data"]["conversation"];
    assert_eq!(c["window"]["phase"], "STANDARD", "{one}");
    assert_eq!(
        c["window"]["standardEndsAt"], "2026-11-24T02:11:40.118+00:00",
        "24 h after the image, the customer's last message"
    );
    let messages = c["messages"]["nodes"].as_array().expect("messages");
    let directions: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["direction"].as_str())
        .collect();
    assert_eq!(directions, ["INBOUND", "INBOUND", "INBOUND", "OUTBOUND"]);
    assert_eq!(
        messages[0]["attachments"][0]["kind"], "STICKER",
        "oldest first: the August sticker"
    );
    assert_eq!(
        messages[1]["text"],
        "Hi! Do you ship to Chiang Mai? ขอบคุณค่ะ"
    );
    assert_eq!(messages[3]["deliveryState"], "DELIVERED");
    assert_eq!(c["latest"]["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(c["latest"]["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(
        c["latest"]["nodes"][1]["sentAt"], messages[3]["sentAt"],
        "last: 2 ends at the newest"
    );

    let later = inbox
        .app
        .graphql(
            &inbox.owner.token,
            ONE,
            json!({ "id": id, "at": "2026-11-26T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        later["data"]["conversation"]["window"]["phase"],
        "HUMAN_AGENT"
    );
    let closed = inbox
        .app
        .graphql(
            &inbox.owner.token,
            ONE,
            json!({ "id": id, "at": "2026-12-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(closed["data"]["conversation"]["window"]["phase"], "CLOSED");

    // An auditor reads the conversation's exact history, platform events included.
    let history = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "query($s: String!) { history(stream: $s) { nodes { type } } }",
            json!({ "s": format!("conversation-{id}") }),
        )
        .await;
    let types: Vec<&str> = history["data"]["history"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "MessageReceived",
            "MessageReceived",
            "MessageEchoed",
            "MessageReceived"
        ],
        "{history}"
    );
    let stranger = inbox.app.bootstrap("Elsewhere", "x@example.com").await;
    let hidden = inbox
        .app
        .graphql(
            &stranger.token,
            "query($s: String!) { history(stream: $s) { nodes { type } } }",
            json!({ "s": format!("conversation-{id}") }),
        )
        .await;
    assert_eq!(error_code(&hidden), Some("NOT_FOUND"));

    let read = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($id: UUID!) { markRead(conversationId: $id) { unreadCount } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(read["data"]["markRead"]["unreadCount"], 0, "{read}");
}

async fn filters_pagination_and_member_actions(app: App) {
    let inbox = inbox(app, true).await;
    for file in [
        "facebook/text_message.json",
        "facebook/multiple_entries_batched.json",
    ] {
        assert_eq!(inbox.facebook(file).await, 200);
    }
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    inbox.app.settle().await;
    let token = inbox.owner.token.clone();
    let all = conversations(&inbox.app, &token, json!({})).await;
    let nodes = all["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 5, "{all}");
    let times: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n["lastMessageAt"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest activity first");

    // Pages of two walk the same list, each row once.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = conversations(&inbox.app, &token, json!({ "f": 2, "after": after })).await;
        seen.extend(
            page["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| n["id"].clone()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        seen,
        nodes.iter().map(|n| n["id"].clone()).collect::<Vec<_>>()
    );

    let line_only = conversations(&inbox.app, &token, json!({ "c": [inbox.line_channel] })).await;
    assert_eq!(line_only["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(line_only["nodes"][0]["channelKind"], "LINE");

    let me =
        inbox.app.graphql(&token, "{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
    let target = nodes[0]["id"].clone();
    let assigned = inbox
        .app
        .graphql(&token, "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { assignee { email } } }", json!({ "c": target, "a": me }))
        .await;
    assert_eq!(
        assigned["data"]["assignConversation"]["assignee"]["email"], "owner@example.com",
        "{assigned}"
    );
    assert_eq!(
        conversations(&inbox.app, &token, json!({ "a": me })).await["nodes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        conversations(&inbox.app, &token, json!({ "u": true })).await["nodes"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let resolved = inbox
        .app
        .graphql(
            &token,
            "mutation($c: UUID!) { resolveConversation(conversationId: $c) { status } }",
            json!({ "c": target }),
        )
        .await;
    assert_eq!(
        resolved["data"]["resolveConversation"]["status"],
        "RESOLVED"
    );
    assert_eq!(
        conversations(&inbox.app, &token, json!({ "s": "RESOLVED" })).await["nodes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        conversations(&inbox.app, &token, json!({ "s": "OPEN" })).await["nodes"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let nobody = inbox
        .app
        .graphql(&token, "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { id } }", json!({ "c": target, "a": uuid::Uuid::now_v7() }))
        .await;
    assert_eq!(error_code(&nobody), Some("NOT_FOUND"));

    let stranger = inbox.app.bootstrap("Elsewhere", "x@example.com").await;
    let theirs = inbox
        .app
        .graphql(&stranger.token, ONE, json!({ "id": target }))
        .await;
    assert_eq!(error_code(&theirs), Some("NOT_FOUND"));
    assert_eq!(
        conversations(&inbox.app, &stranger.token, json!({})).await["nodes"],
        json!([])
    );
    let touch = inbox
        .app
        .graphql(
            &stranger.token,
            "mutation($c: UUID!) { markRead(conversationId: $c) { id } }",
            json!({ "c": target }),
        )
        .await;
    assert_eq!(error_code(&touch), Some("NOT_FOUND"));
}

async fn line_conversations_have_no_window(app: App) {
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.line("line/group_message.json").await, 200);
    inbox.app.settle().await;
    let list = conversations(&inbox.app, &inbox.owner.token, json!({})).await;
    let id = list["nodes"][0]["id"].clone();
    let one = inbox
        .app
        .graphql(
            &inbox.owner.token,
            ONE,
            json!({ "id": id, "at": "2030-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        one["data"]["conversation"]["window"]["phase"], "UNLIMITED",
        "{one}"
    );
}

/// A live inbox client on each protocol sees the row a webhook changed, and
/// another organization's client sees nothing.
async fn inbox_updates_follow_webhooks(app: App) {
    let inbox = inbox(app, false).await;
    let stranger = inbox.app.bootstrap("Elsewhere", "x@example.com").await;
    let mut sockets = Vec::new();
    for (protocol, start, token) in [
        ("graphql-transport-ws", "subscribe", &inbox.owner.token),
        ("graphql-ws", "start", &inbox.owner.token),
        ("graphql-transport-ws", "subscribe", &stranger.token),
    ] {
        let query = "subscription { inboxUpdates { id channelKind channel { kind } assignee { email } contact { platformUserId } unreadCount lastMessagePreview } }";
        let socket = subscribe(&inbox.app, protocol, token, start, query, json!({})).await;
        sockets.push(socket);
    }
    // Subscriptions are not acknowledged: post messages until both clients hear one.
    let files = [
        "facebook/text_message.json",
        "facebook/image_attachment.json",
        "line/text_message.json",
        "line/image_message.json",
        "line/postback.json",
    ];
    let mut heard = [None, None];
    for file in files {
        if file.starts_with("facebook") {
            inbox.facebook(file).await;
        } else {
            inbox.line(file).await;
        }
        for (i, slot) in heard.iter_mut().enumerate() {
            if slot.is_none() {
                if let Ok(Some(Ok(Message::Text(text)))) =
                    tokio::time::timeout(Duration::from_secs(2), sockets[i].next()).await
                {
                    *slot = Some(serde_json::from_str::<Value>(&text).expect("json"));
                }
            }
        }
        if heard.iter().all(Option::is_some) {
            break;
        }
    }
    let [modern, legacy] = heard.map(|m| m.expect("an update arrived"));
    assert_eq!(modern["type"], "next", "{modern}");
    assert_eq!(legacy["type"], "data", "{legacy}");
    for update in [&modern, &legacy] {
        assert!(
            update["payload"]["data"]["inboxUpdates"]["unreadCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1,
            "{update}"
        );
    }
    for update in [&modern, &legacy] {
        let row = &update["payload"]["data"]["inboxUpdates"];
        // The update is dressed with its own channel, and no assignee yet.
        assert!(row["channel"]["kind"].is_string(), "{update}");
        assert_eq!(row["channel"]["kind"], row["channelKind"], "{update}");
        assert!(row["assignee"].is_null(), "{update}");
    }
    let leaked = tokio::time::timeout(Duration::from_millis(300), sockets[2].next()).await;
    assert!(leaked.is_err(), "another organization received {leaked:?}");

    // Assigned, the conversation's next update names its assignee.
    let token = &inbox.owner.token;
    let me = inbox.app.graphql(token, "{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
    let conversation = modern["payload"]["data"]["inboxUpdates"]["id"].clone();
    inbox
        .app
        .graphql(token, "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { id } }", json!({ "c": conversation, "a": me }))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, sockets[0].next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = next else {
            panic!("no update named the assignee: {next:?}");
        };
        let update: Value = serde_json::from_str(&text).expect("json");
        let row = &update["payload"]["data"]["inboxUpdates"];
        if row["id"] == conversation && !row["assignee"].is_null() {
            assert_eq!(row["assignee"]["email"], "owner@example.com", "{update}");
            assert!(row["channel"]["kind"].is_string(), "{update}");
            break;
        }
    }
}

async fn subscribe_inbox(app: &App, token: &str, after: Option<&str>) -> Socket {
    let query = "subscription($after: String) { inboxUpdates(after: $after) { position contact { platformUserId } } }";
    subscribe(
        app,
        "graphql-transport-ws",
        token,
        "subscribe",
        query,
        json!({ "after": after }),
    )
    .await
}

/// Updates on `socket`: the first within `first` (none if nothing comes),
/// then more until it is quiet for `quiet`.
async fn drain(socket: &mut Socket, first: Duration, quiet: Duration) -> Vec<Value> {
    let mut updates = Vec::new();
    let mut wait = first;
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        let message: Value = serde_json::from_str(&text).expect("json");
        updates.push(message["payload"]["data"]["inboxUpdates"].clone());
        wait = quiet;
    }
    updates
}

/// A client that reconnects with the last position it saw receives exactly
/// the conversations that changed while it was away, then goes live.
async fn a_reconnect_with_a_position_receives_exactly_what_was_missed(app: App) {
    let inbox = inbox(app, false).await;
    let mut socket = subscribe_inbox(&inbox.app, &inbox.owner.token, None).await;
    let mut seen = Vec::new();
    for file in [
        "facebook/text_message.json",
        "facebook/image_attachment.json",
        "facebook/postback.json",
    ] {
        inbox.facebook(file).await;
        seen.extend(
            drain(
                &mut socket,
                Duration::from_secs(2),
                Duration::from_millis(700),
            )
            .await,
        );
        if !seen.is_empty() {
            break;
        }
    }
    let last = seen
        .last()
        .and_then(|u| u["position"].as_str())
        .expect("a position")
        .to_owned();
    drop(socket);

    // While away: a LINE customer and a second Facebook customer write.
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    assert_eq!(
        inbox
            .facebook("facebook/multiple_entries_batched.json")
            .await,
        200
    );
    inbox.app.settle().await;

    let mut socket = subscribe_inbox(&inbox.app, &inbox.owner.token, Some(&last)).await;
    let missed = drain(
        &mut socket,
        Duration::from_secs(15),
        Duration::from_millis(1500),
    )
    .await;
    let mut who: Vec<&str> = missed
        .iter()
        .filter_map(|u| u["contact"]["platformUserId"].as_str())
        .collect();
    who.sort_unstable();
    assert_eq!(
        who,
        ["6602957718843910", "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a"],
        "{missed:?}"
    );
    // Then live.
    assert_eq!(inbox.line("line/image_message.json").await, 200);
    let live = drain(
        &mut socket,
        Duration::from_secs(15),
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        live.iter()
            .any(|u| u["contact"]["platformUserId"] == "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a"),
        "{live:?}"
    );
}

in_process_on_both_backends!(
    the_inbox_follows_platform_time_not_arrival,
    filters_pagination_and_member_actions,
    line_conversations_have_no_window,
    inbox_updates_follow_webhooks,
    a_reconnect_with_a_position_receives_exactly_what_was_missed,
);
