//! The row operations the inbox projector is made of, and their SQL.
//!
//! The projector decides *what* changes for each event; an [`InboxRows`]
//! makes the change. [`SqlRows`] runs each operation as one statement in the
//! batch's transaction (live projection, catch-up); the in-memory rows of
//! [`super::memory`] apply the same operations to maps and write the result
//! in bulk (rebuild). Each operation's doc is the contract both keep, and
//! the rebuild test compares their tables row for row.

use sqlx::Row;
use uuid::Uuid;

use crate::runtime::ApplyError;
use crate::{execute, fetch_optional_tx, ReadTx};

/// A contact first seen in a conversation (`rm_contacts`).
pub struct NewContact<'a> {
    pub contact_id: Uuid,
    pub org_id: Uuid,
    pub channel_id: Uuid,
    pub platform_user_id: &'a str,
}

/// A customer's message as it lands on its conversation (`rm_conversations`).
pub struct Inbound<'a> {
    pub conversation_id: Uuid,
    pub org_id: Uuid,
    pub channel_id: Uuid,
    pub channel_kind: &'a str,
    pub contact_id: Uuid,
    pub thread_kind: &'static str,
    pub thread_id: &'a str,
    /// Platform time, microseconds.
    pub sent_at: i64,
    pub preview: &'a str,
}

/// A row of `rm_messages`, as inserted.
pub struct NewMessage {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub org_id: Uuid,
    pub direction: &'static str,
    pub platform_message_id: Option<String>,
    /// Platform time (or the time a reply was queued), microseconds.
    pub sent_at: i64,
    pub text: Option<String>,
    /// JSON array.
    pub attachments: String,
    pub delivery_state: Option<&'static str>,
    pub author_id: Option<Uuid>,
}

/// A row of `rm_media`, as inserted (state `PENDING`).
pub struct NewMedia {
    pub message_id: Uuid,
    pub index: i32,
    pub org_id: Uuid,
    pub conversation_id: Uuid,
    pub channel_id: Uuid,
    /// JSON.
    pub source: String,
}

/// A row of `rm_deliveries`, as inserted (state `PENDING`).
pub struct NewDelivery {
    pub message_id: Uuid,
    pub reply_id: Uuid,
    pub index: i32,
    pub conversation_id: Uuid,
    pub org_id: Uuid,
    pub channel_id: Uuid,
    /// JSON.
    pub payload: String,
    pub queued_at: i64,
}

/// What a member did to a conversation's row.
#[derive(Clone, Copy)]
pub enum ConversationChange {
    MarkedRead,
    Assigned(Option<Uuid>),
    Status(&'static str),
}

/// How fetching an inbound attachment ended.
pub enum MediaOutcome {
    Stored {
        storage_key: String,
        size_bytes: i64,
        content_type: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// How sending a reply bubble ended, as the message shows it.
pub enum BubbleOutcome {
    Delivered { platform_message_id: Option<String> },
    Failed { reason: String },
}

/// A step of a delivery's life (`rm_deliveries.state`).
#[derive(Clone, Copy)]
pub enum DeliveryStep {
    /// `SENDING` → `PENDING`.
    Deferred,
    /// `PENDING` → `SENDING`, stamped with the time.
    Sending { at: i64 },
    /// Any → `DONE`.
    Done,
}

/// The inbox's read model, written one operation at a time. Operations on
/// a row that does not exist change nothing, except where said.
pub trait InboxRows: Send {
    /// Adds the contact unless it exists (profile `PENDING`).
    async fn ensure_contact(&mut self, contact: NewContact<'_>) -> Result<(), ApplyError>;

    /// Adds the contact (profile `PENDING`) with `following`, or sets
    /// `following` on the existing one.
    async fn contact_followed(
        &mut self,
        contact: NewContact<'_>,
        following: bool,
    ) -> Result<(), ApplyError>;

    /// Sets the name and avatar; profile `DONE`.
    async fn contact_profile(
        &mut self,
        contact_id: Uuid,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<(), ApplyError>;

    /// Profile `UNAVAILABLE`.
    async fn contact_profile_unavailable(&mut self, contact_id: Uuid) -> Result<(), ApplyError>;

    /// The contact was erased: no name or avatar, profile `ERASED` (never
    /// looked up again).
    async fn contact_erased(&mut self, contact_id: Uuid) -> Result<(), ApplyError>;

    /// Creates the conversation (unread 1, `OPEN`) or, if it exists: one
    /// more unread, `OPEN`, the latest customer time, and the preview and
    /// last activity unless they are newer than this message.
    async fn inbound(&mut self, inbound: Inbound<'_>) -> Result<(), ApplyError>;

    /// Moves last activity and preview to `at`, unless they are newer.
    async fn touch(
        &mut self,
        conversation_id: Uuid,
        at: i64,
        preview: &str,
    ) -> Result<(), ApplyError>;

    async fn conversation_exists(&mut self, conversation_id: Uuid) -> Result<bool, ApplyError>;

    async fn change_conversation(
        &mut self,
        conversation_id: Uuid,
        change: ConversationChange,
    ) -> Result<(), ApplyError>;

    /// Adds a message (not unsent); an existing id is an error.
    async fn insert_message(&mut self, message: NewMessage) -> Result<(), ApplyError>;

    /// A customer's message: [`InboxRows::ensure_contact`], then
    /// [`InboxRows::inbound`], then [`InboxRows::insert_message`]. They
    /// write three tables and read none, so a store where each operation is
    /// a round trip may do them at once.
    async fn receive(
        &mut self,
        contact: NewContact<'_>,
        conversation: Inbound<'_>,
        message: NewMessage,
    ) -> Result<(), ApplyError> {
        one_by_one(self, contact, conversation, message).await
    }

    /// Our reply `message_id` in that conversation was echoed: `DELIVERED`,
    /// with the platform's id. Returns whether it was there.
    async fn echo_of_ours(
        &mut self,
        message_id: Uuid,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError>;

    async fn message_exists(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError>;

    /// Every message of the conversation with that platform id: `DELIVERED`
    /// (whatever its state). With `only_queued`, just those still `QUEUED`.
    async fn delivered_by_platform_id(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
        only_queued: bool,
    ) -> Result<(), ApplyError>;

    /// Outbound messages still `QUEUED`, sent at or before `watermark`: `DELIVERED`.
    async fn delivered_up_to(
        &mut self,
        conversation_id: Uuid,
        watermark: i64,
    ) -> Result<(), ApplyError>;

    /// Every message of the conversation with that platform id: unsent.
    async fn unsent(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<(), ApplyError>;

    async fn bubble_outcome(
        &mut self,
        message_id: Uuid,
        outcome: BubbleOutcome,
    ) -> Result<(), ApplyError>;

    /// Adds an attachment to fetch; an existing (message, index) is an error.
    async fn insert_media(&mut self, media: NewMedia) -> Result<(), ApplyError>;

    async fn media_outcome(
        &mut self,
        message_id: Uuid,
        index: i32,
        outcome: MediaOutcome,
    ) -> Result<(), ApplyError>;

    /// Adds a bubble to deliver; an existing id is an error.
    async fn insert_delivery(&mut self, delivery: NewDelivery) -> Result<(), ApplyError>;

    async fn delivery_step(
        &mut self,
        message_id: Uuid,
        step: DeliveryStep,
    ) -> Result<(), ApplyError>;
}

/// The operations as statements in a read-model transaction.
pub struct SqlRows<'t>(pub &'t mut ReadTx);

pub(super) const INSERT_CONTACT: &str = "INSERT INTO rm_contacts (contact_id, org_id, channel_id, platform_user_id, display_name, avatar_url, following, profile_state, erased)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(super) const INSERT_CONVERSATION: &str = "INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
         thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, assignee_id, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(super) const INSERT_MESSAGE: &str = "INSERT INTO rm_messages (message_id, conversation_id, org_id, direction, platform_message_id, sent_at, text,
         attachments, delivery_state, failure_reason, author_id, unsent)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(super) const INSERT_MEDIA: &str = "INSERT INTO rm_media (message_id, idx, org_id, conversation_id, channel_id, source, state, storage_key,
         size_bytes, content_type, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO rm_deliveries (message_id, reply_id, idx, conversation_id, org_id, channel_id, payload, state, queued_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// [`InboxRows::receive`] as its three operations, one after another.
async fn one_by_one(
    rows: &mut (impl InboxRows + ?Sized),
    contact: NewContact<'_>,
    conversation: Inbound<'_>,
    message: NewMessage,
) -> Result<(), ApplyError> {
    rows.ensure_contact(contact).await?;
    rows.inbound(conversation).await?;
    rows.insert_message(message).await
}

const ENSURE_CONTACT: &str =
    "INSERT INTO rm_contacts (contact_id, org_id, channel_id, platform_user_id, profile_state)
             VALUES ($1, $2, $3, $4, 'PENDING')
             ON CONFLICT (contact_id) DO NOTHING";
const UPSERT_INBOUND: &str = concat!(
    "INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
                 thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, 1, 'OPEN')
             ON CONFLICT (conversation_id) DO UPDATE SET
                 unread_count = rm_conversations.unread_count + 1,
                 ",
    crate::inbound_on_conflict!()
);

impl InboxRows for SqlRows<'_> {
    async fn ensure_contact(&mut self, c: NewContact<'_>) -> Result<(), ApplyError> {
        execute!(
            self.0,
            ENSURE_CONTACT,
            c.contact_id,
            c.org_id,
            c.channel_id,
            c.platform_user_id
        )?;
        Ok(())
    }

    async fn contact_followed(
        &mut self,
        c: NewContact<'_>,
        following: bool,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "INSERT INTO rm_contacts (contact_id, org_id, channel_id, platform_user_id, following, profile_state)
             VALUES ($1, $2, $3, $4, $5, 'PENDING')
             ON CONFLICT (contact_id) DO UPDATE SET following = excluded.following",
            c.contact_id,
            c.org_id,
            c.channel_id,
            c.platform_user_id,
            following
        )?;
        Ok(())
    }

    async fn contact_profile(
        &mut self,
        contact_id: Uuid,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_contacts SET display_name = $1, avatar_url = $2, profile_state = 'DONE' WHERE contact_id = $3 AND NOT erased",
            display_name,
            avatar_url,
            contact_id
        )?;
        Ok(())
    }

    async fn contact_profile_unavailable(&mut self, contact_id: Uuid) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_contacts SET profile_state = 'UNAVAILABLE' WHERE contact_id = $1 AND NOT erased",
            contact_id
        )?;
        Ok(())
    }

    async fn contact_erased(&mut self, contact_id: Uuid) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_contacts SET erased = TRUE, display_name = NULL, avatar_url = NULL, profile_state = 'ERASED' WHERE contact_id = $1",
            contact_id
        )?;
        Ok(())
    }

    async fn inbound(&mut self, i: Inbound<'_>) -> Result<(), ApplyError> {
        execute!(
            self.0,
            UPSERT_INBOUND,
            i.conversation_id,
            i.org_id,
            i.channel_id,
            i.channel_kind,
            i.contact_id,
            i.thread_kind,
            i.thread_id,
            i.sent_at,
            i.preview
        )?;
        Ok(())
    }

    async fn touch(
        &mut self,
        conversation_id: Uuid,
        at: i64,
        preview: &str,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_conversations SET last_message_at = $1, last_message_preview = $2
             WHERE conversation_id = $3 AND last_message_at <= $1",
            at,
            preview,
            conversation_id
        )?;
        Ok(())
    }

    async fn conversation_exists(&mut self, conversation_id: Uuid) -> Result<bool, ApplyError> {
        let found = fetch_optional_tx!(
            self.0,
            "SELECT 1 FROM rm_conversations WHERE conversation_id = $1",
            [conversation_id],
            |row| row.try_get::<i32, _>(0)
        )?;
        Ok(found.is_some())
    }

    async fn change_conversation(
        &mut self,
        conversation_id: Uuid,
        change: ConversationChange,
    ) -> Result<(), ApplyError> {
        match change {
            ConversationChange::MarkedRead => execute!(
                self.0,
                "UPDATE rm_conversations SET unread_count = 0 WHERE conversation_id = $1",
                conversation_id
            )?,
            ConversationChange::Assigned(assignee) => execute!(
                self.0,
                "UPDATE rm_conversations SET assignee_id = $1 WHERE conversation_id = $2",
                assignee,
                conversation_id
            )?,
            ConversationChange::Status(status) => execute!(
                self.0,
                "UPDATE rm_conversations SET status = $1 WHERE conversation_id = $2",
                status,
                conversation_id
            )?,
        };
        Ok(())
    }

    async fn insert_message(&mut self, m: NewMessage) -> Result<(), ApplyError> {
        execute!(
            self.0,
            INSERT_MESSAGE,
            m.message_id,
            m.conversation_id,
            m.org_id,
            m.direction,
            m.platform_message_id,
            m.sent_at,
            m.text,
            m.attachments,
            m.delivery_state,
            None::<String>,
            m.author_id,
            false
        )?;
        Ok(())
    }

    async fn receive(
        &mut self,
        c: NewContact<'_>,
        i: Inbound<'_>,
        m: NewMessage,
    ) -> Result<(), ApplyError> {
        let ReadTx::Postgres(tx) = &mut *self.0 else {
            // SQLite statements are calls in this thread: nothing to save.
            return one_by_one(self, c, i, m).await;
        };
        tx.receives.push(crate::sql::Receive {
            contact_id: c.contact_id,
            contact_org_id: c.org_id,
            contact_channel_id: c.channel_id,
            platform_user_id: c.platform_user_id.to_owned(),
            conversation_id: i.conversation_id,
            org_id: i.org_id,
            channel_id: i.channel_id,
            channel_kind: i.channel_kind.to_owned(),
            conversation_contact_id: i.contact_id,
            thread_kind: i.thread_kind,
            thread_id: i.thread_id.to_owned(),
            sent_at: i.sent_at,
            preview: i.preview.to_owned(),
            message_id: m.message_id,
            message_conversation_id: m.conversation_id,
            message_org_id: m.org_id,
            message_sent_at: m.sent_at,
            direction: m.direction,
            platform_message_id: m.platform_message_id,
            text: m.text,
            attachments: m.attachments,
            delivery_state: m.delivery_state,
            author_id: m.author_id,
        });
        Ok(())
    }

    async fn echo_of_ours(
        &mut self,
        message_id: Uuid,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError> {
        let updated = execute!(
            self.0,
            "UPDATE rm_messages SET delivery_state = 'DELIVERED', platform_message_id = $1
             WHERE message_id = $2 AND conversation_id = $3",
            platform_message_id,
            message_id,
            conversation_id
        )?;
        Ok(updated > 0)
    }

    async fn message_exists(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError> {
        let found = fetch_optional_tx!(
            self.0,
            "SELECT 1 FROM rm_messages WHERE conversation_id = $1 AND platform_message_id = $2",
            [conversation_id, platform_message_id],
            |row| row.try_get::<i32, _>(0)
        )?;
        Ok(found.is_some())
    }

    async fn delivered_by_platform_id(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
        only_queued: bool,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_messages SET delivery_state = 'DELIVERED'
             WHERE conversation_id = $1 AND platform_message_id = $2 AND ($3 = 0 OR delivery_state = 'QUEUED')",
            conversation_id,
            platform_message_id,
            i32::from(only_queued)
        )?;
        Ok(())
    }

    async fn delivered_up_to(
        &mut self,
        conversation_id: Uuid,
        watermark: i64,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_messages SET delivery_state = 'DELIVERED'
             WHERE conversation_id = $1 AND direction = 'OUTBOUND' AND delivery_state = 'QUEUED' AND sent_at <= $2",
            conversation_id,
            watermark
        )?;
        Ok(())
    }

    async fn unsent(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<(), ApplyError> {
        execute!(
            self.0,
            "UPDATE rm_messages SET unsent = $1 WHERE conversation_id = $2 AND platform_message_id = $3",
            true,
            conversation_id,
            platform_message_id
        )?;
        Ok(())
    }

    async fn bubble_outcome(
        &mut self,
        message_id: Uuid,
        outcome: BubbleOutcome,
    ) -> Result<(), ApplyError> {
        match outcome {
            BubbleOutcome::Delivered {
                platform_message_id,
            } => execute!(
                self.0,
                "UPDATE rm_messages SET delivery_state = 'DELIVERED', platform_message_id = $1 WHERE message_id = $2",
                platform_message_id,
                message_id
            )?,
            BubbleOutcome::Failed { reason } => execute!(
                self.0,
                "UPDATE rm_messages SET delivery_state = 'FAILED', failure_reason = $1 WHERE message_id = $2",
                reason,
                message_id
            )?,
        };
        Ok(())
    }

    async fn insert_media(&mut self, m: NewMedia) -> Result<(), ApplyError> {
        execute!(
            self.0,
            INSERT_MEDIA,
            m.message_id,
            m.index,
            m.org_id,
            m.conversation_id,
            m.channel_id,
            m.source,
            "PENDING",
            None::<String>,
            None::<i64>,
            None::<String>,
            None::<String>
        )?;
        Ok(())
    }

    async fn media_outcome(
        &mut self,
        message_id: Uuid,
        index: i32,
        outcome: MediaOutcome,
    ) -> Result<(), ApplyError> {
        match outcome {
            MediaOutcome::Stored {
                storage_key,
                size_bytes,
                content_type,
            } => execute!(
                self.0,
                "UPDATE rm_media SET state = 'STORED', storage_key = $1, size_bytes = $2, content_type = $3
                 WHERE message_id = $4 AND idx = $5",
                storage_key,
                size_bytes,
                content_type,
                message_id,
                index
            )?,
            MediaOutcome::Failed { reason } => execute!(
                self.0,
                "UPDATE rm_media SET state = 'FAILED', reason = $1 WHERE message_id = $2 AND idx = $3",
                reason,
                message_id,
                index
            )?,
        };
        Ok(())
    }

    async fn insert_delivery(&mut self, d: NewDelivery) -> Result<(), ApplyError> {
        execute!(
            self.0,
            INSERT_DELIVERY,
            d.message_id,
            d.reply_id,
            d.index,
            d.conversation_id,
            d.org_id,
            d.channel_id,
            d.payload,
            "PENDING",
            d.queued_at
        )?;
        Ok(())
    }

    async fn delivery_step(
        &mut self,
        message_id: Uuid,
        step: DeliveryStep,
    ) -> Result<(), ApplyError> {
        match step {
            DeliveryStep::Deferred => execute!(
                self.0,
                "UPDATE rm_deliveries SET state = 'PENDING' WHERE message_id = $1 AND state = 'SENDING'",
                message_id
            )?,
            DeliveryStep::Sending { at } => execute!(
                self.0,
                "UPDATE rm_deliveries SET state = 'SENDING', queued_at = $1 WHERE message_id = $2 AND state = 'PENDING'",
                at,
                message_id
            )?,
            DeliveryStep::Done => execute!(
                self.0,
                "UPDATE rm_deliveries SET state = 'DONE' WHERE message_id = $1",
                message_id
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnibox_store::testing::{Backend, TestDatabase};
    use omnibox_store::Database;

    /// Receives for three conversations (one of them already in the table,
    /// with a newer message), some sharing a contact, two with the same
    /// time and different texts.
    fn receives(org: Uuid, channel: Uuid) -> Vec<(Uuid, Uuid, i64, String)> {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let _ = (org, channel);
        vec![
            (a, one, 100, "first".into()),
            (b, two, 50, "other".into()),
            (a, one, 300, "tie, earlier".into()),
            (a, one, 200, "late arrival".into()),
            (a, one, 300, "tie, later".into()),
            (c, two, 10, "older than the row".into()),
        ]
    }

    async fn apply(
        db: &Database,
        org: Uuid,
        channel: Uuid,
        batch: &[(Uuid, Uuid, i64, String)],
        batched: bool,
    ) {
        let mut tx = ReadTx::begin(db).await.expect("begin");
        // The third conversation exists with a newer message.
        let existing = batch.last().expect("rows");
        execute!(
            &mut tx,
            "INSERT INTO rm_conversations (conversation_id, org_id, channel_id, channel_kind, contact_id, thread_kind,
                 thread_id, last_message_at, last_message_preview, last_customer_message_at, unread_count, status)
             VALUES ($1, $2, $3, 'FACEBOOK', $4, 'USER', 'psid', 999, 'newest', 999, 2, 'RESOLVED')",
            existing.0,
            org,
            channel,
            existing.1
        )
        .expect("existing row");
        let mut rows = SqlRows(&mut tx);
        for (n, (conversation, contact, at, text)) in batch.iter().enumerate() {
            let user = format!("psid-{contact}");
            let contact_row = NewContact {
                contact_id: *contact,
                org_id: org,
                channel_id: channel,
                platform_user_id: &user,
            };
            let landing = Inbound {
                conversation_id: *conversation,
                org_id: org,
                channel_id: channel,
                channel_kind: "FACEBOOK",
                contact_id: *contact,
                thread_kind: "USER",
                thread_id: &user,
                sent_at: *at,
                preview: text,
            };
            let message = NewMessage {
                message_id: Uuid::from_u128(n as u128 + 1),
                conversation_id: *conversation,
                org_id: org,
                direction: "INBOUND",
                platform_message_id: Some(format!("m{n}")),
                sent_at: *at,
                text: Some(text.clone()),
                attachments: "[]".into(),
                delivery_state: None,
                author_id: None,
            };
            if batched {
                rows.receive(contact_row, landing, message)
                    .await
                    .expect("receive");
            } else {
                one_by_one(&mut rows, contact_row, landing, message)
                    .await
                    .expect("one by one");
            }
            if batched && n == 1 {
                // A read in the middle sees what was put off before it.
                assert!(rows.conversation_exists(*conversation).await.expect("read"));
            }
        }
        tx.commit().await.expect("commit");
    }

    async fn tables(db: &Database) -> Vec<String> {
        let Database::Postgres { pool } = db else {
            panic!("PostgreSQL");
        };
        let mut all = Vec::new();
        for (table, key) in [
            ("rm_contacts", "contact_id"),
            ("rm_conversations", "conversation_id"),
            ("rm_messages", "message_id"),
        ] {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(t)::text FROM {table} t ORDER BY {key}"
            ))
            .fetch_all(pool)
            .await
            .expect("rows");
            all.extend(rows);
        }
        all
    }

    /// The batched writes of a PostgreSQL transaction leave exactly the
    /// rows the one-by-one statements leave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_receives_write_what_one_by_one_writes() {
        let (Some(first), Some(second)) = (
            TestDatabase::create(Backend::Postgres).await,
            TestDatabase::create(Backend::Postgres).await,
        ) else {
            return;
        };
        let (batched, one_by_one) = (first.connect().await, second.connect().await);
        let (org, channel) = (Uuid::new_v4(), Uuid::new_v4());
        let batch = receives(org, channel);
        apply(&batched, org, channel, &batch, true).await;
        apply(&one_by_one, org, channel, &batch, false).await;
        let (got, want) = (tables(&batched).await, tables(&one_by_one).await);
        assert_eq!(got.len(), 2 + 3 + 6, "{got:#?}");
        assert_eq!(got, want);
        assert!(
            got.iter()
                .any(|row| row.contains(r#""last_message_preview":"tie, later""#)),
            "{got:#?}"
        );
    }

    #[test]
    fn the_batched_statement_numbers_its_parameters_in_order() {
        let mut seen: Vec<usize> = crate::sql::RECEIVE_ALL
            .split('$')
            .skip(1)
            .filter_map(|p| {
                p[..p.len() - p.trim_start_matches(|c: char| c.is_ascii_digit()).len()]
                    .parse()
                    .ok()
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (1..=24).collect::<Vec<_>>());
    }
}
