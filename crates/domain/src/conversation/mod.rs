//! Conversations, messages and contacts, as the platforms report them.
//!
//! One conversation per (channel, customer thread): a LINE or Facebook user,
//! or a LINE group or room. Its id is derived from that pair, and every
//! event caused by a platform message gets an id derived from the message's
//! platform id, so a redelivered or re-batched webhook can never create a
//! second conversation or a second message: the store treats the repeated
//! id as already written.

mod event;
mod ids;
mod outbox;
mod reply;
mod state;

pub use event::{
    AttachmentKind, AutoAssignment, ContactEvent, ConversationEvent, InboundAttachment,
    InboundEvent, MediaSource, Postback, Thread,
};
pub use ids::{contact_id, conversation_id, inbound_event_id};
pub use outbox::{
    decide_abandoned, decide_claim, decide_outcome, BubbleState, NextDelivery, OutboundReply,
    Outbox, Outcome, Place, SendRoute, StaleStep, CLAIM_LEASE,
};
pub use reply::{decide_reply, reply_message_id, ReplyError, ReplyRequest, REPLY_TOKEN_LIFETIME};
pub use state::{decide, Conversation, ConversationCommand, ConversationError};
