//! Channels over real HTTP, against a local stand-in for the Graph API and
//! the LINE API, on a clock the tests move by hand.

use std::time::Duration;

use chrono::Duration as Days;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    error_code, in_process_on_both_backends, start_of_test, subscribe, App, Bootstrapped,
};

const PAGE_A: &str = "104729381650237";
const PAGE_B: &str = "108813467701552";
const BOT: &str = "Ua3f09c2e71b84d56e0f1a2b3c4d5e6f7";
const PAGE_TOKEN: &str = "EAAG-page-token-for-siam-shop-0001";
const LINE_TOKEN: &str = "line-channel-access-token-0001";
const LINE_SECRET: &str = "fixture-channel-secret";

const CHANNEL_FIELDS: &str =
    "id kind externalId name status tokenExpiresAt assignmentMode webhookUrl";

fn connect_query() -> String {
    format!("mutation($input: ConnectChannelInput!) {{ connectChannel(input: $input) {{ {CHANNEL_FIELDS} }} }}")
}

async fn connect_page(app: &App, token: &str, page: &str, access_token: &str) -> Value {
    app.graphql(
        token,
        &connect_query(),
        json!({ "input": { "kind": "FACEBOOK", "externalId": page, "name": "Siam Shop", "accessToken": access_token } }),
    )
    .await
}

/// How the API writes an instant.
fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339()
}

async fn add_member(app: &App, owner: &Bootstrapped, email: &str, role: &str) -> String {
    let answer = app
        .graphql(
            &owner.token,
            "mutation($e: String!, $r: Role!) { addMember(email: $e, role: $r) { token } }",
            json!({ "e": email, "r": role }),
        )
        .await;
    answer["data"]["addMember"]["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn facebook_channels_connect_reauthorize_and_disconnect(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Siam Shop Page", PAGE_TOKEN);
    let connected = connect_page(&app, &owner.token, PAGE_A, PAGE_TOKEN).await;
    let channel = &connected["data"]["connectChannel"];
    assert_eq!(channel["status"], "CONNECTED", "{connected}");
    assert_eq!(channel["kind"], "FACEBOOK");
    assert_eq!(channel["externalId"], PAGE_A);
    assert_eq!(channel["assignmentMode"], "OFF");
    assert_eq!(
        channel["webhookUrl"],
        "https://inbox.example.com/webhooks/facebook"
    );
    assert_eq!(
        channel["tokenExpiresAt"],
        rfc3339(start_of_test() + Days::days(90))
    );
    let id = channel["id"].as_str().expect("id").to_owned();
    let subscribed = app
        .platform
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/subscribed_apps"));
    let subscribed = subscribed.expect("the page was subscribed to the app's webhooks");
    for field in [
        "messages",
        "messaging_postbacks",
        "message_echoes",
        "message_deliveries",
        "message_reads",
    ] {
        assert!(
            subscribed.query.contains(field),
            "{} lacks {field}",
            subscribed.query
        );
    }
    assert_eq!(
        subscribed.authorization.as_deref(),
        Some(format!("Bearer {PAGE_TOKEN}").as_str())
    );

    // Reauthorizing 30 days later restarts the 90 days.
    app.clock.advance(Days::days(30));
    app.platform
        .add_page(PAGE_A, "Siam Shop Page", "EAAG-new-token");
    let reauthorized = app
        .graphql(
            &owner.token,
            &format!("mutation($id: UUID!) {{ reauthorizeChannel(id: $id, accessToken: \"EAAG-new-token\") {{ {CHANNEL_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        reauthorized["data"]["reauthorizeChannel"]["status"], "CONNECTED",
        "{reauthorized}"
    );
    assert_eq!(
        reauthorized["data"]["reauthorizeChannel"]["tokenExpiresAt"],
        rfc3339(start_of_test() + Days::days(120))
    );

    let disconnected = app
        .graphql(
            &owner.token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        disconnected["data"]["disconnectChannel"]["status"], "DISCONNECTED",
        "{disconnected}"
    );
    assert!(
        app.platform
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == format!("/{PAGE_A}/subscribed_apps")),
        "the page was unsubscribed"
    );
    let listed = app
        .graphql(&owner.token, "{ channels { id status } }", json!({}))
        .await;
    assert_eq!(
        listed["data"]["channels"],
        json!([{ "id": id, "status": "DISCONNECTED" }]),
        "history stays"
    );
    let refused = app
        .graphql(&owner.token, "mutation($id: UUID!) { reauthorizeChannel(id: $id, accessToken: \"EAAG-new-token\") { id } }", json!({ "id": id }))
        .await;
    assert_eq!(
        error_code(&refused),
        Some("CHANNEL_NOT_CONNECTED"),
        "{refused}"
    );

    // Reconnecting by the same organization is allowed and keeps the channel (and its history).
    let again = connect_page(&app, &owner.token, PAGE_A, "EAAG-new-token").await;
    assert_eq!(
        again["data"]["connectChannel"]["id"],
        id.as_str(),
        "{again}"
    );
    assert_eq!(again["data"]["connectChannel"]["status"], "CONNECTED");
}

async fn only_owners_and_primary_admins_manage_channels(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Siam Shop Page", PAGE_TOKEN);
    let admin = add_member(&app, &owner, "admin@example.com", "ADMIN").await;
    let agent = add_member(&app, &owner, "agent@example.com", "AGENT").await;
    let primary = add_member(&app, &owner, "pa@example.com", "PRIMARY_ADMIN").await;
    let before = app.events().await.len();
    for token in [&admin, &agent] {
        let answer = connect_page(&app, token, PAGE_A, PAGE_TOKEN).await;
        assert_eq!(error_code(&answer), Some("FORBIDDEN"), "{answer}");
    }
    assert_eq!(
        app.events().await.len(),
        before,
        "a refused connect appends nothing"
    );
    assert!(app.platform.requests().is_empty(), "nor calls the platform");
    let connected = connect_page(&app, &primary, PAGE_A, PAGE_TOKEN).await;
    let id = connected["data"]["connectChannel"]["id"]
        .as_str()
        .expect("connected")
        .to_owned();
    for token in [&admin, &agent] {
        let answer = app
            .graphql(
                token,
                "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(error_code(&answer), Some("FORBIDDEN"), "{answer}");
    }
    let mode = app
        .graphql(&admin, "mutation($id: UUID!) { setAssignmentMode(channelId: $id, mode: ROUND_ROBIN) { assignmentMode } }", json!({ "id": id }))
        .await;
    assert_eq!(
        mode["data"]["setAssignmentMode"]["assignmentMode"], "ROUND_ROBIN",
        "{mode}"
    );
    let by_agent = app
        .graphql(&agent, "mutation($id: UUID!) { setAssignmentMode(channelId: $id, mode: OFF) { assignmentMode } }", json!({ "id": id }))
        .await;
    assert_eq!(error_code(&by_agent), Some("FORBIDDEN"), "{by_agent}");
}

async fn rejected_tokens_and_bad_input_change_nothing(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Siam Shop Page", PAGE_TOKEN);
    app.platform.add_bot(LINE_TOKEN, BOT);
    let before = app.events().await.len();
    let cases = [
        json!({ "kind": "FACEBOOK", "externalId": PAGE_A, "name": "Siam Shop", "accessToken": "EAAG-expired" }),
        json!({ "kind": "FACEBOOK", "externalId": "not-a-page-id", "name": "Siam Shop", "accessToken": PAGE_TOKEN }),
        json!({ "kind": "FACEBOOK", "externalId": PAGE_A, "name": "  ", "accessToken": PAGE_TOKEN }),
        json!({ "kind": "LINE", "externalId": BOT, "name": "Siam Shop LINE", "accessToken": "wrong", "channelSecret": LINE_SECRET }),
        json!({ "kind": "LINE", "externalId": BOT, "name": "Siam Shop LINE", "accessToken": LINE_TOKEN }),
    ];
    for input in cases {
        let answer = app
            .graphql(&owner.token, &connect_query(), json!({ "input": input }))
            .await;
        assert_eq!(
            error_code(&answer),
            Some("VALIDATION"),
            "{input} → {answer}"
        );
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("EAAG") && !message.contains("wrong"),
            "no token in {message:?}"
        );
    }
    let expired = app.graphql(&owner.token, &connect_query(), json!({ "input": { "kind": "FACEBOOK", "externalId": PAGE_A, "name": "x", "accessToken": "EAAG-expired" } })).await;
    assert!(
        expired["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("code 190"),
        "{expired}"
    );
    assert_eq!(app.events().await.len(), before, "nothing was appended");
}

async fn a_page_belongs_to_one_organization_for_ever(app: App) {
    let first = app.bootstrap("First", "first@example.com").await;
    let second = app.bootstrap("Second", "second@example.com").await;
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    let id = connect_page(&app, &first.token, PAGE_A, PAGE_TOKEN).await["data"]["connectChannel"]
        ["id"]
        .clone();
    app.graphql(
        &first.token,
        "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let taken = connect_page(&app, &second.token, PAGE_A, PAGE_TOKEN).await;
    assert_eq!(
        error_code(&taken),
        Some("PAGE_TAKEN"),
        "disconnected included: {taken}"
    );

    // Two organizations racing for one page: exactly one wins.
    app.platform.add_page(PAGE_B, "Page B", "EAAG-b");
    let (a, b) = tokio::join!(
        connect_page(&app, &first.token, PAGE_B, "EAAG-b"),
        connect_page(&app, &second.token, PAGE_B, "EAAG-b"),
    );
    let won = [&a, &b]
        .iter()
        .filter(|r| r["data"]["connectChannel"]["status"] == "CONNECTED")
        .count();
    let lost = [&a, &b]
        .iter()
        .filter(|r| error_code(r) == Some("PAGE_TAKEN"))
        .count();
    assert_eq!((won, lost), (1, 1), "{a}\n{b}");
}

async fn line_channels_are_identified_by_their_bot(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_bot(LINE_TOKEN, BOT);
    let answer = app
        .graphql(
            &owner.token,
            &connect_query(),
            json!({ "input": { "kind": "LINE", "externalId": "2006543210", "name": "Siam Shop LINE",
                               "accessToken": LINE_TOKEN, "channelSecret": LINE_SECRET } }),
        )
        .await;
    let channel = &answer["data"]["connectChannel"];
    assert_eq!(channel["externalId"], BOT, "{answer}");
    assert_eq!(channel["kind"], "LINE");
    assert!(
        channel["tokenExpiresAt"].is_null(),
        "long-lived LINE tokens never idle out"
    );
    let id = channel["id"].as_str().expect("id");
    assert_eq!(
        channel["webhookUrl"],
        format!("https://inbox.example.com/webhooks/line/{id}")
    );
    let info = app
        .platform
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/bot/info")
        .expect("bot info was asked");
    assert_eq!(
        info.authorization.as_deref(),
        Some(format!("Bearer {LINE_TOKEN}").as_str())
    );
    let later = app
        .graphql(
            &owner.token,
            "query($id: UUID!, $t: DateTime) { channel(id: $id) { status(asOf: $t) } }",
            json!({ "id": id, "t": "2036-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(later["data"]["channel"]["status"], "CONNECTED");
}

async fn tokens_expire_after_90_idle_days_exactly_once(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    let id = connect_page(&app, &owner.token, PAGE_A, PAGE_TOKEN).await["data"]["connectChannel"]
        ["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let watch = "query($d: Int!, $t: DateTime) { expiringChannels(withinDays: $d, asOf: $t) { id tokenExpiresAt status(asOf: $t) } }";
    let soon = app.graphql(&owner.token, watch, json!({ "d": 14 })).await;
    assert_eq!(soon["data"]["expiringChannels"], json!([]), "{soon}");
    let at_80 = rfc3339(start_of_test() + Days::days(80));
    let later = app
        .graphql(&owner.token, watch, json!({ "d": 14, "t": at_80 }))
        .await;
    assert_eq!(
        later["data"]["expiringChannels"][0]["id"],
        id.as_str(),
        "{later}"
    );
    assert_eq!(later["data"]["expiringChannels"][0]["status"], "CONNECTED");
    let at_91 = rfc3339(start_of_test() + Days::days(91));
    let past = app
        .graphql(
            &owner.token,
            "query($id: UUID!, $t: DateTime) { channel(id: $id) { status(asOf: $t) } }",
            json!({ "id": id, "t": at_91 }),
        )
        .await;
    assert_eq!(past["data"]["channel"]["status"], "EXPIRED");

    // The timer does nothing before the deadline, then expires the channel once.
    app.clock.advance(Days::days(89));
    assert_eq!(
        omnibox_app::services::channels::expire_due_channels(&app.state)
            .await
            .expect("tick"),
        0
    );
    app.clock.advance(Days::days(2));
    assert_eq!(
        omnibox_app::services::channels::expire_due_channels(&app.state)
            .await
            .expect("tick"),
        1
    );
    assert_eq!(
        omnibox_app::services::channels::expire_due_channels(&app.state)
            .await
            .expect("tick"),
        0
    );
    // After a restart, still once.
    let restarted = app.reopen().await;
    assert_eq!(
        omnibox_app::services::channels::expire_due_channels(&restarted)
            .await
            .expect("tick"),
        0
    );
    let expiries = app
        .events()
        .await
        .iter()
        .filter(|e| e.event_type == "ChannelConnectionExpired")
        .count();
    assert_eq!(expiries, 1);
    let now = app
        .graphql(
            &owner.token,
            "query($id: UUID!) { channel(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(now["data"]["channel"]["status"], "EXPIRED");

    app.platform.add_page(PAGE_A, "Page A", "EAAG-renewed");
    let renewed = app
        .graphql(&owner.token, "mutation($id: UUID!) { reauthorizeChannel(id: $id, accessToken: \"EAAG-renewed\") { status tokenExpiresAt } }", json!({ "id": id }))
        .await;
    assert_eq!(
        renewed["data"]["reauthorizeChannel"]["status"], "CONNECTED",
        "{renewed}"
    );
    assert_eq!(
        renewed["data"]["reauthorizeChannel"]["tokenExpiresAt"],
        rfc3339(app.clock_now() + Days::days(90))
    );
}

async fn a_rejected_token_expires_the_channel_at_once(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    let id = connect_page(&app, &owner.token, PAGE_A, PAGE_TOKEN).await["data"]["connectChannel"]
        ["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let channel_id = omnibox_domain::ids::ChannelId(id.parse().expect("uuid"));
    assert!(omnibox_app::services::channels::expire_rejected_token(
        &app.state,
        channel_id,
        190,
        Some(463)
    )
    .await
    .expect("expire"));
    assert!(!omnibox_app::services::channels::expire_rejected_token(
        &app.state,
        channel_id,
        190,
        Some(463)
    )
    .await
    .expect("again"));
    let now = app
        .graphql(
            &owner.token,
            "query($id: UUID!) { channel(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(now["data"]["channel"]["status"], "EXPIRED");
}

async fn other_organizations_channels_do_not_exist(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    let stranger = app.bootstrap("Elsewhere", "x@example.com").await;
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    let id = connect_page(&app, &owner.token, PAGE_A, PAGE_TOKEN).await["data"]["connectChannel"]
        ["id"]
        .clone();
    let queries = [
        "query($id: UUID!) { channel(id: $id) { id } }",
        "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
        "mutation($id: UUID!) { reauthorizeChannel(id: $id, accessToken: \"EAAG\") { id } }",
        "mutation($id: UUID!) { setAssignmentMode(channelId: $id, mode: ROUND_ROBIN) { id } }",
    ];
    for query in queries {
        let answer = app
            .graphql(&stranger.token, query, json!({ "id": id }))
            .await;
        assert_eq!(error_code(&answer), Some("NOT_FOUND"), "{query}: {answer}");
    }
    let history = app
        .graphql(
            &stranger.token,
            "query($s: String!) { history(stream: $s) { nodes { type } } }",
            json!({ "s": format!("channel-{}", id.as_str().unwrap_or_default()) }),
        )
        .await;
    assert_eq!(error_code(&history), Some("NOT_FOUND"));
    let listed = app
        .graphql(
            &stranger.token,
            "{ channels { id } expiringChannels(withinDays: 3650) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"],
        json!({ "channels": [], "expiringChannels": [] })
    );
    let mine = app
        .graphql(
            &owner.token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        mine["data"]["disconnectChannel"]["status"], "DISCONNECTED",
        "the stranger changed nothing"
    );
}

async fn channel_updates_reach_only_their_organization(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    let stranger = app.bootstrap("Elsewhere", "x@example.com").await;
    let mut sockets = Vec::new();
    for token in [&owner.token, &stranger.token] {
        let query = "subscription { channelUpdates { externalId status } }";
        let socket = subscribe(
            &app,
            "graphql-transport-ws",
            token,
            "subscribe",
            query,
            json!({}),
        )
        .await;
        sockets.push(socket);
    }
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    app.platform.add_page(PAGE_B, "Page B", "EAAG-b");
    // The protocol does not acknowledge subscriptions: connect pages until an update arrives.
    let mut first = None;
    for (page, token) in [(PAGE_A, PAGE_TOKEN), (PAGE_B, "EAAG-b")] {
        connect_page(&app, &owner.token, page, token).await;
        if let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(2), sockets[0].next()).await
        {
            first = Some(message);
            break;
        }
    }
    let first: Value =
        serde_json::from_str(first.expect("an update arrives").to_text().expect("text"))
            .expect("json");
    assert_eq!(first["type"], "next");
    assert_eq!(
        first["payload"]["data"]["channelUpdates"]["status"], "CONNECTED",
        "{first}"
    );
    let leaked = tokio::time::timeout(Duration::from_millis(300), sockets[1].next()).await;
    assert!(leaked.is_err(), "another organization received {leaked:?}");

    // Every status change is pushed: disconnect one, and its DISCONNECTED arrives.
    let page = first["payload"]["data"]["channelUpdates"]["externalId"]
        .as_str()
        .expect("page")
        .to_owned();
    let listed = app
        .graphql(&owner.token, "{ channels { id externalId } }", json!({}))
        .await;
    let id = listed["data"]["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["externalId"] == page.as_str()))
        .map(|c| c["id"].clone())
        .expect("channel");
    app.graphql(
        &owner.token,
        "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let mut statuses = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_secs(5), sockets[0].next()).await
    {
        let update: Value = serde_json::from_str(&text).expect("json");
        let channel = &update["payload"]["data"]["channelUpdates"];
        statuses.push((
            channel["externalId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            channel["status"].as_str().unwrap_or_default().to_owned(),
        ));
        if statuses.last() == Some(&(page.clone(), "DISCONNECTED".to_owned())) {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&(page, "DISCONNECTED".to_owned())),
        "{statuses:?}"
    );
}

async fn secrets_never_appear_in_plain_text(app: App) {
    let owner = app.bootstrap("Siam Shop", "owner@example.com").await;
    app.platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    app.platform.add_bot(LINE_TOKEN, BOT);
    let mut answers = vec![connect_page(&app, &owner.token, PAGE_A, PAGE_TOKEN).await];
    answers.push(
        app.graphql(
            &owner.token,
            &connect_query(),
            json!({ "input": { "kind": "LINE", "externalId": BOT, "name": "LINE", "accessToken": LINE_TOKEN, "channelSecret": LINE_SECRET } }),
        )
        .await,
    );
    answers.push(
        app.graphql(
            &owner.token,
            &format!("{{ channels {{ {CHANNEL_FIELDS} }} }}"),
            json!({}),
        )
        .await,
    );
    let events = app.events().await;
    assert!(events.iter().any(|e| e.event_type == "ChannelConnected"));
    let log_text: String = events
        .iter()
        .map(|e| format!("{} {:?}\n", e.data, e.metadata))
        .collect();
    let answers_text = serde_json::to_string(&answers).expect("json");
    let database_text = crate::support::database_dump(&app).await;
    for secret in [PAGE_TOKEN, LINE_TOKEN, LINE_SECRET] {
        assert!(!log_text.contains(secret), "{secret} is in the event log");
        assert!(
            !answers_text.contains(secret),
            "{secret} is in a GraphQL answer"
        );
        assert!(
            !database_text.contains(secret),
            "{secret} is in the database"
        );
    }
    // The secrets are still there, sealed: the fingerprint in the event opens to the token.
    assert!(log_text.contains("fingerprint"));
}

/// The real binary, logging at debug level, never logs a token or secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let platform = crate::platform::Platform::start().await;
    platform.add_page(PAGE_A, "Page A", PAGE_TOKEN);
    platform.add_bot(LINE_TOKEN, BOT);
    let env = [
        ("OMNIBOX_FACEBOOK_GRAPH_URL", platform.url.as_str()),
        ("OMNIBOX_LINE_API_URL", platform.url.as_str()),
        ("OMNIBOX_LOG", "debug"),
    ];
    let server = crate::support::Server::start_with(omnibox_store::testing::Backend::Sqlite, &env)
        .await
        .expect("server");
    let owner = server.bootstrap("Siam Shop", "owner@example.com");
    let facebook = json!({ "input": { "kind": "FACEBOOK", "externalId": PAGE_A, "name": "Page", "accessToken": PAGE_TOKEN } });
    let line = json!({ "input": { "kind": "LINE", "externalId": BOT, "name": "LINE", "accessToken": LINE_TOKEN, "channelSecret": LINE_SECRET } });
    let wrong = json!({ "input": { "kind": "FACEBOOK", "externalId": PAGE_B, "name": "Page", "accessToken": "EAAG-secret-but-wrong" } });
    for input in [facebook, line, wrong] {
        server
            .graphql(Some(&owner.token), &connect_query(), input)
            .await;
    }
    let connected = server
        .graphql(Some(&owner.token), "{ channels { status } }", json!({}))
        .await;
    assert_eq!(
        connected["data"]["channels"].as_array().map(Vec::len),
        Some(2),
        "{connected}"
    );
    let logs = server.logs();
    assert!(logs.contains("DEBUG"), "debug logging is on");
    for secret in [
        PAGE_TOKEN,
        LINE_TOKEN,
        LINE_SECRET,
        "EAAG-secret-but-wrong",
        owner.token.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

impl App {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        omnibox_domain::Clock::now(&*self.clock)
    }
}

in_process_on_both_backends!(
    facebook_channels_connect_reauthorize_and_disconnect,
    only_owners_and_primary_admins_manage_channels,
    rejected_tokens_and_bad_input_change_nothing,
    a_page_belongs_to_one_organization_for_ever,
    line_channels_are_identified_by_their_bot,
    tokens_expire_after_90_idle_days_exactly_once,
    a_rejected_token_expires_the_channel_at_once,
    other_organizations_channels_do_not_exist,
    channel_updates_reach_only_their_organization,
    secrets_never_appear_in_plain_text,
);

/// A platform that cannot be reached is not a verdict on the token: the
/// answer is PLATFORM_UNAVAILABLE with the cause, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_platform_is_platform_unavailable() {
    // Nothing listens on a port we bound and released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let server = crate::support::Server::start_with(
        omnibox_store::testing::Backend::Sqlite,
        &[
            ("OMNIBOX_FACEBOOK_GRAPH_URL", closed.as_str()),
            ("OMNIBOX_LINE_API_URL", closed.as_str()),
        ],
    )
    .await
    .expect("server");
    let owner = server.bootstrap("Siam Shop", "owner@example.com");
    for input in [
        json!({ "kind": "FACEBOOK", "externalId": PAGE_A, "name": "Page", "accessToken": PAGE_TOKEN }),
        json!({ "kind": "LINE", "externalId": BOT, "name": "LINE", "accessToken": LINE_TOKEN, "channelSecret": LINE_SECRET }),
    ] {
        let answer = server
            .graphql(
                Some(&owner.token),
                &connect_query(),
                json!({ "input": input }),
            )
            .await;
        assert_eq!(
            error_code(&answer),
            Some("PLATFORM_UNAVAILABLE"),
            "{input} → {answer}"
        );
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("could not be reached"), "{message}");
    }
    let channels = server
        .graphql(Some(&owner.token), "{ channels { id } }", json!({}))
        .await;
    assert_eq!(channels["data"]["channels"], json!([]), "nothing stored");
}
