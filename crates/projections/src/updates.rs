//! The live update bus: what changed, announced after the read model committed.

use omnibox_domain::ids::{ChannelId, ConversationId, MemberId, OrgId};
use omnibox_store::Position;
use tokio::sync::broadcast;

/// Which read-model row changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Member(MemberId),
    Channel(ChannelId),
    /// A conversation's row changed (read, assigned, resolved, delivery states).
    Conversation(ConversationId),
    /// A message was added or changed; its conversation's row changed too.
    Message {
        conversation: ConversationId,
        message: uuid::Uuid,
    },
}

/// One change, scoped to the organization allowed to see it, with the log
/// position the read model reflects once it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUpdate {
    pub org_id: OrgId,
    pub position: Position,
    pub change: Change,
}

/// Subscribers that fall behind lose the oldest updates and are told so
/// (`RecvError::Lagged`), so one slow client never slows the others.
pub type UpdateBus = broadcast::Sender<LiveUpdate>;
