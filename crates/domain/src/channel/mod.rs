//! Channels: a LINE Official Account or a Facebook Page connected to an
//! organization.
//!
//! One stream per channel (`channel-<id>`). A Facebook page also has a
//! reservation stream (`page-<uuid5(page id)>`) appended with `NoStream`:
//! whoever appends first owns the page for ever, which is what makes "one
//! page, one organization" hold under concurrent connects.

mod command;
mod event;
mod page;
mod state;

pub use command::{claim_page, decide, ChannelCommand, ChannelError, Requester};
pub use event::{AssignmentMode, ChannelEvent, ExpiryReason, SecretRef};
pub use page::{page_reservation_id, PageEvent, PageReservation};
pub use state::{Channel, ChannelStatus};
