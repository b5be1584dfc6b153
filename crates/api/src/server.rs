//! The HTTP server, top to bottom: routes, layers, and the life of a request.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::graphql::schema;
use crate::http::graphql::{graphql_get, graphql_post, GraphqlRoute, MAX_GRAPHQL_BODY};
use crate::http::metrics::track_requests;
use crate::http::{erasure, health, media, metrics, qr, web, webhooks};
use crate::state::{AppState, OpenSockets};

/// Every route, behind the metrics layer.
pub fn router(app: AppState) -> Router {
    let graphql = Router::new()
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .layer(DefaultBodyLimit::max(MAX_GRAPHQL_BODY)),
        )
        .with_state(GraphqlRoute {
            schema: schema(Some(app.clone())),
            app: app.clone(),
        });
    let webhooks = Router::new()
        .route(
            "/webhooks/facebook",
            get(webhooks::facebook_verify).post(webhooks::facebook_receive),
        )
        .route("/webhooks/line/{channel_id}", post(webhooks::line_receive))
        .route(
            "/webhooks/facebook/data-deletion",
            post(erasure::facebook_data_deletion),
        )
        .route("/data-deletion/{code}", get(erasure::deletion_status))
        .route("/media/{message_id}/{index}", get(media::serve_media))
        .route("/qr/{file}", get(qr::serve_png))
        .layer(DefaultBodyLimit::max(webhooks::MAX_WEBHOOK_BODY))
        .with_state(app.clone());
    Router::new()
        .route("/", get(web::inbox))
        .route("/assets/inbox.js", get(web::inbox_js))
        .route("/assets/inbox.css", get(web::inbox_css))
        .route("/assets/graphiql/{file}", get(web::graphiql_asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .with_state(app.clone())
        .merge(graphql)
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
/// How long shutdown waits for requests in flight.
const REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router(app)` on `listener` until `shutdown` resolves (or
/// [`omnibox_app::AppContext::shut_down`] is called): then it takes no new connections,
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
