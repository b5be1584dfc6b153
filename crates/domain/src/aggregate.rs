//! The aggregates' common shape: state folded from one stream, and the
//! name each event is stored under.
//!
//! Running a command (load, decide, append, retry) is the application's
//! business; what an aggregate is belongs here, beside the aggregates.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{Channel, ChannelEvent, PageEvent, PageReservation};
use crate::conversation::{Conversation, ConversationEvent};
use crate::ids::{ChannelId, ConversationId, OrgId, TemplateId};
use crate::org::{OrgEvent, Organization};
use crate::qr::{self, QrCode, QrEvent};
use crate::template::{Template, TemplateEvent};

/// An event-sourced aggregate: state folded from one stream.
///
/// `event_type` must be the event's serde tag (`"type"`): the store keeps
/// both, and the application refuses an event whose serialized tag differs.
pub trait Aggregate: Default + Send {
    type Event: Serialize + DeserializeOwned + Send + Sync;
    const CATEGORY: &'static str;
    fn evolve(&mut self, event: &Self::Event);
    fn event_type(event: &Self::Event) -> &'static str;
}

impl Aggregate for Organization {
    type Event = OrgEvent;
    const CATEGORY: &'static str = OrgId::CATEGORY;
    fn evolve(&mut self, event: &OrgEvent) {
        Organization::evolve(self, event);
    }
    fn event_type(event: &OrgEvent) -> &'static str {
        event.event_type()
    }
}

impl Aggregate for Channel {
    type Event = ChannelEvent;
    const CATEGORY: &'static str = ChannelId::CATEGORY;
    fn evolve(&mut self, event: &ChannelEvent) {
        Channel::evolve(self, event);
    }
    fn event_type(event: &ChannelEvent) -> &'static str {
        event.event_type()
    }
}

impl Aggregate for Conversation {
    type Event = ConversationEvent;
    const CATEGORY: &'static str = ConversationId::CATEGORY;
    fn evolve(&mut self, event: &Self::Event) {
        Conversation::evolve(self, event);
    }
    fn event_type(event: &Self::Event) -> &'static str {
        event.event_type()
    }
}

impl Aggregate for PageReservation {
    type Event = PageEvent;
    const CATEGORY: &'static str = "page";
    fn evolve(&mut self, event: &PageEvent) {
        PageReservation::evolve(self, event);
    }
    fn event_type(event: &PageEvent) -> &'static str {
        event.event_type()
    }
}

impl Aggregate for Template {
    type Event = TemplateEvent;
    const CATEGORY: &'static str = TemplateId::CATEGORY;
    fn evolve(&mut self, event: &TemplateEvent) {
        Template::evolve(self, event);
    }
    fn event_type(event: &TemplateEvent) -> &'static str {
        event.event_type()
    }
}

impl Aggregate for QrCode {
    type Event = QrEvent;
    const CATEGORY: &'static str = qr::CATEGORY;
    fn evolve(&mut self, event: &QrEvent) {
        QrCode::evolve(self, event);
    }
    fn event_type(event: &QrEvent) -> &'static str {
        event.event_type()
    }
}
