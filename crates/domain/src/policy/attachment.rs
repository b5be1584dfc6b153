//! Which files an agent may send, by platform: recognised by extension,
//! limited by size, fetched by the platform from a URL.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ChannelKind;

/// Platforms write "MB" without saying which; Omnibox reads it as a mebibyte
/// (1024 × 1024 bytes), so "25 MB" is 25 × 1024 × 1024 bytes.
const MIB: u64 = 1024 * 1024;

/// A file to send, as the agent's client describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// Where the platform fetches the file from.
    pub url: String,
    /// The name its extension is read from.
    pub file_name: String,
    pub size_bytes: u64,
}

/// How an attachment goes out: Facebook's attachment `type`, LINE's message
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundAttachmentKind {
    Image,
    Video,
    Audio,
    File,
}

impl fmt::Display for OutboundAttachmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutboundAttachmentKind::Image => "image",
            OutboundAttachmentKind::Video => "video",
            OutboundAttachmentKind::Audio => "audio",
            OutboundAttachmentKind::File => "file",
        })
    }
}

/// One line of a platform's attachment policy: files with these extensions
/// (lower case, compared case-insensitively) go out as `kind`, up to
/// `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentRule {
    pub kind: OutboundAttachmentKind,
    pub extensions: &'static [&'static str],
    pub max_bytes: u64,
}

/// Omnibox's own whitelist, stricter than Meta's: 25 MB each, the types our
/// customers' agents need and nothing else. m4a is listed with the videos
/// because the product rule lists it there.
const FACEBOOK_RULES: [AttachmentRule; 3] = [
    AttachmentRule {
        kind: OutboundAttachmentKind::Image,
        extensions: &["png", "jpg", "jpeg", "gif"],
        max_bytes: 25 * MIB,
    },
    AttachmentRule {
        kind: OutboundAttachmentKind::Video,
        extensions: &["mp4", "mov", "m4a"],
        max_bytes: 25 * MIB,
    },
    AttachmentRule {
        kind: OutboundAttachmentKind::File,
        extensions: &["ppt", "pptx", "pdf", "csv", "xls", "xlsx", "doc", "docx"],
        max_bytes: 25 * MIB,
    },
];

/// What the LINE Messaging API accepts from a bot. It has no file message,
/// so documents can only go as a link in a text bubble.
const LINE_RULES: [AttachmentRule; 3] = [
    AttachmentRule {
        kind: OutboundAttachmentKind::Image,
        extensions: &["jpg", "jpeg", "png"],
        max_bytes: 10 * MIB,
    },
    AttachmentRule {
        kind: OutboundAttachmentKind::Video,
        extensions: &["mp4"],
        max_bytes: 200 * MIB,
    },
    AttachmentRule {
        kind: OutboundAttachmentKind::Audio,
        extensions: &["m4a", "mp3"],
        max_bytes: 200 * MIB,
    },
];

/// The attachment policy of `kind`, so that clients can show it up front.
pub fn attachment_rules(kind: ChannelKind) -> &'static [AttachmentRule] {
    match kind {
        ChannelKind::Facebook => &FACEBOOK_RULES,
        ChannelKind::Line => &LINE_RULES,
    }
}

/// Why an attachment may not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentRefused {
    /// The platform fetches the file itself, so the URL must be one it can
    /// fetch: http(s) for Facebook, HTTPS only for LINE.
    #[error("the attachment URL {url:?} must start with {}", allowed_schemes(*.kind).join(" or "))]
    UrlNotAllowed { kind: ChannelKind, url: String },
    #[error(
        "{file_name:?} is not a file type {} accepts; allowed: {}",
        .kind.as_str(),
        allowed_types(*.kind)
    )]
    TypeNotAllowed {
        kind: ChannelKind,
        file_name: String,
    },
    /// Platforms reject empty media, and an empty file is always a mistake.
    #[error("{file_name:?} is empty (0 bytes)")]
    Empty { file_name: String },
    #[error(
        "{file_name:?} is {size_bytes} bytes; a {} {attachment_kind} may be at most \
         {max_bytes} bytes ({} MiB)",
        .kind.as_str(),
        .max_bytes / MIB
    )]
    TooLarge {
        kind: ChannelKind,
        file_name: String,
        attachment_kind: OutboundAttachmentKind,
        size_bytes: u64,
        max_bytes: u64,
    },
}

fn allowed_schemes(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Facebook => &["https://", "http://"],
        ChannelKind::Line => &["https://"],
    }
}

fn allowed_types(kind: ChannelKind) -> String {
    let rules = attachment_rules(kind)
        .iter()
        .map(|rule| {
            format!(
                "{} ({}, up to {} MiB)",
                rule.kind,
                rule.extensions.join(", "),
                rule.max_bytes / MIB
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match kind {
        ChannelKind::Facebook => rules,
        ChannelKind::Line => {
            format!("{rules}. LINE bots cannot send files: share a link in a text bubble instead")
        }
    }
}

/// Checks one attachment against `kind`'s policy and says how it goes out.
///
/// Checked here rather than left to the platform, because the platform
/// fetches the file only after the reply is accepted: refusing up front is
/// the only way an agent learns why before the customer misses a message.
pub fn check_attachment(
    kind: ChannelKind,
    attachment: &AttachmentRef,
) -> Result<OutboundAttachmentKind, AttachmentRefused> {
    let AttachmentRef {
        url,
        file_name,
        size_bytes,
    } = attachment;
    let fetchable = allowed_schemes(kind).iter().any(|scheme| {
        url.len() > scheme.len()
            && url
                .get(..scheme.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    });
    if !fetchable {
        return Err(AttachmentRefused::UrlNotAllowed {
            kind,
            url: url.clone(),
        });
    }
    let rule = file_name
        .rsplit_once('.')
        .and_then(|(_, extension)| {
            attachment_rules(kind).iter().find(|rule| {
                rule.extensions
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(extension))
            })
        })
        .ok_or_else(|| AttachmentRefused::TypeNotAllowed {
            kind,
            file_name: file_name.clone(),
        })?;
    if *size_bytes == 0 {
        return Err(AttachmentRefused::Empty {
            file_name: file_name.clone(),
        });
    }
    if *size_bytes > rule.max_bytes {
        return Err(AttachmentRefused::TooLarge {
            kind,
            file_name: file_name.clone(),
            attachment_kind: rule.kind,
            size_bytes: *size_bytes,
            max_bytes: rule.max_bytes,
        });
    }
    Ok(rule.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::{Facebook, Line};
    use OutboundAttachmentKind::{Audio, File, Image, Video};

    fn attachment(url: &str, file_name: &str, size_bytes: u64) -> AttachmentRef {
        AttachmentRef {
            url: url.to_owned(),
            file_name: file_name.to_owned(),
            size_bytes,
        }
    }

    fn file(file_name: &str, size_bytes: u64) -> AttachmentRef {
        attachment("https://media.example/f", file_name, size_bytes)
    }

    #[test]
    fn accepts_the_whitelist_by_extension_in_any_case() {
        // given (kind) / when (file name) / then (sent as)
        let cases = [
            (Facebook, "a.png", Image),
            (Facebook, "a.JPG", Image),
            (Facebook, "a.jpeg", Image),
            (Facebook, "a.Gif", Image),
            (Facebook, "a.mp4", Video),
            (Facebook, "a.MOV", Video),
            (Facebook, "a.m4a", Video),
            (Facebook, "deck.ppt", File),
            (Facebook, "deck.pptx", File),
            (Facebook, "invoice.2026.PDF", File),
            (Facebook, "a.csv", File),
            (Facebook, "a.xls", File),
            (Facebook, "a.xlsx", File),
            (Facebook, "a.doc", File),
            (Facebook, "a.docx", File),
            (Line, "a.jpg", Image),
            (Line, "a.JPEG", Image),
            (Line, "a.png", Image),
            (Line, "a.mp4", Video),
            (Line, "a.m4a", Audio),
            (Line, "a.MP3", Audio),
        ];
        for (kind, file_name, then) in cases {
            assert_eq!(
                check_attachment(kind, &file(file_name, 1)),
                Ok(then),
                "{kind:?} {file_name}"
            );
        }
    }

    #[test]
    fn refuses_other_types() {
        let cases = [
            (Facebook, "a.webp"),
            (Facebook, "a.mp3"),
            (Facebook, "a.zip"),
            (Facebook, "png"),
            (Facebook, "a."),
            (Facebook, "a.png.exe"),
            (Line, "a.gif"),
            (Line, "a.mov"),
            (Line, "a.pdf"),
            (Line, "README"),
        ];
        for (kind, file_name) in cases {
            assert_eq!(
                check_attachment(kind, &file(file_name, 1)),
                Err(AttachmentRefused::TypeNotAllowed {
                    kind,
                    file_name: file_name.to_owned()
                }),
                "{kind:?} {file_name}"
            );
        }
    }

    #[test]
    fn limits_size_at_the_exact_byte() {
        let too_large = |kind, file_name: &str, attachment_kind, size_bytes, max_bytes| {
            Err(AttachmentRefused::TooLarge {
                kind,
                file_name: file_name.to_owned(),
                attachment_kind,
                size_bytes,
                max_bytes,
            })
        };
        let empty = |file_name: &str| {
            Err(AttachmentRefused::Empty {
                file_name: file_name.to_owned(),
            })
        };
        // given (kind) / when (file name, size) / then
        #[rustfmt::skip]
        let cases = [
            (Facebook, "a.pdf", 0, empty("a.pdf")),
            (Facebook, "a.pdf", 1, Ok(File)),
            (Facebook, "a.pdf", 26_214_400, Ok(File)),
            (Facebook, "a.pdf", 26_214_401, too_large(Facebook, "a.pdf", File, 26_214_401, 26_214_400)),
            (Facebook, "a.gif", 26_214_401, too_large(Facebook, "a.gif", Image, 26_214_401, 26_214_400)),
            (Facebook, "a.mov", 26_214_400, Ok(Video)),
            (Line, "a.png", 0, empty("a.png")),
            (Line, "a.png", 10_485_760, Ok(Image)),
            (Line, "a.png", 10_485_761, too_large(Line, "a.png", Image, 10_485_761, 10_485_760)),
            (Line, "a.mp4", 209_715_200, Ok(Video)),
            (Line, "a.mp4", 209_715_201, too_large(Line, "a.mp4", Video, 209_715_201, 209_715_200)),
            (Line, "a.mp3", 209_715_200, Ok(Audio)),
            (Line, "a.mp3", 209_715_201, too_large(Line, "a.mp3", Audio, 209_715_201, 209_715_200)),
            (Line, "a.mp3", u64::MAX, too_large(Line, "a.mp3", Audio, u64::MAX, 209_715_200)),
        ];
        for (kind, file_name, size_bytes, then) in cases {
            assert_eq!(
                check_attachment(kind, &file(file_name, size_bytes)),
                then,
                "{kind:?} {file_name} {size_bytes}"
            );
        }
    }

    #[test]
    fn needs_a_url_the_platform_can_fetch() {
        let cases = [
            (Facebook, "https://media.example/a.png", true),
            (Facebook, "HTTPS://media.example/a.png", true),
            (Facebook, "http://media.example/a.png", true),
            (Facebook, "https://", false),
            (Facebook, "ftp://media.example/a.png", false),
            (Facebook, "file:///a.png", false),
            (Facebook, "media.example/a.png", false),
            (Facebook, "", false),
            (Line, "https://media.example/a.png", true),
            (Line, "http://media.example/a.png", false),
            (Line, "🍎🍎🍎", false),
        ];
        for (kind, url, allowed) in cases {
            let then = if allowed {
                Ok(Image)
            } else {
                Err(AttachmentRefused::UrlNotAllowed {
                    kind,
                    url: url.to_owned(),
                })
            };
            assert_eq!(
                check_attachment(kind, &attachment(url, "a.png", 1)),
                then,
                "{kind:?} {url}"
            );
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let cases = [
            (
                Facebook,
                file("a.zip", 1),
                "\"a.zip\" is not a file type FACEBOOK accepts; allowed: \
                 image (png, jpg, jpeg, gif, up to 25 MiB); video (mp4, mov, m4a, up to 25 MiB); \
                 file (ppt, pptx, pdf, csv, xls, xlsx, doc, docx, up to 25 MiB)",
            ),
            (
                Line,
                file("a.pdf", 1),
                "\"a.pdf\" is not a file type LINE accepts; allowed: \
                 image (jpg, jpeg, png, up to 10 MiB); video (mp4, up to 200 MiB); \
                 audio (m4a, mp3, up to 200 MiB). \
                 LINE bots cannot send files: share a link in a text bubble instead",
            ),
            (
                Facebook,
                file("a.pdf", 26_214_401),
                "\"a.pdf\" is 26214401 bytes; a FACEBOOK file may be at most 26214400 bytes (25 MiB)",
            ),
            (
                Line,
                attachment("http://media.example/a.png", "a.png", 1),
                "the attachment URL \"http://media.example/a.png\" must start with https://",
            ),
            (
                Facebook,
                attachment("ftp://x", "a.png", 1),
                "the attachment URL \"ftp://x\" must start with https:// or http://",
            ),
        ];
        for (kind, attachment, message) in cases {
            assert_eq!(
                check_attachment(kind, &attachment).map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
        }
    }
}
