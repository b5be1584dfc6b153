//! Delivering replies: the worker that calls the platforms and records
//! what happened, exactly once across any number of servers.
//!
//! The `rm_deliveries` read model only says *where* to look (conversations
//! with unsettled bubbles). What to send is decided from the conversation's
//! events ([`omnibox_domain::conversation::Outbox`]): the head of its outbox
//! is claimed with a `ReplyBubbleSending` event appended at the exact
//! revision the worker read, so of two servers only one sends; the outcome
//! is recorded the moment the platform answers, and only while that claim
//! stands. A conversation's bubbles go out in the order they were queued:
//! a bubble that must wait (throttled, the channel expired) holds back the
//! ones behind it.
//!
//! Facebook gets one Send API call per bubble, with our message id as
//! `metadata` so echoes can be matched. LINE gets one request per reply:
//! the reply API while the customer's token is fresh, else push with
//! `X-Line-Retry-Key` = the reply id (409 means LINE already took it).
//!
//! An ambiguous answer (the request may have reached the platform) is never
//! retried through another route: a Facebook send that timed out stays
//! claimed until its echo or the claim lease
//! (`OMNIBOX_DELIVERY_LEASE_MS`, two minutes by default), then FAILED saying so; a LINE
//! reply-token call that timed out is retried only with the same token, and
//! if LINE then refuses the token the reply is recorded as not confirmed,
//! never pushed. Throttling, 5xx and unreached platforms are retried with
//! exponential back-off and jitter, a bounded number of times.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use omnibox_domain::channel::ChannelStatus;
use omnibox_domain::conversation::{
    decide_abandoned, decide_claim, decide_outcome, reply_message_id, Conversation,
    ConversationEvent, NextDelivery, OutboundReply, Outcome, Place, SendRoute, StaleStep,
};
use omnibox_domain::ids::{ChannelId, ConversationId};
use omnibox_domain::policy::{
    self, CheckedBubble, MessageTag, MessagingType, OutboundAttachmentKind,
};
use omnibox_domain::ChannelKind;
use omnibox_platforms::client::PlatformError;
use omnibox_projections::inbox as read;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::commands::{execute_on, Actor, CommandError, Known};
use crate::context::AppContext;
use crate::directory::KnownChannel;
use crate::error::AppError;
use crate::faults::crash_point;

/// Attempts for a bubble that keeps meeting throttling or server errors.
const MAX_ATTEMPTS: u32 = 6;
/// Conversations whose replies are delivered at the same time.
const CONCURRENT_CONVERSATIONS: usize = 32;
/// Conversations looked at per pass.
const CONVERSATIONS_PER_PASS: usize = 256;
/// Delivery steps one conversation takes in one pass (5 bubbles a reply).
const STEPS_PER_CONVERSATION: usize = 64;
/// Back-off ceiling between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Retry schedules of replies not seen for this long are dropped.
const RETRY_MEMORY: Duration = Duration::from_secs(600);

pub struct DeliveryWorker {
    /// The first back-off step (tests use zero to retry at the next pass).
    base_backoff: Duration,
    /// Per reply: attempts so far, when the next may start, last touched.
    retries: Mutex<HashMap<Uuid, Retry>>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next: Instant,
    touched: Instant,
}

impl Default for DeliveryWorker {
    fn default() -> Self {
        Self::with_backoff(Duration::from_millis(250))
    }
}

/// A platform's answer, before the attempt count turns it into an outcome.
enum Answer {
    /// Delivered or refused for good.
    Settled(Outcome),
    /// Not sent (throttled, 5xx, never connected): try again, counted.
    Retry(String),
    /// The token was rejected; the channel is expired until reauthorized.
    Wait(String),
    /// A LINE reply-token call that may have reached LINE.
    Ambiguous(String),
    /// LINE refused the reply token (used or expired).
    TokenRefused(String),
    /// A Facebook send that may have reached Facebook: the claim stays
    /// until its echo or the lease ends.
    Unknown,
}

impl DeliveryWorker {
    pub fn with_backoff(base_backoff: Duration) -> Self {
        Self {
            base_backoff,
            retries: Mutex::default(),
        }
    }

    /// One pass over the conversations with unsettled bubbles; returns how
    /// many bubble outcomes (delivered or failed) it recorded.
    pub async fn run_once(&self, app: &AppContext) -> Result<usize, AppError> {
        self.forget_old_retries();
        let conversations =
            read::conversations_with_deliveries(&app.db, CONVERSATIONS_PER_PASS).await?;
        let used_channels = Mutex::new(HashSet::new());
        let outcomes: Vec<Result<usize, AppError>> = futures_util::stream::iter(conversations)
            .map(|conversation| self.deliver_conversation(app, conversation, &used_channels))
            .buffer_unordered(CONCURRENT_CONVERSATIONS)
            .collect()
            .await;
        let mut recorded = 0;
        for outcome in outcomes {
            recorded += outcome?;
        }
        let used_channels = used_channels
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        for channel in used_channels {
            // A successful send restarts the page token's 90 days.
            crate::services::channels::record_token_use(app, channel).await?;
        }
        Ok(recorded)
    }

    /// Takes one conversation's outbox as far as it can go now; returns the
    /// outcomes recorded.
    async fn deliver_conversation(
        &self,
        app: &AppContext,
        id: ConversationId,
        used_channels: &Mutex<HashSet<ChannelId>>,
    ) -> Result<usize, AppError> {
        let mut recorded = 0;
        let lease = app.config.delivery_lease;
        // Read once, then only what is appended since.
        let mut known = Known::<Conversation>::default();
        for _ in 0..STEPS_PER_CONVERSATION {
            known
                .catch_up(&*app.store, id.0)
                .await
                .map_err(|e| AppError::internal(format!("{e:?}")))?;
            let conversation = known.state.clone();
            let (Some(org_id), Some(kind)) = (conversation.org_id, conversation.channel_kind)
            else {
                return Ok(recorded);
            };
            let place = Place {
                conversation_id: id,
                org_id,
            };
            let now = app.clock.now();
            match conversation
                .outbox
                .next(kind == ChannelKind::Line, now, lease)
            {
                None => return Ok(recorded),
                Some(NextDelivery::InFlight {
                    abandoned: false, ..
                }) => return Ok(recorded),
                Some(NextDelivery::InFlight {
                    reply_id, index, ..
                }) => {
                    let events = step(app, id, &mut known, |c| {
                        decide_abandoned(&c.outbox, place, reply_id, index, now, lease)
                    })
                    .await?;
                    recorded += settled(&events);
                }
                Some(NextDelivery::Send { reply, indexes }) => {
                    let next = Next {
                        place,
                        kind,
                        now,
                        reply,
                        indexes,
                    };
                    let (settled, go_on) =
                        self.send_next(app, &mut known, next, used_channels).await?;
                    recorded += settled;
                    if !go_on {
                        return Ok(recorded);
                    }
                }
            }
        }
        Ok(recorded)
    }

    /// Claims, sends and records the outbox's next bubbles (`next`);
    /// returns the outcomes recorded, and whether the conversation's
    /// outbox may go on now.
    async fn send_next(
        &self,
        app: &AppContext,
        known: &mut Known<Conversation>,
        next: Next,
        used_channels: &Mutex<HashSet<ChannelId>>,
    ) -> Result<(usize, bool), AppError> {
        let Next {
            place,
            kind,
            now,
            reply,
            indexes,
        } = next;
        let id = place.conversation_id;
        let conversation = known.state.clone();
        if !self.due(reply.reply_id) {
            return Ok((0, false));
        }
        let Some(channel) = app
            .directory
            .by_id(&*app.store, reply.channel_id)
            .await
            .map_err(AppError::internal)?
        else {
            return Ok((0, false));
        };
        let status = channel.state.status_at(now);
        if status == Some(ChannelStatus::Expired) {
            // Replies wait for reauthorization.
            return Ok((0, false));
        }
        let route = match kind {
            ChannelKind::Facebook => SendRoute::FacebookSend,
            ChannelKind::Line => reply.line_route(),
        };
        crash_point("delivery:before-claim");
        // The claim: only one worker anywhere gets past this.
        let claimed = step(app, id, known, |c| {
            decide_claim(&c.outbox, place, reply.reply_id, &indexes, route, now)
        })
        .await?;
        if claimed.is_empty() {
            return Ok((0, false));
        }
        crash_point("delivery:after-claim");
        let answer = if status == Some(ChannelStatus::Disconnected) {
            Answer::Settled(Outcome::Failed {
                code: Some("CHANNEL_NOT_CONNECTED".into()),
                reason: "the channel was disconnected".into(),
            })
        } else {
            let started = std::time::Instant::now();
            let answer = self
                .send(app, &channel, &conversation, &reply, &indexes, route)
                .await;
            record_attempt(app, route, &reply, started.elapsed(), &answer);
            answer
        };
        crash_point("delivery:after-send");
        let Some(outcome) = self.outcome(&reply, route, answer) else {
            // Claimed and maybe sent: the echo or the lease decides.
            return Ok((0, false));
        };
        if matches!(outcome, Outcome::Delivered(_)) {
            used_channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(channel.id);
        }
        let deferred = matches!(outcome, Outcome::Deferred { .. });
        let events = step(app, id, known, |c| {
            decide_outcome(
                &c.outbox,
                place,
                reply.reply_id,
                &indexes,
                now,
                &outcome,
                app.clock.now(),
            )
        })
        .await?;
        Ok((settled(&events), !deferred))
    }

    /// Turns a platform's answer into the outcome to record, counting
    /// attempts; `None` leaves the claim in place.
    fn outcome(&self, reply: &OutboundReply, route: SendRoute, answer: Answer) -> Option<Outcome> {
        let deferred = |reason: String, reply_token_refused, ambiguous| Outcome::Deferred {
            reason,
            reply_token_refused,
            ambiguous,
        };
        let unconfirmed = |reason: &str| {
            Outcome::Failed {
            code: Some("UNCONFIRMED".into()),
            reason: format!(
                "LINE may have delivered this reply, but never confirmed it ({reason}); \
                 it was not sent again, to avoid a duplicate: check the chat in LINE before resending"
            ),
        }
        };
        Some(match answer {
            Answer::Settled(outcome) => {
                self.forget(reply.reply_id);
                outcome
            }
            Answer::Unknown => return None,
            Answer::Wait(reason) => deferred(reason, false, false),
            Answer::Retry(reason) if self.back_off(reply.reply_id) => {
                tracing::info!(reply = %reply.reply_id, %reason, "delivery will be retried");
                deferred(reason, false, false)
            }
            Answer::Retry(reason) => {
                self.forget(reply.reply_id);
                Outcome::Failed {
                    code: None,
                    reason: format!("gave up after {MAX_ATTEMPTS} attempts: {reason}"),
                }
            }
            Answer::Ambiguous(reason) if self.back_off(reply.reply_id) => {
                tracing::info!(reply = %reply.reply_id, %reason, "reply-token call unanswered; retrying with the same token");
                deferred(reason, false, true)
            }
            Answer::Ambiguous(reason) => {
                self.forget(reply.reply_id);
                unconfirmed(&reason)
            }
            Answer::TokenRefused(reason) if reply.reply_ambiguous => {
                // The earlier, unanswered call most likely used the token.
                self.forget(reply.reply_id);
                unconfirmed(&reason)
            }
            Answer::TokenRefused(reason) => {
                debug_assert_eq!(route, SendRoute::LineReply);
                deferred(
                    format!("the reply token was refused ({reason}); pushing instead"),
                    true,
                    false,
                )
            }
        })
    }

    /// Replies with a retry schedule in memory (settled ones are dropped
    /// at once, forgotten ones after a while).
    pub fn scheduled_retries(&self) -> usize {
        self.retries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn forget_old_retries(&self) {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, retry| retry.touched.elapsed() < RETRY_MEMORY);
    }

    fn forget(&self, reply: Uuid) {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&reply);
    }

    fn due(&self, reply: Uuid) -> bool {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&reply)
            .is_none_or(|retry| Instant::now() >= retry.next)
    }

    /// Schedules another attempt; false once attempts are used up.
    fn back_off(&self, reply: Uuid) -> bool {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let retry = retries.entry(reply).or_insert(Retry {
            attempts: 0,
            next: now,
            touched: now,
        });
        retry.attempts += 1;
        retry.touched = now;
        if retry.attempts >= MAX_ATTEMPTS {
            return false;
        }
        let base = self
            .base_backoff
            .saturating_mul(1 << retry.attempts.min(10))
            .min(MAX_BACKOFF);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        retry.next = now + base.mul_f64(jitter);
        true
    }

    /// Makes the platform call for claimed bubbles `indexes` of `reply`.
    async fn send(
        &self,
        app: &AppContext,
        channel: &KnownChannel,
        conversation: &Conversation,
        reply: &OutboundReply,
        indexes: &[u32],
        route: SendRoute,
    ) -> Answer {
        let Some(token) = channel.state.access_token.as_ref() else {
            return Answer::Wait("the channel has no access token".into());
        };
        let token = match app.secrets.get(token.id).await {
            Ok(token) => token,
            Err(error) => return Answer::Retry(error.to_string()),
        };
        let mut opened = Vec::with_capacity(indexes.len());
        for (index, bubble, _) in reply.bubbles.iter().filter(|(i, _, _)| indexes.contains(i)) {
            match open_bubble(app, bubble).await {
                Ok(bubble) => opened.push((*index, bubble)),
                Err(answer) => return answer,
            }
        }
        let bubbles: Vec<(u32, &CheckedBubble)> = opened.iter().map(|(i, b)| (*i, b)).collect();
        match route {
            SendRoute::FacebookSend => {
                let Some((index, bubble)) = bubbles.first().copied() else {
                    return Answer::Retry("nothing to send".into());
                };
                send_facebook(
                    app,
                    channel,
                    conversation,
                    reply,
                    index,
                    bubble,
                    token.expose(),
                )
                .await
            }
            SendRoute::LineReply | SendRoute::LinePush => {
                let answer = send_line(app, reply, &bubbles, route, token.expose()).await;
                if matches!(answer, Answer::Wait(_)) {
                    if let Err(error) =
                        crate::services::channels::expire_rejected_token(app, channel.id, 401, None)
                            .await
                    {
                        tracing::warn!(?error, "could not expire the channel");
                    }
                }
                answer
            }
        }
    }
}

/// Counts and logs one platform call of the delivery worker (ids and
/// outcome only, never the text).
fn record_attempt(
    app: &AppContext,
    route: SendRoute,
    reply: &OutboundReply,
    took: std::time::Duration,
    answer: &Answer,
) {
    let (platform, call) = match route {
        SendRoute::FacebookSend => ("facebook", "send"),
        SendRoute::LineReply => ("line", "reply"),
        SendRoute::LinePush => ("line", "push"),
    };
    let (outcome, sent, failed) = match answer {
        Answer::Settled(Outcome::Delivered(ids)) => ("delivered", ids.len() as u64, false),
        Answer::Settled(_) => ("failed", 0, true),
        Answer::Retry(_) => ("retry", 0, true),
        Answer::Wait(_) => ("waiting", 0, true),
        Answer::Ambiguous(_) | Answer::Unknown => ("unknown", 0, true),
        Answer::TokenRefused(_) => ("token_refused", 0, true),
    };
    app.metrics
        .platform_call(platform, call, took.as_secs_f64(), failed);
    app.metrics.delivery(platform, outcome, sent);
    tracing::info!(
        platform,
        call,
        reply = %reply.reply_id,
        outcome,
        took_ms = took.as_millis() as u64,
        "delivery attempt"
    );
}

/// A bubble as the platform must see it: its text opened (texts are
/// sealed under the customer's key in the log). Once the customer is
/// erased, there is nothing left to send.
async fn open_bubble(app: &AppContext, bubble: &CheckedBubble) -> Result<CheckedBubble, Answer> {
    let CheckedBubble::Text(text) = bubble else {
        return Ok(bubble.clone());
    };
    match app.personal.open(text).await {
        Ok(omnibox_store::personal::Opened::Plain(text)) => Ok(CheckedBubble::Text(text)),
        Ok(omnibox_store::personal::Opened::Erased) => Err(Answer::Settled(Outcome::Failed {
            code: Some("CONTACT_ERASED".into()),
            reason: "the customer's data was erased before this reply was sent".into(),
        })),
        Err(error) => Err(Answer::Retry(error.to_string())),
    }
}

/// How many bubbles `events` settled (delivered or failed).
fn settled(events: &[ConversationEvent]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ConversationEvent::ReplyBubbleDelivered { .. }
                    | ConversationEvent::ReplyBubbleFailed { .. }
            )
        })
        .count()
}

/// Decides a delivery step on the conversation's current events and
/// appends it at the revision it was decided on (re-deciding on conflict).
/// A step the state has moved past (another worker took it) appends
/// nothing and returns no events.
/// The bubbles a conversation's outbox sends next, and where and when.
struct Next {
    place: Place,
    kind: ChannelKind,
    now: chrono::DateTime<chrono::Utc>,
    reply: OutboundReply,
    indexes: Vec<u32>,
}

async fn step(
    app: &AppContext,
    id: ConversationId,
    known: &mut Known<Conversation>,
    decide: impl Fn(&Conversation) -> Result<Vec<ConversationEvent>, StaleStep>,
) -> Result<Vec<ConversationEvent>, AppError> {
    let actor = Actor::system("system:delivery");
    match execute_on(&*app.store, id.0, &actor, known, |_| None, decide).await {
        Ok(executed) => Ok(executed.events),
        Err(CommandError::Rejected(_)) => Ok(Vec::new()),
        Err(error) => Err(AppError::internal(format!("{error:?}"))),
    }
}

async fn send_facebook(
    app: &AppContext,
    channel: &KnownChannel,
    conversation: &Conversation,
    reply: &OutboundReply,
    index: u32,
    bubble: &CheckedBubble,
    token: &str,
) -> Answer {
    // The window may have moved while the reply waited (an expired channel, retries).
    let window = policy::window(
        ChannelKind::Facebook,
        conversation.last_customer_message_at,
        app.clock.now(),
    );
    let allowance = match policy::decide_reply(
        ChannelKind::Facebook,
        &window,
        reply.evidence.promotional,
        reply.evidence.author,
    ) {
        Ok(allowance) => allowance,
        Err(refused) => {
            return Answer::Settled(Outcome::Failed {
                code: Some("WINDOW_CLOSED".into()),
                reason: format!("the messaging window no longer allows this reply: {refused}"),
            })
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
        "recipient": { "id": reply.recipient.platform_id() },
        "messaging_type": match allowance.messaging_type {
            Some(MessagingType::MessageTag) => "MESSAGE_TAG",
            _ => "RESPONSE",
        },
        "message": message,
        "metadata": format!("omnibox:msg:{}", reply_message_id(reply.reply_id, index)),
    });
    if let Some(MessageTag::HumanAgent) = allowance.tag {
        body["tag"] = json!("HUMAN_AGENT");
    }
    match app
        .graph
        .send(&channel.state.external_id, token, &body)
        .await
    {
        Ok(sent) => Answer::Settled(Outcome::Delivered(vec![Some(sent.message_id)])),
        Err(error) => facebook_answer(app, channel, error).await,
    }
}

async fn facebook_answer(app: &AppContext, channel: &KnownChannel, error: PlatformError) -> Answer {
    let failed = |code: String, reason: String| {
        Answer::Settled(Outcome::Failed {
            code: Some(code),
            reason,
        })
    };
    match error {
        PlatformError::Facebook { error, .. } => match (error.code, error.error_subcode) {
            (190, subcode) => {
                if let Err(error) =
                    crate::services::channels::expire_rejected_token(app, channel.id, 190, subcode)
                        .await
                {
                    tracing::warn!(?error, "could not expire the channel");
                }
                Answer::Wait("the page token was rejected; waiting for reauthorization".into())
            }
            (4 | 17 | 32 | 613 | 1 | 2, _) => Answer::Retry(error.message),
            (10, Some(2018278 | 2534022)) => failed(
                "WINDOW_CLOSED".into(),
                format!("Facebook: outside the allowed window ({})", error.message),
            ),
            (551, _) | (_, Some(1545041)) => failed(
                "PERSON_UNAVAILABLE".into(),
                format!(
                    "Facebook: the person cannot be reached now ({})",
                    error.message
                ),
            ),
            (100, Some(2018109)) => failed(
                "ATTACHMENT_NOT_ALLOWED".into(),
                format!("Facebook: attachment too large ({})", error.message),
            ),
            (code, subcode) => failed(
                format!("FACEBOOK_{code}"),
                format!(
                    "Facebook error {code} (subcode {subcode:?}): {}",
                    error.message
                ),
            ),
        },
        // Never connected: nothing was sent, so sending again is safe.
        PlatformError::Unreachable(error) if error.is_connect() => Answer::Retry(error.to_string()),
        PlatformError::Unreachable(_) => Answer::Unknown,
        PlatformError::UnexpectedAnswer { status, reason } if status >= 500 || status == 0 => {
            Answer::Retry(reason)
        }
        other => Answer::Settled(Outcome::Failed {
            code: None,
            reason: other.to_string(),
        }),
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

async fn send_line(
    app: &AppContext,
    reply: &OutboundReply,
    bubbles: &[(u32, &CheckedBubble)],
    route: SendRoute,
    token: &str,
) -> Answer {
    let messages: Vec<Value> = bubbles
        .iter()
        .map(|(_, b)| line_message(b, reply.sender.as_ref()))
        .collect();
    let sent = match (route, &reply.reply_token) {
        (SendRoute::LineReply, Some(reply_token)) => {
            match app.line.reply(token, reply_token, &messages).await {
                // Used or expired: nothing was sent with it.
                Err(PlatformError::Line { status: 400, error }) => {
                    return Answer::TokenRefused(error.message)
                }
                Err(error) => return line_answer(error, true),
                Ok(sent) => sent,
            }
        }
        _ => match app
            .line
            .push(
                token,
                reply.recipient.platform_id(),
                &messages,
                reply.reply_id,
            )
            .await
        {
            Ok(sent) => sent,
            Err(error) => return line_answer(error, false),
        },
    };
    Answer::Settled(Outcome::Delivered(
        sent.into_iter().map(|m| Some(m.id)).collect(),
    ))
}

/// LINE's refusal or silence, for a reply-token call (`on_reply`: a repeat
/// through another route could deliver twice) or a push (retry key: a
/// repeat is harmless).
fn line_answer(error: PlatformError, on_reply: bool) -> Answer {
    match error {
        PlatformError::Line { status: 401, .. } => {
            Answer::Wait("LINE rejected the channel access token".into())
        }
        // Rate limited: refused before anything was sent.
        PlatformError::Line { status: 429, error } => {
            Answer::Retry(format!("LINE 429: {}", error.message))
        }
        PlatformError::Line { status, error } if status >= 500 => {
            let reason = format!("LINE {status}: {}", error.message);
            match on_reply {
                true => Answer::Ambiguous(reason),
                false => Answer::Retry(reason),
            }
        }
        PlatformError::Line { status, error } => Answer::Settled(Outcome::Failed {
            code: Some(format!("LINE_{status}")),
            reason: format!("LINE refused the message ({status}): {}", error.message),
        }),
        PlatformError::Unreachable(error) if on_reply && !error.is_connect() => {
            Answer::Ambiguous(error.to_string())
        }
        PlatformError::Unreachable(error) => Answer::Retry(error.to_string()),
        PlatformError::UnexpectedAnswer { status, reason } if on_reply && status >= 500 => {
            Answer::Ambiguous(reason)
        }
        PlatformError::UnexpectedAnswer { status, reason } if status >= 500 || status == 0 => {
            Answer::Retry(reason)
        }
        other => Answer::Settled(Outcome::Failed {
            code: None,
            reason: other.to_string(),
        }),
    }
}

/// Runs passes until the process stops: after every change, and every second.
pub async fn run_delivery_worker(app: AppContext) {
    let worker = DeliveryWorker::default();
    let mut updates = app.bus.subscribe();
    loop {
        if let Err(error) = worker.run_once(&app).await {
            tracing::warn!(?error, "delivery pass failed; trying again");
        }
        if !app.next_pass(&mut updates, Duration::from_secs(1)).await {
            return;
        }
    }
}
