//! A local HTTP server playing the Facebook Graph API and the LINE API, with
//! answers taken from the fixtures. Tests register pages, bots and tokens,
//! and read back every request it received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub retry_key: Option<String>,
    pub body: Bytes,
}

#[derive(Default)]
struct World {
    /// page id → (name, the one token that works for it)
    pages: HashMap<String, (String, String)>,
    /// LINE token → bot user id
    bots: HashMap<String, String>,
    requests: Vec<Recorded>,
    /// Scripted answers for send calls, taken in order; success when empty.
    send_script: std::collections::VecDeque<(StatusCode, Value)>,
    /// LINE retry keys already accepted.
    accepted_retry_keys: std::collections::HashSet<String>,
    /// How long send calls take to answer (a slow platform).
    send_delay: std::time::Duration,
    /// Messages the platform actually took (each accepted send call).
    delivered: usize,
    /// What the customers saw, in the order the platform took it: the text
    /// of each message (or `<attachment>`).
    customer_side: Vec<String>,
    /// LINE reply tokens already used (LINE accepts each once).
    used_reply_tokens: std::collections::HashSet<String>,
    /// Delays for the next send calls, taken in order before `send_delay`.
    delay_script: std::collections::VecDeque<std::time::Duration>,
    /// The next this many send calls are taken, then their connection is
    /// dropped before the answer's body arrives.
    drop_next: usize,
}

#[derive(Clone, Default)]
pub struct Platform {
    world: Arc<Mutex<World>>,
    pub url: String,
}

fn fixture(path: &str) -> Value {
    let bytes =
        std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
    serde_json::from_slice(&bytes).expect("fixture JSON")
}

impl Platform {
    pub async fn start() -> Self {
        let mut platform = Platform::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        platform.url = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new()
            .route("/v2/bot/info", get(bot_info))
            .route("/v2/bot/profile/{user_id}", get(line_profile))
            .route("/v2/bot/message/{message_id}/content", get(line_content))
            .route("/cdn/{file}", get(cdn))
            .route("/redirect", get(redirect))
            .route("/{page_id}/messages", post(facebook_send))
            .route("/v2/bot/message/reply", post(line_send))
            .route("/v2/bot/message/push", post(line_send))
            .route("/{page_id}", get(page))
            .route(
                "/{page_id}/subscribed_apps",
                post(subscription).delete(subscription),
            )
            .with_state(platform.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        platform
    }

    pub fn add_page(&self, page_id: &str, name: &str, token: &str) {
        self.world()
            .pages
            .insert(page_id.into(), (name.into(), token.into()));
    }

    pub fn add_bot(&self, token: &str, user_id: &str) {
        self.world().bots.insert(token.into(), user_id.into());
    }

    /// The next send calls (Facebook Send API, LINE reply/push) answer these, in order.
    pub fn script_sends(&self, answers: Vec<(u16, Value)>) {
        let mut world = self.world();
        for (status, body) in answers {
            world
                .send_script
                .push_back((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body));
        }
    }

    /// Send calls answer only after `delay` (the work is done at once: a
    /// caller that stops waiting has still sent).
    pub fn delay_sends(&self, delay: std::time::Duration) {
        self.world().send_delay = delay;
    }

    /// The next send calls take these delays, in order (then `delay_sends`'s).
    pub fn script_delays(&self, delays: Vec<std::time::Duration>) {
        self.world().delay_script.extend(delays);
    }

    /// The next `n` send calls deliver, then drop the connection mid-answer.
    pub fn drop_sends(&self, n: usize) {
        self.world().drop_next = n;
    }

    /// Every message text the customers received, in order.
    pub fn customer_side(&self) -> Vec<String> {
        self.world().customer_side.clone()
    }

    /// How many messages the platform took.
    pub fn delivered(&self) -> usize {
        self.world().delivered
    }

    /// Requests to paths ending with `suffix`, as JSON bodies.
    pub fn sent(&self, suffix: &str) -> Vec<(Recorded, Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix) && r.method == Method::POST)
            .map(|r| {
                let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (r, body)
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.world().requests.clone()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        _body: Bytes,
    ) -> Option<String> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.world().requests.push(Recorded {
            method,
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            authorization: authorization.clone(),
            retry_key: headers
                .get("x-line-retry-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: _body,
        });
        authorization.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
    }

    fn page_token_ok(&self, page_id: &str, token: Option<&str>) -> Option<String> {
        let world = self.world();
        let (name, good) = world.pages.get(page_id)?;
        (Some(good.as_str()) == token).then(|| name.clone())
    }
}

/// Graph's answer to a token it does not accept: OAuth error 190.
fn token_rejected() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(fixture("facebook/error_token_expired.json")),
    )
        .into_response()
}

async fn page(
    State(platform): State<Platform>,
    Path(page_id): Path<String>,
    Query(_query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = platform.record(method, &uri, &headers, body);
    if let Some(name) = platform.page_token_ok(&page_id, token.as_deref()) {
        return axum::Json(json!({ "id": page_id, "name": name })).into_response();
    }
    // Not a page: a customer's PSID, for the User Profile API.
    let any_page_token = platform
        .world()
        .pages
        .values()
        .any(|(_, good)| Some(good) == token.as_ref());
    if any_page_token {
        let mut profile = fixture("facebook/user_profile.json");
        profile["id"] = json!(page_id);
        return axum::Json(profile).into_response();
    }
    token_rejected()
}

async fn line_profile(
    State(platform): State<Platform>,
    Path(user_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    platform.record(method, &uri, &headers, body);
    let profile = fixture("line/profile.json");
    if profile["userId"] == user_id.as_str() {
        axum::Json(profile).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "message": "Not found" })),
        )
            .into_response()
    }
}

/// LINE prepares content: the first request for a message answers 202, the next ones the bytes.
async fn line_content(
    State(platform): State<Platform>,
    Path(message_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    platform.record(method, &uri, &headers, body);
    let asked_before = platform
        .requests()
        .iter()
        .filter(|r| r.path == format!("/v2/bot/message/{message_id}/content"))
        .count()
        > 1;
    if asked_before {
        (
            [("content-type", "image/jpeg")],
            format!("line-image-bytes-{message_id}"),
        )
            .into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    }
}

/// A CDN: `missing-*` files are gone (expired), others are served.
async fn cdn(
    State(platform): State<Platform>,
    Path(file): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    platform.record(method, &uri, &headers, body);
    if file.starts_with("missing") {
        StatusCode::FORBIDDEN.into_response()
    } else {
        let content_type = if file.ends_with(".html") {
            "text/html"
        } else {
            "image/png"
        };
        (
            [("content-type", content_type)],
            format!("cdn-bytes-{file}"),
        )
            .into_response()
    }
}

/// A redirect to `?to=`, as a CDN or a tenant's server might answer.
async fn redirect(
    State(platform): State<Platform>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    platform.record(method, &uri, &headers, body);
    let to = query.get("to").cloned().unwrap_or_default();
    (StatusCode::FOUND, [("location", to)]).into_response()
}

async fn subscription(
    State(platform): State<Platform>,
    Path(page_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = platform.record(method, &uri, &headers, body);
    match platform.page_token_ok(&page_id, token.as_deref()) {
        Some(_) => axum::Json(json!({ "success": true })).into_response(),
        None => token_rejected(),
    }
}

async fn bot_info(
    State(platform): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = platform.record(method, &uri, &headers, body);
    let user_id = token.and_then(|t| platform.world().bots.get(&t).cloned());
    match user_id {
        Some(user_id) => axum::Json(json!({
            "userId": user_id,
            "basicId": "@siamshop",
            "displayName": "Siam Shop",
            "chatMode": "chat",
            "markAsReadMode": "manual"
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "Authentication failed. Confirm that the access token in the authorization header is valid." })),
        )
            .into_response(),
    }
}

/// Whether this call's answer is to be cut off (the message was taken).
fn take_drop(platform: &Platform) -> bool {
    let mut world = platform.world();
    if world.drop_next == 0 {
        return false;
    }
    world.drop_next -= 1;
    true
}

/// Headers promising a body that never comes: the connection ends mid-answer.
fn dropped() -> Response {
    let body = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
    });
    let mut response = axum::body::Body::from_stream(body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    response
        .headers_mut()
        .insert("content-length", "64".parse().expect("header"));
    response
}

fn next_scripted(platform: &Platform) -> Option<(StatusCode, Value)> {
    platform.world().send_script.pop_front()
}

async fn facebook_send(
    State(platform): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    platform.record(method, &uri, &headers, body);
    if let Some((status, body)) = next_scripted(&platform) {
        return (status, axum::Json(body)).into_response();
    }
    let delay = {
        let mut world = platform.world();
        world.delivered += 1;
        let text = sent["message"]["text"].as_str().unwrap_or("<attachment>");
        world.customer_side.push(text.to_owned());
        world.delay_script.pop_front().unwrap_or(world.send_delay)
    };
    // The message is taken before the answer: a caller that stops waiting has sent.
    tokio::time::sleep(delay).await;
    if take_drop(&platform) {
        return dropped();
    }
    let mut answer = fixture("facebook/send_success.json");
    answer["message_id"] = json!(format!("m_{}", uuid::Uuid::new_v4().simple()));
    axum::Json(answer).into_response()
}

async fn line_send(
    State(platform): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    platform.record(method, &uri, &headers, body);
    let retry_key = headers
        .get("x-line-retry-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &retry_key {
        if platform.world().accepted_retry_keys.contains(key) {
            return (
                StatusCode::CONFLICT,
                axum::Json(fixture("line/push_error_409_retry_key.json")),
            )
                .into_response();
        }
    }
    if let Some(token) = sent["replyToken"].as_str() {
        if platform.world().used_reply_tokens.contains(token) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "message": "Invalid reply token" })),
            )
                .into_response();
        }
    }
    if let Some((status, body)) = next_scripted(&platform) {
        return (status, axum::Json(body)).into_response();
    }
    let delay = {
        let mut world = platform.world();
        if let Some(key) = retry_key {
            world.accepted_retry_keys.insert(key);
        }
        world.delivered += 1;
        if let Some(token) = sent["replyToken"].as_str() {
            world.used_reply_tokens.insert(token.to_owned());
        }
        for message in sent["messages"].as_array().into_iter().flatten() {
            let text = message["text"].as_str().unwrap_or("<attachment>");
            world.customer_side.push(text.to_owned());
        }
        world.delay_script.pop_front().unwrap_or(world.send_delay)
    };
    tokio::time::sleep(delay).await;
    if take_drop(&platform) {
        return dropped();
    }
    axum::Json(fixture("line/push_success.json")).into_response()
}
