//! Contacts' names and pictures, looked up on the platforms after first
//! contact, never while a webhook waits for its acknowledgement.
//!
//! The work queue is the contacts read model (`profile_state = PENDING`);
//! the outcome is a `ContactProfileUpdated` or `ContactProfileUnavailable`
//! event with an id derived from the contact, so it is recorded once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use omnibox_domain::conversation::ContactEvent;
use omnibox_domain::ids::ContactId;
use omnibox_domain::ChannelKind;
use omnibox_platforms::client::PlatformError;
use omnibox_projections::channels as channel_read;
use omnibox_projections::inbox::{self as read, PendingProfile};
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use uuid::Uuid;

use crate::context::AppContext;
use crate::error::AppError;

/// Passes a failing look-up is retried before the profile counts as unavailable.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Default)]
pub struct ProfileFetcher {
    attempts: Mutex<HashMap<ContactId, u32>>,
    /// Recorded, but perhaps not yet shown by the read model.
    recorded: Mutex<HashSet<ContactId>>,
}

impl ProfileFetcher {
    /// One pass over the contacts waiting for a profile.
    pub async fn run_once(&self, app: &AppContext) -> Result<usize, AppError> {
        let mut recorded = 0;
        let pending = read::pending_profiles(&app.db, 32).await?;
        let pending = {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            recorded.retain(|id| pending.iter().any(|p| p.contact_id == *id));
            pending
                .into_iter()
                .filter(|p| !recorded.contains(&p.contact_id))
                .collect::<Vec<_>>()
        };
        for contact in pending {
            let mut event = match look_up(app, &contact).await {
                Ok((display_name, avatar_url)) => ContactEvent::ContactProfileUpdated {
                    contact_id: contact.contact_id,
                    org_id: contact.org_id,
                    display_name,
                    avatar_url,
                    at: app.clock.now(),
                },
                Err(Failure::Final(reason)) => unavailable(app, &contact, reason),
                Err(Failure::Retry(reason)) => {
                    let attempts = {
                        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                        let n = attempts.entry(contact.contact_id).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if attempts < MAX_ATTEMPTS {
                        continue;
                    }
                    unavailable(app, &contact, reason)
                }
            };
            self.attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&contact.contact_id);
            let key = app
                .personal
                .for_contact(contact.org_id.0, contact.contact_id.0)
                .await
                .map_err(AppError::internal)?;
            event.seal_personal(|text| key.seal(text));
            let stream = StreamName::new(ContactId::CATEGORY, contact.contact_id.0)
                .map_err(AppError::internal)?;
            let new_event = NewEvent {
                id: Uuid::new_v5(&contact.contact_id.0, b"profile"),
                event_type: event.event_type().to_owned(),
                data: serde_json::to_string(&event).map_err(AppError::internal)?,
                metadata: Metadata {
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    actor: Some("system:profile-fetcher".into()),
                },
            };
            app.store
                .append(&stream, ExpectedRevision::Any, vec![new_event])
                .await?;
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(contact.contact_id);
            recorded += 1;
        }
        Ok(recorded)
    }
}

fn unavailable(app: &AppContext, contact: &PendingProfile, reason: String) -> ContactEvent {
    ContactEvent::ContactProfileUnavailable {
        contact_id: contact.contact_id,
        org_id: contact.org_id,
        reason,
        at: app.clock.now(),
    }
}

enum Failure {
    Final(String),
    Retry(String),
}

async fn look_up(
    app: &AppContext,
    contact: &PendingProfile,
) -> Result<(Option<String>, Option<String>), Failure> {
    let channel = channel_read::channel_by_id(&app.db, contact.channel_id)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?
        .ok_or_else(|| Failure::Final("the channel is gone".into()))?;
    let token = app
        .secrets
        .get(channel.access_token_secret)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let classify = |error: PlatformError| match error {
        PlatformError::Unreachable(_) => Failure::Retry(error.to_string()),
        PlatformError::Line { status, .. } if status == 429 || status >= 500 => {
            Failure::Retry(error.to_string())
        }
        other => Failure::Final(other.to_string()),
    };
    match channel.kind {
        ChannelKind::Facebook => {
            let profile = app
                .graph
                .user_profile(&contact.platform_user_id, token.expose())
                .await
                .map_err(classify)?;
            let name = profile.name.or_else(|| {
                let joined = [profile.first_name, profile.last_name]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!joined.is_empty()).then_some(joined)
            });
            Ok((name, profile.profile_pic))
        }
        ChannelKind::Line => {
            let profile = app
                .line
                .profile(&contact.platform_user_id, token.expose())
                .await
                .map_err(classify)?;
            Ok((Some(profile.display_name), profile.picture_url))
        }
    }
}

/// Runs passes until the process stops: after every change, and every few seconds.
pub async fn run_profile_fetcher(app: AppContext) {
    let fetcher = ProfileFetcher::default();
    let mut updates = app.bus.subscribe();
    loop {
        if let Err(error) = fetcher.run_once(&app).await {
            tracing::warn!(?error, "profile pass failed; trying again");
        }
        if !app.next_pass(&mut updates, Duration::from_secs(5)).await {
            return;
        }
    }
}
