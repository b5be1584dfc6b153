//! What the live-update benchmarks share (`live`, `scaleout`): GraphQL
//! subscriptions over real WebSockets, and receipts of the messages posted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `base`'s `/graphql` (`http://host:port`) as `token`
/// and subscribes to `query` with `variables` (graphql-transport-ws).
pub async fn subscribe(base: &str, token: &str, query: &str, variables: Value) -> Socket {
    let url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    // The library zero-fills its read buffer before every read: its default
    // 128 KiB would make the clients, which share the server's two cores,
    // cost more than the server they measure.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
            .expect("connect");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("init");
    // A token the server does not accept closes the socket here instead.
    let ack = socket.next().await.expect("ack").expect("ack");
    let acked = match &ack {
        Message::Text(text) => {
            serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "connection_ack")
        }
        _ => false,
    };
    assert!(acked, "{base} refused the token: {ack:?}");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    socket
}

/// What a subscription message carries: `Ok` with its data, `Err` with its
/// errors (a RESYNC), `None` for a message that is not `next`.
pub fn next_payload(message: &Message) -> Option<Result<Value, Value>> {
    let Message::Text(text) = message else {
        return None;
    };
    let mut value: Value = serde_json::from_str(text).expect("json");
    match value["type"].as_str() {
        Some("next") if value["payload"]["errors"].is_array() => {
            Some(Err(value["payload"]["errors"].take()))
        }
        Some("next") => Some(Ok(value["payload"]["data"].take())),
        Some("error") => panic!("the subscription was refused: {value}"),
        _ => None,
    }
}

/// When each message was posted and when subscribers first saw it.
pub struct Receipts {
    /// Nanoseconds after `epoch` at which message `seq` was posted (0: not yet).
    pub posted: Vec<AtomicU64>,
    pub epoch: Instant,
    /// One per (message, subscriber) seen.
    pub latencies: Mutex<Vec<Duration>>,
    pub resyncs: AtomicU64,
    /// Subscribers that have seen at least one update.
    pub live: AtomicU64,
}

impl Receipts {
    /// Receipts for messages `0..messages`.
    pub fn new(messages: usize) -> Self {
        Self {
            posted: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            latencies: Mutex::default(),
            resyncs: AtomicU64::new(0),
            live: AtomicU64::new(0),
        }
    }

    /// Message `seq` is being posted now.
    pub fn posting(&self, seq: usize) {
        self.posted[seq].store(
            self.epoch.elapsed().as_nanos().max(1) as u64,
            Ordering::Release,
        );
    }
}

/// An agent's `inboxUpdates` on `base`, noting when each message (text
/// `bench <seq>`) first shows as a conversation's preview.
pub async fn receipt_subscriber(base: String, token: String, receipts: Arc<Receipts>) {
    let mut socket = subscribe(
        &base,
        &token,
        "subscription { inboxUpdates { id lastMessagePreview unreadCount } }",
        json!({}),
    )
    .await;
    let mut seen = HashSet::new();
    let mut first = true;
    while let Some(Ok(message)) = socket.next().await {
        let received = receipts.epoch.elapsed();
        let data = match next_payload(&message) {
            Some(Ok(data)) => data,
            Some(Err(_)) => {
                receipts.resyncs.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => continue,
        };
        if first {
            first = false;
            receipts.live.fetch_add(1, Ordering::Relaxed);
        }
        let Some(seq) = data["inboxUpdates"]["lastMessagePreview"]
            .as_str()
            .and_then(|p| p.strip_prefix("bench "))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let posted = receipts
            .posted
            .get(seq)
            .map_or(0, |p| p.load(Ordering::Acquire));
        if posted == 0 || !seen.insert(seq) {
            continue;
        }
        let latency = received.saturating_sub(Duration::from_nanos(posted));
        receipts.latencies.lock().expect("lock").push(latency);
    }
}

impl Receipts {
    /// Forgets what the warm-up saw.
    fn reset(&self) {
        self.latencies.lock().expect("lock").clear();
        self.resyncs.store(0, Ordering::Relaxed);
    }

    /// Waits until `expected` receipts are in, or none came for 5 s; the
    /// latencies seen, sorted.
    pub async fn collect(&self, expected: usize) -> Vec<Duration> {
        let waiting = Instant::now();
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.latencies.lock().expect("lock").len();
            if now >= expected || (now == last && waiting.elapsed() > Duration::from_secs(5)) {
                break;
            }
            last = now;
        }
        let mut latencies = self.latencies.lock().expect("lock").clone();
        latencies.sort();
        latencies
    }
}

/// Runs `round(0)`, `round(1)`, … every half second until each of
/// `subscribers` has heard something (subscriptions are not acknowledged),
/// for at most two minutes; then forgets what they saw.
pub async fn warm_up<Fut: std::future::Future<Output = ()>>(
    receipts: &Receipts,
    subscribers: u64,
    mut round: impl FnMut(usize) -> Fut,
) {
    let waiting = Instant::now();
    let mut k = 0;
    while receipts.live.load(Ordering::Relaxed) < subscribers {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "only {} of {subscribers} subscribers are live",
            receipts.live.load(Ordering::Relaxed)
        );
        round(k).await;
        k += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    receipts.reset();
}

/// Posts message `seq` for each of `seqs` at `rate` per second (open loop:
/// a slow answer does not delay the next post); how long posting took.
pub async fn open_loop<Fut>(
    rate: f64,
    seqs: std::ops::Range<usize>,
    post: impl Fn(usize) -> Fut,
) -> Duration
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(seqs.len());
    for seq in seqs {
        ticker.tick().await;
        sends.push(tokio::spawn(post(seq)));
    }
    for send in sends {
        send.await.expect("post");
    }
    started.elapsed()
}
