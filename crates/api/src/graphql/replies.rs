//! Replying: the `sendReply` mutation. The rules are checked by the
//! replies service; the delivery worker then sends and records the outcome.

use async_graphql::{Context, InputObject, Object};
use omnibox_app::services::replies::{
    keyed_reply_id, queue_reply, AttachmentDraft, BubbleDraft, NewReply,
};
use omnibox_domain::conversation::reply_message_id;
use omnibox_domain::ids::{ConversationId, OrgId};
use omnibox_domain::policy::Sender;
use uuid::Uuid;

use super::conversations::Message;
use super::{session, state};
use crate::error::ApiError;
use crate::state::AppState;

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

/// The messages of reply `reply_id`, as the read model shows them.
async fn reply_messages(
    app: &AppState,
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

impl From<BubbleInput> for BubbleDraft {
    fn from(input: BubbleInput) -> Self {
        BubbleDraft {
            text: input.text,
            attachment: input.attachment.map(|a| AttachmentDraft {
                url: a.url,
                file_name: a.file_name,
                size_bytes: a.size_bytes,
            }),
        }
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
            Some(key) => keyed_reply_id(org, key).map_err(ApiError::from)?,
            None => Uuid::now_v7(),
        };
        if input.idempotency_key.is_some() {
            let earlier = reply_messages(app, org, reply_id).await?;
            if !earlier.is_empty() {
                return Ok(earlier);
            }
        }
        let reply = NewReply {
            conversation_id: ConversationId(input.conversation_id),
            bubbles: input.bubbles.into_iter().map(BubbleDraft::from).collect(),
            promotional: input.promotional,
            template_id: input.template_id,
            sender: input.sender.map(|s| Sender {
                name: s.name,
                icon_url: s.icon_url,
            }),
            keyed: input.idempotency_key.is_some(),
        };
        queue_reply(app, me, reply_id, reply)
            .await
            .map_err(ApiError::from)?;
        let messages = reply_messages(app, org, reply_id).await?;
        Ok(messages)
    }
}
