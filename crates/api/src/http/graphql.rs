//! `/graphql`: queries and mutations over POST, GraphiQL's page or a
//! subscription WebSocket over GET.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::Data;
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use omnibox_app::auth::authenticate;
use omnibox_app::AppError;

use super::bearer;
use crate::error::ApiError;
use crate::graphql::OmniboxSchema;
use crate::state::AppState;

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

/// WebSocket close code for a server going away (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;

/// What the `/graphql` route needs: the application and the schema.
#[derive(Clone)]
pub struct GraphqlRoute {
    pub app: AppState,
    pub schema: OmniboxSchema,
}

/// Queries and mutations. The bearer token, if any, becomes the session;
/// resolvers that need one answer UNAUTHENTICATED without it. The body is
/// refused over [`MAX_GRAPHQL_BODY`] (413) before it is read whole, whether
/// `Content-Length` says so or the stream runs over; a body that is not a
/// GraphQL request in JSON is answered with a `BAD_REQUEST` error.
pub async fn graphql_post(
    State(server): State<GraphqlRoute>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
                    error_to_server(error.into()),
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
pub async fn graphql_get(State(server): State<GraphqlRoute>, request: Request) -> Response {
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
        Err(_) => super::web::graphiql(),
    }
}

/// Who a socket acts as, once `connection_init` said: the member and the
/// token it sent.
type SignedIn = Arc<std::sync::Mutex<Option<(omnibox_domain::ids::MemberId, String)>>>;

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// One subscription connection. Authentication happens in
/// `connection_init`; a bad token closes the socket with 4403.
async fn subscriptions(socket: WebSocket, server: GraphqlRoute, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let over_cap = Arc::new(AtomicBool::new(false));
    let input = capped_input(stream, over_cap.clone());
    let refused = Arc::new(AtomicBool::new(false));
    // A change to the signed-in member (removed, token rotated) makes the
    // socket check its token again.
    let signed_in: SignedIn = Arc::default();
    let (db, flag, holder) = (server.app.db.clone(), refused.clone(), signed_in.clone());
    let on_init = move |payload| connection_init(db, flag, holder, payload);
    let output = async_graphql::http::WebSocket::new(server.schema.clone(), input, protocol)
        .on_connection_init(on_init)
        .keepalive_timeout(None);
    let app = server.app.clone();
    let _open = app.sockets.open();
    if !relay(&app, &mut sink, output, &refused, &signed_in).await {
        return;
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

/// The client's protocol messages. Subscriptions the client has open are
/// counted; past the cap the input ends and `over_cap` is set (the socket
/// is then closed with 4429).
fn capped_input(
    stream: futures_util::stream::SplitStream<WebSocket>,
    over_cap: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = Vec<u8>> {
    let active = Arc::new(std::sync::atomic::AtomicIsize::new(0));
    stream
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
            let open = active.fetch_add(step, Ordering::SeqCst) + step;
            let allowed = open <= MAX_SUBSCRIPTIONS_PER_SOCKET as isize;
            if !allowed {
                over_cap.store(true, Ordering::SeqCst);
            }
            std::future::ready(allowed)
        })
}

/// `connection_init`: the token in its payload becomes the session, and
/// the member is remembered in `signed_in`; without a valid one the
/// socket is `refused`.
async fn connection_init(
    db: omnibox_store::Database,
    refused: Arc<AtomicBool>,
    signed_in: SignedIn,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    let token = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str())
        .and_then(bearer);
    let session = match token {
        Some(token) => authenticate(&db, token).await,
        None => Err(AppError::Unauthenticated),
    };
    match session {
        Ok(session) => {
            if let Some(token) = token {
                *signed_in.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((session.member.id, token.to_owned()));
            }
            let mut data = Data::default();
            data.insert(session);
            Ok(data)
        }
        Err(error) => {
            refused.store(true, Ordering::SeqCst);
            Err(ApiError::from(error).into())
        }
    }
}

/// Sends the schema's messages to the client until they end (true), or
/// until the socket was closed here (false): no `connection_init` in time,
/// the member's token revoked, the server shutting down, or the client gone.
async fn relay(
    app: &AppState,
    sink: &mut Sink,
    mut output: impl futures_util::Stream<Item = WsMessage> + Unpin,
    refused: &AtomicBool,
    signed_in: &SignedIn,
) -> bool {
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
                close(sink, CLOSE_INIT_TIMEOUT, "Connection initialisation timeout").await;
                return false;
            }
            change = changes.recv() => {
                match still_signed_in(app, change, signed_in).await {
                    Some(true) => continue,
                    Some(false) => close(sink, CLOSE_FORBIDDEN, "the token was revoked").await,
                    None => {}
                }
                return false;
            }
            _ = app.stopping() => {
                close(sink, CLOSE_GOING_AWAY, "the server is shutting down").await;
                return false;
            }
        };
        let Some(message) = message else {
            return true;
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
            return false;
        }
    }
}

/// After a member change: whether the socket's member still holds its
/// token (true when the change concerns someone else); `None` when the
/// change feed is gone.
async fn still_signed_in(
    app: &AppState,
    change: Result<omnibox_domain::ids::MemberId, tokio::sync::broadcast::error::RecvError>,
    signed_in: &SignedIn,
) -> Option<bool> {
    use tokio::sync::broadcast::error::RecvError;
    let signed_in = signed_in.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let concerns_us = match (&change, &signed_in) {
        (Ok(changed), Some((member, _))) => changed == member,
        // Missed changes: check anyway.
        (Err(RecvError::Lagged(_)), Some(_)) => true,
        (Err(RecvError::Closed), _) => return None,
        (_, None) => false,
    };
    if let (true, Some((_, token))) = (concerns_us, signed_in) {
        if matches!(
            authenticate(&app.db, &token).await,
            Err(AppError::Unauthenticated)
        ) {
            return Some(false);
        }
    }
    Some(true)
}

/// Sends a close frame (best effort: the client may be gone).
async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}
