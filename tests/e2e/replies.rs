//! Replies: every policy branch refused before anything is queued, and
//! every delivery outcome against a local platform stand-in.

use chrono::Duration;
use serde_json::{json, Value};

use crate::inbound::{inbox, Inbox};
use crate::support::{error_code, fixture, in_process_on_both_backends, App};

const SEND: &str = "mutation($i: SendReplyInput!) { sendReply(input: $i) { id direction deliveryState text author { email } } }";
const MESSAGES: &str = "query($id: UUID!) { conversation(id: $id) { messages(last: 10) { nodes { text direction deliveryState failureReason } } } }";

/// The conversation of the first Facebook text (PSID_1 on PAGE_A), at 02:30 on the message's day.
async fn facebook_conversation(app: App) -> (Inbox, Value) {
    conversation_of(
        app,
        Fixture::Facebook("facebook/text_message.json"),
        "2026-11-23T02:30:00Z",
    )
    .await
}

enum Fixture {
    Facebook(&'static str),
    Line(&'static str),
}

/// The conversation `fixture` starts, with the clock then set to `now`.
async fn conversation_of(app: App, fixture: Fixture, now: &str) -> (Inbox, Value) {
    let inbox = inbox(app, false).await;
    let status = match fixture {
        Fixture::Facebook(path) => inbox.facebook(path).await,
        Fixture::Line(path) => inbox.line(path).await,
    };
    assert_eq!(status, 200);
    inbox.app.settle().await;
    inbox.app.clock.set(
        chrono::DateTime::parse_from_rfc3339(now)
            .expect("instant")
            .to_utc(),
    );
    let list = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations { nodes { id } } }",
            json!({}),
        )
        .await;
    let id = list["data"]["conversations"]["nodes"][0]["id"].clone();
    (inbox, id)
}

async fn send(inbox: &Inbox, input: Value) -> Value {
    inbox
        .app
        .graphql(&inbox.owner.token, SEND, json!({ "i": input }))
        .await
}

async fn deliver(inbox: &Inbox, worker: &omnibox_app::reactors::delivery::DeliveryWorker) -> usize {
    let n = worker
        .run_once(&inbox.app.state)
        .await
        .expect("delivery pass");
    inbox.app.settle().await;
    n
}

async fn states(inbox: &Inbox, conversation: &Value) -> Vec<(String, String)> {
    let answer = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
        .await;
    answer["data"]["conversation"]["messages"]["nodes"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "OUTBOUND")
        .map(|m| {
            (
                m["text"].as_str().unwrap_or_default().to_owned(),
                m["deliveryState"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn facebook_replies_follow_the_window(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    let queued = send(&inbox, json!({ "conversationId": conversation, "bubbles": [{ "text": "Yes! 10% off this week" }, { "text": "Anything else?" }], "promotional": true })).await;
    let messages = queued["data"]["sendReply"]
        .as_array()
        .expect("messages")
        .clone();
    assert_eq!(messages.len(), 2, "{queued}");
    assert!(messages
        .iter()
        .all(|m| m["deliveryState"] == "QUEUED" && m["direction"] == "OUTBOUND"));
    assert_eq!(messages[0]["author"]["email"], "owner@example.com");
    assert_eq!(deliver(&inbox, &worker).await, 2);
    let sent = inbox.app.platform.sent("/messages");
    assert_eq!(sent.len(), 2);
    let (request, body) = &sent[0];
    assert_eq!(request.path, "/104729381650237/messages");
    assert_eq!(body["messaging_type"], "RESPONSE");
    assert_eq!(body["recipient"]["id"], "7294018365520341");
    assert_eq!(body["message"]["text"], "Yes! 10% off this week");
    assert_eq!(
        body["metadata"],
        format!("omnibox:msg:{}", messages[0]["id"].as_str().expect("id"))
    );
    assert!(body["tag"].is_null());
    assert_eq!(
        states(&inbox, &conversation).await,
        [
            ("Yes! 10% off this week".into(), "DELIVERED".into()),
            ("Anything else?".into(), "DELIVERED".into())
        ]
    );

    // 30 hours later: only a human agent, with the tag, nothing promotional.
    inbox.app.clock.advance(Duration::hours(30));
    let before = inbox.app.events().await.len();
    let promo = send(&inbox, json!({ "conversationId": conversation, "bubbles": [{ "text": "Flash sale!" }], "promotional": true })).await;
    assert_eq!(
        error_code(&promo),
        Some("PROMOTIONAL_NOT_ALLOWED"),
        "{promo}"
    );
    let late = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Your parcel shipped." }] }),
    )
    .await;
    assert!(late["errors"].is_null(), "{late}");
    deliver(&inbox, &worker).await;
    let (_, body) = inbox.app.platform.sent("/messages").pop().expect("sent");
    assert_eq!(
        (body["messaging_type"].as_str(), body["tag"].as_str()),
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
    );

    // Past 7 days: closed, with the time it closed.
    inbox.app.clock.advance(Duration::days(7));
    let closed = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Hello?" }] }),
    )
    .await;
    assert_eq!(error_code(&closed), Some("WINDOW_CLOSED"), "{closed}");
    assert!(
        closed["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2026-11-30T02:10:05"),
        "{closed}"
    );

    // Bad bubbles are refused too, and nothing refused was appended.
    inbox.app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")
            .expect("instant")
            .to_utc(),
    );
    let cases = [
        (
            json!([{ "attachment": { "url": "https://cdn.example.com/setup.exe", "fileName": "setup.exe", "sizeBytes": 1000 } }]),
            "ATTACHMENT_NOT_ALLOWED",
        ),
        (
            json!([{ "attachment": { "url": "https://cdn.example.com/big.pdf", "fileName": "big.pdf", "sizeBytes": 30_000_000 } }]),
            "ATTACHMENT_NOT_ALLOWED",
        ),
        (json!([{ "text": "x".repeat(2000) }]), "VALIDATION"),
        (
            json!([{ "text": "a" }, { "text": "b" }, { "text": "c" }, { "text": "d" }, { "text": "e" }, { "text": "f" }]),
            "VALIDATION",
        ),
        (
            json!([{ "text": "a", "attachment": { "url": "https://x.example/a.png", "fileName": "a.png", "sizeBytes": 1 } }]),
            "VALIDATION",
        ),
        (json!([]), "VALIDATION"),
    ];
    for (bubbles, code) in cases {
        let answer = send(
            &inbox,
            json!({ "conversationId": conversation, "bubbles": bubbles }),
        )
        .await;
        assert_eq!(error_code(&answer), Some(code), "{bubbles} → {answer}");
    }
    // Facebook never shows the agent: a persona is refused, not dropped.
    let persona = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Hi" }], "sender": { "name": "Mai" } }),
    )
    .await;
    assert_eq!(error_code(&persona), Some("VALIDATION"), "{persona}");
    let refused_only = inbox.app.events().await.len();
    assert_eq!(
        refused_only,
        before + 4,
        "only the allowed reply, its sending mark, its delivery and the page token's renewed 90 days were appended"
    );
}

async fn facebook_delivery_outcomes(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    let platform = inbox.app.platform.clone();

    // Rate limited, then accepted: retried, delivered once.
    platform.script_sends(vec![(
        400,
        fixture_json("facebook/error_rate_limited.json"),
    )]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "one" }] }),
    )
    .await;
    assert_eq!(
        deliver(&inbox, &worker).await,
        0,
        "throttled: retried later"
    );
    assert_eq!(deliver(&inbox, &worker).await, 1);
    // The person cannot be reached: failed with the reason, not retried.
    platform.script_sends(vec![(
        400,
        fixture_json("facebook/error_person_unavailable.json"),
    )]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "two" }] }),
    )
    .await;
    deliver(&inbox, &worker).await;
    // Outside the window at the platform: failed.
    platform.script_sends(vec![(
        400,
        fixture_json("facebook/error_outside_window.json"),
    )]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "three" }] }),
    )
    .await;
    deliver(&inbox, &worker).await;
    let all = states(&inbox, &conversation).await;
    assert_eq!(
        all,
        [
            ("one".into(), "DELIVERED".into()),
            ("two".into(), "FAILED".into()),
            ("three".into(), "FAILED".into())
        ]
    );
    let answer = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
        .await;
    let reasons: Vec<String> = answer["data"]["conversation"]["messages"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|m| m["failureReason"].as_str().map(str::to_owned))
        .collect();
    assert!(reasons[0].contains("cannot be reached"), "{reasons:?}");
    assert!(
        reasons[1].contains("outside the allowed window"),
        "{reasons:?}"
    );
    assert_eq!(platform.sent("/messages").len(), 4, "one retry, no repeats");

    // OAuth 190: the channel expires at once, the reply waits, and goes after reauthorization.
    platform.script_sends(vec![(
        400,
        fixture_json("facebook/error_token_expired.json"),
    )]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "four" }] }),
    )
    .await;
    deliver(&inbox, &worker).await;
    let channels = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ channels { id kind status } }",
            json!({}),
        )
        .await;
    let page = channels["data"]["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "FACEBOOK").cloned())
        .expect("page");
    assert_eq!(page["status"], "EXPIRED", "{channels}");
    let refused = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "five" }] }),
    )
    .await;
    assert_eq!(error_code(&refused), Some("CHANNEL_NOT_CONNECTED"));
    assert_eq!(deliver(&inbox, &worker).await, 0, "waits while expired");
    inbox
        .app
        .platform
        .add_page("104729381650237", "Page", "EAAG-renewed");
    let renewed = inbox
        .app
        .graphql(&inbox.owner.token, "mutation($id: UUID!) { reauthorizeChannel(id: $id, accessToken: \"EAAG-renewed\") { status } }", json!({ "id": page["id"] }))
        .await;
    assert_eq!(
        renewed["data"]["reauthorizeChannel"]["status"], "CONNECTED",
        "{renewed}"
    );
    assert_eq!(deliver(&inbox, &worker).await, 1);
    assert_eq!(
        states(&inbox, &conversation)
            .await
            .last()
            .map(|s| s.1.clone()),
        Some("DELIVERED".into())
    );
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).expect("json")
}

async fn line_replies_use_the_token_then_push_with_a_retry_key(app: App) {
    // Ten seconds after the customer's message: the reply token is fresh.
    let (inbox, conversation) = conversation_of(
        app,
        Fixture::Line("line/text_message.json"),
        "2026-11-23T02:20:21Z",
    )
    .await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    let first = send(&inbox, json!({ "conversationId": conversation, "bubbles": [{ "text": "สวัสดีครับ" }, { "text": "ส่งได้ครับ" }] })).await;
    assert!(first["errors"].is_null(), "{first}");
    deliver(&inbox, &worker).await;
    let replies = inbox.app.platform.sent("/v2/bot/message/reply");
    assert_eq!(replies.len(), 1, "one request for the whole reply");
    assert_eq!(
        replies[0].1["replyToken"],
        "375cc1a68a62c33cf056c7bab8184e4c"
    );
    assert_eq!(replies[0].1["messages"].as_array().map(Vec::len), Some(2));

    // The token is used: the next reply is pushed, and a failed push is retried with the same key.
    inbox
        .app
        .platform
        .script_sends(vec![(500, json!({ "message": "internal error" }))]);
    let refused = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "x" }], "sender": { "name": "LINE desk" } }),
    )
    .await;
    assert_eq!(error_code(&refused), Some("VALIDATION"), "{refused}");
    let pushed = send(
        &inbox,
        json!({
            "conversationId": conversation,
            "bubbles": [{ "text": "อีกเรื่องครับ" }],
            "sender": { "name": "Mai (Support)", "iconUrl": "https://cdn.example.com/mai.png" }
        }),
    )
    .await;
    assert!(pushed["errors"].is_null(), "{pushed}");
    assert_eq!(deliver(&inbox, &worker).await, 0, "a 500 is retried");
    assert_eq!(deliver(&inbox, &worker).await, 1);
    let pushes = inbox.app.platform.sent("/v2/bot/message/push");
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].1["to"], "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a");
    assert_eq!(
        pushes[0].1["messages"][0]["sender"],
        json!({ "name": "Mai (Support)", "iconUrl": "https://cdn.example.com/mai.png" }),
        "the agent persona rides on the message"
    );
    assert!(
        replies[0].1["messages"][0].get("sender").is_none(),
        "no persona unless asked"
    );
    assert!(pushes[0].0.retry_key.is_some());
    assert_eq!(
        pushes[0].0.retry_key, pushes[1].0.retry_key,
        "the retry reuses the key"
    );
    let all = states(&inbox, &conversation).await;
    assert!(all.iter().all(|(_, state)| state == "DELIVERED"), "{all:?}");
}

async fn reply_templates_per_channel_kind(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let create = "mutation($i: ReplyTemplateInput!) { createReplyTemplate(input: $i) { id kind name bubbles { text attachment { url } } } }";
    let image = json!({ "attachment": { "url": "https://cdn.example.com/menu.png", "fileName": "menu.png", "sizeBytes": 2048 } });
    let refused = inbox
        .app
        .graphql(
            &inbox.owner.token,
            create,
            json!({ "i": { "kind": "FACEBOOK", "name": "Menu", "bubbles": [image] } }),
        )
        .await;
    assert_eq!(
        error_code(&refused),
        Some("VALIDATION"),
        "Facebook templates are text only: {refused}"
    );
    let long = inbox.app.graphql(&inbox.owner.token, create, json!({ "i": { "kind": "FACEBOOK", "name": "Long", "bubbles": [{ "text": "x".repeat(2000) }] } })).await;
    assert_eq!(error_code(&long), Some("VALIDATION"));
    let line = inbox
        .app
        .graphql(
            &inbox.owner.token,
            create,
            json!({ "i": { "kind": "LINE", "name": "Menu", "bubbles": [image] } }),
        )
        .await;
    let line_id = line["data"]["createReplyTemplate"]["id"].clone();
    let hello = inbox
        .app
        .graphql(&inbox.owner.token, create, json!({ "i": { "kind": "FACEBOOK", "name": "Hello", "bubbles": [{ "text": "Hello! How can we help?" }, { "text": "We answer within an hour." }] } }))
        .await;
    let hello_id = hello["data"]["createReplyTemplate"]["id"].clone();
    let listed = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ replyTemplates(kind: FACEBOOK) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["replyTemplates"],
        json!([{ "name": "Hello" }])
    );

    let wrong = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [], "templateId": line_id }),
    )
    .await;
    assert_eq!(
        error_code(&wrong),
        Some("NOT_SUPPORTED_ON_CHANNEL"),
        "{wrong}"
    );
    let sent = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [], "templateId": hello_id }),
    )
    .await;
    let texts: Vec<&str> = sent["data"]["sendReply"]
        .as_array()
        .expect("sent")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["Hello! How can we help?", "We answer within an hour."]
    );
}

/// A disconnected channel refuses replies; its history stays readable.
async fn disconnected_channels_refuse_replies(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let channels = inbox
        .app
        .graphql(&inbox.owner.token, "{ channels { id kind } }", json!({}))
        .await;
    let page = channels["data"]["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "FACEBOOK").cloned())
        .expect("page");
    let gone = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { status } }",
            json!({ "id": page["id"] }),
        )
        .await;
    assert_eq!(gone["data"]["disconnectChannel"]["status"], "DISCONNECTED");
    let refused = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Hello?" }] }),
    )
    .await;
    assert_eq!(
        error_code(&refused),
        Some("CHANNEL_NOT_CONNECTED"),
        "{refused}"
    );
    let history = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
        .await;
    assert_eq!(
        history["data"]["conversation"]["messages"]["nodes"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{history}"
    );
}

/// An echo carrying our metadata marks our own message delivered, even
/// when the Send API's answer was never recorded.
async fn echoes_confirm_our_own_messages(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let queued = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "On its way" }] }),
    )
    .await;
    let id = queued["data"]["sendReply"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let status = post_echo(&inbox, &id).await;
    assert_eq!(status, 200);
    inbox.app.settle().await;
    assert_eq!(
        states(&inbox, &conversation).await,
        [("On its way".to_owned(), "DELIVERED".to_owned())],
        "no second copy of the message"
    );
}

/// Posts Facebook's echo of our own message `id` (its metadata names it);
/// returns the webhook's status.
async fn post_echo(inbox: &Inbox, id: &str) -> u16 {
    let mut echo: Value = fixture_json("facebook/echo_message.json");
    echo["entry"][0]["messaging"][0]["message"]["metadata"] = json!(format!("omnibox:msg:{id}"));
    let body = serde_json::to_vec(&echo).expect("json");
    reqwest::Client::new()
        .post(format!("{}/webhooks/facebook", inbox.app.url))
        .header(
            "X-Hub-Signature-256",
            crate::support::facebook_signature(&body),
        )
        .body(body)
        .send()
        .await
        .expect("echo")
        .status()
        .as_u16()
}

/// Waits until the stand-in has received `n` requests ending with `suffix`.
async fn until_sent(inbox: &Inbox, suffix: &str, n: usize) {
    for _ in 0..500 {
        if inbox.app.platform.sent(suffix).len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the platform never received {n} requests to {suffix}");
}

/// The server stops while Facebook is handling a send: the restarted
/// worker does not send it again (Facebook has no idempotency key), and the
/// echo confirms it. Facebook got the message exactly once.
async fn a_crash_mid_send_never_sends_twice_on_facebook(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    inbox
        .app
        .platform
        .delay_sends(std::time::Duration::from_secs(30));
    let queued = send(&inbox, json!({ "conversationId": conversation, "bubbles": [{ "text": "Your order is confirmed" }] })).await;
    let id = queued["data"]["sendReply"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let state = inbox.app.state.clone();
    let crashed = tokio::spawn(async move {
        omnibox_app::reactors::delivery::DeliveryWorker::default()
            .run_once(&state)
            .await
    });
    until_sent(&inbox, "/messages", 1).await;
    crashed.abort();
    inbox.app.settle().await;

    // After the restart: nothing is sent again, whatever the passes.
    let restarted =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    deliver(&inbox, &restarted).await;
    deliver(&inbox, &restarted).await;
    assert_eq!(inbox.app.platform.sent("/messages").len(), 1);
    // Facebook's echo carries our metadata and confirms the delivery.
    post_echo(&inbox, &id).await;
    inbox.app.settle().await;
    inbox.app.clock.advance(Duration::minutes(10));
    deliver(&inbox, &restarted).await;
    assert_eq!(
        states(&inbox, &conversation).await,
        [("Your order is confirmed".to_owned(), "DELIVERED".to_owned())]
    );
    assert_eq!(
        inbox.app.platform.delivered(),
        1,
        "Facebook took the message exactly once"
    );
}

/// A push in flight when the server stops is sent again with the same
/// retry key; LINE answers 409 and the message exists once.
async fn a_crash_mid_push_never_sends_twice_on_line(app: App) {
    // An hour later: the reply token is stale, the reply is pushed.
    let (inbox, conversation) = conversation_of(
        app,
        Fixture::Line("line/text_message.json"),
        "2026-11-23T03:30:00Z",
    )
    .await;
    inbox
        .app
        .platform
        .delay_sends(std::time::Duration::from_secs(30));
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "ได้รับคำสั่งซื้อแล้วครับ" }] }),
    )
    .await;
    let state = inbox.app.state.clone();
    let crashed = tokio::spawn(async move {
        omnibox_app::reactors::delivery::DeliveryWorker::default()
            .run_once(&state)
            .await
    });
    until_sent(&inbox, "/v2/bot/message/push", 1).await;
    crashed.abort();
    inbox.app.platform.delay_sends(std::time::Duration::ZERO);
    let restarted =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    deliver(&inbox, &restarted).await;
    assert_eq!(
        inbox.app.platform.sent("/v2/bot/message/push").len(),
        1,
        "a claim is someone else's until its lease ends"
    );
    inbox
        .app
        .clock
        .advance(omnibox_domain::conversation::CLAIM_LEASE + Duration::seconds(1));
    deliver(&inbox, &restarted).await;
    let pushes = inbox.app.platform.sent("/v2/bot/message/push");
    assert_eq!(pushes.len(), 2, "sent again after the restart");
    assert_eq!(pushes[0].0.retry_key, pushes[1].0.retry_key);
    assert_eq!(
        inbox.app.platform.delivered(),
        1,
        "LINE took the message exactly once (409 the second time)"
    );
    assert_eq!(
        states(&inbox, &conversation)
            .await
            .last()
            .map(|s| s.1.clone()),
        Some("DELIVERED".into())
    );
}

/// A Send API call that times out may still have reached Facebook: it is
/// not sent again; the echo confirms it.
async fn a_facebook_timeout_is_not_sent_again(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    inbox
        .app
        .platform
        .delay_sends(std::time::Duration::from_secs(3));
    let queued = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Slow network today" }] }),
    )
    .await;
    let id = queued["data"]["sendReply"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    assert_eq!(deliver(&inbox, &worker).await, 0, "the outcome is unknown");
    assert_eq!(deliver(&inbox, &worker).await, 0);
    assert_eq!(
        inbox.app.platform.sent("/messages").len(),
        1,
        "not sent again"
    );
    assert_eq!(post_echo(&inbox, &id).await, 200);
    inbox.app.settle().await;
    assert_eq!(
        states(&inbox, &conversation).await,
        [("Slow network today".to_owned(), "DELIVERED".to_owned())]
    );
    assert_eq!(inbox.app.platform.delivered(), 1);
}

/// A LINE push that times out is sent again with the same retry key.
async fn a_line_timeout_is_retried_with_the_same_key(app: App) {
    let (inbox, conversation) = conversation_of(
        app,
        Fixture::Line("line/text_message.json"),
        "2026-11-23T03:30:00Z",
    )
    .await;
    inbox
        .app
        .platform
        .delay_sends(std::time::Duration::from_secs(3));
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "ขอโทษที่ตอบช้าครับ" }] }),
    )
    .await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    assert_eq!(
        deliver(&inbox, &worker).await,
        0,
        "timed out: retried later"
    );
    inbox.app.platform.delay_sends(std::time::Duration::ZERO);
    assert_eq!(deliver(&inbox, &worker).await, 1);
    let pushes = inbox.app.platform.sent("/v2/bot/message/push");
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].0.retry_key, pushes[1].0.retry_key);
    assert_eq!(inbox.app.platform.delivered(), 1, "LINE took it once");
    assert_eq!(
        states(&inbox, &conversation)
            .await
            .last()
            .map(|s| s.1.clone()),
        Some("DELIVERED".into())
    );
}

/// A reply that must be retried holds back the replies queued after it in
/// the same conversation: the customer reads them in the order written.
async fn a_retried_reply_keeps_its_place_in_the_conversation(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    inbox.app.platform.script_sends(vec![(
        500,
        json!({ "error": { "message": "try later", "code": 2 } }),
    )]);
    for text in ["first", "second"] {
        let answer = send(
            &inbox,
            json!({ "conversationId": conversation, "bubbles": [{ "text": text }] }),
        )
        .await;
        assert!(answer["errors"].is_null(), "{answer}");
    }
    let tried = || -> Vec<Value> {
        inbox
            .app
            .platform
            .sent("/messages")
            .into_iter()
            .map(|(_, body)| body["message"]["text"].clone())
            .collect()
    };
    assert_eq!(deliver(&inbox, &worker).await, 0, "the first is retried");
    assert_eq!(tried(), vec![json!("first")], "the second waited");
    assert_eq!(deliver(&inbox, &worker).await, 2);
    assert_eq!(
        tried(),
        vec![json!("first"), json!("first"), json!("second")]
    );
}

/// Server errors are retried, but not for ever: after the last attempt the
/// bubble is FAILED, saying so.
async fn server_errors_are_retried_a_bounded_number_of_times(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    let unavailable =
        json!({ "error": { "message": "Service temporarily unavailable", "code": 2 } });
    inbox
        .app
        .platform
        .script_sends(vec![(500, unavailable); 10]);
    let answer = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Still there?" }] }),
    )
    .await;
    assert!(answer["errors"].is_null(), "{answer}");
    let mut passes = 0;
    while deliver(&inbox, &worker).await == 0 {
        passes += 1;
        assert!(passes < 20, "retried without end");
    }
    assert_eq!(
        inbox.app.platform.sent("/messages").len(),
        6,
        "six attempts in all"
    );
    let answer = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
        .await;
    let last = answer["data"]["conversation"]["messages"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.last().cloned())
        .expect("the reply");
    assert_eq!(last["deliveryState"], "FAILED", "{last}");
    assert!(
        last["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("gave up after 6 attempts")),
        "{last}"
    );
}

/// LINE takes a reply-token call but answers after the client gave up. The
/// outcome is ambiguous: the reply is retried only with the same token
/// (which LINE now refuses), never pushed, and the agent is told it may
/// have arrived. The customer sees each bubble once.
async fn a_line_reply_that_times_out_is_never_pushed(app: App) {
    // Ten seconds after the customer's message: the reply token is fresh.
    let (inbox, conversation) = conversation_of(
        app,
        Fixture::Line("line/text_message.json"),
        "2026-11-23T02:20:21Z",
    )
    .await;
    inbox
        .app
        .platform
        .script_delays(vec![std::time::Duration::from_secs(3)]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "ได้รับแล้วครับ" }, { "text": "ส่งพรุ่งนี้ครับ" }] }),
    )
    .await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    for _ in 0..4 {
        deliver(&inbox, &worker).await;
    }
    assert_eq!(
        inbox.app.platform.customer_side(),
        ["ได้รับแล้วครับ", "ส่งพรุ่งนี้ครับ"],
        "each bubble reached the customer once"
    );
    assert!(
        inbox.app.platform.sent("/v2/bot/message/push").is_empty(),
        "an ambiguous reply is never pushed"
    );
    let answer = inbox
        .app
        .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
        .await;
    let outbound: Vec<&Value> = answer["data"]["conversation"]["messages"]["nodes"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "OUTBOUND")
        .collect();
    assert_eq!(outbound.len(), 2);
    for message in outbound {
        assert_eq!(message["deliveryState"], "FAILED", "{message}");
        let reason = message["failureReason"].as_str().unwrap_or_default();
        assert!(reason.contains("may have delivered"), "{reason}");
    }
}

/// Facebook throttles the second of three replies (error 613), then takes
/// it: the customer still reads them in the order they were queued.
async fn a_throttled_reply_keeps_the_conversations_order(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "step 1" }] }),
    )
    .await;
    deliver(&inbox, &worker).await;
    inbox.app.platform.script_sends(vec![(
        400,
        json!({ "error": { "message": "Calls to this API have exceeded the rate limit.", "type": "OAuthException", "code": 613, "fbtrace_id": "A1" } }),
    )]);
    for step in ["step 2", "step 3"] {
        send(
            &inbox,
            json!({ "conversationId": conversation, "bubbles": [{ "text": step }] }),
        )
        .await;
    }
    // Time passes between queueing and sending, as it does.
    inbox.app.clock.advance(Duration::seconds(5));
    for _ in 0..3 {
        deliver(&inbox, &worker).await;
        inbox.app.clock.advance(Duration::seconds(5));
    }
    assert_eq!(
        inbox.app.platform.customer_side(),
        ["step 1", "step 2", "step 3"]
    );
    assert_eq!(
        states(&inbox, &conversation).await,
        [
            ("step 1".into(), "DELIVERED".into()),
            ("step 2".into(), "DELIVERED".into()),
            ("step 3".into(), "DELIVERED".into())
        ]
    );
}

/// The worker stops while Facebook handles the second bubble of a reply:
/// the first one's outcome was recorded when Facebook answered, so it shows
/// DELIVERED and is never failed or resent.
async fn each_bubbles_outcome_is_recorded_when_known(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    inbox.app.platform.script_delays(vec![
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(30),
    ]);
    send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "first" }, { "text": "second" }] }),
    )
    .await;
    let state = inbox.app.state.clone();
    let crashed = tokio::spawn(async move {
        omnibox_app::reactors::delivery::DeliveryWorker::default()
            .run_once(&state)
            .await
    });
    until_sent(&inbox, "/messages", 2).await;
    crashed.abort();
    inbox.app.settle().await;
    assert_eq!(
        states(&inbox, &conversation).await.first(),
        Some(&("first".to_owned(), "DELIVERED".to_owned()))
    );
    // Long after: the second bubble's claim is abandoned and failed, the first stays delivered.
    inbox.app.clock.advance(Duration::minutes(10));
    let restarted =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    deliver(&inbox, &restarted).await;
    assert_eq!(
        states(&inbox, &conversation).await,
        [
            ("first".into(), "DELIVERED".into()),
            ("second".into(), "FAILED".into())
        ]
    );
    assert_eq!(inbox.app.platform.customer_side(), ["first", "second"]);
}

/// A client that retries `sendReply` with the same idempotency key (after a
/// timeout, or several times at once) gets the first reply's messages, and
/// the customer gets the reply once.
async fn a_retried_send_with_the_same_key_queues_once(app: App) {
    let (inbox, conversation) = facebook_conversation(app).await;
    let input = json!({ "conversationId": conversation, "bubbles": [{ "text": "Once only" }], "idempotencyKey": "client-42" });
    let answers = futures_util::future::join_all((0..5).map(|_| send(&inbox, input.clone()))).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            assert!(a["errors"].is_null(), "{a}");
            a["data"]["sendReply"][0]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every retry answers the first reply: {answers:?}"
    );
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    deliver(&inbox, &worker).await;
    let later = send(&inbox, input.clone()).await;
    assert_eq!(
        later["data"]["sendReply"][0]["id"].as_str(),
        ids.iter().next().map(String::as_str)
    );
    assert_eq!(later["data"]["sendReply"][0]["deliveryState"], "DELIVERED");
    assert_eq!(inbox.app.platform.customer_side(), ["Once only"]);
    let queued = inbox
        .app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "ReplyQueued")
        .count();
    assert_eq!(queued, 1);
    let other = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "Once only" }], "idempotencyKey": "client-43" }),
    )
    .await;
    assert_ne!(
        other["data"]["sendReply"][0]["id"].as_str(),
        ids.iter().next().map(String::as_str),
        "another key is another reply"
    );
    let empty = send(
        &inbox,
        json!({ "conversationId": conversation, "bubbles": [{ "text": "x" }], "idempotencyKey": "" }),
    )
    .await;
    assert_eq!(error_code(&empty), Some("VALIDATION"));
}

/// What a platform does to the first send call of a conversation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PlatformFault {
    /// Takes the message, answers after the client gave up.
    LateAnswer,
    /// Refuses: too many calls (Facebook 613, LINE 429).
    Throttle,
    /// Refuses with a 500.
    ServerError,
    /// Takes the message, then the connection drops mid-answer.
    DroppedConnection,
}

/// Which call a reply goes out through.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    FacebookSend,
    LineReply,
    LinePush,
}

/// Two replies (two bubbles, then one) while the platform misbehaves once:
/// the customer sees each bubble at most once and in queued order;
/// whatever was refused is sent again, whatever may have arrived is never
/// sent through another route, and every bubble ends DELIVERED or FAILED
/// with a reason.
async fn platform_faults(app: App, route: Route, fault: PlatformFault) {
    let (inbox, conversation) = match route {
        Route::FacebookSend => facebook_conversation(app).await,
        Route::LineReply => {
            conversation_of(
                app,
                Fixture::Line("line/text_message.json"),
                "2026-11-23T02:20:21Z",
            )
            .await
        }
        Route::LinePush => {
            conversation_of(
                app,
                Fixture::Line("line/text_message.json"),
                "2026-11-23T03:30:00Z",
            )
            .await
        }
    };
    let platform = &inbox.app.platform;
    match fault {
        PlatformFault::LateAnswer => platform.script_delays(vec![std::time::Duration::from_secs(3)]),
        PlatformFault::Throttle if route == Route::FacebookSend => platform.script_sends(vec![(
            400,
            json!({ "error": { "message": "rate limited", "type": "OAuthException", "code": 613 } }),
        )]),
        PlatformFault::Throttle => platform.script_sends(vec![(429, json!({ "message": "The API rate limit has been exceeded." }))]),
        PlatformFault::ServerError if route == Route::FacebookSend => platform.script_sends(vec![(
            500,
            json!({ "error": { "message": "An unexpected error has occurred.", "type": "OAuthException", "code": 2, "is_transient": true } }),
        )]),
        PlatformFault::ServerError => platform.script_sends(vec![(500, json!({ "message": "Internal server error" }))]),
        PlatformFault::DroppedConnection => platform.drop_sends(1),
    }
    for bubbles in [vec!["a1", "a2"], vec!["b1"]] {
        let queued = send(
            &inbox,
            json!({ "conversationId": conversation, "bubbles": bubbles.iter().map(|t| json!({ "text": t })).collect::<Vec<_>>() }),
        )
        .await;
        assert!(queued["errors"].is_null(), "{queued}");
    }
    let worker =
        omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(std::time::Duration::ZERO);
    let mut outbound = Vec::new();
    for _ in 0..10 {
        deliver(&inbox, &worker).await;
        let answer = inbox
            .app
            .graphql(&inbox.owner.token, MESSAGES, json!({ "id": conversation }))
            .await;
        outbound = answer["data"]["conversation"]["messages"]["nodes"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["direction"] == "OUTBOUND")
            .cloned()
            .collect::<Vec<_>>();
        if outbound.iter().all(|m| m["deliveryState"] != "QUEUED") {
            break;
        }
        // Past any claim's lease.
        inbox.app.clock.advance(Duration::minutes(3));
    }
    let received = platform.customer_side();
    let what = format!("{route:?} {fault:?}: received {received:?}, recorded {outbound:?}");
    for text in ["a1", "a2", "b1"] {
        assert!(
            received.iter().filter(|t| *t == text).count() <= 1,
            "{what}"
        );
    }
    let order: Vec<&String> = received.iter().collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "queued order: {what}");
    assert_eq!(outbound.len(), 3, "{what}");
    for message in &outbound {
        let text = message["text"].as_str().unwrap_or_default();
        match message["deliveryState"].as_str() {
            Some("DELIVERED") => assert!(received.iter().any(|t| t == text), "{what}"),
            Some("FAILED") => assert!(message["failureReason"].is_string(), "{what}"),
            _ => panic!("unsettled: {what}"),
        }
    }
    assert_eq!(
        worker.scheduled_retries(),
        0,
        "settled replies leave no retry schedule behind: {what}"
    );
    let refused = matches!(fault, PlatformFault::Throttle | PlatformFault::ServerError);
    if refused || route == Route::LinePush {
        // Nothing ambiguous happened (or a retry key makes a repeat harmless).
        assert_eq!(received, ["a1", "a2", "b1"], "{what}");
        assert!(
            outbound.iter().all(|m| m["deliveryState"] == "DELIVERED"),
            "{what}"
        );
    }
    if route == Route::LineReply && !refused {
        assert!(
            platform
                .sent("/v2/bot/message/push")
                .iter()
                .all(|(_, body)| !body.to_string().contains("a1")),
            "an ambiguous reply is never pushed: {what}"
        );
    }
}

macro_rules! platform_fault_cases {
    ($($name:ident: $route:ident, $fault:ident;)+) => {
        $(async fn $name(app: App) {
            platform_faults(app, Route::$route, PlatformFault::$fault).await;
        })+
        in_process_on_both_backends!($($name),+);
    };
}

mod platform_fault {
    use super::*;
    platform_fault_cases! {
        facebook_late_answer: FacebookSend, LateAnswer;
        facebook_throttle: FacebookSend, Throttle;
        facebook_server_error: FacebookSend, ServerError;
        facebook_dropped_connection: FacebookSend, DroppedConnection;
        line_reply_late_answer: LineReply, LateAnswer;
        line_reply_throttle: LineReply, Throttle;
        line_reply_server_error: LineReply, ServerError;
        line_reply_dropped_connection: LineReply, DroppedConnection;
        line_push_late_answer: LinePush, LateAnswer;
        line_push_throttle: LinePush, Throttle;
        line_push_server_error: LinePush, ServerError;
        line_push_dropped_connection: LinePush, DroppedConnection;
    }
}

in_process_on_both_backends!(
    a_retried_send_with_the_same_key_queues_once,
    a_line_reply_that_times_out_is_never_pushed,
    a_throttled_reply_keeps_the_conversations_order,
    each_bubbles_outcome_is_recorded_when_known,
    server_errors_are_retried_a_bounded_number_of_times,
    a_retried_reply_keeps_its_place_in_the_conversation,
    facebook_replies_follow_the_window,
    facebook_delivery_outcomes,
    line_replies_use_the_token_then_push_with_a_retry_key,
    reply_templates_per_channel_kind,
    echoes_confirm_our_own_messages,
    disconnected_channels_refuse_replies,
    a_crash_mid_send_never_sends_twice_on_facebook,
    a_crash_mid_push_never_sends_twice_on_line,
    a_facebook_timeout_is_not_sent_again,
    a_line_timeout_is_retried_with_the_same_key,
);
