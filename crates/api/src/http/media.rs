//! `GET /media/{messageId}/{index}`: stored attachments, to members of
//! their organization.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use omnibox_app::auth::authenticate;
use omnibox_projections::inbox as read;
use uuid::Uuid;

use super::bearer;
use crate::state::AppState;

/// Media types a browser may show in place: pictures, video and sound of
/// the kinds the platforms send.
fn shown_inline(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "video/mp4"
            | "video/quicktime"
            | "audio/mpeg"
            | "audio/mp4"
            | "audio/aac"
            | "audio/x-m4a"
    )
}

/// `GET /media/{messageId}/{index}`: a stored attachment, to members of its
/// organization (bearer token); 404 for anything else.
pub async fn serve_media(
    State(app): State<AppState>,
    Path((message_id, index)): Path<(String, u32)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    };
    let Ok(session) = authenticate(&app.db, token).await else {
        return (StatusCode::UNAUTHORIZED, "a valid bearer token is required").into_response();
    };
    let Ok(message_id) = Uuid::parse_str(&message_id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let media = match read::media(&app.db, session.member.org_id, message_id).await {
        Ok(media) => media,
        Err(error) => {
            tracing::error!(%error, "media lookup failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some((key, content_type)) = media
        .into_iter()
        .find(|m| m.index == index && m.state == "STORED")
        .and_then(|m| m.storage_key.map(|k| (k, m.content_type)))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match app.media.get(&key).await {
        Ok(Some(bytes)) => {
            let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
            // The type came from a platform's (or a tenant's) server: never
            // let a browser sniff another, and show inline only the media
            // types a chat shows; anything else (HTML, SVG, PDF, …) downloads.
            let disposition = if shown_inline(&content_type) {
                "inline"
            } else {
                "attachment"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition.to_owned()),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(%error, "media store read failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
