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

/// The PostgreSQL channel that carries live updates between the server
/// processes of one schema (NOTIFY channels are per database, and several
/// deployments or tests may share one), as an SQL expression.
const LIVE_CHANNEL: &str = "left('omnibox_live_' || md5(current_schema()), 40)";
/// Updates per notification: a payload must stay under PostgreSQL's 8,000 bytes.
const UPDATES_PER_NOTIFICATION: usize = 40;

/// A server (one bus) as the sender of its own notifications, which it
/// has already published on its bus and ignores when they come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeId(pub uuid::Uuid);

impl NodeId {
    pub fn generate() -> Self {
        NodeId(uuid::Uuid::now_v7())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Notification {
    /// The sending process.
    n: uuid::Uuid,
    u: Vec<WireUpdate>,
}

/// One update, compactly: organization, position, and what changed.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireUpdate(
    uuid::Uuid,
    u64,
    u64,
    char,
    uuid::Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")] Option<uuid::Uuid>,
);

impl From<&LiveUpdate> for WireUpdate {
    fn from(update: &LiveUpdate) -> Self {
        let (kind, id, message) = match &update.change {
            Change::Member(id) => ('m', id.0, None),
            Change::Channel(id) => ('c', id.0, None),
            Change::Conversation(id) => ('v', id.0, None),
            Change::Message {
                conversation,
                message,
            } => ('s', conversation.0, Some(*message)),
        };
        WireUpdate(
            update.org_id.0,
            update.position.commit,
            update.position.prepare,
            kind,
            id,
            message,
        )
    }
}

impl WireUpdate {
    fn decode(self) -> Option<LiveUpdate> {
        let WireUpdate(org, commit, prepare, kind, id, message) = self;
        let change = match (kind, message) {
            ('m', None) => Change::Member(MemberId(id)),
            ('c', None) => Change::Channel(ChannelId(id)),
            ('v', None) => Change::Conversation(ConversationId(id)),
            ('s', Some(message)) => Change::Message {
                conversation: ConversationId(id),
                message,
            },
            _ => return None,
        };
        Some(LiveUpdate {
            org_id: OrgId(org),
            position: Position::new(commit, prepare),
            change,
        })
    }
}

/// Tells every other server process about `updates`, inside the
/// transaction that commits them: PostgreSQL delivers a NOTIFY only when
/// its transaction commits, so no process hears of a row before it can
/// read it, and a rolled-back batch announces nothing. (SQLite has one
/// server process: nothing to do.)
pub(crate) async fn announce(
    tx: &mut crate::ReadTx,
    node: NodeId,
    updates: &[LiveUpdate],
) -> Result<(), sqlx::Error> {
    let crate::ReadTx::Postgres(tx) = tx else {
        return Ok(());
    };
    tx.flush().await?;
    if updates.is_empty() {
        return Ok(());
    }
    let payloads = updates
        .chunks(UPDATES_PER_NOTIFICATION)
        .map(|chunk| {
            serde_json::to_string(&Notification {
                n: node.0,
                u: chunk.iter().map(WireUpdate::from).collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // One round trip for the whole batch; notifications keep their order.
    sqlx::query(&format!(
        "SELECT pg_notify({LIVE_CHANNEL}, p) FROM UNNEST($1::text[]) WITH ORDINALITY AS u(p, n) ORDER BY n"
    ))
    .bind(payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Publishes on `bus` the updates other server processes committed, until
/// the process stops. Only PostgreSQL has other processes; on SQLite this
/// returns at once. A lost connection is re-established; notifications sent
/// while it was down are lost, which the log says (a subscriber that
/// reconnects with `after` is given every change since).
pub async fn follow_other_servers(db: omnibox_store::Database, bus: UpdateBus, node: NodeId) {
    let omnibox_store::Database::Postgres { pool } = db else {
        return;
    };
    let channel = omnibox_store::listen::channel_name(&pool, LIVE_CHANNEL).await;
    omnibox_store::listen::listen_forever(
        &pool,
        &channel,
        |_| {},
        |payload| {
            let Ok(notification) = serde_json::from_str::<Notification>(payload) else {
                tracing::warn!("an unreadable live-update notification was ignored");
                return;
            };
            if notification.n == node.0 {
                return;
            }
            for update in notification.u.into_iter().filter_map(WireUpdate::decode) {
                let _ = bus.send(update);
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_survive_the_wire_and_fit_a_notification() {
        let updates: Vec<LiveUpdate> = (0..UPDATES_PER_NOTIFICATION)
            .map(|n| LiveUpdate {
                org_id: OrgId(uuid::Uuid::now_v7()),
                position: Position::new(u64::MAX - n as u64, u64::MAX),
                change: match n % 4 {
                    0 => Change::Member(MemberId(uuid::Uuid::now_v7())),
                    1 => Change::Channel(ChannelId(uuid::Uuid::now_v7())),
                    2 => Change::Conversation(ConversationId(uuid::Uuid::now_v7())),
                    _ => Change::Message {
                        conversation: ConversationId(uuid::Uuid::now_v7()),
                        message: uuid::Uuid::now_v7(),
                    },
                },
            })
            .collect();
        let payload = serde_json::to_string(&Notification {
            n: NodeId::generate().0,
            u: updates.iter().map(WireUpdate::from).collect(),
        })
        .expect("encode");
        assert!(payload.len() < 8000, "{} bytes", payload.len());
        let back: Notification = serde_json::from_str(&payload).expect("decode");
        let back: Vec<LiveUpdate> = back.u.into_iter().filter_map(WireUpdate::decode).collect();
        assert_eq!(back, updates);
    }
}
