//! The product rules about what may be sent to a customer, and when.
//!
//! Every rule is a pure function: the instant it is judged at is an argument,
//! nothing here reads the clock or touches the network, and every refusal is
//! a typed error whose message says which rule was broken and what to do.
//!
//! - [`window()`]: the Facebook messaging window, measured from the
//!   customer's last message: STANDARD under 24 h, HUMAN_AGENT until 7 days,
//!   then CLOSED. LINE has no window (UNLIMITED).
//! - [`decide_reply`]: who may send what in each window phase, and the
//!   evidence ([`ReplyAllowance`]) each reply keeps for a platform review.
//! - [`check_text`]: text per bubble, counted in UTF-16 code units: Facebook
//!   under 2000, LINE at most 5000; never empty.
//! - [`check_attachment`]: outbound attachments by extension and size
//!   (Facebook: Omnibox's whitelist, 25 MiB; LINE: image, video and audio
//!   only, since bots cannot send files).
//! - [`check_bubbles`]: a reply is 1 to 5 bubbles, each text or attachment.
//! - [`check_template`]: reply templates follow the bubble rules; Facebook
//!   templates are text only.
//! - [`check_sender`]: the agent persona a LINE message may carry;
//!   Facebook never shows the agent.
//! - [`token_expires_at`]: a Facebook page token lapses 90 days after the
//!   channel last sent a message or was (re)authorized.

mod attachment;
mod bubble;
mod reply;
mod sender;
mod template;
mod text;
mod token_expiry;
mod window;

pub use attachment::{
    attachment_rules, check_attachment, AttachmentRef, AttachmentRefused, AttachmentRule,
    OutboundAttachmentKind,
};
pub use bubble::{check_bubbles, Bubble, BubbleRefused, CheckedBubble, MAX_BUBBLES};
pub use reply::{
    decide_reply, AuthorKind, MessageTag, MessagingType, ReplyAllowance, ReplyRefused,
};
pub use sender::{check_sender, Sender, SenderRefused};
pub use template::{check_template, TemplateRefused};
pub use text::{check_text, max_text_units, TextRefused};
pub use token_expiry::{is_token_expired, token_expires_at, FACEBOOK_TOKEN_IDLE_LIFETIME};
pub use window::{window, Window, WindowPhase, HUMAN_AGENT_WINDOW, STANDARD_WINDOW};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// `start + span`, saturating at the last representable instant instead of
/// panicking: a deadline beyond year 262 143 is as good as never.
fn deadline(start: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    start
        .checked_add_signed(span)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An instant as people and the API see it: `2026-11-24T02:10:05Z`.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
