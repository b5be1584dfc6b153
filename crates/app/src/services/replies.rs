//! Replying: every policy rule is checked before anything is queued; the
//! delivery worker then sends and records the outcome.

use omnibox_domain::conversation::{self as domain, ReplyError, ReplyRequest};
use omnibox_domain::ids::{ConversationId, OrgId};
use omnibox_domain::policy::{AttachmentRef, Bubble, BubbleRefused, ReplyRefused, Sender};
use omnibox_projections::members::MemberRow;
use uuid::Uuid;

use crate::commands::{execute_identified, load, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;
use crate::services::templates::template_bubbles;

/// One bubble as a client wrote it: a text or an attachment, not both.
pub struct BubbleDraft {
    pub text: Option<String>,
    pub attachment: Option<AttachmentDraft>,
}

/// An attachment as a client wrote it.
pub struct AttachmentDraft {
    pub url: String,
    pub file_name: String,
    pub size_bytes: i64,
}

/// A reply a member asks to send.
pub struct NewReply {
    pub conversation_id: ConversationId,
    /// 1 to 5 bubbles (or none, with a template).
    pub bubbles: Vec<BubbleDraft>,
    pub promotional: bool,
    pub template_id: Option<Uuid>,
    pub sender: Option<Sender>,
    /// Whether the reply id was derived from an idempotency key.
    pub keyed: bool,
}

/// Namespace of reply ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_626f_7852_6570_6c79_4b65_7973);

/// The reply id a client's idempotency key stands for in `org`.
pub fn keyed_reply_id(org: OrgId, key: &str) -> Result<Uuid, AppError> {
    let length = key.chars().count();
    if !(1..=200).contains(&length) {
        return Err(AppError::Validation(
            "idempotencyKey must be 1 to 200 characters".into(),
        ));
    }
    let mut name = org.0.as_bytes().to_vec();
    name.extend_from_slice(key.as_bytes());
    Ok(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
}

/// Bubble `index` (0-based) of a draft, checked for its shape.
pub fn parse_bubble(input: BubbleDraft, index: usize) -> Result<Bubble, AppError> {
    match (input.text, input.attachment) {
        (Some(text), None) => Ok(Bubble::Text(text)),
        (None, Some(a)) => Ok(Bubble::Attachment(AttachmentRef {
            url: a.url,
            file_name: a.file_name,
            size_bytes: u64::try_from(a.size_bytes).map_err(|_| {
                AppError::Validation(format!(
                    "bubble {}: sizeBytes cannot be negative",
                    index + 1
                ))
            })?,
        })),
        _ => Err(AppError::Validation(format!(
            "bubble {} must have either text or an attachment",
            index + 1
        ))),
    }
}

/// The domain's refusal of a reply, as a caller can act on it.
pub fn reply_error(error: ReplyError) -> AppError {
    match error {
        ReplyError::NotFound => {
            AppError::NotFound("no such conversation in your organization".into())
        }
        ReplyError::ChannelNotConnected(message) => AppError::ChannelNotConnected(message),
        ReplyError::Window(refused @ ReplyRefused::WindowClosed { .. }) => {
            AppError::WindowClosed(refused.to_string())
        }
        ReplyError::Window(refused @ ReplyRefused::PromotionalNotAllowed { .. }) => {
            AppError::PromotionalNotAllowed(refused.to_string())
        }
        ReplyError::Window(refused) => AppError::Forbidden(refused.to_string()),
        ReplyError::Bubbles(refused @ BubbleRefused::Attachment { .. }) => {
            AppError::AttachmentNotAllowed(refused.to_string())
        }
        ReplyError::Bubbles(refused) => AppError::Validation(refused.to_string()),
        ReplyError::Sender(refused) => AppError::Validation(refused.to_string()),
    }
}

/// Queues reply `reply_id` by member `me`, decided from the conversation's
/// and the channel's events (not from read models), and waits until the
/// read models show it.
pub async fn queue_reply(
    app: &AppContext,
    me: &MemberRow,
    reply_id: Uuid,
    reply: NewReply,
) -> Result<(), AppError> {
    let org: OrgId = me.org_id;
    let conversation_id = reply.conversation_id;
    let not_found = || AppError::NotFound("no such conversation in your organization".into());
    let (conversation, _) = load::<domain::Conversation>(&*app.store, conversation_id.0)
        .await
        .map_err(|e| AppError::internal(format!("{e:?}")))?;
    let (Some(channel_id), Some(kind)) = (conversation.channel_id, conversation.channel_kind)
    else {
        return Err(not_found());
    };
    if conversation.org_id != Some(org) {
        return Err(not_found());
    }
    let channel = app
        .directory
        .by_id(&*app.store, channel_id)
        .await
        .map_err(AppError::internal)?
        .filter(|c| c.org_id == org)
        .ok_or_else(|| AppError::NotFound("no such channel in your organization".into()))?;
    let mut bubbles = Vec::with_capacity(reply.bubbles.len());
    for (index, b) in reply.bubbles.into_iter().enumerate() {
        bubbles.push(parse_bubble(b, index)?);
    }
    let template_id = match reply.template_id {
        Some(id) => {
            let template = template_bubbles(app, org, id, kind).await?;
            if bubbles.is_empty() {
                bubbles = template;
            }
            Some(omnibox_domain::ids::TemplateId(id))
        }
        None => None,
    };
    let now = app.clock.now();
    let status = channel
        .state
        .status_at(now)
        .unwrap_or(omnibox_domain::channel::ChannelStatus::Disconnected);
    let request = ReplyRequest {
        reply_id,
        author: me.id,
        bubbles,
        promotional: reply.promotional,
        template_id,
        sender: reply.sender,
    };
    // What is said to the customer is sealed under their key.
    let owner = conversation
        .thread
        .as_ref()
        .map(|thread| domain::contact_id(channel_id, thread.platform_id()))
        .ok_or_else(not_found)?;
    let key = app
        .personal
        .for_contact(org.0, owner.0)
        .await
        .map_err(AppError::internal)?;
    let keyed = reply.keyed;
    // A keyed reply's event has an id derived from the key: the log
    // holds it once, whichever request (or conversation) came first.
    let executed = execute_identified::<domain::Conversation, _>(
        &*app.store,
        conversation_id.0,
        &Actor::member(me),
        |event| match event {
            domain::ConversationEvent::ReplyQueued { reply_id, .. } if keyed => {
                Some(Uuid::new_v5(reply_id, b"ReplyQueued"))
            }
            _ => None,
        },
        |c| {
            domain::decide_reply(c, org, status, request.clone(), now).map(|mut events| {
                for event in &mut events {
                    event.seal_personal(|text| key.seal(text));
                }
                events
            })
        },
    )
    .await
    .map_err(|e| match e {
        CommandError::Rejected(error) => reply_error(error),
        CommandError::Contended => AppError::Conflict(
            "the conversation kept changing while the reply was decided; send it again".into(),
        ),
        other => AppError::internal(other),
    })?;
    app.read_your_writes(executed.position).await;
    Ok(())
}
