//! Webhooks to events: every shape of the fixtures (the reference ones and
//! those we added for the other documented shapes), through real
//! HTTP, exactly once, durable before acknowledged.

use serde_json::{json, Value};

use crate::support::{
    facebook_signature, fixture, in_process_on_both_backends, line_signature, App,
};

const PAGE_A: &str = "104729381650237";
const PAGE_B: &str = "108813467701552";
const BOT: &str = "Ua3f09c2e71b84d56e0f1a2b3c4d5e6f7";

pub struct Inbox {
    pub app: App,
    pub owner: crate::support::Bootstrapped,
    pub line_channel: String,
}

/// An organization with PAGE_A (and optionally PAGE_B) and the fixtures' LINE bot connected.
pub async fn inbox(app: App, with_page_b: bool) -> Inbox {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    let mut pages = vec![(PAGE_A, "EAAG-a")];
    if with_page_b {
        pages.push((PAGE_B, "EAAG-b"));
    }
    for (page, token) in pages {
        app.platform.add_page(page, "Page", token);
        let answer = app
            .graphql(
                &owner.token,
                "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { id } }",
                json!({ "i": { "kind": "FACEBOOK", "externalId": page, "name": "Page", "accessToken": token } }),
            )
            .await;
        assert!(answer["errors"].is_null(), "{answer}");
    }
    app.platform.add_bot("line-token", BOT);
    let line = app
        .graphql(
            &owner.token,
            "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { id } }",
            json!({ "i": { "kind": "LINE", "externalId": BOT, "name": "LINE", "accessToken": "line-token", "channelSecret": "fixture-channel-secret" } }),
        )
        .await;
    let line_channel = line["data"]["connectChannel"]["id"]
        .as_str()
        .expect("line channel")
        .to_owned();
    Inbox {
        app,
        owner,
        line_channel,
    }
}

impl Inbox {
    async fn post_facebook(&self, body: &[u8], signature: Option<&str>) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/facebook", self.app.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.expect("POST").status().as_u16()
    }

    pub async fn facebook(&self, file: &str) -> u16 {
        let body = fixture(file);
        self.post_facebook(&body, Some(&facebook_signature(&body)))
            .await
    }

    pub async fn post_line(&self, channel: &str, body: &[u8], signature: Option<&str>) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/line/{channel}", self.app.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-line-signature", signature);
        }
        request.send().await.expect("POST").status().as_u16()
    }

    pub async fn line(&self, file: &str) -> u16 {
        let body = fixture(file);
        self.post_line(&self.line_channel, &body, Some(&line_signature(&body)))
            .await
    }

    /// Posts each Facebook fixture twice (the second time is a redelivery);
    /// every answer must be 200.
    async fn facebook_each_twice(&self, files: &[&str]) {
        for file in files {
            for _ in 0..2 {
                assert_eq!(self.facebook(file).await, 200, "{file}");
            }
        }
    }

    /// [`Inbox::facebook_each_twice`] for LINE fixtures.
    async fn line_each_twice(&self, files: &[&str]) {
        for file in files {
            for _ in 0..2 {
                assert_eq!(self.line(file).await, 200, "{file}");
            }
        }
    }

    /// The inbound events in the log: (type, data).
    /// The inbound events, personal fields opened (the log holds them
    /// sealed under each contact's key).
    async fn inbound(&self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        for e in self.app.events().await {
            if !["conversation", "contact", "inbound"].contains(&e.stream.category()) {
                continue;
            }
            let mut data: Value = serde_json::from_str(&e.data).expect("json");
            self.app
                .state
                .personal
                .open_json(&mut data)
                .await
                .expect("open");
            events.push((e.event_type.clone(), data));
        }
        events
    }

    async fn metric(&self, name: &str) -> String {
        let text = reqwest::get(format!("{}/metrics", self.app.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How many of `events` are of type `t`.
fn count(events: &[(String, Value)], t: &str) -> usize {
    events.iter().filter(|(ty, _)| ty == t).count()
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

async fn facebook_handshake_answers_the_challenge_only_to_our_token(app: App) {
    let base = format!("{}/webhooks/facebook", app.url);
    let ok = reqwest::get(format!(
        "{base}?hub.mode=subscribe&hub.verify_token=fixture-verify-token&hub.challenge=1158201444"
    ))
    .await
    .expect("GET");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(ok.text().await.expect("body"), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=fixture-verify-token&hub.challenge=1",
    ] {
        assert_eq!(
            reqwest::get(format!("{base}?{query}"))
                .await
                .expect("GET")
                .status(),
            403,
            "{query}"
        );
    }
}

async fn a_facebook_text_is_stored_exactly_once(app: App) {
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    let events = inbox.inbound().await;
    assert_eq!(types(&events), ["MessageReceived"]);
    let message = &events[0].1;
    assert_eq!(message["text"], "Hi! Do you ship to Chiang Mai? ขอบคุณค่ะ");
    let stored = inbox.app.events().await;
    assert!(
        stored[stored.len() - 1]
            .data
            .contains("\"text\":\"sealed:v1:"),
        "the log holds the text sealed: {}",
        stored[stored.len() - 1].data
    );
    assert_eq!(message["sent_at"], "2026-11-23T02:10:05.412Z");
    assert_eq!(
        message["thread"],
        json!({ "kind": "USER", "id": "7294018365520341" })
    );
    assert_eq!(message["channel_kind"], "FACEBOOK");

    // Again, and five times at once: nothing new.
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    let concurrent = futures_util::future::join_all(
        (0..5).map(|_| inbox.facebook("facebook/text_message.json")),
    )
    .await;
    assert!(concurrent.iter().all(|s| *s == 200), "{concurrent:?}");
    // A retry re-batched with another entry.time (other bytes, same item) is the same message.
    let mut rebatched: Value =
        serde_json::from_slice(&fixture("facebook/text_message.json")).expect("json");
    rebatched["entry"][0]["time"] = json!(1_795_399_999_999_i64);
    let body = serde_json::to_vec(&rebatched).expect("json");
    assert_eq!(
        inbox
            .post_facebook(&body, Some(&facebook_signature(&body)))
            .await,
        200
    );
    assert_eq!(inbox.inbound().await.len(), 1);
}

async fn bad_facebook_deliveries_store_nothing(app: App) {
    let inbox = inbox(app, false).await;
    let body = fixture("facebook/text_message.json");
    let mut tampered = body.clone();
    tampered[100] ^= 1;
    assert_eq!(inbox.post_facebook(&body, None).await, 401);
    assert_eq!(inbox.post_facebook(&body, Some("sha256=00")).await, 401);
    assert_eq!(
        inbox
            .post_facebook(&tampered, Some(&facebook_signature(&body)))
            .await,
        401
    );
    let garbage = b"{\"object\":\"page\",\"entry\":[{";
    assert_eq!(
        inbox
            .post_facebook(garbage, Some(&facebook_signature(garbage)))
            .await,
        400
    );
    let huge = vec![b' '; 5 * 1024 * 1024];
    assert_eq!(
        inbox
            .post_facebook(&huge, Some(&facebook_signature(&huge)))
            .await,
        413
    );
    assert!(inbox.inbound().await.is_empty());
    // The genuine delivery still goes through afterwards.
    assert_eq!(
        inbox
            .post_facebook(&body, Some(&facebook_signature(&body)))
            .await,
        200
    );
    assert_eq!(inbox.inbound().await.len(), 1);
}

async fn unknown_pages_are_acknowledged_counted_and_dropped(app: App) {
    let inbox = inbox(app, false).await;
    // PAGE_B is not connected: its two items are dropped, PAGE_A's is kept.
    assert_eq!(
        inbox
            .facebook("facebook/multiple_entries_batched.json")
            .await,
        200
    );
    let events = inbox.inbound().await;
    assert_eq!(types(&events), ["MessageReceived"]);
    assert_eq!(events[0].1["thread"]["id"], "6602957718843910");
    assert!(inbox
        .metric("omnibox_webhooks_unknown_target_total")
        .await
        .contains("platform=\"facebook\"} 1"));
}

async fn every_facebook_shape_is_recorded(app: App) {
    let inbox = inbox(app, true).await;
    inbox
        .facebook_each_twice(&[
            "facebook/text_message.json",
            "facebook/image_attachment.json",
            "facebook/multiple_entries_batched.json",
            "facebook/echo_message.json",
            "facebook/postback.json",
            "facebook/delivery_and_read.json",
            "facebook/sticker_transition.json",
        ])
        .await;
    let events = inbox.inbound().await;
    let count = |t: &str| count(&events, t);
    // text, image, 3 batched, postback, sticker; echo; delivery; read.
    assert_eq!(count("MessageReceived"), 7, "{:?}", types(&events));
    assert_eq!(count("MessageEchoed"), 1);
    assert_eq!(count("MessagesDelivered"), 1);
    assert_eq!(count("MessagesRead"), 1);
    let find = |pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .map(|(_, d)| d)
            .find(|d| pred(d))
            .cloned()
            .expect("event")
    };
    let image = find(&|d| d["attachments"][0]["kind"] == "IMAGE");
    assert!(image["text"].is_null());
    assert!(
        image["attachments"][0]["source"]["url"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://"),
        "{image}"
    );
    let sticker = find(&|d| d["attachments"][0]["kind"] == "STICKER");
    assert_eq!(
        sticker["attachments"].as_array().map(Vec::len),
        Some(1),
        "one sticker, not two pictures"
    );
    let postback = find(&|d| !d["postback"].is_null());
    assert!(postback["postback"]["payload"].is_string());
    let echo = find(&|d| !d["app_id"].is_null());
    assert_eq!(
        echo["metadata"],
        "omnibox:msg:5b0e1c7a-3f2d-4e8b-9a61-7d2c4f0e9b13"
    );
    let conversations: std::collections::HashSet<_> = events
        .iter()
        .filter(|(t, _)| t == "MessageReceived")
        .map(|(_, d)| d["conversation_id"].clone())
        .collect();
    assert_eq!(
        conversations.len(),
        4,
        "PSID_1, PSID_2, PSID_B1 and PSID_B2"
    );
}

async fn line_events_are_recorded_once_each(app: App) {
    let inbox = inbox(app, false).await;
    for file in [
        "line/text_message.json",
        "line/redelivery.json",
        "line/text_message.json",
    ] {
        assert_eq!(inbox.line(file).await, 200, "{file}");
    }
    let events = inbox.inbound().await;
    assert_eq!(
        types(&events),
        ["MessageReceived"],
        "a redelivery is the same message"
    );
    assert_eq!(
        events[0].1["text"],
        "สวัสดีครับ ขอสอบถามเรื่องการจัดส่งไปเชียงใหม่ครับ"
    );
    assert_eq!(events[0].1["sent_at"], "2026-11-23T02:20:11.093Z");
    assert!(events[0].1["reply_token"].is_string());

    for file in [
        "line/image_message.json",
        "line/follow.json",
        "line/unfollow.json",
        "line/postback.json",
        "line/multiple_events.json",
        "line/group_message.json",
        "line/verify_empty_events.json",
    ] {
        assert_eq!(inbox.line(file).await, 200, "{file}");
        assert_eq!(inbox.line(file).await, 200, "{file} again");
    }
    let events = inbox.inbound().await;
    let count = |t: &str| count(&events, t);
    // text, image, postback, LU2's text, group text.
    assert_eq!(count("MessageReceived"), 5, "{:?}", types(&events));
    // follow (LU2) + unblock (LU4); unfollow (LU3) twice over two files, same user but distinct events.
    assert_eq!(count("ContactFollowed"), 2);
    assert_eq!(count("ContactUnfollowed"), 2);
    let image = events
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["attachments"][0]["kind"] == "IMAGE")
        .expect("image");
    assert_eq!(image["attachments"][0]["source"]["from"], "LINE_CONTENT");
    let group = events
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["thread"]["kind"] == "GROUP")
        .expect("group message");
    assert_eq!(group["thread"]["id"], "C5d2a8e1f3b7c9d0e4f6a2b8c1d3e5f7a");
    assert_eq!(group["author"], "U1c7d3e9f0a2b4c6d8e0f1a3b5c7d9e1f");
}

async fn bad_or_unknown_line_deliveries_store_nothing(app: App) {
    let inbox = inbox(app, false).await;
    let body = fixture("line/text_message.json");
    let channel = inbox.line_channel.clone();
    assert_eq!(inbox.post_line(&channel, &body, None).await, 401);
    assert_eq!(inbox.post_line(&channel, &body, Some("AAAA")).await, 401);
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        inbox
            .post_line(&unknown, &body, Some(&line_signature(&body)))
            .await,
        200
    );
    assert_eq!(
        inbox
            .post_line("not-a-uuid", &body, Some(&line_signature(&body)))
            .await,
        200
    );
    assert!(inbox.inbound().await.is_empty());
    assert!(inbox
        .metric("omnibox_webhooks_unknown_target_total")
        .await
        .contains("platform=\"line\"} 2"));

    // Disconnected: answered, dropped. Its history stays.
    assert_eq!(inbox.line("line/image_message.json").await, 200);
    inbox
        .app
        .graphql(
            &inbox.owner.token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
            json!({ "id": channel }),
        )
        .await;
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    assert_eq!(types(&inbox.inbound().await), ["MessageReceived"]);
}

async fn expired_channels_keep_receiving(app: App) {
    let inbox = inbox(app, false).await;
    let channels = inbox
        .app
        .graphql(&inbox.owner.token, "{ channels { id kind } }", json!({}))
        .await;
    let page = channels["data"]["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "FACEBOOK"))
        .and_then(|c| c["id"].as_str())
        .expect("page channel")
        .parse()
        .expect("uuid");
    omnibox_app::services::channels::expire_rejected_token(
        &inbox.app.state,
        omnibox_domain::ids::ChannelId(page),
        190,
        Some(463),
    )
    .await
    .expect("expire");
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    assert_eq!(types(&inbox.inbound().await), ["MessageReceived"]);
}

const MESSAGES: &str = "query($id: UUID!) { conversation(id: $id) {
  messages(first: 20) { nodes { text unsent attachments { kind fileName sizeBytes url title latitude longitude } } }
} }";

impl Inbox {
    /// The conversation's messages as GraphQL shows them, oldest first.
    async fn messages(&self, conversation: &Value) -> Vec<Value> {
        self.app.settle().await;
        let answer = self
            .app
            .graphql(&self.owner.token, MESSAGES, json!({ "id": conversation }))
            .await;
        assert!(answer["errors"].is_null(), "{answer}");
        answer["data"]["conversation"]["messages"]["nodes"]
            .as_array()
            .cloned()
            .expect("messages")
    }
}

/// The data of the one event of type `event_type` that `pred` picks.
fn the<'a>(
    events: &'a [(String, Value)],
    event_type: &str,
    pred: impl Fn(&Value) -> bool,
) -> &'a Value {
    let found: Vec<_> = events
        .iter()
        .filter(|(t, d)| t == event_type && pred(d))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "one {event_type} expected: {found:?}");
    found[0]
}

fn kinds(message: &Value) -> Vec<&str> {
    message["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|a| a["kind"].as_str().unwrap_or_default())
        .collect()
}

async fn the_other_facebook_shapes_are_recorded(app: App) {
    let inbox = inbox(app, false).await;
    inbox
        .facebook_each_twice(&[
            "facebook/text_message.json",
            "facebook/text_and_attachments.json",
            "facebook/quick_reply_and_reply_to.json",
            "facebook/standby.json",
            "facebook/unsupported.json",
        ])
        .await;
    let events = inbox.inbound().await;
    let count = |t: &str| count(&events, t);
    assert_eq!(count("MessageReceived"), 4, "{:?}", types(&events));
    assert_eq!(count("UnsupportedEventReceived"), 3, "{:?}", types(&events));

    // Text and five attachments in one message, the text exactly.
    let mixed = the(&events, "MessageReceived", |d| {
        d["attachments"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(
        mixed["text"],
        "Order 1042 \u{2014} the box arrived damaged \u{1f4e6}\u{1f622} video, voice note, receipt and where I am:"
    );
    assert_eq!(kinds(mixed), ["VIDEO", "AUDIO", "FILE", "LOCATION", "LINK"]);
    let attachments = &mixed["attachments"];
    for media in 0..3 {
        assert!(
            attachments[media]["source"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://") && u.contains("oe=6745A1B2")),
            "{attachments}"
        );
    }
    assert_eq!(attachments[3]["latitude"], 18.7883);
    assert_eq!(attachments[3]["longitude"], 98.9853);
    assert_eq!(
        attachments[4]["reference"],
        "https://shop.example.com/orders/1042"
    );
    assert_eq!(attachments[4]["title"], "Order 1042 \u{b7} Siam Shop");

    // A quick reply's payload is metadata; the customer's words are the text.
    let tapped = the(&events, "MessageReceived", |d| {
        !d["quick_reply_payload"].is_null()
    });
    assert_eq!(tapped["text"], "Blue \u{1f499}");
    assert_eq!(tapped["quick_reply_payload"], "COLOR_BLUE");
    assert!(tapped["reply_to"]
        .as_str()
        .is_some_and(|mid| mid.starts_with("m__UWLwxXDJM2i")));

    let standby = the(&events, "MessageReceived", |d| d["standby"] == true);
    assert_eq!(standby["text"], "Hello? Is anyone there?");

    let unsupported: std::collections::BTreeSet<_> = events
        .iter()
        .filter(|(t, _)| t == "UnsupportedEventReceived")
        .map(|(_, d)| d["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        unsupported.into_iter().collect::<Vec<_>>(),
        ["feed", "reaction", "referral"]
    );

    // As agents see them.
    let shown = inbox.messages(&mixed["conversation_id"]).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["text"], mixed["text"]);
    let location = &shown[0]["attachments"][3];
    assert_eq!(
        (
            location["latitude"].as_f64(),
            location["longitude"].as_f64()
        ),
        (Some(18.7883), Some(98.9853))
    );
    let link = &shown[0]["attachments"][4];
    assert_eq!(link["url"], "https://shop.example.com/orders/1042");
    let shown = inbox.messages(&tapped["conversation_id"]).await;
    let texts: Vec<_> = shown
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        [
            "Hi! Do you ship to Chiang Mai? \u{e02}\u{e2d}\u{e1a}\u{e04}\u{e38}\u{e13}\u{e04}\u{e48}\u{e30}",
            "Blue \u{1f499}",
            "Hello? Is anyone there?"
        ]
    );
}

async fn the_other_line_shapes_are_recorded(app: App) {
    let inbox = inbox(app, false).await;
    inbox
        .line_each_twice(&[
            "line/text_message.json",
            "line/media_messages.json",
            "line/text_with_emojis.json",
            "line/room_message.json",
            "line/unsupported.json",
            "line/unsend.json",
        ])
        .await;
    let events = inbox.inbound().await;
    let count = |t: &str| count(&events, t);
    // text, video, audio, file, location, sticker, emoji text, room, standby.
    assert_eq!(count("MessageReceived"), 9, "{:?}", types(&events));
    assert_eq!(count("UnsupportedEventReceived"), 4, "{:?}", types(&events));
    assert_eq!(count("MessageUnsent"), 1, "{:?}", types(&events));

    let with = |kind: &'static str| {
        the(&events, "MessageReceived", move |d| {
            d["attachments"][0]["kind"] == kind
        })
    };
    for kind in ["VIDEO", "AUDIO"] {
        let source = &with(kind)["attachments"][0]["source"];
        assert_eq!(source["from"], "LINE_CONTENT", "{kind}: {source}");
    }
    let file = &with("FILE")["attachments"][0];
    assert_eq!(file["file_name"], "ใบเสนอราคา-1042.pdf");
    assert_eq!(file["size_bytes"], 48213);
    assert_eq!(file["source"]["from"], "LINE_CONTENT");
    let location = &with("LOCATION")["attachments"][0];
    assert_eq!(location["title"], "ตลาดวโรรส");
    assert_eq!(
        (
            location["latitude"].as_f64(),
            location["longitude"].as_f64()
        ),
        (Some(18.7904), Some(99.0006))
    );
    let sticker = &with("STICKER")["attachments"][0];
    assert_eq!(
        sticker["source"]["from"], "NONE",
        "stickers are never downloaded"
    );

    let emoji = the(&events, "MessageReceived", |d| {
        d["platform_message_id"] == "537216901234567010"
    });
    assert_eq!(emoji["text"], "(love) ขอบคุณมากค่ะ 🙏🏽 👨‍👩‍👧 🇹🇭");

    let room = the(&events, "MessageReceived", |d| {
        d["thread"]["kind"] == "ROOM"
    });
    assert_eq!(room["thread"]["id"], "Ra8c2e4f6b8d0a2c4e6f8b0d2a4c6e8f0");
    assert_eq!(room["author"], "U1c7d3e9f0a2b4c6d8e0f1a3b5c7d9e1f");
    let standby = the(&events, "MessageReceived", |d| d["standby"] == true);
    assert_eq!(standby["text"], "ยังเปิดอยู่ไหมครับ");
    assert!(
        standby["reply_token"].is_null(),
        "no reply token in standby"
    );

    let unsupported: std::collections::BTreeSet<_> = events
        .iter()
        .filter(|(t, _)| t == "UnsupportedEventReceived")
        .map(|(_, d)| d["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        unsupported.into_iter().collect::<Vec<_>>(),
        ["beacon", "botSuspended", "memberJoined", "message:hologram"]
    );

    // Unsent: marked, and hidden from agents; the log keeps what was said.
    let original = the(&events, "MessageReceived", |d| {
        d["platform_message_id"] == "537216233912020329"
    });
    assert_eq!(original["text"], "สวัสดีครับ ขอสอบถามเรื่องการจัดส่งไปเชียงใหม่ครับ");
    let unsent = the(&events, "MessageUnsent", |_| true);
    assert_eq!(unsent["platform_message_id"], "537216233912020329");
    assert_eq!(unsent["conversation_id"], original["conversation_id"]);
    let shown = inbox.messages(&original["conversation_id"]).await;
    let first = &shown[0];
    assert_eq!(
        (first["unsent"].as_bool(), first["text"].as_str()),
        (Some(true), None),
        "{shown:?}"
    );
    assert!(shown[1..].iter().all(|m| m["unsent"] == false), "{shown:?}");
    let file = shown
        .iter()
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .find(|a| a["kind"] == "FILE")
        .expect("the file");
    assert_eq!(
        (file["fileName"].as_str(), file["sizeBytes"].as_i64()),
        (Some("ใบเสนอราคา-1042.pdf"), Some(48213))
    );
}

/// Items that carry no message id or no timestamp (`changes` items, a
/// receipt without a time) are told apart by their content: two different
/// ones are both stored, and each redelivery (re-batched under another
/// `entry.time`) stores nothing new. A redelivered `mid` whose item
/// timestamp differs is a second event in the log (the id keeps the
/// platform time, see ARCHITECTURE.md); one with the same timestamp is not.
async fn items_without_ids_are_told_apart_by_content(app: App) {
    let inbox = inbox(app, false).await;
    let post = |entry_time: i64, changes: Value| {
        let body = json!({ "object": "page", "entry": [{ "id": PAGE_A, "time": entry_time, "changes": changes }] }).to_string();
        let inbox = &inbox;
        async move {
            inbox
                .post_facebook(body.as_bytes(), Some(&facebook_signature(body.as_bytes())))
                .await
        }
    };
    let first = json!({ "field": "feed", "value": { "item": "comment", "comment_id": "1_2", "message": "nice" } });
    let second = json!({ "field": "feed", "value": { "item": "comment", "comment_id": "1_3", "message": "nicer" } });
    assert_eq!(post(1, json!([first.clone()])).await, 200);
    assert_eq!(post(2, json!([second.clone(), first.clone()])).await, 200);
    assert_eq!(post(3, json!([second])).await, 200);
    let kept = inbox
        .inbound()
        .await
        .into_iter()
        .filter(|(kind, data)| kind == "UnsupportedEventReceived" && data["kind"] == "feed")
        .count();
    assert_eq!(kept, 2, "two different changes, each stored once");

    let message = |timestamp: i64| {
        json!({ "object": "page", "entry": [{ "id": PAGE_A, "time": timestamp + 5, "messaging": [{
            "sender": { "id": "7294018365520341" }, "recipient": { "id": PAGE_A }, "timestamp": timestamp,
            "message": { "mid": "m_same_mid", "text": "same message" } }] }] })
        .to_string()
    };
    for timestamp in [1_795_399_805_412_i64, 1_795_399_805_412, 1_795_399_806_000] {
        let body = message(timestamp);
        assert_eq!(
            inbox
                .post_facebook(body.as_bytes(), Some(&facebook_signature(body.as_bytes())))
                .await,
            200
        );
    }
    let stored = inbox
        .inbound()
        .await
        .into_iter()
        .filter(|(kind, data)| {
            kind == "MessageReceived" && data["platform_message_id"] == "m_same_mid"
        })
        .count();
    assert_eq!(
        stored, 2,
        "same timestamp: one event; another timestamp: another event"
    );
}

in_process_on_both_backends!(
    items_without_ids_are_told_apart_by_content,
    facebook_handshake_answers_the_challenge_only_to_our_token,
    a_facebook_text_is_stored_exactly_once,
    bad_facebook_deliveries_store_nothing,
    unknown_pages_are_acknowledged_counted_and_dropped,
    every_facebook_shape_is_recorded,
    line_events_are_recorded_once_each,
    bad_or_unknown_line_deliveries_store_nothing,
    expired_channels_keep_receiving,
    the_other_facebook_shapes_are_recorded,
    the_other_line_shapes_are_recorded,
);
