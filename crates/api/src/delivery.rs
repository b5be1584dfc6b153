//! Delivering replies: the worker that calls the platforms and records
//! what happened.
//!
//! Its work queue is the `rm_deliveries` read model (one row per bubble,
//! PENDING until an outcome event is projected), so a restart resumes where
//! the log says it stopped. Facebook gets one Send API call per bubble, in
//! order, with our message id as `metadata` so echoes can be matched; LINE
//! gets one request per reply: the reply API while the customer's token is
//! fresh, else push with `X-Line-Retry-Key` = the reply id, so a retried push
//! is never delivered twice (409 means LINE already accepted it).
//!
//! Throttling, 5xx and timeouts are retried with exponential back-off and
//! jitter, a bounded number of times. Facebook's OAuth error 190 expires the
//! channel at once; deliveries on an EXPIRED channel wait for
//! reauthorization and are then sent if the window still allows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use omnibox_channels::client::PlatformError;
use omnibox_domain::channel::ChannelStatus;
use omnibox_domain::conversation::{reply_message_id, ConversationEvent, Thread};
use omnibox_domain::ids::{ChannelId, ConversationId, OrgId};
use omnibox_domain::policy::{
    self, CheckedBubble, OutboundAttachmentKind, ReplyAllowance, WindowPhase,
};
use omnibox_domain::ChannelKind;
use omnibox_projections::channels::{self as channel_read, ChannelRow};
use omnibox_projections::inbox::{self as read, PendingDelivery};
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// Attempts for a bubble that keeps meeting throttling or server errors.
const MAX_ATTEMPTS: u32 = 6;
/// How long a bubble interrupted mid-send waits for Facebook's echo before
/// it is recorded as FAILED.
const INTERRUPTED_GRACE: chrono::Duration = chrono::Duration::minutes(2);
/// Conversations whose replies are delivered at the same time.
const CONCURRENT_CONVERSATIONS: usize = 32;
/// Back-off ceiling between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct DeliveryWorker {
    /// The first back-off step (tests use zero to retry at the next pass).
    base_backoff: Duration,
    /// Per reply: attempts so far and when the next may start.
    retries: Mutex<HashMap<Uuid, (u32, Instant)>>,
    /// Outcomes recorded that the read model may not show yet.
    recorded: Mutex<HashSet<Uuid>>,
}

impl Default for DeliveryWorker {
    fn default() -> Self {
        Self::with_backoff(Duration::from_millis(250))
    }
}

enum Verdict {
    Delivered(Vec<Option<String>>),
    /// The request may have reached Facebook (a timeout after connecting):
    /// sending again could deliver twice. The bubble stays marked as being
    /// sent until an echo confirms it or the grace period fails it.
    Unknown,
    Failed {
        code: Option<String>,
        reason: String,
    },
    Retry(String),
    /// The channel is expired (now, or just now by a 190): wait.
    Wait,
}

struct Queued {
    org: OrgId,
    conversation: ConversationId,
    reply_id: Uuid,
    recipient: Thread,
    evidence: Option<ReplyAllowance>,
    reply_token: Option<String>,
    /// LINE: the agent persona shown on every bubble.
    sender: Option<policy::Sender>,
    bubbles: Vec<(u32, CheckedBubble)>,
}

impl DeliveryWorker {
    pub fn with_backoff(base_backoff: Duration) -> Self {
        Self {
            base_backoff,
            retries: Mutex::default(),
            recorded: Mutex::default(),
        }
    }

    /// One pass over the pending deliveries; returns the outcomes recorded.
    pub async fn run_once(&self, app: &AppState) -> Result<usize, ApiError> {
        let mut recorded = self.interrupted(app).await?;
        let pending = read::deliveries(&app.db, "PENDING", 256).await?;
        let pending: Vec<PendingDelivery> = {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            recorded.retain(|id| pending.iter().any(|p| p.message_id == *id));
            pending
                .into_iter()
                .filter(|p| !recorded.contains(&p.message_id))
                .collect()
        };
        // Group bubbles by reply, keeping the queue's order of replies.
        let mut replies: BTreeMap<(chrono::DateTime<chrono::Utc>, Uuid), (ChannelId, Queued)> =
            BTreeMap::new();
        for delivery in pending {
            let Some(bubble) =
                serde_json::from_value::<CheckedBubble>(delivery.payload["bubble"].clone()).ok()
            else {
                continue;
            };
            let entry = replies
                .entry((delivery.queued_at, delivery.reply_id))
                .or_insert_with(|| {
                    (
                        delivery.channel_id,
                        Queued {
                            org: delivery.org_id,
                            conversation: delivery.conversation_id,
                            reply_id: delivery.reply_id,
                            recipient: serde_json::from_value(
                                delivery.payload["recipient"].clone(),
                            )
                            .unwrap_or(Thread::User(String::new())),
                            evidence: serde_json::from_value(delivery.payload["evidence"].clone())
                                .ok(),
                            reply_token: delivery.payload["reply_token"]
                                .as_str()
                                .map(str::to_owned),
                            sender: serde_json::from_value(delivery.payload["sender"].clone())
                                .ok()
                                .flatten(),
                            bubbles: Vec::new(),
                        },
                    )
                });
            entry.1.bubbles.push((delivery.index, bubble));
        }
        // Conversations are delivered concurrently; within one, replies go
        // out in the order they were queued, and a reply that must wait
        // holds back the ones after it.
        let mut conversations: Vec<Vec<(ChannelId, Queued)>> = Vec::new();
        let mut slot: HashMap<ConversationId, usize> = HashMap::new();
        for (channel_id, queued) in replies.into_values() {
            let index = *slot.entry(queued.conversation).or_insert_with(|| {
                conversations.push(Vec::new());
                conversations.len() - 1
            });
            conversations[index].push((channel_id, queued));
        }
        let used_channels = Mutex::new(HashSet::new());
        let outcomes: Vec<Result<usize, ApiError>> = futures_util::stream::iter(conversations)
            .map(|queue| self.deliver_conversation(app, queue, &used_channels))
            .buffer_unordered(CONCURRENT_CONVERSATIONS)
            .collect()
            .await;
        for outcome in outcomes {
            recorded += outcome?;
        }
        let used_channels = used_channels
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        for channel in used_channels {
            // A successful send restarts the page token's 90 days.
            crate::channels::record_token_use(app, channel).await?;
        }
        Ok(recorded)
    }

    /// Delivers one conversation's queued replies in order; returns the
    /// outcomes recorded.
    async fn deliver_conversation(
        &self,
        app: &AppState,
        queue: Vec<(ChannelId, Queued)>,
        used_channels: &Mutex<HashSet<ChannelId>>,
    ) -> Result<usize, ApiError> {
        let mut recorded = 0;
        for (channel_id, queued) in queue {
            if !self.due(queued.reply_id) {
                break;
            }
            let Some(channel) = channel_read::channel_by_id(&app.db, channel_id).await? else {
                break;
            };
            let verdicts = self.deliver(app, &channel, &queued).await;
            let mut finished = verdicts.len() == queued.bubbles.len();
            for (index, verdict) in verdicts {
                let event = match verdict {
                    Verdict::Delivered(ids) => {
                        used_channels
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(channel.id);
                        let platform_message_id = ids.into_iter().next().flatten();
                        ConversationEvent::ReplyBubbleDelivered {
                            conversation_id: queued.conversation,
                            org_id: queued.org,
                            reply_id: queued.reply_id,
                            index,
                            platform_message_id,
                            at: app.clock.now(),
                        }
                    }
                    Verdict::Failed { code, reason } => ConversationEvent::ReplyBubbleFailed {
                        conversation_id: queued.conversation,
                        org_id: queued.org,
                        reply_id: queued.reply_id,
                        index,
                        code,
                        reason,
                        at: app.clock.now(),
                    },
                    Verdict::Retry(reason) => {
                        if self.back_off(queued.reply_id) {
                            tracing::info!(reply = %queued.reply_id, %reason, "delivery will be retried");
                            finished = false;
                            break;
                        }
                        ConversationEvent::ReplyBubbleFailed {
                            conversation_id: queued.conversation,
                            org_id: queued.org,
                            reply_id: queued.reply_id,
                            index,
                            code: None,
                            reason: format!("gave up after {MAX_ATTEMPTS} attempts: {reason}"),
                            at: app.clock.now(),
                        }
                    }
                    Verdict::Wait | Verdict::Unknown => {
                        finished = false;
                        break;
                    }
                };
                record(
                    app,
                    queued.conversation,
                    reply_message_id(queued.reply_id, index),
                    &event,
                )
                .await?;
                self.recorded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(reply_message_id(queued.reply_id, index));
                recorded += 1;
            }
            if !finished {
                break;
            }
        }
        Ok(recorded)
    }

    /// Bubbles some worker began sending (Facebook has no idempotency key)
    /// and never recorded an outcome for: that worker stopped mid-call. They
    /// are not sent again, which could deliver twice; an echo carrying our
    /// metadata still marks them delivered. After a grace period without one
    /// they are recorded FAILED, saying what happened.
    async fn interrupted(&self, app: &AppState) -> Result<usize, ApiError> {
        let now = app.clock.now();
        let mut recorded = 0;
        for delivery in read::deliveries(&app.db, "SENDING", 256).await? {
            if now - delivery.queued_at < INTERRUPTED_GRACE {
                continue;
            }
            let event = ConversationEvent::ReplyBubbleFailed {
                conversation_id: delivery.conversation_id,
                org_id: delivery.org_id,
                reply_id: delivery.reply_id,
                index: delivery.index,
                code: Some("INTERRUPTED".into()),
                reason: "the server stopped while handing this message to Facebook, and no echo confirmed it; \
                         it was not sent again, to avoid a duplicate"
                    .into(),
                at: now,
            };
            record(app, delivery.conversation_id, delivery.message_id, &event).await?;
            recorded += 1;
        }
        Ok(recorded)
    }

    fn due(&self, reply: Uuid) -> bool {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&reply)
            .is_none_or(|(_, next)| Instant::now() >= *next)
    }

    /// Schedules another attempt; false once attempts are used up.
    fn back_off(&self, reply: Uuid) -> bool {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let (attempts, next) = retries.entry(reply).or_insert((0, Instant::now()));
        *attempts += 1;
        if *attempts >= MAX_ATTEMPTS {
            return false;
        }
        let base = self
            .base_backoff
            .saturating_mul(1 << (*attempts).min(10))
            .min(MAX_BACKOFF);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        *next = Instant::now() + base.mul_f64(jitter);
        true
    }

    /// Outcomes per bubble, in order; stops at the first bubble that must wait.
    async fn deliver(
        &self,
        app: &AppState,
        channel: &ChannelRow,
        queued: &Queued,
    ) -> Vec<(u32, Verdict)> {
        let now = app.clock.now();
        match channel.status_at(now) {
            ChannelStatus::Disconnected => {
                return queued
                    .bubbles
                    .iter()
                    .map(|(i, _)| {
                        (
                            *i,
                            Verdict::Failed {
                                code: Some("CHANNEL_NOT_CONNECTED".into()),
                                reason: "the channel was disconnected".into(),
                            },
                        )
                    })
                    .collect()
            }
            ChannelStatus::Expired => return Vec::new(),
            ChannelStatus::Connected => {}
        }
        let token = match app.secrets.get(channel.access_token_secret).await {
            Ok(token) => token,
            Err(error) => return vec![(queued.bubbles[0].0, Verdict::Retry(error.to_string()))],
        };
        match channel.kind {
            ChannelKind::Facebook => {
                self.deliver_facebook(app, channel, queued, token.expose())
                    .await
            }
            ChannelKind::Line => {
                let verdict = deliver_line(app, queued, token.expose()).await;
                if matches!(verdict, Verdict::Wait) {
                    let _ =
                        crate::channels::expire_rejected_token(app, channel.id, 401, None).await;
                }
                match verdict {
                    Verdict::Delivered(ids) => queued
                        .bubbles
                        .iter()
                        .enumerate()
                        .map(|(n, (i, _))| {
                            (*i, Verdict::Delivered(vec![ids.get(n).cloned().flatten()]))
                        })
                        .collect(),
                    Verdict::Failed { code, reason } => queued
                        .bubbles
                        .iter()
                        .map(|(i, _)| {
                            (
                                *i,
                                Verdict::Failed {
                                    code: code.clone(),
                                    reason: reason.clone(),
                                },
                            )
                        })
                        .collect(),
                    other => vec![(queued.bubbles[0].0, other)],
                }
            }
        }
    }

    async fn deliver_facebook(
        &self,
        app: &AppState,
        channel: &ChannelRow,
        queued: &Queued,
        token: &str,
    ) -> Vec<(u32, Verdict)> {
        let mut verdicts = Vec::new();
        // The window may have moved while the reply waited (an expired channel, retries).
        let conversation = read::conversation(&app.db, queued.org, queued.conversation)
            .await
            .ok()
            .flatten();
        let window = policy::window(
            ChannelKind::Facebook,
            conversation.and_then(|c| c.last_customer_message_at),
            app.clock.now(),
        );
        for (index, bubble) in &queued.bubbles {
            let (messaging_type, tag) = match window.phase {
                WindowPhase::Standard => ("RESPONSE", None),
                WindowPhase::HumanAgent if !queued.evidence.is_some_and(|e| e.promotional) => {
                    ("MESSAGE_TAG", Some("HUMAN_AGENT"))
                }
                _ => {
                    verdicts.push((*index, Verdict::Failed {
                        code: Some("WINDOW_CLOSED".into()),
                        reason: format!(
                            "the messaging window no longer allows this reply (it closed at {})",
                            window.human_agent_ends_at.map_or_else(|| "an unknown time".into(), |t| t.to_rfc3339())
                        ),
                    }));
                    continue;
                }
            };
            let message = match bubble {
                CheckedBubble::Text(text) => json!({ "text": text }),
                CheckedBubble::Attachment {
                    attachment,
                    attachment_kind,
                } => json!({ "attachment": {
                    "type": match attachment_kind {
                        OutboundAttachmentKind::Image => "image",
                        OutboundAttachmentKind::Video => "video",
                        OutboundAttachmentKind::Audio => "audio",
                        OutboundAttachmentKind::File => "file",
                    },
                    "payload": { "url": attachment.url, "is_reusable": false },
                } }),
            };
            let mut body = json!({
                "recipient": { "id": queued.recipient.platform_id() },
                "messaging_type": messaging_type,
                "message": message,
                "metadata": format!("omnibox:msg:{}", reply_message_id(queued.reply_id, *index)),
            });
            if let Some(tag) = tag {
                body["tag"] = json!(tag);
            }
            let message_id = reply_message_id(queued.reply_id, *index);
            let sending = ConversationEvent::ReplyBubbleSending {
                conversation_id: queued.conversation,
                org_id: queued.org,
                reply_id: queued.reply_id,
                index: *index,
                at: app.clock.now(),
            };
            // Durable before the call: a restart must not send this bubble again.
            if let Err(error) = mark(app, queued.conversation, message_id, &sending).await {
                verdicts.push((
                    *index,
                    Verdict::Retry(format!("could not record the attempt: {}", error.message())),
                ));
                break;
            }
            let verdict = match app.graph.send(&channel.external_id, token, &body).await {
                Ok(sent) => Verdict::Delivered(vec![Some(sent.message_id)]),
                Err(error) => facebook_verdict(app, channel, error).await,
            };
            // Facebook answered "not now": not sent, so back to the queue.
            let not_now = match &verdict {
                Verdict::Retry(reason) => Some(reason.clone()),
                Verdict::Wait => {
                    Some("the page token was rejected; waiting for reauthorization".to_owned())
                }
                _ => None,
            };
            if let Some(reason) = not_now {
                let deferred = ConversationEvent::ReplyBubbleDeferred {
                    conversation_id: queued.conversation,
                    org_id: queued.org,
                    reply_id: queued.reply_id,
                    index: *index,
                    reason,
                    at: app.clock.now(),
                };
                if let Err(error) = mark(app, queued.conversation, message_id, &deferred).await {
                    tracing::warn!(error = %error.message(), "could not put a deferred bubble back in the queue");
                }
            }
            let stop = !matches!(verdict, Verdict::Delivered(_) | Verdict::Failed { .. });
            verdicts.push((*index, verdict));
            if stop {
                break;
            }
        }
        verdicts
    }
}

async fn facebook_verdict(app: &AppState, channel: &ChannelRow, error: PlatformError) -> Verdict {
    match error {
        PlatformError::Facebook { error, .. } => match (error.code, error.error_subcode) {
            (190, subcode) => {
                if let Err(error) =
                    crate::channels::expire_rejected_token(app, channel.id, 190, subcode).await
                {
                    tracing::warn!(?error, "could not expire the channel");
                }
                Verdict::Wait
            }
            (4 | 17 | 32 | 613 | 1 | 2, _) => Verdict::Retry(error.message),
            (10, Some(2018278 | 2534022)) => Verdict::Failed {
                code: Some("WINDOW_CLOSED".into()),
                reason: format!("Facebook: outside the allowed window ({})", error.message),
            },
            (551, _) | (_, Some(1545041)) => Verdict::Failed {
                code: Some("PERSON_UNAVAILABLE".into()),
                reason: format!(
                    "Facebook: the person cannot be reached now ({})",
                    error.message
                ),
            },
            (100, Some(2018109)) => Verdict::Failed {
                code: Some("ATTACHMENT_NOT_ALLOWED".into()),
                reason: format!("Facebook: attachment too large ({})", error.message),
            },
            (code, subcode) => Verdict::Failed {
                code: Some(format!("FACEBOOK_{code}")),
                reason: format!(
                    "Facebook error {code} (subcode {subcode:?}): {}",
                    error.message
                ),
            },
        },
        // Never connected: nothing was sent, so sending again is safe.
        PlatformError::Unreachable(error) if error.is_connect() => {
            Verdict::Retry(error.to_string())
        }
        PlatformError::Unreachable(_) => Verdict::Unknown,
        PlatformError::UnexpectedAnswer { status, reason } if status >= 500 || status == 0 => {
            Verdict::Retry(reason)
        }
        other => Verdict::Failed {
            code: None,
            reason: other.to_string(),
        },
    }
}

fn line_message(bubble: &CheckedBubble, sender: Option<&policy::Sender>) -> Value {
    let mut message = match bubble {
        CheckedBubble::Text(text) => json!({ "type": "text", "text": text }),
        CheckedBubble::Attachment {
            attachment,
            attachment_kind,
        } => match attachment_kind {
            OutboundAttachmentKind::Image => {
                json!({ "type": "image", "originalContentUrl": attachment.url, "previewImageUrl": attachment.url })
            }
            OutboundAttachmentKind::Video => {
                json!({ "type": "video", "originalContentUrl": attachment.url, "previewImageUrl": attachment.url })
            }
            OutboundAttachmentKind::Audio => {
                json!({ "type": "audio", "originalContentUrl": attachment.url, "duration": 60000 })
            }
            // LINE bots cannot send files; the policy refuses them, and a link is the fallback.
            OutboundAttachmentKind::File => json!({ "type": "text", "text": attachment.url }),
        },
    };
    if let Some(sender) = sender {
        message["sender"] = match &sender.icon_url {
            Some(icon) => json!({ "name": sender.name, "iconUrl": icon }),
            None => json!({ "name": sender.name }),
        };
    }
    message
}

async fn deliver_line(app: &AppState, queued: &Queued, token: &str) -> Verdict {
    let messages: Vec<Value> = queued
        .bubbles
        .iter()
        .map(|(_, b)| line_message(b, queued.sender.as_ref()))
        .collect();
    if let Some(reply_token) = &queued.reply_token {
        match app.line.reply(token, reply_token, &messages).await {
            Ok(sent) => return Verdict::Delivered(sent.into_iter().map(|m| Some(m.id)).collect()),
            // Used or expired: fall back to push.
            Err(PlatformError::Line { status: 400, .. }) => {}
            Err(error) => return line_verdict(error),
        }
    }
    match app
        .line
        .push(
            token,
            queued.recipient.platform_id(),
            &messages,
            queued.reply_id,
        )
        .await
    {
        Ok(sent) => Verdict::Delivered(sent.into_iter().map(|m| Some(m.id)).collect()),
        Err(error) => line_verdict(error),
    }
}

fn line_verdict(error: PlatformError) -> Verdict {
    match error {
        PlatformError::Line { status: 401, .. } => Verdict::Wait,
        PlatformError::Line { status, error } if status == 429 || status >= 500 => {
            Verdict::Retry(format!("LINE {status}: {}", error.message))
        }
        PlatformError::Line { status, error } => Verdict::Failed {
            code: Some(format!("LINE_{status}")),
            reason: format!("LINE refused the message ({status}): {}", error.message),
        },
        PlatformError::Unreachable(error) => Verdict::Retry(error.to_string()),
        other => Verdict::Failed {
            code: None,
            reason: other.to_string(),
        },
    }
}

async fn record(
    app: &AppState,
    conversation: ConversationId,
    message_id: Uuid,
    event: &ConversationEvent,
) -> Result<(), ApiError> {
    record_as(app, conversation, message_id, event, b"outcome").await
}

/// Appends a state mark (sending, deferred) about bubble `message_id`. Marks
/// repeat across attempts, so each gets a fresh id.
async fn mark(
    app: &AppState,
    conversation: ConversationId,
    message_id: Uuid,
    event: &ConversationEvent,
) -> Result<(), ApiError> {
    record_as(
        app,
        conversation,
        message_id,
        event,
        Uuid::now_v7().as_bytes(),
    )
    .await
}

/// Appends `event` about bubble `message_id`, with an id derived from both,
/// so whichever worker records it first is the only one that does.
async fn record_as(
    app: &AppState,
    conversation: ConversationId,
    message_id: Uuid,
    event: &ConversationEvent,
    what: &[u8],
) -> Result<(), ApiError> {
    let stream =
        StreamName::new(ConversationId::CATEGORY, conversation.0).map_err(ApiError::internal)?;
    let event = NewEvent {
        // One outcome per bubble, whoever records it first.
        id: Uuid::new_v5(&message_id, what),
        event_type: event.event_type().to_owned(),
        data: serde_json::to_string(event).map_err(ApiError::internal)?,
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Some(message_id),
            actor: Some("system:delivery".into()),
        },
    };
    app.store
        .append(&stream, ExpectedRevision::Any, vec![event])
        .await?;
    Ok(())
}

/// Runs passes until the process stops: after every change, and every second.
pub async fn run_delivery_worker(app: AppState) {
    let worker = DeliveryWorker::default();
    let mut updates = app.bus.subscribe();
    loop {
        if let Err(error) = worker.run_once(&app).await {
            tracing::warn!(?error, "delivery pass failed; trying again");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), updates.recv()).await;
        // A burst of changes is one pass, not one pass per change.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while updates.try_recv().is_ok() {}
    }
}
