//! Typed identifiers. A `ChannelId` can never be passed where a
//! `ConversationId` is expected, even though both are UUIDs underneath.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $category:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The event-stream category of the aggregate this id names.
            pub const CATEGORY: &'static str = $category;

            /// A fresh, time-ordered id (UUIDv7), for things Omnibox creates.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id!(
    /// An organization: the tenant that owns channels, members and conversations.
    OrgId, "org"
);
id!(
    /// A member of an organization (an agent or an administrator).
    MemberId, "member"
);
id!(
    /// A connected LINE Official Account or Facebook Page.
    ChannelId, "channel"
);
id!(
    /// One customer's thread on one channel.
    ConversationId, "conversation"
);
id!(
    /// A customer as one channel knows them.
    ContactId, "contact"
);
id!(
    /// A reply template.
    TemplateId, "template"
);
