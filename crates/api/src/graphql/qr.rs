//! QR assignment codes (LINE): list, create, revoke.

use async_graphql::{Context, Object};
use omnibox_app::AppError;
use omnibox_domain::ids::{ChannelId, MemberId, OrgId};
use omnibox_domain::qr::QrCode;
use omnibox_projections::channels as channel_read;
use omnibox_projections::members as member_read;
use omnibox_projections::qr_codes as read;
use uuid::Uuid;

use super::channels::Channel;
use super::{session, state, Member};
use crate::error::ApiError;

/// A printable code that assigns LINE customers who send it to `agent`.
pub struct QrAssignmentCode {
    id: Uuid,
    org: OrgId,
    code: String,
    channel: ChannelId,
    agent: MemberId,
    line_url: String,
    revoked: bool,
}

impl QrAssignmentCode {
    fn from_state(code: QrCode, org: OrgId) -> Result<Self, ApiError> {
        match (code.id, code.channel_id, code.agent_id) {
            (Some(id), Some(channel), Some(agent)) => Ok(Self {
                id,
                org,
                code: code.code,
                channel,
                agent,
                line_url: code.line_url,
                revoked: code.revoked,
            }),
            _ => Err(ApiError::App(AppError::NotFound(
                "no such QR assignment code".into(),
            ))),
        }
    }
}

#[Object]
impl QrAssignmentCode {
    async fn id(&self) -> Uuid {
        self.id
    }

    /// The text the customer sends (pre-filled by the link).
    async fn code(&self) -> &str {
        &self.code
    }

    async fn channel(&self, ctx: &Context<'_>) -> async_graphql::Result<Channel> {
        let row = channel_read::channel(&state(ctx)?.db, self.org, self.channel)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::App(AppError::NotFound("the code's channel is gone".into()))
            })?;
        Ok(Channel::now(row))
    }

    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Member> {
        let row = member_read::member(&state(ctx)?.db, self.org, self.agent)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::App(AppError::NotFound(
                    "the code's agent is no longer a member".into(),
                ))
            })?;
        Ok(row.into())
    }

    /// What the QR encodes: a LINE link that opens the official account's
    /// chat with the code pre-filled.
    async fn line_url(&self) -> &str {
        &self.line_url
    }

    /// Omnibox's PNG of the QR (public by its unguessable id: codes are
    /// meant to be printed).
    async fn image_url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        Ok(format!(
            "{}/qr/{}.png",
            state(ctx)?.config.public_url,
            self.id
        ))
    }

    /// A revoked code assigns nobody and its image is gone.
    async fn revoked(&self) -> bool {
        self.revoked
    }
}

#[derive(Default)]
pub struct QrQuery;

#[Object]
impl QrQuery {
    /// The organization's QR assignment codes (of one channel if given),
    /// oldest first.
    async fn qr_assignment_codes(
        &self,
        ctx: &Context<'_>,
        channel_id: Option<Uuid>,
    ) -> async_graphql::Result<Vec<QrAssignmentCode>> {
        let org = session(ctx)?.member.org_id;
        let rows = read::qr_codes(&state(ctx)?.db, org, channel_id.map(ChannelId))
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|row| QrAssignmentCode {
                id: row.id,
                org,
                code: row.code,
                channel: row.channel_id,
                agent: row.agent_id,
                line_url: row.line_url,
                revoked: row.revoked,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct QrMutation;

#[Object]
impl QrMutation {
    /// A QR code that assigns LINE customers who scan it and send the
    /// pre-filled text to `agentId`, overriding round robin. OWNER,
    /// PRIMARY_ADMIN or ADMIN; a Facebook channel answers
    /// NOT_SUPPORTED_ON_CHANNEL.
    async fn create_qr_assignment_code(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        agent_id: Uuid,
    ) -> async_graphql::Result<QrAssignmentCode> {
        let session = session(ctx)?;
        let code = omnibox_app::services::qr::create(
            state(ctx)?,
            session,
            ChannelId(channel_id),
            MemberId(agent_id),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(QrAssignmentCode::from_state(code, session.member.org_id)?)
    }

    /// Revokes a code: it assigns nobody from now on.
    async fn revoke_qr_assignment_code(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> async_graphql::Result<QrAssignmentCode> {
        let session = session(ctx)?;
        let code = omnibox_app::services::qr::revoke(state(ctx)?, session, id)
            .await
            .map_err(ApiError::from)?;
        Ok(QrAssignmentCode::from_state(code, session.member.org_id)?)
    }
}
