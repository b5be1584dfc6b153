//! Facebook Messenger: what a Page's webhook delivers, read into
//! platform-shaped types. Verification lives in [`crate::signature`].

pub mod graph;
mod webhook;

pub use graph::{GraphClient, PageInfo, SendResult, UserProfile};

pub use webhook::{
    parse_webhook, Attachment, AttachmentKind, Coordinates, Event, EventKind, Message,
};
