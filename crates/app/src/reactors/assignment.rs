//! The automatic assignment reactor: folds the log into an
//! [`Assigner`](omnibox_domain::assignment::Assigner) and appends its
//! decisions.
//!
//! It runs on the leading server only (see [`crate::leadership`]), and each
//! decision is appended at the exact revision of the conversation's stream
//! it was checked against (still open, still unassigned), so a manual
//! assignment or another server's decision that lands first wins and this
//! one is dropped. The state comes from the log alone, so a restarted
//! reactor (or a new leader) reads the log again and carries on the same
//! rotation.

use std::sync::Mutex;

use futures_util::StreamExt;
use std::time::Duration;

use omnibox_domain::assignment::{Assigner, Decision};
use omnibox_domain::channel::ChannelEvent;
use omnibox_domain::conversation::{self as domain, ConversationEvent};
use omnibox_domain::ids::{ChannelId, ConversationId, OrgId};
use omnibox_domain::org::OrgEvent;
use omnibox_store::{Position, RecordedEvent};

use crate::commands::{execute, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;

/// Events read per page while catching up with the log.
const PAGE: usize = 2_000;
/// Assignments appended at the same time.
const CONCURRENT_APPENDS: usize = 32;

/// The reactor's state between passes: the assigner and how far it read.
#[derive(Default)]
pub struct AutoAssigner {
    state: Mutex<(Assigner, Option<Position>)>,
}

impl AutoAssigner {
    /// Reads what the log gained since the last pass, then makes every
    /// assignment due; returns how many it appended.
    pub async fn run_once(&self, app: &AppContext) -> Result<usize, AppError> {
        let decisions = loop {
            let after = self.state.lock().unwrap_or_else(|p| p.into_inner()).1;
            let events = app.store.read_all(after, PAGE).await?;
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for event in &events {
                fold(&mut state.0, event);
            }
            if let Some(last) = events.last() {
                state.1 = Some(last.position);
            }
            if events.len() < PAGE {
                break state.0.decide(app.clock.now());
            }
        };
        // Each decision is its own conversation's append: they go out
        // together (on PostgreSQL each is a few round trips).
        let app = app.clone();
        let outcomes: Vec<Result<bool, AppError>> = futures_util::stream::iter(decisions)
            .map(|decision| {
                let app = app.clone();
                async move { assign(&app, &decision).await }
            })
            .buffer_unordered(CONCURRENT_APPENDS)
            .collect()
            .await;
        let mut appended = 0;
        for outcome in outcomes {
            appended += usize::from(outcome?);
        }
        Ok(appended)
    }
}

fn fold(assigner: &mut Assigner, event: &RecordedEvent) {
    match event.stream.category() {
        OrgId::CATEGORY => {
            if let Ok(event) = serde_json::from_str::<OrgEvent>(&event.data) {
                assigner.apply_org(&event);
            }
        }
        ChannelId::CATEGORY => {
            if let Ok(event) = serde_json::from_str::<ChannelEvent>(&event.data) {
                assigner.apply_channel(&event);
            }
        }
        ConversationId::CATEGORY => {
            if let Ok(event) = serde_json::from_str::<ConversationEvent>(&event.data) {
                assigner.apply_conversation(&event);
            }
        }
        omnibox_domain::qr::CATEGORY => {
            if let Ok(event) = serde_json::from_str::<omnibox_domain::qr::QrEvent>(&event.data) {
                assigner.apply_qr(&event);
            }
        }
        _ => {}
    }
}

/// Appends `decision` if it still applies: round robin only to an open,
/// unassigned conversation; a QR code's agent unless already assigned.
async fn assign(app: &AppContext, decision: &Decision) -> Result<bool, AppError> {
    let now = app.clock.now();
    let executed = execute::<domain::Conversation, _>(
        &*app.store,
        decision.conversation_id.0,
        &Actor::system("system:assignment"),
        |conversation| {
            let taken = if decision.overrides {
                conversation.assignee == Some(decision.assignee)
            } else {
                conversation.assignee.is_some() || conversation.resolved
            };
            if taken {
                return Ok::<_, std::convert::Infallible>(vec![]);
            }
            Ok(vec![ConversationEvent::ConversationAssigned {
                conversation_id: decision.conversation_id,
                org_id: decision.org_id,
                assignee: decision.assignee,
                by: None,
                reason: Some(decision.reason.clone()),
                at: now,
            }])
        },
    )
    .await
    .map_err(|error| match error {
        CommandError::Rejected(never) => match never {},
        other => AppError::internal(format!("{other:?}")),
    })?;
    Ok(executed.position.is_some())
}

/// Runs passes until shutdown: after every change, and every second.
pub async fn run_auto_assigner(app: AppContext) {
    let assigner = AutoAssigner::default();
    let mut updates = app.bus.subscribe();
    loop {
        if let Err(error) = assigner.run_once(&app).await {
            tracing::warn!(?error, "assignment pass failed; trying again");
        }
        if !app.next_pass(&mut updates, Duration::from_secs(1)).await {
            return;
        }
    }
}
