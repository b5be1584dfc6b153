use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ChannelId, OrgId};

/// Namespace for page reservation stream ids (UUIDv5 of the page id).
const PAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_626f_7850_6167_6552_6573_7276);

/// The id of the reservation stream `page-<id>` for a Facebook page id.
pub fn page_reservation_id(page_id: &str) -> Uuid {
    Uuid::new_v5(&PAGE_NAMESPACE, page_id.as_bytes())
}

/// The one event of a page reservation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PageEvent {
    PageClaimed {
        page_id: String,
        org_id: OrgId,
        channel_id: ChannelId,
        at: DateTime<Utc>,
    },
}

impl PageEvent {
    pub fn event_type(&self) -> &'static str {
        "PageClaimed"
    }
}

/// Who holds a page, folded from its reservation stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageReservation {
    pub holder: Option<(OrgId, ChannelId)>,
}

impl PageReservation {
    pub fn evolve(&mut self, event: &PageEvent) {
        let PageEvent::PageClaimed {
            org_id, channel_id, ..
        } = event;
        if self.holder.is_none() {
            self.holder = Some((*org_id, *channel_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_are_stable_per_page() {
        assert_eq!(
            page_reservation_id("104729381650237"),
            page_reservation_id("104729381650237")
        );
        assert_ne!(
            page_reservation_id("104729381650237"),
            page_reservation_id("108813467701552")
        );
    }

    #[test]
    fn the_first_claim_holds() {
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let at = DateTime::from_timestamp(0, 0).expect("epoch");
        let mut page = PageReservation::default();
        for org_id in [a, b] {
            page.evolve(&PageEvent::PageClaimed {
                page_id: "1".into(),
                org_id,
                channel_id: ChannelId::generate(),
                at,
            });
        }
        assert_eq!(page.holder.map(|(org, _)| org), Some(a));
    }
}
