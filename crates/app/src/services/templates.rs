//! Reply templates: created by members, looked up when a reply names one.

use omnibox_domain::ids::{OrgId, TemplateId};
use omnibox_domain::policy::Bubble;
use omnibox_domain::template::{self, Template, TemplateError};
use omnibox_domain::ChannelKind;
use omnibox_projections::members::MemberRow;
use omnibox_projections::templates::{self as read, TemplateRow};
use uuid::Uuid;

use crate::commands::{execute, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;
use crate::services::replies::{parse_bubble, BubbleDraft};

/// The bubbles of template `id` of `org`, which must be for `kind`.
pub async fn template_bubbles(
    app: &AppContext,
    org: OrgId,
    id: Uuid,
    kind: ChannelKind,
) -> Result<Vec<Bubble>, AppError> {
    let template = read::templates(&app.db, org, None)
        .await?
        .into_iter()
        .find(|t| t.id.0 == id)
        .ok_or_else(|| AppError::NotFound("no such reply template in your organization".into()))?;
    if template.kind != kind {
        return Err(AppError::NotSupportedOnChannel(format!(
            "template {:?} is for {} channels; this conversation is on {}",
            template.name,
            template.kind.as_str(),
            kind.as_str()
        )));
    }
    Ok(template.bubbles)
}

/// Creates a template for one channel kind in `me`'s organization.
/// Facebook templates are text only, 1 to 5 bubbles, each under 2000
/// characters.
pub async fn create_template(
    app: &AppContext,
    me: &MemberRow,
    kind: ChannelKind,
    name: &str,
    drafts: Vec<BubbleDraft>,
) -> Result<TemplateRow, AppError> {
    let mut bubbles = Vec::with_capacity(drafts.len());
    for (index, bubble) in drafts.into_iter().enumerate() {
        bubbles.push(parse_bubble(bubble, index)?);
    }
    let id = TemplateId::generate();
    let (org, now) = (me.org_id, app.clock.now());
    let executed = execute::<Template, _>(&*app.store, id.0, &Actor::member(me), |t| {
        template::create(t, id, org, kind, name, bubbles.clone(), me.id, now)
    })
    .await
    .map_err(|e| match e {
        CommandError::Rejected(error @ TemplateError::Refused(_))
        | CommandError::Rejected(error @ TemplateError::InvalidName) => {
            AppError::Validation(error.to_string())
        }
        CommandError::Rejected(error) => AppError::Conflict(error.to_string()),
        other => AppError::internal(other),
    })?;
    app.read_your_writes(executed.position).await;
    read::templates(&app.db, org, None)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| AppError::internal("a created template is not in the read model"))
}
