//! How much text one bubble may carry.

use crate::ChannelKind;

/// Facebook text must be *under* 2000 characters. Meta does not say whether
/// it counts code points or UTF-16 units; a text of at most 1999 UTF-16 units
/// is under 2000 either way, since a code point is one or two units.
const FACEBOOK_MAX_TEXT_UNITS: usize = 1999;

/// LINE allows 5000 characters and counts them in UTF-16 units (🍎 is 2).
const LINE_MAX_TEXT_UNITS: usize = 5000;

/// The longest text one bubble may carry on `kind`, in UTF-16 code units.
pub fn max_text_units(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Facebook => FACEBOOK_MAX_TEXT_UNITS,
        ChannelKind::Line => LINE_MAX_TEXT_UNITS,
    }
}

/// Why a text bubble may not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextRefused {
    /// Both platforms reject an empty text, and a blank bubble says nothing.
    #[error("the text is empty or only whitespace; write something or remove the bubble")]
    Empty,
    #[error(
        "the text is {length} UTF-16 code units long; a {} bubble holds at most {limit}: \
         shorten it or split it into several bubbles",
        .kind.as_str()
    )]
    TooLong {
        kind: ChannelKind,
        limit: usize,
        length: usize,
    },
}

/// Checks one text bubble against `kind`'s limit, counting UTF-16 code units
/// because that is what LINE counts and it is safe for Facebook.
pub fn check_text(kind: ChannelKind, text: &str) -> Result<(), TextRefused> {
    if text.trim().is_empty() {
        return Err(TextRefused::Empty);
    }
    let limit = max_text_units(kind);
    let length = text.encode_utf16().count();
    if length > limit {
        return Err(TextRefused::TooLong {
            kind,
            limit,
            length,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_long(kind: ChannelKind, length: usize) -> Result<(), TextRefused> {
        Err(TextRefused::TooLong {
            kind,
            limit: max_text_units(kind),
            length,
        })
    }

    #[test]
    fn limits_text_in_utf16_units() {
        use ChannelKind::{Facebook, Line};
        let apples = |n| "🍎".repeat(n);
        // given (kind) / when (text) / then
        let cases = [
            (Facebook, "".to_owned(), Err(TextRefused::Empty)),
            (Line, " \n\t\u{3000}".to_owned(), Err(TextRefused::Empty)),
            (Facebook, "hi".to_owned(), Ok(())),
            (Facebook, "a".repeat(1999), Ok(())),
            (Facebook, "a".repeat(2000), too_long(Facebook, 2000)),
            (Facebook, format!("{}a", apples(999)), Ok(())),
            (Facebook, apples(1000), too_long(Facebook, 2000)),
            (Facebook, "é".repeat(1999), Ok(())),
            (Line, "a".repeat(5000), Ok(())),
            (Line, "a".repeat(5001), too_long(Line, 5001)),
            (Line, apples(2500), Ok(())),
            (Line, format!("{}a", apples(2500)), too_long(Line, 5001)),
            (Line, format!("  {}  ", "a".repeat(4996)), Ok(())),
        ];
        for (kind, text, then) in cases {
            assert_eq!(
                check_text(kind, &text),
                then,
                "{kind:?} {} chars",
                text.chars().count()
            );
        }
    }

    #[test]
    fn too_long_names_the_limit_and_the_length() {
        assert_eq!(
            check_text(ChannelKind::Facebook, &"🍎".repeat(1000)).map_err(|e| e.to_string()),
            Err(
                "the text is 2000 UTF-16 code units long; a FACEBOOK bubble holds at most 1999: \
                 shorten it or split it into several bubbles"
                    .to_owned()
            )
        );
    }
}
