//! A reply is a short sequence of bubbles, each a text or an attachment.

use serde::{Deserialize, Serialize};

use super::{
    check_attachment, check_text, AttachmentRef, AttachmentRefused, OutboundAttachmentKind,
    TextRefused,
};
use crate::ChannelKind;

/// The most bubbles one reply may have, on both platforms (a product rule).
/// It is also LINE's limit of message objects per request, so a LINE reply
/// is always one request; Facebook takes one request per bubble.
pub const MAX_BUBBLES: usize = 5;

/// One bubble as an agent or a template writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Bubble {
    Text(String),
    Attachment(AttachmentRef),
}

/// A bubble that passed [`check_bubbles`] for one channel kind, with the
/// attachment kind it is to be sent as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckedBubble {
    Text(String),
    Attachment {
        attachment: AttachmentRef,
        attachment_kind: OutboundAttachmentKind,
    },
}

/// Why a sequence of bubbles may not be sent. `index` counts from 0; the
/// message counts from 1, as a person would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BubbleRefused {
    #[error("there are no bubbles; add at least one")]
    NoBubbles,
    #[error("there are {count} bubbles; at most {max} are allowed", max = MAX_BUBBLES)]
    TooMany { count: usize },
    #[error("bubble {}: {reason}", .index + 1)]
    Text { index: usize, reason: TextRefused },
    #[error("bubble {}: {reason}", .index + 1)]
    Attachment {
        index: usize,
        reason: AttachmentRefused,
    },
}

/// Checks every bubble of a reply against `kind`'s rules, all before any is
/// sent: a reply that stops half-way would leave the customer with half an
/// answer. Reports the first offending bubble.
pub fn check_bubbles(
    kind: ChannelKind,
    bubbles: &[Bubble],
) -> Result<Vec<CheckedBubble>, BubbleRefused> {
    match bubbles.len() {
        0 => return Err(BubbleRefused::NoBubbles),
        count if count > MAX_BUBBLES => return Err(BubbleRefused::TooMany { count }),
        _ => {}
    }
    bubbles
        .iter()
        .enumerate()
        .map(|(index, bubble)| match bubble {
            Bubble::Text(text) => check_text(kind, text)
                .map(|()| CheckedBubble::Text(text.clone()))
                .map_err(|reason| BubbleRefused::Text { index, reason }),
            Bubble::Attachment(attachment) => check_attachment(kind, attachment)
                .map(|attachment_kind| CheckedBubble::Attachment {
                    attachment: attachment.clone(),
                    attachment_kind,
                })
                .map_err(|reason| BubbleRefused::Attachment { index, reason }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::{Facebook, Line};

    fn text(text: &str) -> Bubble {
        Bubble::Text(text.to_owned())
    }

    fn pdf() -> AttachmentRef {
        AttachmentRef {
            url: "https://media.example/a.pdf".to_owned(),
            file_name: "a.pdf".to_owned(),
            size_bytes: 1000,
        }
    }

    #[test]
    fn counts_one_to_five_bubbles() {
        let hi = text("hi");
        // given (kind) / when (number of bubbles) / then
        let cases = [
            (Facebook, 0, Err(BubbleRefused::NoBubbles)),
            (Facebook, 1, Ok(1)),
            (Facebook, 5, Ok(5)),
            (Facebook, 6, Err(BubbleRefused::TooMany { count: 6 })),
            (Line, 0, Err(BubbleRefused::NoBubbles)),
            (Line, 5, Ok(5)),
            (Line, 6, Err(BubbleRefused::TooMany { count: 6 })),
        ];
        for (kind, count, then) in cases {
            let bubbles = vec![hi.clone(); count];
            assert_eq!(
                check_bubbles(kind, &bubbles).map(|checked| checked.len()),
                then,
                "{kind:?} {count}"
            );
        }
    }

    #[test]
    fn checks_each_bubble_and_names_the_first_offender() {
        let long = "a".repeat(2000);
        // given (kind) / when (bubbles) / then
        let cases = [
            (
                Facebook,
                vec![text("see attached"), Bubble::Attachment(pdf())],
                Ok(vec![
                    CheckedBubble::Text("see attached".to_owned()),
                    CheckedBubble::Attachment {
                        attachment: pdf(),
                        attachment_kind: OutboundAttachmentKind::File,
                    },
                ]),
            ),
            (
                Facebook,
                vec![text("ok"), text(&long), text(" ")],
                Err(BubbleRefused::Text {
                    index: 1,
                    reason: TextRefused::TooLong {
                        kind: Facebook,
                        limit: 1999,
                        length: 2000,
                    },
                }),
            ),
            (
                Line,
                vec![text(&long)],
                Ok(vec![CheckedBubble::Text(long.clone())]),
            ),
            (
                Line,
                vec![text("ok"), text("fine"), Bubble::Attachment(pdf())],
                Err(BubbleRefused::Attachment {
                    index: 2,
                    reason: AttachmentRefused::TypeNotAllowed {
                        kind: Line,
                        file_name: "a.pdf".to_owned(),
                    },
                }),
            ),
        ];
        for (kind, bubbles, then) in cases {
            assert_eq!(check_bubbles(kind, &bubbles), then, "{kind:?} {bubbles:?}");
        }
    }

    #[test]
    fn refusal_counts_bubbles_from_one() {
        let refused = check_bubbles(Line, &[text("ok"), text("\n")]).map_err(|e| e.to_string());
        assert_eq!(
            refused,
            Err("bubble 2: the text is empty or only whitespace; write something or remove the bubble"
                .to_owned())
        );
    }

    #[test]
    fn serializes_tagged_by_kind() {
        let bubbles = vec![text("hi"), Bubble::Attachment(pdf())];
        let json = serde_json::json!([
            { "TEXT": "hi" },
            { "ATTACHMENT": { "url": "https://media.example/a.pdf", "file_name": "a.pdf", "size_bytes": 1000 } },
        ]);
        assert_eq!(serde_json::to_value(&bubbles).expect("serializable"), json);
        assert_eq!(
            serde_json::from_value::<Vec<Bubble>>(json).expect("deserializable"),
            bubbles
        );
    }
}
