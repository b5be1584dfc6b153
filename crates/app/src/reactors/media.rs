//! Inbound media: fetched from the platforms promptly (their URLs expire),
//! kept in Omnibox's media store, served to members at an authenticated route.
//!
//! The work queue is the `rm_media` read model: every inbound attachment
//! with a source starts PENDING, and the fetcher appends `MediaStored` or
//! `MediaFetchFailed`, which the projection turns into STORED or FAILED.
//! So nothing is lost across restarts, several servers may fetch (the
//! outcome events' ids are derived, so only one outcome is recorded), and
//! the webhook acknowledgement never waits for a download.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use omnibox_domain::conversation::{ConversationEvent, MediaSource};
use omnibox_domain::ids::ConversationId;
use omnibox_platforms::client::{Download, PlatformError};
use omnibox_platforms::line::Content;
use omnibox_projections::channels as channel_read;
use omnibox_projections::inbox::{self as read, PendingMedia};
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use uuid::Uuid;

use crate::context::AppContext;
use crate::error::AppError;
use crate::media_store::storage_key;

/// The largest inbound file Omnibox keeps from LINE's content API.
pub const MAX_MEDIA_BYTES: usize = 50 * 1024 * 1024;
/// The largest file fetched from a URL a payload named (Facebook's
/// attachment limit).
pub const MAX_PAYLOAD_MEDIA_BYTES: usize = 25 * 1024 * 1024;
/// Downloads running at once.
const CONCURRENCY: usize = 8;
/// Attempts while LINE answers "not ready yet" (202) or the network fails,
/// one per pass (passes run every few seconds and on every new message).
const MAX_ATTEMPTS: u32 = 20;

/// Remembers how often each pending item was tried, and what it recorded
/// that the read model may not show yet, across passes.
#[derive(Default)]
pub struct MediaFetcher {
    attempts: Mutex<HashMap<(Uuid, u32), u32>>,
    recorded: Mutex<HashSet<(Uuid, u32)>>,
}

enum Outcome {
    Stored(Download),
    Failed(String),
    /// Try again at a later pass.
    Later(String),
}

impl MediaFetcher {
    /// One pass over the pending media; returns how many outcomes it recorded.
    pub async fn run_once(&self, app: &AppContext) -> Result<usize, AppError> {
        let pending = read::pending_media(&app.db, 64).await?;
        let pending = {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            // Forget what the read model no longer lists; skip what it lists but we already recorded.
            recorded.retain(|key| pending.iter().any(|p| (p.message_id, p.index) == *key));
            pending
                .into_iter()
                .filter(|p| !recorded.contains(&(p.message_id, p.index)))
                .collect::<Vec<_>>()
        };
        let outcomes = stream::iter(pending)
            .map(|item| async move {
                let outcome = fetch(app, &item).await;
                (item, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut recorded = 0;
        for (item, outcome) in outcomes {
            let key = (item.message_id, item.index);
            let event = match outcome {
                Outcome::Stored(_)
                    if read::conversation_erased(&app.db, item.conversation_id).await? =>
                {
                    failed(&item, "the customer's data was erased".into(), app)
                }
                Outcome::Stored(download) => {
                    let storage_key = storage_key(item.message_id, item.index);
                    if let Err(error) = app.media.put(&storage_key, &download.bytes).await {
                        tracing::error!(%error, "could not write to the media store");
                        continue;
                    }
                    ConversationEvent::MediaStored {
                        conversation_id: item.conversation_id,
                        org_id: item.org_id,
                        message_id: item.message_id,
                        index: item.index,
                        storage_key,
                        size_bytes: download.bytes.len() as u64,
                        content_type: download.content_type,
                        at: app.clock.now(),
                    }
                }
                Outcome::Later(reason) => {
                    let attempts = {
                        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                        let n = attempts.entry(key).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if attempts < MAX_ATTEMPTS {
                        continue;
                    }
                    failed(
                        &item,
                        format!("gave up after {attempts} attempts: {reason}"),
                        app,
                    )
                }
                Outcome::Failed(reason) => failed(&item, reason, app),
            };
            self.attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            record(
                app,
                item.conversation_id,
                item.message_id,
                item.index,
                &event,
            )
            .await?;
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
            recorded += 1;
        }
        Ok(recorded)
    }
}

fn failed(item: &PendingMedia, reason: String, app: &AppContext) -> ConversationEvent {
    // The reason names what happened (expired, too large, refused), never a URL's secrets.
    tracing::info!(
        message = %item.message_id,
        index = item.index,
        reason = %reason,
        "media given up"
    );
    ConversationEvent::MediaFetchFailed {
        conversation_id: item.conversation_id,
        org_id: item.org_id,
        message_id: item.message_id,
        index: item.index,
        reason,
        at: app.clock.now(),
    }
}

async fn record(
    app: &AppContext,
    conversation: ConversationId,
    message_id: Uuid,
    index: u32,
    event: &ConversationEvent,
) -> Result<(), AppError> {
    let stream =
        StreamName::new(ConversationId::CATEGORY, conversation.0).map_err(AppError::internal)?;
    // One outcome per attachment, whichever server records it first.
    let id = Uuid::new_v5(&message_id, format!("media:{index}").as_bytes());
    let event = NewEvent {
        id,
        event_type: event.event_type().to_owned(),
        data: serde_json::to_string(event).map_err(AppError::internal)?,
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Some(message_id),
            actor: Some("system:media-fetcher".into()),
        },
    };
    app.store
        .append(&stream, ExpectedRevision::Any, vec![event])
        .await?;
    Ok(())
}

async fn fetch(app: &AppContext, item: &PendingMedia) -> Outcome {
    let result = match &item.source {
        // The URL came in a payload: public https addresses only.
        MediaSource::Url { url } => app
            .untrusted
            .download(url, MAX_PAYLOAD_MEDIA_BYTES)
            .await
            .map(Content::Ready),
        MediaSource::LineContent { message_id } => {
            let token = match channel_token(app, item).await {
                Ok(token) => token,
                Err(reason) => return Outcome::Later(reason),
            };
            app.line.content(message_id, &token, MAX_MEDIA_BYTES).await
        }
        MediaSource::None => return Outcome::Failed("nothing to download".into()),
    };
    match result {
        Ok(Content::Ready(download)) => Outcome::Stored(download),
        Ok(Content::NotReady) => Outcome::Later("the platform is still preparing the file".into()),
        Err(PlatformError::Unreachable(error)) => Outcome::Later(error.to_string()),
        Err(PlatformError::Line { status, .. }) if status == 429 || status >= 500 => {
            Outcome::Later(format!("LINE answered {status}"))
        }
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

async fn channel_token(app: &AppContext, item: &PendingMedia) -> Result<String, String> {
    let channel = channel_read::channel_by_id(&app.db, item.channel_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the channel is gone")?;
    let token = app
        .secrets
        .get(channel.access_token_secret)
        .await
        .map_err(|e| e.to_string())?;
    Ok(token.expose().to_owned())
}

/// Runs passes until the process stops: after every new message, and every
/// few seconds for retries.
pub async fn run_media_fetcher(app: AppContext) {
    let fetcher = MediaFetcher::default();
    let mut updates = app.bus.subscribe();
    loop {
        if let Err(error) = fetcher.run_once(&app).await {
            tracing::warn!(?error, "media pass failed; trying again");
        }
        if !app.next_pass(&mut updates, Duration::from_secs(3)).await {
            return;
        }
    }
}
