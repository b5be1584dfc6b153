//! Reply templates.

use async_trait::async_trait;
use omnibox_domain::ids::{OrgId, TemplateId};
use omnibox_domain::policy::Bubble;
use omnibox_domain::template::TemplateEvent;
use omnibox_domain::ChannelKind;
use omnibox_store::{Database, RecordedEvent};
use sqlx::Row;

use crate::channels::micros;
use crate::runtime::ApplyError;
use crate::{execute, fetch_all, Change, Projector, ReadTx};

pub struct TemplatesProjector;

#[async_trait]
impl Projector for TemplatesProjector {
    fn name(&self) -> &'static str {
        "templates"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_templates"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.category() == TemplateId::CATEGORY
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        _changes: &mut Vec<(OrgId, Change)>,
    ) -> Result<(), ApplyError> {
        if !self.handles(event) {
            return Ok(());
        }
        let TemplateEvent::ReplyTemplateCreated {
            template_id,
            org_id,
            kind,
            name,
            bubbles,
            at,
            ..
        } = serde_json::from_str(&event.data)?;
        execute!(
            tx,
            "INSERT INTO rm_templates (template_id, org_id, kind, name, bubbles, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            template_id.0,
            org_id.0,
            kind.as_str(),
            name,
            serde_json::to_string(&bubbles)?,
            micros(at)
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub id: TemplateId,
    pub kind: ChannelKind,
    pub name: String,
    pub bubbles: Vec<Bubble>,
}

/// `org`'s templates, of `kind` if given, by name.
pub async fn templates(
    db: &Database,
    org: OrgId,
    kind: Option<ChannelKind>,
) -> Result<Vec<TemplateRow>, sqlx::Error> {
    fetch_all!(
        db,
        "SELECT template_id, kind, name, bubbles FROM rm_templates
         WHERE org_id = $1 AND ($2 = '' OR kind = $2) ORDER BY name, template_id",
        [org.0, kind.map_or("", ChannelKind::as_str)],
        |row| {
            let kind: String = row.try_get(1)?;
            let bubbles: String = row.try_get(3)?;
            Ok(TemplateRow {
                id: TemplateId(row.try_get(0)?),
                kind: ChannelKind::parse(&kind)
                    .ok_or_else(|| sqlx::Error::Decode(format!("kind {kind:?}").into()))?,
                name: row.try_get(2)?,
                bubbles: serde_json::from_str(&bubbles)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            })
        }
    )
}
