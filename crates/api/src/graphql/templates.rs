//! Reply templates through GraphQL.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use omnibox_app::commands::{execute, Actor, CommandError};
use omnibox_app::services::replies::parse_bubble;
use omnibox_app::AppError;
use omnibox_domain::ids::TemplateId;
use omnibox_domain::policy::Bubble;
use omnibox_domain::template::{self, Template, TemplateError};
use omnibox_projections::templates::{self as read, TemplateRow};
use uuid::Uuid;

use super::channels::ChannelKind;
use super::replies::BubbleInput;
use super::{session, state};
use crate::error::ApiError;

#[derive(InputObject)]
pub struct ReplyTemplateInput {
    pub kind: ChannelKind,
    pub name: String,
    pub bubbles: Vec<BubbleInput>,
}

#[derive(SimpleObject)]
pub struct TemplateAttachment {
    pub url: String,
    pub file_name: String,
    pub size_bytes: i64,
}

#[derive(SimpleObject)]
pub struct TemplateBubble {
    pub text: Option<String>,
    pub attachment: Option<TemplateAttachment>,
}

#[derive(SimpleObject)]
pub struct ReplyTemplate {
    pub id: Uuid,
    pub kind: ChannelKind,
    pub name: String,
    pub bubbles: Vec<TemplateBubble>,
}

impl From<TemplateRow> for ReplyTemplate {
    fn from(row: TemplateRow) -> Self {
        Self {
            id: row.id.0,
            kind: row.kind.into(),
            name: row.name,
            bubbles: row
                .bubbles
                .into_iter()
                .map(|b| match b {
                    Bubble::Text(text) => TemplateBubble {
                        text: Some(text),
                        attachment: None,
                    },
                    Bubble::Attachment(a) => TemplateBubble {
                        text: None,
                        attachment: Some(TemplateAttachment {
                            url: a.url,
                            file_name: a.file_name,
                            size_bytes: i64::try_from(a.size_bytes).unwrap_or(i64::MAX),
                        }),
                    },
                })
                .collect(),
        }
    }
}

#[derive(Default)]
pub struct TemplatesQuery;

#[Object]
impl TemplatesQuery {
    /// The organization's reply templates, of one channel kind if given.
    async fn reply_templates(
        &self,
        ctx: &Context<'_>,
        kind: Option<ChannelKind>,
    ) -> async_graphql::Result<Vec<ReplyTemplate>> {
        let me = &session(ctx)?.member;
        let rows = read::templates(&state(ctx)?.db, me.org_id, kind.map(Into::into))
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(ReplyTemplate::from).collect())
    }
}

#[derive(Default)]
pub struct TemplatesMutation;

#[Object]
impl TemplatesMutation {
    /// Creates a template for one channel kind. Facebook templates are text
    /// only, 1 to 5 bubbles, each under 2000 characters.
    async fn create_reply_template(
        &self,
        ctx: &Context<'_>,
        input: ReplyTemplateInput,
    ) -> async_graphql::Result<ReplyTemplate> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let mut bubbles = Vec::with_capacity(input.bubbles.len());
        for (index, bubble) in input.bubbles.into_iter().enumerate() {
            bubbles.push(parse_bubble(bubble.into(), index).map_err(ApiError::from)?);
        }
        let id = TemplateId::generate();
        let (org, kind, now) = (me.org_id, input.kind.into(), app.clock.now());
        let executed = execute::<Template, _>(&*app.store, id.0, &Actor::member(me), |t| {
            template::create(t, id, org, kind, &input.name, bubbles.clone(), me.id, now)
        })
        .await
        .map_err(|e| match e {
            CommandError::Rejected(error @ TemplateError::Refused(_))
            | CommandError::Rejected(error @ TemplateError::InvalidName) => {
                ApiError::App(AppError::Validation(error.to_string()))
            }
            CommandError::Rejected(error) => ApiError::App(AppError::Conflict(error.to_string())),
            other => ApiError::internal(other),
        })?;
        app.read_your_writes(executed.position).await;
        let row = read::templates(&app.db, org, None)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ApiError::internal("a created template is not in the read model"))?;
        Ok(row.into())
    }
}
