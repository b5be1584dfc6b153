//! Reply templates through GraphQL.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use omnibox_app::services::templates::create_template;
use omnibox_domain::policy::Bubble;
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
        let bubbles = input.bubbles.into_iter().map(Into::into).collect();
        let row = create_template(state(ctx)?, me, input.kind.into(), &input.name, bubbles)
            .await
            .map_err(ApiError::from)?;
        Ok(row.into())
    }
}
