//! Ids derived from what the platforms send.
//!
//! Conversations and contacts: UUIDv5 of (channel, platform key), so any
//! number of webhook handlers, in any number of processes, agree on them
//! without asking anyone.
//!
//! Events caused by a platform item: a UUIDv8 whose top 48 bits are the
//! item's platform timestamp in milliseconds (so ids sort by time and the
//! log's id index grows at its right edge, like UUIDv7) and whose remaining
//! bits are a SHA-256 of (channel, kind, platform id). Both platforms keep an
//! item's id and timestamp across redeliveries (LINE's `isRedelivery`,
//! Facebook's re-batched retries with another `entry.time`), so the same
//! item always gets the same id, whatever the body bytes around it.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Thread;
use crate::ids::{ChannelId, ContactId, ConversationId};

const NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_626f_7843_6f6e_7665_7273_6174);

pub fn conversation_id(channel: ChannelId, thread: &Thread) -> ConversationId {
    ConversationId(Uuid::new_v5(
        &NAMESPACE,
        format!("conversation:{channel}:{}", thread.key()).as_bytes(),
    ))
}

pub fn contact_id(channel: ChannelId, platform_user_id: &str) -> ContactId {
    ContactId(Uuid::new_v5(
        &NAMESPACE,
        format!("contact:{channel}:{platform_user_id}").as_bytes(),
    ))
}

/// The id of the event caused by the platform item `platform_id` of `kind`
/// on `channel`, stamped `at` by the platform.
pub fn inbound_event_id(
    channel: ChannelId,
    kind: &str,
    platform_id: &str,
    at: DateTime<Utc>,
) -> Uuid {
    let digest = Sha256::new()
        .chain_update(channel.0.as_bytes())
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(platform_id.as_bytes())
        .finalize();
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&digest[..10]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).expect("instant")
    }

    #[test]
    fn the_same_item_always_gets_the_same_id() {
        let channel = ChannelId(Uuid::from_u128(7));
        let a = inbound_event_id(
            channel,
            "message",
            "537216233912020329",
            at(1_795_400_411_093),
        );
        assert_eq!(
            a,
            inbound_event_id(
                channel,
                "message",
                "537216233912020329",
                at(1_795_400_411_093)
            )
        );
        assert_ne!(
            a,
            inbound_event_id(
                channel,
                "message",
                "537216233912020330",
                at(1_795_400_411_093)
            )
        );
        assert_ne!(
            a,
            inbound_event_id(
                ChannelId(Uuid::from_u128(8)),
                "message",
                "537216233912020329",
                at(1_795_400_411_093)
            )
        );
        assert_ne!(
            a,
            inbound_event_id(channel, "echo", "537216233912020329", at(1_795_400_411_093))
        );
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn ids_sort_by_platform_time() {
        let channel = ChannelId(Uuid::from_u128(7));
        let earlier = inbound_event_id(channel, "message", "zzz", at(1_795_399_805_412));
        let later = inbound_event_id(channel, "message", "aaa", at(1_795_399_900_118));
        assert!(earlier < later);
    }

    #[test]
    fn conversations_are_per_channel_and_thread() {
        let (a, b) = (ChannelId(Uuid::from_u128(1)), ChannelId(Uuid::from_u128(2)));
        let user = Thread::User("7294018365520341".into());
        assert_eq!(conversation_id(a, &user), conversation_id(a, &user));
        assert_ne!(conversation_id(a, &user), conversation_id(b, &user));
        assert_ne!(
            conversation_id(a, &user),
            conversation_id(a, &Thread::Group("7294018365520341".into()))
        );
        assert_eq!(contact_id(a, "U1"), contact_id(a, "U1"));
        assert_ne!(contact_id(a, "U1"), contact_id(b, "U1"));
    }
}
