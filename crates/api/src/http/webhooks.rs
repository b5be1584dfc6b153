//! The platforms' webhooks: verify, parse, store (`omnibox_app::inbound`),
//! then answer.
//!
//! A webhook is answered 200 only after its events are durably appended (the
//! store answers after the commit). A bad signature is 401 and nothing is
//! stored; an unreadable body 400; a page or channel no organization has
//! connected (or one that is disconnected) 200 with nothing stored, counted
//! in /metrics, so the platform does not retry for ever. Whether a target is
//! connected is decided from the log ([`omnibox_app::directory`]), never from a
//! read model a rebuild may have emptied; when it cannot be decided the
//! answer is 503 and the platform retries. Many concurrent webhooks share
//! group commits.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use omnibox_app::inbound::{facebook_events, line_events, Append, Stored};
use omnibox_domain::ids::ChannelId;
use omnibox_domain::ChannelKind;
use omnibox_platforms::{
    facebook, facebook_handshake, line, verify_facebook_signature, verify_line_signature,
};
use uuid::Uuid;

use crate::state::AppState;

/// Larger bodies are refused with 413 before they are read.
pub const MAX_WEBHOOK_BODY: usize = 4 * 1024 * 1024;

#[derive(serde::Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/facebook`: Meta's subscription handshake.
pub async fn facebook_verify(
    State(app): State<AppState>,
    Query(query): Query<Handshake>,
) -> Response {
    let Some(expected) = app.config.facebook_verify_token.as_deref() else {
        tracing::warn!(
            "Facebook verification attempted but OMNIBOX_FACEBOOK_VERIFY_TOKEN is not set"
        );
        return StatusCode::FORBIDDEN.into_response();
    };
    match facebook_handshake(
        query.mode.as_deref(),
        query.verify_token.as_deref(),
        query.challenge.as_deref(),
        expected,
    ) {
        Ok(challenge) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Err(error) => (StatusCode::FORBIDDEN, error.to_string()).into_response(),
    }
}

/// `POST /webhooks/facebook`.
pub async fn facebook_receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = app.config.facebook_app_secret.as_deref() else {
        tracing::error!(
            "a Facebook webhook arrived but OMNIBOX_FACEBOOK_APP_SECRET is not set; refusing it"
        );
        return (
            StatusCode::UNAUTHORIZED,
            "webhook signatures cannot be checked",
        )
            .into_response();
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(error) = verify_facebook_signature(secret.as_bytes(), signature, &body) {
        return rejected(
            &app,
            "facebook",
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            error,
        );
    }
    let events = match facebook::parse_webhook(&body) {
        Ok(events) => events,
        Err(error) => {
            return rejected(
                &app,
                "facebook",
                "malformed",
                StatusCode::BAD_REQUEST,
                error,
            )
        }
    };
    let correlation = Uuid::now_v7();
    let mut by_page: Vec<(String, Vec<facebook::Event>)> = Vec::new();
    for event in events {
        match by_page.iter_mut().find(|(page, _)| *page == event.page_id) {
            Some((_, page_events)) => page_events.push(event),
            None => by_page.push((event.page_id.clone(), vec![event])),
        }
    }
    let mut appends = Vec::new();
    let mut channels = Vec::new();
    for (page, page_events) in by_page {
        match app.directory.by_page(&*app.store, &page).await {
            Ok(Some(channel)) if channel.receives() => {
                channels.push(channel.id.to_string());
                appends.extend(facebook_events(&channel, page_events, correlation))
            }
            Ok(_) => {
                tracing::info!(%page, "webhook for a page no organization has connected; dropped");
                app.metrics.webhook_for_unknown_target("facebook");
                app.metrics.webhook("facebook", "unknown_target");
            }
            Err(error) => return unavailable(&app, "facebook", error),
        }
    }
    store(&app, "facebook", &channels.join(","), appends).await
}

/// `POST /webhooks/line/{channelId}`.
pub async fn line_receive(
    State(app): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unknown = || {
        tracing::info!(channel = %channel_id, "LINE webhook for no connected channel; dropped");
        app.metrics.webhook_for_unknown_target("line");
        app.metrics.webhook("line", "unknown_target");
        StatusCode::OK.into_response()
    };
    let Ok(id) = Uuid::parse_str(&channel_id) else {
        return unknown();
    };
    let channel = match app.directory.by_id(&*app.store, ChannelId(id)).await {
        Ok(Some(channel)) if channel.kind == ChannelKind::Line => channel,
        Ok(_) => return unknown(),
        Err(error) => return unavailable(&app, "line", error),
    };
    let Some(secret_id) = channel.channel_secret() else {
        return unknown();
    };
    let secret = match app.secrets.get(secret_id).await {
        Ok(secret) => secret,
        Err(error) => return unavailable(&app, "line", error),
    };
    let signature = headers
        .get("x-line-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(error) = verify_line_signature(secret.expose().as_bytes(), signature, &body) {
        return rejected(
            &app,
            "line",
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            error,
        );
    }
    let webhook = match line::parse_webhook(&body) {
        Ok(webhook) => webhook,
        Err(error) => return rejected(&app, "line", "malformed", StatusCode::BAD_REQUEST, error),
    };
    if !channel.receives() || webhook.destination != channel.state.external_id {
        return unknown();
    }
    store(
        &app,
        "line",
        &channel.id.to_string(),
        line_events(&channel, webhook.events, Uuid::now_v7()),
    )
    .await
}

/// A webhook refused: counted, logged with why (never its content).
fn rejected(
    app: &AppState,
    platform: &'static str,
    outcome: &'static str,
    status: StatusCode,
    error: impl std::fmt::Display,
) -> Response {
    tracing::info!(platform, reason = %error, "webhook rejected");
    app.metrics.webhook(platform, outcome);
    (status, error.to_string()).into_response()
}

fn unavailable(app: &AppState, platform: &'static str, error: impl std::fmt::Display) -> Response {
    tracing::error!(platform, %error, "webhook could not be stored; the platform will retry");
    app.metrics.webhook(platform, "unavailable");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

/// Stores every item (see [`omnibox_app::inbound::store`]) and answers 200
/// once all are durable; any failure answers 503 so the platform retries,
/// which the derived ids make harmless.
async fn store(
    app: &AppState,
    platform: &'static str,
    channel: &str,
    appends: Vec<Append>,
) -> Response {
    match omnibox_app::inbound::store(app, appends).await {
        Ok(Stored { items, messages }) => {
            app.metrics.webhook(platform, "accepted");
            app.metrics.messages_received(platform, messages as u64);
            tracing::info!(platform, channel, items, messages, "webhook accepted");
            StatusCode::OK.into_response()
        }
        Err(error) => unavailable(app, platform, error),
    }
}
