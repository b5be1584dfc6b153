//! The foundation: health, bootstrap, auth, members, subscriptions, metrics,
//! and the committed schema.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{error_code, on_both_backends, Server};

async fn health_answers_when_the_store_does(server: Server) {
    let response = reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("GET /healthz");
    assert_eq!(response.status(), 200);
}

async fn bootstrap_creates_an_owner_whose_token_works(server: Server) {
    let boot = server.bootstrap("Siam Shop", "Owner@Example.com");
    let answer = server
        .graphql(
            Some(&boot.token),
            "{ me { id email role available } }",
            json!({}),
        )
        .await;
    assert_eq!(
        answer["data"]["me"],
        json!({ "id": boot.user_id, "email": "owner@example.com", "role": "OWNER", "available": true })
    );
    // The organization's own stream tells its history.
    let history = server
        .graphql(
            Some(&boot.token),
            "query($s: String!) { history(stream: $s) { nodes { type revision data } } }",
            json!({ "s": format!("org-{}", boot.org_id) }),
        )
        .await;
    let types: Vec<&str> = history["data"]["history"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert_eq!(types, ["OrganizationCreated", "MemberAdded"]);
    assert!(
        !history.to_string().contains(&boot.token),
        "the token itself is never stored"
    );
}

async fn a_wrong_or_missing_token_is_unauthenticated(server: Server) {
    server.bootstrap("Acme", "owner@example.com");
    for token in [Some("obx_not-a-real-token"), None] {
        let answer = server.graphql(token, "{ me { id } }", json!({})).await;
        assert_eq!(error_code(&answer), Some("UNAUTHENTICATED"), "{answer}");
        assert!(answer["data"].is_null() || answer["data"]["me"].is_null());
    }
}

const ADD_MEMBER: &str =
    "mutation($e: String!, $r: Role!) { addMember(email: $e, role: $r) { token member { id email role available } } }";

async fn owners_add_members_and_roles_are_enforced(server: Server) {
    let boot = server.bootstrap("Acme", "owner@example.com");
    let added = server
        .graphql(
            Some(&boot.token),
            ADD_MEMBER,
            json!({ "e": "agent@example.com", "r": "AGENT" }),
        )
        .await;
    let agent_token = added["data"]["addMember"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(added["data"]["addMember"]["member"]["role"], "AGENT");

    // The new member can use their token at once (read-your-writes).
    let me = server
        .graphql(Some(&agent_token), "{ me { email role } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["me"],
        json!({ "email": "agent@example.com", "role": "AGENT" })
    );

    let cases = [
        (&agent_token, "x@example.com", "AGENT", "FORBIDDEN"),
        (&boot.token, "AGENT@example.com", "ADMIN", "CONFLICT"),
        (&boot.token, "not an email", "AGENT", "VALIDATION"),
    ];
    for (token, email, role, code) in cases {
        let answer = server
            .graphql(Some(token), ADD_MEMBER, json!({ "e": email, "r": role }))
            .await;
        assert_eq!(
            error_code(&answer),
            Some(code),
            "{email} as {role}: {answer}"
        );
    }
    let admin = server
        .graphql(
            Some(&boot.token),
            ADD_MEMBER,
            json!({ "e": "pa@example.com", "r": "PRIMARY_ADMIN" }),
        )
        .await;
    let admin_token = admin["data"]["addMember"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let owner_by_admin = server
        .graphql(
            Some(&admin_token),
            ADD_MEMBER,
            json!({ "e": "o2@example.com", "r": "OWNER" }),
        )
        .await;
    assert_eq!(error_code(&owner_by_admin), Some("FORBIDDEN"));

    let members = server
        .graphql(Some(&agent_token), "{ members { email role } }", json!({}))
        .await;
    assert_eq!(
        members["data"]["members"],
        json!([
            { "email": "agent@example.com", "role": "AGENT" },
            { "email": "owner@example.com", "role": "OWNER" },
            { "email": "pa@example.com", "role": "PRIMARY_ADMIN" },
        ])
    );
    assert!(
        !server.logs().contains(&agent_token),
        "tokens never reach the logs"
    );
    let off = server
        .graphql(
            Some(&agent_token),
            "mutation { setAvailability(available: false) { email available } }",
            json!({}),
        )
        .await;
    assert_eq!(
        off["data"]["setAvailability"],
        json!({ "email": "agent@example.com", "available": false })
    );
}

async fn organizations_never_see_each_other(server: Server) {
    let a = server.bootstrap("A", "a@example.com");
    let b = server.bootstrap("B", "b@example.com");
    let members = server
        .graphql(Some(&b.token), "{ members { email } }", json!({}))
        .await;
    assert_eq!(
        members["data"]["members"],
        json!([{ "email": "b@example.com" }])
    );
    let history = server
        .graphql(
            Some(&b.token),
            "query($s: String!) { history(stream: $s) { nodes { type } } }",
            json!({ "s": format!("org-{}", a.org_id) }),
        )
        .await;
    assert_eq!(error_code(&history), Some("NOT_FOUND"), "{history}");
}

async fn metrics_count_requests_and_appends(server: Server) {
    let boot = server.bootstrap("Acme", "owner@example.com");
    server
        .graphql(
            Some(&boot.token),
            ADD_MEMBER,
            json!({ "e": "agent@example.com", "r": "AGENT" }),
        )
        .await;
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            r#"omnibox_http_requests_total{method="POST",route="/graphql",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("omnibox_events_appended_total 1"), "{text}");
    assert!(
        text.contains("omnibox_append_duration_seconds_count 1"),
        "{text}"
    );
}

/// Opens a subscription socket speaking `protocol`.
async fn socket(
    server: &Server,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = server.ws_url().into_client_request().expect("ws request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message that is not a keep-alive, or the close frame's code.
async fn next_message(socket: &mut Socket, wait: Duration) -> Option<Result<Value, u16>> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if value["type"] != "ka" {
                    return Some(Ok(value));
                }
            }
            Message::Close(frame) => return Some(Err(frame.map_or(1005, |f| u16::from(f.code)))),
            _ => {}
        }
    }
}

async fn subscriptions_need_a_valid_token(server: Server) {
    server.bootstrap("Acme", "owner@example.com");
    let mut modern = socket(&server, "graphql-transport-ws").await;
    let init =
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer obx_wrong" } });
    modern
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut modern, Duration::from_secs(10)).await,
        Some(Err(4403))
    );

    let mut legacy = socket(&server, "graphql-ws").await;
    legacy
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    let refused = next_message(&mut legacy, Duration::from_secs(10)).await;
    assert!(
        matches!(&refused, Some(Ok(m)) if m["type"] == "connection_error"),
        "{refused:?}"
    );
    assert_eq!(
        next_message(&mut legacy, Duration::from_secs(10)).await,
        Some(Err(4403))
    );
    assert_eq!(u16::from(CloseCode::Library(4403)), 4403);
}

/// A subscription client may send messages of up to 1 MiB: a bigger one
/// ends its socket unanswered, and the server goes on serving.
async fn oversized_subscription_messages_end_the_socket(server: Server) {
    let boot = server.bootstrap("Acme", "owner@example.com");
    let mut socket = socket(&server, "graphql-transport-ws").await;
    let init = json!({
        "type": "connection_init",
        "payload": { "Authorization": format!("Bearer {}", boot.token), "padding": "x".repeat(2 << 20) }
    });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the server ends the socket rather than leave it hanging");
    assert!(
        !matches!(&answer, Some(Ok(Message::Text(_)))),
        "an oversized init was answered: {answer:?}"
    );
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
}

/// Subscribes to `memberUpdates` on `protocol` and checks that adding a
/// member reaches this organization's socket and not another's.
async fn member_updates_reach_only_their_organization(server: Server) {
    for (protocol, subscribe, data) in [
        ("graphql-transport-ws", "subscribe", "next"),
        ("graphql-ws", "start", "data"),
    ] {
        let mine = server.bootstrap("Mine", &format!("owner-{protocol}@example.com"));
        let theirs = server.bootstrap("Theirs", &format!("other-{protocol}@example.com"));
        let mut watching = Vec::new();
        for token in [&mine.token, &theirs.token] {
            let mut socket = socket(&server, protocol).await;
            let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
            socket
                .send(Message::Text(init.to_string().into()))
                .await
                .expect("init");
            let ack = next_message(&mut socket, Duration::from_secs(10)).await;
            assert!(
                matches!(&ack, Some(Ok(m)) if m["type"] == "connection_ack"),
                "{ack:?}"
            );
            let start = json!({ "id": "1", "type": subscribe, "payload": { "query": "subscription { memberUpdates { email role } }" } });
            socket
                .send(Message::Text(start.to_string().into()))
                .await
                .expect("subscribe");
            watching.push(socket);
        }
        // The protocol does not acknowledge a subscription: add members until
        // the first update arrives, then check it is one of ours.
        let mut added = Vec::new();
        let mut update = None;
        for n in 0..20 {
            let email = format!("agent{n}-{protocol}@example.com");
            let answer = server
                .graphql(
                    Some(&mine.token),
                    ADD_MEMBER,
                    json!({ "e": email, "r": "AGENT" }),
                )
                .await;
            assert!(answer["errors"].is_null(), "{answer}");
            added.push(email);
            if let Some(message) = next_message(&mut watching[0], Duration::from_millis(500)).await
            {
                update = Some(message);
                break;
            }
        }
        let update = update.expect("an update arrives").expect("not closed");
        assert_eq!(update["type"], data, "{update}");
        let email = update["payload"]["data"]["memberUpdates"]["email"]
            .as_str()
            .expect("email")
            .to_owned();
        assert!(
            added.contains(&email),
            "{email} is one of the members just added"
        );
        let leaked = next_message(&mut watching[1], Duration::from_millis(300)).await;
        assert!(leaked.is_none(), "another organization received {leaked:?}");
    }
}

async fn graphiql_is_served_to_browsers(server: Server) {
    let page = reqwest::get(format!("{}/graphql", server.url))
        .await
        .expect("GET /graphql");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("GraphiQL"));
}

on_both_backends!(
    health_answers_when_the_store_does,
    bootstrap_creates_an_owner_whose_token_works,
    a_wrong_or_missing_token_is_unauthenticated,
    owners_add_members_and_roles_are_enforced,
    organizations_never_see_each_other,
    metrics_count_requests_and_appends,
    subscriptions_need_a_valid_token,
    oversized_subscription_messages_end_the_socket,
    member_updates_reach_only_their_organization,
    graphiql_is_served_to_browsers,
);

#[test]
fn the_committed_schema_is_what_the_code_serves() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omnibox"))
        .arg("export-schema")
        .output()
        .expect("export-schema");
    assert!(output.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schema.graphql"
    ))
    .expect("schema file");
    assert!(
        String::from_utf8_lossy(&output.stdout) == committed,
        "schema/schema.graphql is stale: run `cargo run -- export-schema > schema/schema.graphql`"
    );
}

#[test]
fn a_malformed_secret_key_stops_start_up_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("omnibox-key-{}", uuid::Uuid::new_v4().simple()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omnibox"))
        .args(["bootstrap", "--org", "A", "--owner", "a@example.com"])
        .env(
            "OMNIBOX_DATABASE_URL",
            format!("sqlite://{}/o.db", dir.display()),
        )
        .env("OMNIBOX_SECRET_KEY", "too-short")
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OMNIBOX_SECRET_KEY must be 32 bytes"),
        "{stderr}"
    );
}
