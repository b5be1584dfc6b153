//! Replying: every policy rule is checked before anything is queued; the
//! delivery worker then sends and records the outcome.

use async_graphql::{Context, InputObject, Object};
use omnibox_domain::conversation::{self as domain, reply_message_id, ReplyError, ReplyRequest};
use omnibox_domain::ids::{ConversationId, OrgId};
use omnibox_domain::policy::{AttachmentRef, Bubble, BubbleRefused, ReplyRefused, Sender};
use omnibox_projections::channels as channel_read;
use omnibox_projections::inbox as read;
use uuid::Uuid;

use super::conversations::Message;
use super::{session, state};
use crate::commands::{execute, Actor, CommandError};
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
        let conversation_id = ConversationId(input.conversation_id);
        let row = read::conversation(&app.db, org, conversation_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::NotFound("no such conversation in your organization".into())
            })?;
        let channel = channel_read::channel(&app.db, org, row.channel_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound("no such channel in your organization".into()))?;
        let mut bubbles = Vec::with_capacity(input.bubbles.len());
        for (index, b) in input.bubbles.into_iter().enumerate() {
            bubbles.push(parse_bubble(b, index)?);
        }
        let template_id = match input.template_id {
            Some(id) => {
                let template =
                    crate::templates::template_bubbles(app, org, id, channel.kind).await?;
                if bubbles.is_empty() {
                    bubbles = template;
                }
                Some(omnibox_domain::ids::TemplateId(id))
            }
            None => None,
        };
        let now = app.clock.now();
        let status = channel.status_at(now);
        let request = ReplyRequest {
            reply_id: Uuid::now_v7(),
            author: me.id,
            bubbles,
            promotional: input.promotional,
            template_id,
            sender: input.sender.map(|s| Sender {
                name: s.name,
                icon_url: s.icon_url,
            }),
        };
        let reply_id = request.reply_id;
        let executed = execute::<domain::Conversation, _>(
            &*app.store,
            conversation_id.0,
            &Actor::member(me),
            |c| domain::decide_reply(c, org, status, request.clone(), now),
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
        let count = executed
            .events
            .iter()
            .map(|e| match e {
                domain::ConversationEvent::ReplyQueued { bubbles, .. } => bubbles.len(),
                _ => 0,
            })
            .sum::<usize>();
        let mut messages = Vec::with_capacity(count);
        for index in 0..count as u32 {
            if let Some(message) =
                super::conversations::load_message(app, org, reply_message_id(reply_id, index))
                    .await?
            {
                messages.push(message);
            }
        }
        Ok(messages)
    }
}
