//! Replying: every policy rule is checked before anything is queued; the
//! delivery worker then sends and records the outcome.

use async_graphql::{Context, InputObject, Object};
use omnibox_domain::conversation::{self as domain, reply_message_id, ReplyError, ReplyRequest};
use omnibox_domain::ids::{ConversationId, OrgId};
use omnibox_domain::policy::{AttachmentRef, Bubble, BubbleRefused, ReplyRefused, Sender};
use uuid::Uuid;

use super::conversations::Message;
use super::{session, state};
use crate::commands::{execute_identified, load, Actor, CommandError};
use crate::ApiError;

#[derive(InputObject)]
pub struct AttachmentInput {
    /// An https URL the platform can fetch.
    pub url: String,
    pub file_name: String,
    pub size_bytes: i64,
}

/// One bubble: a text or an attachment, not both.
#[derive(InputObject)]
pub struct BubbleInput {
    pub text: Option<String>,
    pub attachment: Option<AttachmentInput>,
}

#[derive(InputObject)]
pub struct SendReplyInput {
    pub conversation_id: Uuid,
    /// 1 to 5 bubbles.
    pub bubbles: Vec<BubbleInput>,
    /// Deals, offers, coupons: allowed only inside Facebook's 24-hour window.
    #[graphql(default = false)]
    pub promotional: bool,
    pub template_id: Option<Uuid>,
    /// LINE only: show the agent to the customer as this name and icon.
    /// Facebook never shows the agent, so a sender there is refused.
    pub sender: Option<SenderInput>,
    /// A key the client chooses per reply (1 to 200 characters), so that a
    /// retry after a timeout is safe: the same key within an organization
    /// answers the first reply's messages and never queues again.
    pub idempotency_key: Option<String>,
}

/// Namespace of reply ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_626f_7852_6570_6c79_4b65_7973);

/// The reply id a client's idempotency key stands for in `org`.
fn keyed_reply_id(org: OrgId, key: &str) -> Result<Uuid, ApiError> {
    let length = key.chars().count();
    if !(1..=200).contains(&length) {
        return Err(ApiError::Validation(
            "idempotencyKey must be 1 to 200 characters".into(),
        ));
    }
    let mut name = org.0.as_bytes().to_vec();
    name.extend_from_slice(key.as_bytes());
    Ok(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
}

/// The messages of reply `reply_id`, as the read model shows them.
async fn reply_messages(
    app: &crate::AppState,
    org: OrgId,
    reply_id: Uuid,
) -> Result<Vec<Message>, ApiError> {
    let mut messages = Vec::new();
    for index in 0..omnibox_domain::policy::MAX_BUBBLES as u32 {
        match super::conversations::load_message(app, org, reply_message_id(reply_id, index))
            .await?
        {
            Some(message) => messages.push(message),
            None => break,
        }
    }
    Ok(messages)
}

/// The agent persona a LINE message carries: a name of at most 20
/// characters (not containing "LINE") and an optional https PNG icon.
#[derive(InputObject)]
pub struct SenderInput {
    pub name: String,
    pub icon_url: Option<String>,
}

pub(crate) fn parse_bubble(input: BubbleInput, index: usize) -> Result<Bubble, ApiError> {
    match (input.text, input.attachment) {
        (Some(text), None) => Ok(Bubble::Text(text)),
        (None, Some(a)) => Ok(Bubble::Attachment(AttachmentRef {
            url: a.url,
            file_name: a.file_name,
            size_bytes: u64::try_from(a.size_bytes).map_err(|_| {
                ApiError::Validation(format!(
                    "bubble {}: sizeBytes cannot be negative",
                    index + 1
                ))
            })?,
        })),
        _ => Err(ApiError::Validation(format!(
            "bubble {} must have either text or an attachment",
            index + 1
        ))),
    }
}

pub(crate) fn reply_error(error: ReplyError) -> ApiError {
    match error {
        ReplyError::NotFound => {
            ApiError::NotFound("no such conversation in your organization".into())
        }
        ReplyError::ChannelNotConnected(message) => ApiError::ChannelNotConnected(message),
        ReplyError::Window(refused @ ReplyRefused::WindowClosed { .. }) => {
            ApiError::WindowClosed(refused.to_string())
        }
        ReplyError::Window(refused @ ReplyRefused::PromotionalNotAllowed { .. }) => {
            ApiError::PromotionalNotAllowed(refused.to_string())
        }
        ReplyError::Window(refused) => ApiError::Forbidden(refused.to_string()),
        ReplyError::Bubbles(refused @ BubbleRefused::Attachment { .. }) => {
            ApiError::AttachmentNotAllowed(refused.to_string())
        }
        ReplyError::Bubbles(refused) => ApiError::Validation(refused.to_string()),
        ReplyError::Sender(refused) => ApiError::Validation(refused.to_string()),
    }
}

#[derive(Default)]
pub struct RepliesMutation;

#[Object]
impl RepliesMutation {
    /// Sends up to 5 bubbles to the conversation's customer, within the
    /// platform's rules (Facebook's windows, no promotional content after
    /// 24 hours, attachment types and sizes). Answers with the queued
    /// messages; their `deliveryState` moves to DELIVERED or FAILED.
    async fn send_reply(
        &self,
        ctx: &Context<'_>,
        input: SendReplyInput,
    ) -> async_graphql::Result<Vec<Message>> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let org: OrgId = me.org_id;
        let reply_id = match &input.idempotency_key {
            Some(key) => keyed_reply_id(org, key)?,
            None => Uuid::now_v7(),
        };
        if input.idempotency_key.is_some() {
            let earlier = reply_messages(app, org, reply_id).await?;
            if !earlier.is_empty() {
                return Ok(earlier);
            }
        }
        // Decided from the conversation's and the channel's events, not
        // from read models.
        let conversation_id = ConversationId(input.conversation_id);
        let not_found = || ApiError::NotFound("no such conversation in your organization".into());
        let (conversation, _) = load::<domain::Conversation>(&*app.store, conversation_id.0)
            .await
            .map_err(|e| ApiError::internal(format!("{e:?}")))?;
        let (Some(channel_id), Some(kind)) = (conversation.channel_id, conversation.channel_kind)
        else {
            return Err(not_found().into());
        };
        if conversation.org_id != Some(org) {
            return Err(not_found().into());
        }
        let channel = app
            .directory
            .by_id(&*app.store, channel_id)
            .await
            .map_err(ApiError::internal)?
            .filter(|c| c.org_id == org)
            .ok_or_else(|| ApiError::NotFound("no such channel in your organization".into()))?;
        let mut bubbles = Vec::with_capacity(input.bubbles.len());
        for (index, b) in input.bubbles.into_iter().enumerate() {
            bubbles.push(parse_bubble(b, index)?);
        }
        let template_id = match input.template_id {
            Some(id) => {
                let template = crate::templates::template_bubbles(app, org, id, kind).await?;
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
            promotional: input.promotional,
            template_id,
            sender: input.sender.map(|s| Sender {
                name: s.name,
                icon_url: s.icon_url,
            }),
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
            .map_err(ApiError::internal)?;
        let keyed = input.idempotency_key.is_some();
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
            CommandError::Contended => ApiError::Conflict(
                "the conversation kept changing while the reply was decided; send it again".into(),
            ),
            other => ApiError::internal(other),
        })?;
        app.read_your_writes(executed.position).await;
        let messages = reply_messages(app, org, reply_id).await?;
        Ok(messages)
    }
}
