//! Reply templates: looked up when a reply names one.

use omnibox_domain::ids::{OrgId, TemplateId};
use omnibox_domain::policy::Bubble;
use omnibox_domain::template::{Template, TemplateEvent};
use omnibox_domain::ChannelKind;
use omnibox_projections::templates as read;
use uuid::Uuid;

use crate::commands::Aggregate;
use crate::context::AppContext;
use crate::error::AppError;

impl Aggregate for Template {
    type Event = TemplateEvent;
    const CATEGORY: &'static str = TemplateId::CATEGORY;
    fn evolve(&mut self, event: &TemplateEvent) {
        Template::evolve(self, event);
    }
    fn event_type(event: &TemplateEvent) -> &'static str {
        event.event_type()
    }
}

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
