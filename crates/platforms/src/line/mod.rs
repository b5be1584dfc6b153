//! LINE Messaging API: what an Official Account's webhook delivers, read into
//! platform-shaped types. Verification lives in [`crate::signature`].

pub mod api;
mod webhook;

pub use api::{BotInfo, Content, LineClient, Profile, SentMessage};

pub use webhook::{
    parse_webhook, ContentProvider, Emoji, Event, EventKind, File, ImageSet, Location, Media,
    Mention, Mentionee, MentioneeKind, Message, MessageContent, Mode, Postback, Source, Sticker,
    Text, Webhook,
};
