//! Reply templates: saved bubbles an agent can send in one click.

use super::{check_bubbles, Bubble, BubbleRefused};
use crate::ChannelKind;

/// Why a reply template may not be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateRefused {
    #[error(
        "bubble {}: Facebook templates are text only; remove the attachment \
         and attach the file when replying",
        .index + 1
    )]
    FacebookAttachment { index: usize },
    #[error(transparent)]
    Bubbles(#[from] BubbleRefused),
}

/// Checks a template for a channel of `kind` when it is saved, so that using
/// it later can only fail for reasons of the moment (the window), never for
/// its content.
///
/// A template follows the reply rules of its kind, except that Facebook
/// templates are text only: a product rule, not a platform limit. An
/// attachment in a Facebook template is reported before any other fault,
/// since no fix to it would make the template acceptable.
pub fn check_template(kind: ChannelKind, bubbles: &[Bubble]) -> Result<(), TemplateRefused> {
    if kind == ChannelKind::Facebook {
        if let Some(index) = bubbles
            .iter()
            .position(|bubble| matches!(bubble, Bubble::Attachment(_)))
        {
            return Err(TemplateRefused::FacebookAttachment { index });
        }
    }
    check_bubbles(kind, bubbles)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AttachmentRef, AttachmentRefused, TextRefused};
    use ChannelKind::{Facebook, Line};
    use TemplateRefused::FacebookAttachment;

    fn text(text: &str) -> Bubble {
        Bubble::Text(text.to_owned())
    }

    fn attachment(file_name: &str) -> Bubble {
        Bubble::Attachment(AttachmentRef {
            url: format!("https://media.example/{file_name}"),
            file_name: file_name.to_owned(),
            size_bytes: 1000,
        })
    }

    #[test]
    fn templates_follow_the_reply_rules_of_their_kind() {
        let hello = text("Hello! How can we help?");
        let too_long = |kind, length| {
            Err(TemplateRefused::Bubbles(BubbleRefused::Text {
                index: 0,
                reason: TextRefused::TooLong {
                    kind,
                    limit: if kind == Facebook { 1999 } else { 5000 },
                    length,
                },
            }))
        };
        let line_refuses_pdf = TemplateRefused::Bubbles(BubbleRefused::Attachment {
            index: 0,
            reason: AttachmentRefused::TypeNotAllowed {
                kind: Line,
                file_name: "a.pdf".to_owned(),
            },
        });
        // given (kind) / when (bubbles) / then
        #[rustfmt::skip]
        let cases = [
            (Facebook, vec![hello.clone()], Ok(())),
            (Facebook, vec![hello.clone(); 5], Ok(())),
            (Facebook, vec![text(&"a".repeat(1999))], Ok(())),
            (Facebook, vec![text(&"a".repeat(2000))], too_long(Facebook, 2000)),
            (Facebook, vec![hello.clone(), attachment("a.png")], Err(FacebookAttachment { index: 1 })),
            (Facebook, vec![], Err(BubbleRefused::NoBubbles.into())),
            (Facebook, vec![hello.clone(); 6], Err(BubbleRefused::TooMany { count: 6 }.into())),
            (Line, vec![text(&"a".repeat(5000))], Ok(())),
            (Line, vec![text(&"a".repeat(5001))], too_long(Line, 5001)),
            (Line, vec![hello.clone(), attachment("a.png"), attachment("a.mp4")], Ok(())),
            (Line, vec![attachment("a.pdf")], Err(line_refuses_pdf)),
            (Line, vec![hello.clone(); 6], Err(BubbleRefused::TooMany { count: 6 }.into())),
        ];
        for (kind, bubbles, then) in cases {
            assert_eq!(check_template(kind, &bubbles), then, "{kind:?} {bubbles:?}");
        }
    }

    #[test]
    fn facebook_attachment_refusal_says_what_to_do() {
        assert_eq!(
            check_template(Facebook, &[attachment("a.png")]).map_err(|e| e.to_string()),
            Err(
                "bubble 1: Facebook templates are text only; remove the attachment and \
                 attach the file when replying"
                    .to_owned()
            )
        );
    }
}
