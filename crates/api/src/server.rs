//! The HTTP server, top to bottom: routes, layers, and the life of a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::Data;
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use futures_util::{SinkExt, StreamExt};

use omnibox_projections::RunnerStatus;

use crate::auth::{authenticate, bearer};
use crate::graphql::{schema, OmniboxSchema};
use crate::metrics::track_requests;
use crate::{media, webhooks, ApiError, AppState};

/// Read buffer of one subscription WebSocket (see where it is set).
const WS_READ_BUFFER: usize = 4 * 1024;
/// The largest message a subscription client may send: a subscribe with
/// its query and variables.
const WS_MAX_MESSAGE: usize = 1024 * 1024;

/// Close code for a WebSocket that sent no `connection_init` in time
/// (graphql-transport-ws).
const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code for a WebSocket that asked for more subscriptions than allowed.
const CLOSE_TOO_MANY_SUBSCRIPTIONS: u16 = 4429;
/// Subscriptions one WebSocket may hold open at once.
pub const MAX_SUBSCRIPTIONS_PER_SOCKET: usize = 32;

/// The `type` of a client's protocol message, if it has one.
fn client_message_kind(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Kind>(bytes).ok().map(|k| k.kind)
}

/// The largest `/graphql` request body.
pub const MAX_GRAPHQL_BODY: usize = 1024 * 1024;

/// Close code for a WebSocket whose `connection_init` carried no valid token.
const CLOSE_FORBIDDEN: u16 = 4403;

#[derive(Clone)]
struct Server {
    app: AppState,
    schema: OmniboxSchema,
}

/// Every route, behind the metrics layer.
pub fn router(app: AppState) -> Router {
    let server = Server {
        schema: schema(Some(app.clone())),
        app: app.clone(),
    };
    let webhooks = Router::new()
        .route(
            "/webhooks/facebook",
            get(webhooks::facebook_verify).post(webhooks::facebook_receive),
        )
        .route("/webhooks/line/{channel_id}", post(webhooks::line_receive))
        .route(
            "/webhooks/facebook/data-deletion",
            post(crate::erasure::facebook_data_deletion),
        )
        .route(
            "/data-deletion/{code}",
            get(crate::erasure::deletion_status),
        )
        .route("/media/{message_id}/{index}", get(media::serve_media))
        .route("/qr/{file}", get(crate::qr::serve_png))
        .layer(DefaultBodyLimit::max(webhooks::MAX_WEBHOOK_BODY))
        .with_state(app.clone());
    Router::new()
        .route("/", get(crate::web::inbox))
        .route("/assets/inbox.js", get(crate::web::inbox_js))
        .route("/assets/inbox.css", get(crate::web::inbox_css))
        .route("/assets/graphiql/{file}", get(crate::web::graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .layer(DefaultBodyLimit::max(MAX_GRAPHQL_BODY)),
        )
        .with_state(server)
        .merge(webhooks)
        .layer(middleware::from_fn_with_state(
            app.config.request_timeout,
            request_deadline,
        ))
        .layer(middleware::from_fn_with_state(
            app.metrics.clone(),
            track_requests,
        ))
}

/// How long shutdown waits for WebSockets to send their close frames.
const SOCKET_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// WebSocket close code for a server going away (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;

/// How long shutdown waits for requests in flight.
const REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router(app)` on `listener` until `shutdown` resolves (or
/// [`AppState::shut_down`] is called): then it takes no new connections,
/// finishes the requests in flight (a webhook being received is stored and
/// answered), and closes every subscription WebSocket with a close frame.
///
/// Each connection must send a request's headers within the header timeout
/// (an idle keep-alive connection is closed after it too), and each request
/// must be done within the request timeout, body included (408), so slow
/// or silent clients cannot hold connections open.
pub async fn serve(
    app: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app.clone());
    let stopping = app.clone();
    let signal = async move {
        tokio::select! {
            _ = shutdown => stopping.shut_down(),
            _ = stopping.stopping() => {}
        }
    };
    tokio::pin!(signal);
    let connections = Arc::new(OpenSockets::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = http
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let (app, connections) = (app.clone(), connections.clone());
        tokio::spawn(async move {
            let _open = connections.open();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = app.stopping() => {
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    connections.closed(REQUEST_GRACE).await;
    app.sockets.closed(SOCKET_CLOSE_GRACE).await;
    Ok(())
}

/// Answers 408 when a request (its body included) takes longer than the
/// configured request timeout. WebSockets are not affected: their upgrade
/// answers at once and the socket lives on its own task.
async fn request_deadline(
    State(limit): State<std::time::Duration>,
    request: Request,
    next: middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long (its body arrived too slowly, or it asked for too much work)",
        )
            .into_response(),
    }
}

/// Counts open connections or subscription WebSockets; shutdown waits
/// until they closed.
#[derive(Default)]
pub struct OpenSockets {
    open: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

struct SocketGuard<'a>(&'a OpenSockets);

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl OpenSockets {
    /// How many subscription WebSockets are open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn open(&self) -> SocketGuard<'_> {
        self.open.fetch_add(1, Ordering::SeqCst);
        SocketGuard(self)
    }

    /// Waits until no socket is open, at most `grace`.
    async fn closed(&self, grace: std::time::Duration) {
        let _ = tokio::time::timeout(grace, async {
            loop {
                let changed = self.changed.notified();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

/// 200 when the event store answers, 503 when it does not.
async fn healthz(State(server): State<Server>) -> Response {
    match server.app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable\n").into_response()
        }
    }
}

/// 200 when the event store answers and every projector is following the
/// log at its end; 503 with a JSON reason otherwise (catching up, retrying
/// after a failure, or stopped by an event it cannot apply).
async fn readyz(State(server): State<Server>) -> Response {
    let mut problems = Vec::new();
    if let Err(error) = server.app.store.ping().await {
        problems.push(serde_json::json!({ "component": "event store", "state": "UNAVAILABLE", "reason": error.to_string() }));
    }
    for runner in server.app.projections.runners() {
        let (state, reason) = match runner.status() {
            RunnerStatus::Live => continue,
            RunnerStatus::CatchingUp => ("CATCHING_UP", None),
            RunnerStatus::Retrying { reason } => ("RETRYING", Some(reason)),
            RunnerStatus::Stopped { reason } => ("STOPPED", Some(reason)),
        };
        problems.push(serde_json::json!({ "component": format!("projection {}", runner.name()), "state": state, "reason": reason }));
    }
    let (status, ready) = if problems.is_empty() {
        (StatusCode::OK, true)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, false)
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": ready, "problems": problems })),
    )
        .into_response()
}

/// The most events counted behind a projector at one scrape.
const MAX_COUNTED_LAG: usize = 10_000;

/// `GET /metrics`: Prometheus's classic text format, or OpenMetrics when
/// the scraper asks for it (`Accept: application/openmetrics-text`).
async fn metrics(State(server): State<Server>, headers: axum::http::HeaderMap) -> Response {
    let app = &server.app;
    let runners = app.projections.runners();
    for runner in runners {
        let running = !matches!(
            runner.status(),
            RunnerStatus::Retrying { .. } | RunnerStatus::Stopped { .. }
        );
        app.metrics.projection_running(runner.name(), running);
    }
    // Lag: the log's events after each projector's position, read once
    // from the furthest behind.
    let positions: Vec<_> = runners
        .iter()
        .map(|r| (r.name(), *r.position().borrow()))
        .collect();
    if let Some(oldest) = positions.iter().map(|(_, p)| *p).min() {
        if let Ok(ahead) = app.store.read_all(Some(oldest), MAX_COUNTED_LAG).await {
            for (name, position) in &positions {
                let behind = ahead.iter().filter(|e| e.position > *position).count();
                app.metrics
                    .projection_lag
                    .get_or_create(&vec![("projection", (*name).to_owned())])
                    .set(behind as i64);
            }
        }
    }
    if let Ok(depth) = omnibox_projections::inbox::delivery_queue_depth(&app.db).await {
        app.metrics.delivery_queue.set(depth);
    }
    app.metrics
        .websocket_subscribers
        .set(i64::try_from(app.sockets.count()).unwrap_or(i64::MAX));
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            app.metrics.render(),
        )
            .into_response()
    } else {
        (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            app.metrics.render_classic(),
        )
            .into_response()
    }
}

/// Queries and mutations. The bearer token, if any, becomes the session;
/// resolvers that need one answer UNAUTHENTICATED without it. The body is
/// refused over [`MAX_GRAPHQL_BODY`] (413) before it is read whole, whether
/// `Content-Length` says so or the stream runs over; a body that is not a
/// GraphQL request in JSON is answered with a `BAD_REQUEST` error.
async fn graphql_post(State(server): State<Server>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) => request,
        Err(error) => {
            let error = crate::graphql::guard::bad_request(format!(
                "the body is not one GraphQL request in JSON ({error}); batches are not accepted"
            ));
            return GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]))
                .into_response();
        }
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let request = match token {
        Some(token) => match authenticate(&server.app.db, token).await {
            Ok(session) => request.data(session),
            Err(error) => {
                return GraphQLResponse::from(async_graphql::Response::from_errors(vec![
                    error_to_server(error),
                ]))
                .into_response()
            }
        },
        None => request,
    };
    GraphQLResponse::from(server.schema.execute(request).await).into_response()
}

fn error_to_server(error: ApiError) -> async_graphql::ServerError {
    let error: async_graphql::Error = error.into();
    let mut error = error.into_server_error(async_graphql::Pos::default());
    // The error is about the request, not a place in the query.
    error.locations.clear();
    error
}

/// GraphiQL for a browser, or a WebSocket for subscriptions.
async fn graphql_get(State(server): State<Server>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let protocol = parts
        .headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        });
    match WebSocketUpgrade::from_request_parts(&mut parts, &server).await {
        Ok(upgrade) => {
            let Some(protocol) = protocol else {
                return (
                    StatusCode::BAD_REQUEST,
                    "offer the graphql-transport-ws or graphql-ws subprotocol",
                )
                    .into_response();
            };
            upgrade
                .protocols(["graphql-transport-ws", "graphql-ws"])
                // Clients send a few small messages (init, subscribe, ping).
                // The WebSocket library zero-fills its read buffer before
                // every read, so its default of 128 KiB cost a 128 KiB memset
                // per wake-up of every connection: a fifth of all CPU with
                // 1,000 subscribers.
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(WS_MAX_MESSAGE)
                .on_upgrade(move |socket| subscriptions(socket, server, protocol))
        }
        Err(_) => crate::web::graphiql(),
    }
}

/// One subscription connection. Authentication happens in
/// `connection_init`; a bad token closes the socket with 4403.
async fn subscriptions(socket: WebSocket, server: Server, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    // Subscriptions the client has open; past the cap the input ends, and
    // the socket is closed with 4429.
    let active = Arc::new(std::sync::atomic::AtomicIsize::new(0));
    let over_cap = Arc::new(AtomicBool::new(false));
    let (counting, flagging) = (active.clone(), over_cap.clone());
    let input = stream
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        })
        .take_while(move |bytes| {
            let step = match client_message_kind(bytes).as_deref() {
                Some("subscribe" | "start") => 1,
                Some("complete" | "stop") => -1,
                _ => 0,
            };
            let open = counting.fetch_add(step, Ordering::SeqCst) + step;
            let allowed = open <= MAX_SUBSCRIPTIONS_PER_SOCKET as isize;
            if !allowed {
                flagging.store(true, Ordering::SeqCst);
            }
            std::future::ready(allowed)
        });
    let refused = Arc::new(AtomicBool::new(false));
    let db = server.app.db.clone();
    let flag = refused.clone();
    // Who the socket acts as, once `connection_init` said: a change to that
    // member (removed, token rotated) makes the socket check its token again.
    let signed_in: Arc<std::sync::Mutex<Option<(omnibox_domain::ids::MemberId, String)>>> =
        Arc::default();
    let holder = signed_in.clone();
    let on_init = move |payload: serde_json::Value| async move {
        let token = payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(|v| v.as_str())
            .and_then(bearer);
        let session = match token {
            Some(token) => authenticate(&db, token).await,
            None => Err(ApiError::Unauthenticated),
        };
        match session {
            Ok(session) => {
                if let Some(token) = token {
                    *holder.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((session.member.id, token.to_owned()));
                }
                let mut data = Data::default();
                data.insert(session);
                Ok(data)
            }
            Err(error) => {
                flag.store(true, Ordering::SeqCst);
                Err(error.into())
            }
        }
    };
    let mut output = async_graphql::http::WebSocket::new(server.schema.clone(), input, protocol)
        .on_connection_init(on_init)
        .keepalive_timeout(None);
    let app = server.app.clone();
    let _open = app.sockets.open();
    let mut changes = app.member_changes.subscribe();
    let init_deadline = tokio::time::sleep(app.config.websocket_init_timeout);
    tokio::pin!(init_deadline);
    let initialised = || {
        refused.load(Ordering::SeqCst)
            || signed_in
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    };
    loop {
        let waiting_for_init = !initialised();
        let message = tokio::select! {
            message = output.next() => message,
            _ = &mut init_deadline, if waiting_for_init => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CLOSE_INIT_TIMEOUT,
                        reason: "Connection initialisation timeout".into(),
                    })))
                    .await;
                return;
            }
            change = changes.recv() => {
                use tokio::sync::broadcast::error::RecvError;
                let signed_in = signed_in.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let concerns_us = match (&change, &signed_in) {
                    (Ok(changed), Some((member, _))) => changed == member,
                    // Missed changes: check anyway.
                    (Err(RecvError::Lagged(_)), Some(_)) => true,
                    (Err(RecvError::Closed), _) => return,
                    (_, None) => false,
                };
                if let (true, Some((_, token))) = (concerns_us, signed_in) {
                    if matches!(authenticate(&app.db, &token).await, Err(ApiError::Unauthenticated)) {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code: CLOSE_FORBIDDEN,
                                reason: "the token was revoked".into(),
                            })))
                            .await;
                        return;
                    }
                }
                continue;
            }
            _ = app.stopping() => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CLOSE_GOING_AWAY,
                        reason: "the server is shutting down".into(),
                    })))
                    .await;
                return;
            }
        };
        let Some(message) = message else {
            break;
        };
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                let code = if refused.load(Ordering::SeqCst) {
                    CLOSE_FORBIDDEN
                } else {
                    code
                };
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))
            }
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    if over_cap.load(Ordering::SeqCst) {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CLOSE_TOO_MANY_SUBSCRIPTIONS,
                reason: format!("at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket")
                    .into(),
            })))
            .await;
        return;
    }
    if refused.load(Ordering::SeqCst) {
        // The legacy protocol answers a refused init with an error message
        // only; close the socket so the client is not left waiting.
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CLOSE_FORBIDDEN,
                reason: "Forbidden".into(),
            })))
            .await;
    }
}
