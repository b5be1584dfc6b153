//! Facebook Messenger: what a Page's webhook delivers, read into
//! platform-shaped types. Verification lives in [`crate::signature`].

mod webhook;

pub use webhook::{
    parse_webhook, Attachment, AttachmentKind, Coordinates, Event, EventKind, Message,
};
