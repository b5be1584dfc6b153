//! Attacks a tenant with a valid account could try, refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::inbound::inbox;
use crate::support::{
    error_code, facebook_signature, in_process_on_both_backends, line_signature, App,
};

/// A service on loopback that must never be reached from a payload URL:
/// it counts every request.
async fn internal_service() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "internal secrets"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address.to_string(), hits)
}

/// Posts a signed Facebook webhook whose message `mid` carries one
/// attachment of `kind` at `url`; the webhook must be acknowledged.
async fn post_facebook_attachment(app: &App, mid: &str, kind: &str, url: &str, offset: i64) {
    let body = serde_json::to_vec(&json!({ "object": "page", "entry": [{ "id": "104729381650237", "time": 1_795_399_900_118_i64, "messaging": [{
        "sender": { "id": "6602957718843910" }, "recipient": { "id": "104729381650237" }, "timestamp": 1_795_399_900_118_i64 + offset,
        "message": { "mid": mid, "attachments": [{ "type": kind, "payload": { "url": url } }] } }] }] }))
    .expect("json");
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/facebook", app.url))
        .header("X-Hub-Signature-256", facebook_signature(&body))
        .body(body)
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 200);
}

/// Payload URLs aimed at internal addresses (literal, by name, IPv6,
/// link-local metadata, plain http, through a redirect from an allowed
/// origin) are refused: the internal service receives nothing, and the
/// attachments are recorded as not fetched, saying why.
async fn payload_urls_never_reach_internal_services(app: App) {
    let (internal, hits) = internal_service().await;
    let port = internal.rsplit(':').next().expect("port").to_owned();
    let inbox = inbox(app, false).await;
    let targets = [
        format!("http://{internal}/metrics"),
        format!("https://{internal}/metrics"),
        format!("https://localhost:{port}/metrics"),
        format!("https://[::1]:{port}/metrics"),
        format!("https://[::ffff:127.0.0.1]:{port}/metrics"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        format!(
            "{}/redirect?to=http://{internal}/via-redirect",
            inbox.app.platform.url
        ),
        format!(
            "{}/redirect?to=https://localhost:{port}/via-redirect",
            inbox.app.platform.url
        ),
    ];
    for (n, url) in targets.iter().enumerate() {
        // A LINE image from an external content provider, signed with the
        // channel secret the tenant chose.
        let body = json!({ "destination": "Ua3f09c2e71b84d56e0f1a2b3c4d5e6f7", "events": [{
            "type": "message", "mode": "active", "timestamp": 1_795_400_411_093_i64 + n as i64,
            "webhookEventId": format!("01SSRF{n}"), "deliveryContext": { "isRedelivery": false },
            "source": { "type": "user", "userId": "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a" },
            "replyToken": format!("rt-ssrf-{n}"),
            "message": { "type": "image", "id": format!("90000{n}"),
                         "contentProvider": { "type": "external", "originalContentUrl": url, "previewImageUrl": url } } }] })
        .to_string();
        let status = reqwest::Client::new()
            .post(format!(
                "{}/webhooks/line/{}",
                inbox.app.url, inbox.line_channel
            ))
            .header("x-line-signature", line_signature(body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, 200);
        // The same URL as a Facebook attachment.
        post_facebook_attachment(&inbox.app, &format!("m_ssrf_{n}"), "image", url, n as i64).await;
    }
    inbox.app.settle().await;
    let fetcher = omnibox_app::reactors::media::MediaFetcher::default();
    let recorded = fetcher.run_once(&inbox.app.state).await.expect("pass");
    assert_eq!(
        recorded,
        2 * targets.len(),
        "each refused at once, for good"
    );
    inbox.app.settle().await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the internal service was reached"
    );
    let events = inbox.app.events().await;
    let failed: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "MediaFetchFailed")
        .map(|e| e.data.clone())
        .collect();
    assert_eq!(failed.len(), 2 * targets.len(), "{failed:?}");
    assert!(failed.iter().all(|f| f.contains("refused")), "{failed:?}");
}

/// POSTs `body` to `/graphql` as it is; the status and the JSON answer.
async fn post_raw(app: &App, body: Vec<u8>) -> (u16, serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/graphql", app.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = answer.status().as_u16();
    let body = answer.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A connection costs its page size times its selection: queries that
/// would fetch hundreds of thousands of rows, repeat a field under many
/// aliases, send huge texts or huge id lists are refused with
/// QUERY_TOO_COSTLY before they run; ordinary inbox queries pass.
async fn costly_queries_are_refused_before_they_run(app: App) {
    let owner = app.bootstrap("Cost Shop", "owner@example.com").await;
    let refused = |query: String, variables: serde_json::Value| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let answer = app.graphql(&token, &query, variables).await;
            assert_eq!(error_code(&answer), Some("QUERY_TOO_COSTLY"), "{answer}");
            assert!(
                answer["data"].is_null() || answer["data"]["conversations"].is_null(),
                "{answer}"
            );
        }
    };
    refused(
        "{ conversations(first: 200) { nodes { id messages(first: 200) { nodes { id text } } } } }"
            .into(),
        json!({}),
    )
    .await;
    let aliases: Vec<String> = (0..40)
        .map(|n| format!("a{n}: conversations(first: 1) {{ nodes {{ id }} }}"))
        .collect();
    refused(format!("{{ {} }}", aliases.join(" ")), json!({})).await;
    refused(
        format!("# {}\n{{ me {{ id }} }}", "x".repeat(40 * 1024)),
        json!({}),
    )
    .await;
    let ids: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    refused(
        "query($c: [UUID!]) { conversations(channelIds: $c) { nodes { id } } }".into(),
        json!({ "c": ids }),
    )
    .await;
    let fine = app
        .graphql(
            &owner.token,
            "{ conversations(first: 20) { nodes { id unreadCount contact { displayName } messages(last: 10) { nodes { id text deliveryState } } } } }",
            json!({}),
        )
        .await;
    assert!(fine["errors"].is_null(), "{fine}");
}

/// Without a token, a body over 1 MiB is refused with 413, whether its
/// `Content-Length` says so or it streams without one; unreadable bodies
/// and invalid queries get a JSON error coded BAD_REQUEST.
async fn graphql_bodies_are_limited_and_errors_coded(app: App) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let huge = format!("{{\"query\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    let (status, _) = post_raw(&app, huge).await;
    assert_eq!(status, 413);
    // Chunked, no length announced: refused once it runs over.
    let address = app.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        answer.lines().next().unwrap_or_default()
    );

    for body in [
        &b"{not json"[..],
        b"[{\"query\": \"{ me { id } }\"}]",
        b"{\"query\": \"{ me { \"}",
        b"{\"query\": \"{ noSuchField }\"}",
    ] {
        let (status, answer) = post_raw(&app, body.to_vec()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(error_code(&answer), Some("BAD_REQUEST"), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("Error {") && !message.contains("{ line"),
            "a debug string: {message}"
        );
    }
}

const ME: &str = "{ me { id email } }";

/// `removeMember` and `rotateToken`: the old token answers UNAUTHENTICATED
/// at once, over HTTP, and an open WebSocket signed in with it is closed
/// (4403). Only an OWNER or PRIMARY_ADMIN removes, never the owner. Both are
/// events, in the organization's history, which shows no token hash and
/// which only administrators may read.
async fn tokens_can_be_revoked(app: App) {
    let owner = app.bootstrap("Revoke Shop", "owner@example.com").await;
    let add = |email: &str| {
        let (app, token, email) = (&app, owner.token.clone(), email.to_owned());
        async move {
            let added = app
                .graphql(
                    &token,
                    "mutation($e: String!) { addMember(email: $e, role: AGENT) { token member { id } } }",
                    json!({ "e": email }),
                )
                .await;
            (
                added["data"]["addMember"]["token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
                added["data"]["addMember"]["member"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            )
        }
    };
    let (agent_token, agent_id) = add("agent@example.com").await;
    let (other_token, _) = add("other@example.com").await;
    assert!(app.graphql(&agent_token, ME, json!({})).await["errors"].is_null());

    // Agents may not remove anyone; nobody removes the owner.
    let me = app.graphql(&owner.token, ME, json!({})).await;
    let owner_id = me["data"]["me"]["id"].clone();
    let remove = "mutation($id: UUID!) { removeMember(id: $id) { id email } }";
    let refused = app
        .graphql(&other_token, remove, json!({ "id": agent_id }))
        .await;
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
    let refused = app
        .graphql(&owner.token, remove, json!({ "id": owner_id }))
        .await;
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");

    // Rotation: the new token works, the old one stops.
    let rotated = app
        .graphql(
            &other_token,
            "mutation { rotateToken { token member { email } } }",
            json!({}),
        )
        .await;
    let new_token = rotated["data"]["rotateToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        rotated["data"]["rotateToken"]["member"]["email"],
        "other@example.com"
    );
    assert_eq!(
        error_code(&app.graphql(&other_token, ME, json!({})).await),
        Some("UNAUTHENTICATED")
    );
    assert!(app.graphql(&new_token, ME, json!({})).await["errors"].is_null());

    // Removal closes the removed member's open socket.
    let mut socket = crate::support::subscribe(
        &app,
        "graphql-transport-ws",
        &agent_token,
        "subscribe",
        "subscription { inboxUpdates { id } }",
        json!({}),
    )
    .await;
    let removed = app
        .graphql(&owner.token, remove, json!({ "id": agent_id }))
        .await;
    assert_eq!(
        removed["data"]["removeMember"]["email"], "agent@example.com",
        "{removed}"
    );
    assert_eq!(
        error_code(&app.graphql(&agent_token, ME, json!({})).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(crate::support::close_code(&mut socket).await, Some(4403));

    let history = "query($s: String!) { history(stream: $s, first: 50) { nodes { type data } } }";
    let stream = format!("org-{}", owner.org_id);
    let denied = app
        .graphql(&new_token, history, json!({ "s": stream }))
        .await;
    assert_eq!(error_code(&denied), Some("FORBIDDEN"), "{denied}");
    let shown = app
        .graphql(&owner.token, history, json!({ "s": stream }))
        .await;
    let types: Vec<&str> = shown["data"]["history"]["nodes"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"MemberRemoved") && types.contains(&"MemberTokenRotated"),
        "{types:?}"
    );
    assert!(!shown.to_string().contains("token_sha256"), "{shown}");
}

/// Stored media never lets a browser run what a tenant served: every
/// answer says `nosniff`, and only pictures, video and sound show inline
/// (an HTML "attachment" downloads). `/metrics` keeps one label for every
/// unknown HTTP method.
async fn media_and_metrics_headers(app: App) {
    let inbox = inbox(app, false).await;
    for (n, (kind, file)) in [("image", "photo.png"), ("file", "page.html")]
        .iter()
        .enumerate()
    {
        let url = format!("{}/cdn/{file}", inbox.app.platform.url);
        post_facebook_attachment(&inbox.app, &format!("m_headers_{n}"), kind, &url, n as i64).await;
    }
    inbox.app.settle().await;
    omnibox_app::reactors::media::MediaFetcher::default()
        .run_once(&inbox.app.state)
        .await
        .expect("pass");
    inbox.app.settle().await;
    let answer = inbox
        .app
        .graphql(
            &inbox.owner.token,
            "{ conversations { nodes { messages { nodes { attachments { url contentType } } } } } }",
            json!({}),
        )
        .await;
    let mut seen = 0;
    for attachment in answer.to_string().split("\"url\":\"").skip(1) {
        let url = attachment
            .split('"')
            .next()
            .expect("url")
            .replace("https://inbox.example.com", &inbox.app.url);
        let served = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&inbox.owner.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(served.status(), 200);
        let headers = served.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let expected = if headers["content-type"] == "text/html" {
            "attachment"
        } else {
            "inline"
        };
        assert_eq!(headers["content-disposition"], expected, "{headers:?}");
        seen += 1;
    }
    assert_eq!(seen, 2, "{answer}");

    for method in ["FOO", "BAR", "PROPFIND"] {
        let _ = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}/healthz", inbox.app.url),
            )
            .send()
            .await;
    }
    let metrics = reqwest::get(format!("{}/metrics", inbox.app.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("method=\"other\""),
        "unknown methods share one label"
    );
    for method in ["FOO", "BAR", "PROPFIND"] {
        assert!(
            !metrics.contains(&format!("method=\"{method}\"")),
            "{method} got its own label"
        );
    }
}

/// A data folder Omnibox creates is readable by its user only, and so are
/// the SQLite files and stored media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root =
        std::env::temp_dir().join(format!("omnibox-private-{}", uuid::Uuid::new_v4().simple()));
    let dir = root.join("data");
    let db =
        omnibox_store::Database::connect(&format!("sqlite://{}", dir.join("omnibox.db").display()))
            .await
            .expect("connect");
    db.migrate().await.expect("migrate");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir), 0o700);
    for file in ["omnibox.db", "omnibox.read.db", "omnibox.db-wal"] {
        let path = dir.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    assert_eq!(mode(&dir.join("omnibox.db")), 0o600);
    use omnibox_app::media_store::MediaStore;
    let media = omnibox_app::media_store::LocalMediaStore::new(root.join("media"));
    media.put("abc-0", b"bytes").await.expect("put");
    assert_eq!(mode(&root.join("media")), 0o700);
    assert_eq!(mode(&root.join("media").join("abc-0")), 0o600);
    let _ = std::fs::remove_dir_all(&root);
}

in_process_on_both_backends!(
    media_and_metrics_headers,
    tokens_can_be_revoked,
    payload_urls_never_reach_internal_services,
    costly_queries_are_refused_before_they_run,
    graphql_bodies_are_limited_and_errors_coded
);

/// A server with short connection timeouts, to see them act.
async fn impatient_server() -> crate::support::Server {
    crate::support::Server::start_with(
        omnibox_store::testing::Backend::Sqlite,
        &[
            ("OMNIBOX_HTTP_HEADER_TIMEOUT_MS", "1000"),
            ("OMNIBOX_HTTP_REQUEST_TIMEOUT_MS", "2000"),
            ("OMNIBOX_WS_INIT_TIMEOUT_MS", "1000"),
        ],
    )
    .await
    .expect("sqlite")
}

/// Reads until the server closes the connection, at most `bound`; what it said.
async fn until_closed(stream: &mut tokio::net::TcpStream, bound: std::time::Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(bound, stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection in time")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Half-sent headers, idle keep-alive connections and slow bodies are cut
/// off; a WebSocket that never sends `connection_init` is closed with
/// 4408; a socket asking for too many subscriptions is closed with 4429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_disconnected() {
    use futures_util::SinkExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = impatient_server().await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let bound = std::time::Duration::from_secs(10);

    let mut half_headers = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    half_headers
        .write_all(b"POST /graphql HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    until_closed(&mut half_headers, bound).await;

    let mut idle = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = until_closed(&mut idle, bound).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut slow_body = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    slow_body
        .write_all(b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"query\"")
        .await
        .expect("write");
    let answer = until_closed(&mut slow_body, bound).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A WebSocket that never initialises.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url(),
        )
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(request.clone())
        .await
        .expect("connect");
    assert_eq!(crate::support::close_code(&mut silent).await, Some(4408));

    // Too many subscriptions on one socket.
    let owner = server.bootstrap("Cap Shop", "owner@example.com");
    let (mut greedy, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", owner.token) } });
    greedy
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("init");
    for n in 0..40 {
        let subscribe = json!({ "id": n.to_string(), "type": "subscribe", "payload": { "query": "subscription { inboxUpdates { id } }" } });
        if greedy
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(crate::support::close_code(&mut greedy).await, Some(4429));
}
