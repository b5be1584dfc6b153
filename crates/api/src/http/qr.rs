//! QR code images, public by unguessable id.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use omnibox_app::commands::load;
use omnibox_app::services::qr::png;
use omnibox_domain::qr::QrCode;
use uuid::Uuid;

use crate::state::AppState;

/// `GET /qr/{codeId}.png`: public, by unguessable id; 404 for a revoked or
/// unknown code.
pub async fn serve_png(State(app): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(id) = file
        .strip_suffix(".png")
        .and_then(|id| Uuid::parse_str(id).ok())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let code = match load::<QrCode>(&*app.store, id).await {
        Ok((code, _)) => code,
        Err(error) => {
            tracing::error!(?error, "QR code lookup failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    if !code.live() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match png(&code.line_url) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
