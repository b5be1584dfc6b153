//! Connecting, reauthorizing, expiring and disconnecting channels: the
//! platform calls around each channel command.
//!
//! Order matters for "nothing appended on refusal": the token is checked
//! with the platform first, then the page is claimed (one page, one
//! organization), then the secrets are sealed and the channel event
//! appended. A token the platform rejects leaves no trace.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use omnibox_domain::channel::{
    self, claim_page, page_reservation_id, AssignmentMode, Channel, ChannelCommand, ChannelError,
    ExpiryReason, PageReservation, Requester, SecretRef,
};
use omnibox_domain::ids::ChannelId;
use omnibox_domain::ChannelKind;
use omnibox_platforms::client::PlatformError;
use omnibox_projections::channels::{self as read, ChannelRow};
use omnibox_store::secrets::Secret;

use crate::auth::Session;
use crate::commands::{execute, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;

/// What a member asks to connect.
pub struct ConnectRequest {
    pub kind: ChannelKind,
    pub external_id: String,
    pub name: String,
    pub access_token: String,
    pub channel_secret: Option<String>,
}

fn requester(session: &Session) -> Requester {
    Requester {
        member_id: session.member.id,
        org_id: session.member.org_id,
        role: session.member.role,
    }
}

fn require_admin(session: &Session) -> Result<(), AppError> {
    if session.member.role.can_administer() {
        Ok(())
    } else {
        Err(channel_error(ChannelError::Forbidden(session.member.role)))
    }
}

pub(crate) fn channel_error(error: ChannelError) -> AppError {
    match error {
        ChannelError::Forbidden(_) | ChannelError::AgentsCannotConfigure => {
            AppError::Forbidden(error.to_string())
        }
        ChannelError::NotFound => AppError::NotFound("no such channel in your organization".into()),
        ChannelError::PageTaken => AppError::PageTaken(error.to_string()),
        ChannelError::Disconnected => AppError::ChannelNotConnected(error.to_string()),
    }
}

fn command_error(error: CommandError<ChannelError>) -> AppError {
    match error {
        CommandError::Rejected(error) => channel_error(error),
        CommandError::Contended => AppError::Conflict(error.to_string()),
        other => AppError::internal(other),
    }
}

/// A platform's refusal, as a person can act on it. Only the platform's
/// own words and codes are shown, never the token.
pub(crate) fn platform_error(platform: &str, error: PlatformError) -> AppError {
    match error {
        // Transient on Facebook's side (unknown error, service down, throttled).
        PlatformError::Facebook { ref error, .. }
            if matches!(error.code, 1 | 2 | 4 | 17 | 32 | 613) =>
        {
            AppError::PlatformUnavailable(format!(
                "{platform} could not check this token now, try again: {}",
                error.message
            ))
        }
        PlatformError::Line { status, ref error } if status >= 500 || status == 429 => {
            AppError::PlatformUnavailable(format!(
                "{platform} could not check this token now (HTTP {status}), try again: {}",
                error.message
            ))
        }
        PlatformError::Facebook { error, .. } => AppError::Validation(format!(
            "{platform} refused this token: {} (code {}{})",
            error.message,
            error.code,
            error
                .error_subcode
                .map(|s| format!(", subcode {s}"))
                .unwrap_or_default()
        )),
        PlatformError::Line { status, error } => AppError::Validation(format!(
            "{platform} refused this token: {} (HTTP {status})",
            error.message
        )),
        // Unreachable, timed out, or an answer that is no verdict on the
        // token (5xx, garbage): the token may be fine, so not VALIDATION.
        other => {
            tracing::info!(platform, error = %other, "platform unavailable while checking a token");
            AppError::PlatformUnavailable(format!(
                "{platform} could not be reached to check this token, try again: {other}"
            ))
        }
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(AppError::Validation(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    Ok(value.to_owned())
}

async fn seal(app: &AppContext, purpose: &str, value: &str) -> Result<SecretRef, AppError> {
    let sealed = app
        .secrets
        .put(purpose, &Secret::new(value))
        .await
        .map_err(AppError::internal)?;
    Ok(SecretRef {
        id: sealed.id,
        fingerprint: sealed.fingerprint,
    })
}

async fn run(
    app: &AppContext,
    actor: &Actor,
    id: ChannelId,
    command: ChannelCommand,
) -> Result<(), AppError> {
    let now = app.clock.now();
    let executed = execute::<Channel, _>(&*app.store, id.0, actor, |state| {
        channel::decide(state, command.clone(), now)
    })
    .await
    .map_err(command_error)?;
    app.read_your_writes(executed.position).await;
    app.directory.clear();
    Ok(())
}

async fn row(app: &AppContext, session: &Session, id: ChannelId) -> Result<ChannelRow, AppError> {
    read::channel(&app.db, session.member.org_id, id)
        .await?
        .ok_or_else(|| channel_error(ChannelError::NotFound))
}

/// Connects (or reconnects) a channel to the caller's organization.
pub async fn connect(
    app: &AppContext,
    session: &Session,
    request: ConnectRequest,
) -> Result<ChannelRow, AppError> {
    require_admin(session)?;
    let name = text("name", &request.name, 200)?;
    let token = text("accessToken", &request.access_token, 4096)?;
    let external_id = text("externalId", &request.external_id, 100)?;
    let actor = Actor::member(&session.member);
    let org = session.member.org_id;
    let (channel_id, external_id, channel_secret) = match request.kind {
        ChannelKind::Facebook => {
            if !external_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AppError::Validation(format!(
                    "{external_id:?} is not a Facebook page id (digits only)"
                )));
            }
            let page = app
                .graph
                .page(&external_id, &token)
                .await
                .map_err(|e| platform_error("Facebook", e))?;
            if page.id != external_id {
                return Err(AppError::Validation(format!(
                    "this token belongs to page {}, not {external_id}",
                    page.id
                )));
            }
            app.graph
                .subscribe_app(&external_id, &token)
                .await
                .map_err(|e| platform_error("Facebook", e))?;
            let channel_id = claim(app, &actor, &external_id).await?;
            (channel_id, external_id, None)
        }
        ChannelKind::Line => {
            let secret = request
                .channel_secret
                .as_deref()
                .map(|s| text("channelSecret", s, 200))
                .transpose()?
                .ok_or_else(|| {
                    AppError::Validation(
                        "a LINE channel needs its channelSecret (to check webhook signatures)"
                            .into(),
                    )
                })?;
            let bot = app
                .line
                .bot_info(&token)
                .await
                .map_err(|e| platform_error("LINE", e))?;
            // The bot user id (the webhooks' `destination`) identifies a LINE channel.
            let existing = read::channel_by_external_id(&app.db, ChannelKind::Line, &bot.user_id)
                .await?
                .filter(|row| row.org_id == org)
                .map(|row| row.id);
            (
                existing.unwrap_or_else(ChannelId::generate),
                bot.user_id,
                Some(secret),
            )
        }
    };
    let access_token = seal(app, "channel access token", &token).await?;
    let channel_secret = match channel_secret {
        Some(secret) => Some(seal(app, "LINE channel secret", &secret).await?),
        None => None,
    };
    let command = ChannelCommand::Connect {
        by: requester(session),
        channel_id,
        kind: request.kind,
        external_id,
        name,
        access_token,
        channel_secret,
    };
    run(app, &actor, channel_id, command).await?;
    tracing::info!(channel = %channel_id, kind = ?request.kind, "channel connected");
    row(app, session, channel_id).await
}

/// Claims a Facebook page for the caller's organization; the channel id it
/// already has there, or a new one.
async fn claim(app: &AppContext, actor: &Actor, page_id: &str) -> Result<ChannelId, AppError> {
    let org = actor_org(actor)?;
    let now = app.clock.now();
    let fresh = ChannelId::generate();
    let chosen = Mutex::new(fresh);
    execute::<PageReservation, _>(&*app.store, page_reservation_id(page_id), actor, |page| {
        let (events, channel_id) = claim_page(page, page_id, org, fresh, now)?;
        *chosen.lock().unwrap_or_else(|p| p.into_inner()) = channel_id;
        Ok(events)
    })
    .await
    .map_err(command_error)?;
    Ok(chosen.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn actor_org(actor: &Actor) -> Result<omnibox_domain::ids::OrgId, AppError> {
    actor
        .org
        .ok_or_else(|| AppError::internal("a channel command without an organization"))
}

/// Replaces a channel's token after checking it; restarts the 90 days.
pub async fn reauthorize(
    app: &AppContext,
    session: &Session,
    id: ChannelId,
    access_token: &str,
) -> Result<ChannelRow, AppError> {
    require_admin(session)?;
    let token = text("accessToken", access_token, 4096)?;
    let current = row(app, session, id).await?;
    let name = match current.kind {
        ChannelKind::Facebook => {
            let page = app
                .graph
                .page(&current.external_id, &token)
                .await
                .map_err(|e| platform_error("Facebook", e))?;
            if page.id != current.external_id {
                return Err(AppError::Validation(format!(
                    "this token belongs to page {}, not {}",
                    page.id, current.external_id
                )));
            }
            app.graph
                .subscribe_app(&current.external_id, &token)
                .await
                .map_err(|e| platform_error("Facebook", e))?;
            current.name.clone()
        }
        ChannelKind::Line => {
            let bot = app
                .line
                .bot_info(&token)
                .await
                .map_err(|e| platform_error("LINE", e))?;
            if bot.user_id != current.external_id {
                return Err(AppError::Validation(
                    "this token belongs to another LINE bot".into(),
                ));
            }
            current.name.clone()
        }
    };
    if current.recorded_status == channel::ChannelStatus::Disconnected {
        return Err(channel_error(ChannelError::Disconnected));
    }
    let access_token = seal(app, "channel access token", &token).await?;
    let actor = Actor::member(&session.member);
    run(
        app,
        &actor,
        id,
        ChannelCommand::Reauthorize {
            by: requester(session),
            name,
            access_token,
        },
    )
    .await?;
    row(app, session, id).await
}

/// Stops receiving and sending on a channel; its history stays.
pub async fn disconnect(
    app: &AppContext,
    session: &Session,
    id: ChannelId,
) -> Result<ChannelRow, AppError> {
    require_admin(session)?;
    let current = row(app, session, id).await?;
    let actor = Actor::member(&session.member);
    run(
        app,
        &actor,
        id,
        ChannelCommand::Disconnect {
            by: requester(session),
        },
    )
    .await?;
    tracing::info!(channel = %id, kind = ?current.kind, "channel disconnected");
    if current.kind == ChannelKind::Facebook
        && current.recorded_status != channel::ChannelStatus::Disconnected
    {
        // Best effort: an expired token cannot unsubscribe, and webhooks for
        // a disconnected channel are answered and dropped anyway.
        match app.secrets.get(current.access_token_secret).await {
            Ok(token) => {
                if let Err(error) = app
                    .graph
                    .unsubscribe_app(&current.external_id, token.expose())
                    .await
                {
                    tracing::warn!(channel = %id, %error, "could not unsubscribe the page from webhooks");
                }
            }
            Err(error) => {
                tracing::warn!(channel = %id, %error, "could not open the page token to unsubscribe")
            }
        }
    }
    row(app, session, id).await
}

pub async fn set_assignment_mode(
    app: &AppContext,
    session: &Session,
    id: ChannelId,
    mode: AssignmentMode,
    max_open_per_agent: Option<i32>,
) -> Result<ChannelRow, AppError> {
    let max_open_per_agent = max_open_per_agent
        .map(|cap| {
            u32::try_from(cap)
                .ok()
                .filter(|cap| (1..=10_000).contains(cap))
                .ok_or_else(|| {
                    AppError::Validation(
                        "maxOpenPerAgent must be between 1 and 10000 (or null for no cap)".into(),
                    )
                })
        })
        .transpose()?;
    row(app, session, id).await?;
    let actor = Actor::member(&session.member);
    run(
        app,
        &actor,
        id,
        ChannelCommand::SetAssignmentMode {
            by: requester(session),
            mode,
            max_open_per_agent,
        },
    )
    .await?;
    row(app, session, id).await
}

/// The expiry timer's tick: expires every channel whose idle deadline has
/// passed at the clock's `now`. Safe to run from several processes and
/// after restarts: the channel decides, so each deadline expires once.
pub async fn expire_due_channels(app: &AppContext) -> Result<usize, AppError> {
    let now = app.clock.now();
    let due = read::due_for_expiry(&app.db, now).await?;
    let actor = Actor::system("system:expiry-timer");
    let mut expired = 0;
    for channel in due {
        let Some(deadline) = channel.token_expires_at else {
            continue;
        };
        let reason = ExpiryReason::IdleDeadline { deadline };
        let executed = execute::<Channel, _>(&*app.store, channel.id.0, &actor, |state| {
            channel::decide(
                state,
                ChannelCommand::Expire {
                    reason: reason.clone(),
                },
                now,
            )
        })
        .await
        .map_err(command_error)?;
        if !executed.events.is_empty() {
            tracing::info!(channel = %channel.id, %deadline, "channel token expired");
            expired += 1;
        }
        app.read_your_writes(executed.position).await;
    }
    app.directory.clear();
    Ok(expired)
}

/// The platform rejected a channel's token (Facebook OAuth error 190):
/// the channel is EXPIRED at once, until reauthorized.
pub async fn expire_rejected_token(
    app: &AppContext,
    id: ChannelId,
    code: i64,
    subcode: Option<i64>,
) -> Result<bool, AppError> {
    let now = app.clock.now();
    let reason = ExpiryReason::TokenRejected { code, subcode };
    let executed = execute::<Channel, _>(
        &*app.store,
        id.0,
        &Actor::system("system:delivery"),
        |state| {
            channel::decide(
                state,
                ChannelCommand::Expire {
                    reason: reason.clone(),
                },
                now,
            )
        },
    )
    .await
    .map_err(command_error)?;
    app.read_your_writes(executed.position).await;
    app.directory.clear();
    Ok(!executed.events.is_empty())
}

/// A send succeeded with the channel's token: its 90 days start again.
pub async fn record_token_use(app: &AppContext, id: ChannelId) -> Result<(), AppError> {
    let now = app.clock.now();
    let executed = execute::<Channel, _>(
        &*app.store,
        id.0,
        &Actor::system("system:delivery"),
        |state| channel::decide(state, ChannelCommand::RecordTokenUse { at: now }, now),
    )
    .await
    .map_err(command_error)?;
    app.read_your_writes(executed.position).await;
    Ok(())
}

/// The instant `within_days` after `as_of`, for the watchlist.
pub fn watch_until(as_of: DateTime<Utc>, within_days: i32) -> Result<DateTime<Utc>, AppError> {
    if !(0..=3650).contains(&within_days) {
        return Err(AppError::Validation(
            "withinDays must be between 0 and 3650".into(),
        ));
    }
    Ok(as_of + chrono::Duration::days(within_days.into()))
}
