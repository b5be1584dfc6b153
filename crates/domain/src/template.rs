//! Reply templates: canned replies for one channel kind (`template-<id>`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MemberId, OrgId, TemplateId};
use crate::policy::{check_template, Bubble, TemplateRefused};
use crate::ChannelKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TemplateEvent {
    ReplyTemplateCreated {
        template_id: TemplateId,
        org_id: OrgId,
        kind: ChannelKind,
        name: String,
        bubbles: Vec<Bubble>,
        by: MemberId,
        at: DateTime<Utc>,
    },
}

impl TemplateEvent {
    pub fn event_type(&self) -> &'static str {
        "ReplyTemplateCreated"
    }
}

/// A template folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub exists: bool,
}

impl Template {
    pub fn evolve(&mut self, _event: &TemplateEvent) {
        self.exists = true;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template already exists")]
    AlreadyExists,
    #[error("a template needs a name of 1 to 100 characters")]
    InvalidName,
    #[error(transparent)]
    Refused(#[from] TemplateRefused),
}

/// Decides creating a template: its bubbles follow the reply rules of its
/// channel kind (Facebook templates: text only, 1 to 5 bubbles, each under
/// 2000 characters).
#[allow(clippy::too_many_arguments)]
pub fn create(
    template: &Template,
    template_id: TemplateId,
    org_id: OrgId,
    kind: ChannelKind,
    name: &str,
    bubbles: Vec<Bubble>,
    by: MemberId,
    now: DateTime<Utc>,
) -> Result<Vec<TemplateEvent>, TemplateError> {
    if template.exists {
        return Err(TemplateError::AlreadyExists);
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TemplateError::InvalidName);
    }
    check_template(kind, &bubbles)?;
    Ok(vec![TemplateEvent::ReplyTemplateCreated {
        template_id,
        org_id,
        kind,
        name: name.to_owned(),
        bubbles,
        by,
        at: now,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AttachmentRef;

    #[test]
    fn facebook_templates_are_text_only_and_short() {
        let at = DateTime::from_timestamp(0, 0).expect("epoch");
        let make = |kind, bubbles| {
            create(
                &Template::default(),
                TemplateId::generate(),
                OrgId::generate(),
                kind,
                "Greeting",
                bubbles,
                MemberId::generate(),
                at,
            )
        };
        assert!(make(ChannelKind::Facebook, vec![Bubble::Text("Hello!".into())]).is_ok());
        let image = Bubble::Attachment(AttachmentRef {
            url: "https://x.example/a.png".into(),
            file_name: "a.png".into(),
            size_bytes: 10,
        });
        assert!(make(ChannelKind::Facebook, vec![image.clone()]).is_err());
        assert!(make(ChannelKind::Line, vec![image]).is_ok());
        assert!(make(ChannelKind::Facebook, vec![Bubble::Text("x".repeat(2000))]).is_err());
        assert!(make(ChannelKind::Facebook, vec![Bubble::Text("x".into()); 6]).is_err());
        assert!(make(ChannelKind::Facebook, vec![]).is_err());
    }
}
