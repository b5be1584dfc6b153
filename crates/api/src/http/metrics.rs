//! `GET /metrics`, and the middleware that counts every request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use omnibox_app::metrics::Metrics;
use omnibox_projections::RunnerStatus;

use crate::state::AppState;

/// Counts and times every request by its route template (not its raw path,
/// which would make one series per id).
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Any other method would be a new label value per request.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics.http_request(method, route, status, started.elapsed().as_secs_f64());
    response
}

/// The most events counted behind a projector at one scrape.
const MAX_COUNTED_LAG: usize = 10_000;

/// `GET /metrics`: Prometheus's classic text format, or OpenMetrics when
/// the scraper asks for it (`Accept: application/openmetrics-text`).
pub async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
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
