//! `GET /healthz` and `GET /readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use omnibox_projections::RunnerStatus;

use crate::state::AppState;

/// 200 when the event store answers, 503 when it does not.
pub async fn healthz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
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
pub async fn readyz(State(app): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if let Err(error) = app.store.ping().await {
        problems.push(serde_json::json!({ "component": "event store", "state": "UNAVAILABLE", "reason": error.to_string() }));
    }
    for runner in app.projections.runners() {
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
