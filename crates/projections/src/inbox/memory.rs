//! The inbox's read model in memory, for rebuilds: the same operations as
//! [`SqlRows`](super::rows::SqlRows), applied to maps, then written with
//! one insert per final row. A conversation that received a thousand
//! messages is written once, not updated a thousand times, and no index is
//! touched until the rows are final.

use std::collections::HashMap;

use uuid::Uuid;

use super::rows::{
    BubbleOutcome, ConversationChange, DeliveryStep, Inbound, InboxRows, MediaOutcome, NewContact,
    NewDelivery, NewMedia, NewMessage, INSERT_CONTACT, INSERT_CONVERSATION, INSERT_DELIVERY,
    INSERT_MEDIA, INSERT_MESSAGE,
};
use crate::runtime::ApplyError;
use crate::{execute, ReadTx};

/// Rows sent to PostgreSQL per `COPY` message.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Inserts every row of `$rows` with `$insert` (one row's `INSERT … VALUES
/// ($1, …)`). SQLite runs it once per row, in place, which is as fast as
/// it gets there. PostgreSQL gets the rows through `COPY … FROM STDIN` in
/// its binary format: a round trip per row was most of its rebuild time,
/// and multi-row `INSERT`s (65,535 parameters each) still half of it.
macro_rules! insert_all {
    ($tx:expr, $insert:expr, $rows:expr, |$row:pat_param| [$($value:expr),+ $(,)?]) => {
        match &mut *$tx {
            ReadTx::Postgres(pg) => {
                use crate::sql::CopyBinary;
                const COLUMNS: i16 = [$(stringify!($value)),+].len() as i16;
                pg.flush().await?;
                let mut copy = pg.copy_in_raw(&crate::sql::copy_statement($insert)).await?;
                let mut buffer = Vec::with_capacity(COPY_CHUNK_BYTES + 4096);
                buffer.extend_from_slice(crate::sql::COPY_BINARY_HEADER);
                for $row in $rows {
                    buffer.extend_from_slice(&COLUMNS.to_be_bytes());
                    $($value.copy_binary(&mut buffer);)+
                    if buffer.len() >= COPY_CHUNK_BYTES {
                        copy.send(buffer.as_slice()).await?;
                        buffer.clear();
                    }
                }
                buffer.extend_from_slice(crate::sql::COPY_BINARY_TRAILER);
                copy.send(buffer.as_slice()).await?;
                copy.finish().await?;
            }
            ReadTx::Sqlite(_) => {
                for $row in $rows {
                    execute!(&mut *$tx, $insert, $($value),+)?;
                }
            }
        }
    };
}

struct Contact {
    org_id: Uuid,
    channel_id: Uuid,
    platform_user_id: String,
    display_name: Option<String>,
    avatar_url: Option<String>,
    following: Option<bool>,
    profile_state: &'static str,
    erased: bool,
}

impl Contact {
    /// A contact as first added: no profile yet.
    fn new(c: &NewContact<'_>, following: Option<bool>) -> Self {
        Contact {
            org_id: c.org_id,
            channel_id: c.channel_id,
            platform_user_id: c.platform_user_id.to_owned(),
            display_name: None,
            avatar_url: None,
            following,
            profile_state: "PENDING",
            erased: false,
        }
    }
}

struct Conversation {
    org_id: Uuid,
    channel_id: Uuid,
    channel_kind: String,
    contact_id: Uuid,
    thread_kind: &'static str,
    thread_id: String,
    last_message_at: i64,
    last_message_preview: Option<String>,
    last_customer_message_at: Option<i64>,
    unread_count: i32,
    assignee_id: Option<Uuid>,
    status: &'static str,
}

struct Message {
    row: NewMessage,
    delivery_state: Option<&'static str>,
    failure_reason: Option<String>,
    unsent: bool,
}

struct Media {
    row: NewMedia,
    state: &'static str,
    storage_key: Option<String>,
    size_bytes: Option<i64>,
    content_type: Option<String>,
    reason: Option<String>,
}

struct Delivery {
    row: NewDelivery,
    state: &'static str,
}

/// Every row of the inbox's tables, with the lookups its operations need.
#[derive(Default)]
pub struct MemoryRows {
    contacts: HashMap<Uuid, Contact>,
    conversations: HashMap<Uuid, Conversation>,
    /// In insertion order (rows are never deleted).
    messages: Vec<Message>,
    message_index: HashMap<Uuid, usize>,
    /// (conversation, platform message id) → messages, as the SQL index
    /// `rm_messages_by_platform_id` finds them.
    by_platform_id: HashMap<(Uuid, String), Vec<usize>>,
    /// Outbound messages that were `QUEUED` when added, per conversation.
    queued: HashMap<Uuid, Vec<usize>>,
    media: HashMap<(Uuid, i32), Media>,
    media_order: Vec<(Uuid, i32)>,
    deliveries: HashMap<Uuid, Delivery>,
    delivery_order: Vec<Uuid>,
}

fn duplicate(table: &str, key: impl std::fmt::Display) -> ApplyError {
    ApplyError::Duplicate(format!("{table} already has a row {key}"))
}

impl MemoryRows {
    /// Conversation `id` as these rows hold it, with its contact.
    pub(crate) fn conversation_row(&self, id: Uuid) -> Option<super::ConversationRow> {
        let c = self.conversations.get(&id)?;
        let contact = self.contacts.get(&c.contact_id);
        let instant = |micros: i64| chrono::DateTime::from_timestamp_micros(micros);
        Some(super::ConversationRow {
            id: omnibox_domain::ids::ConversationId(id),
            org_id: omnibox_domain::ids::OrgId(c.org_id),
            channel_id: omnibox_domain::ids::ChannelId(c.channel_id),
            channel_kind: omnibox_domain::ChannelKind::parse(&c.channel_kind)?,
            contact_id: omnibox_domain::ids::ContactId(c.contact_id),
            last_message_at: instant(c.last_message_at)?,
            last_message_preview: c.last_message_preview.clone(),
            last_customer_message_at: c.last_customer_message_at.and_then(instant),
            unread_count: i64::from(c.unread_count),
            assignee_id: c.assignee_id.map(omnibox_domain::ids::MemberId),
            resolved: c.status == "RESOLVED",
            contact: super::ContactRow {
                id: omnibox_domain::ids::ContactId(c.contact_id),
                platform_user_id: contact
                    .map(|k| k.platform_user_id.clone())
                    .unwrap_or_default(),
                display_name: contact.and_then(|k| k.display_name.clone()),
                avatar_url: contact.and_then(|k| k.avatar_url.clone()),
                erased: contact.is_some_and(|k| k.erased),
            },
        })
    }

    /// Conversation `id`'s messages as these rows hold them, in platform
    /// time order.
    pub(crate) fn message_rows(&self, id: Uuid) -> Vec<super::MessageRow> {
        let mut rows: Vec<super::MessageRow> = self
            .messages
            .iter()
            .filter(|m| m.row.conversation_id == id)
            .filter_map(|m| {
                Some(super::MessageRow {
                    id: m.row.message_id,
                    conversation_id: omnibox_domain::ids::ConversationId(id),
                    inbound: m.row.direction == "INBOUND",
                    sent_at: chrono::DateTime::from_timestamp_micros(m.row.sent_at)?,
                    text: m.row.text.clone(),
                    attachments: serde_json::from_str(&m.row.attachments).unwrap_or_default(),
                    delivery_state: m.delivery_state.map(str::to_owned),
                    failure_reason: m.failure_reason.clone(),
                    author_id: m.row.author_id.map(omnibox_domain::ids::MemberId),
                    unsent: m.unsent,
                })
            })
            .collect();
        rows.sort_by_key(|r| (r.sent_at, r.id));
        rows
    }

    fn set_platform_id(&mut self, index: usize, platform_message_id: Option<String>) {
        let message = &mut self.messages[index];
        if message.row.platform_message_id == platform_message_id {
            return;
        }
        let conversation = message.row.conversation_id;
        if let Some(old) = message.row.platform_message_id.take() {
            if let Some(list) = self.by_platform_id.get_mut(&(conversation, old)) {
                list.retain(|&i| i != index);
            }
        }
        if let Some(new) = &platform_message_id {
            self.by_platform_id
                .entry((conversation, new.clone()))
                .or_default()
                .push(index);
        }
        self.messages[index].row.platform_message_id = platform_message_id;
    }

    fn with_platform_id(&self, conversation_id: Uuid, platform_message_id: &str) -> Vec<usize> {
        self.by_platform_id
            .get(&(conversation_id, platform_message_id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Writes every row into the (empty) tables, in `tx`.
    pub async fn write(mut self, tx: &mut ReadTx) -> Result<(), ApplyError> {
        // In key order, each table's primary-key index grows at its end.
        let mut contacts: Vec<_> = self.contacts.into_iter().collect();
        contacts.sort_unstable_by_key(|(id, _)| *id);
        let mut conversations: Vec<_> = self.conversations.into_iter().collect();
        conversations.sort_unstable_by_key(|(id, _)| *id);
        self.messages.sort_unstable_by_key(|m| m.row.message_id);
        let media: Vec<_> = self
            .media_order
            .iter()
            .filter_map(|key| self.media.remove(key))
            .collect();
        let deliveries: Vec<_> = self
            .delivery_order
            .iter()
            .filter_map(|id| self.deliveries.remove(id))
            .collect();
        insert_all!(tx, INSERT_CONTACT, contacts, |(id, c)| [
            id,
            c.org_id,
            c.channel_id,
            c.platform_user_id,
            c.display_name,
            c.avatar_url,
            c.following,
            c.profile_state,
            c.erased
        ]);
        insert_all!(tx, INSERT_CONVERSATION, conversations, |(id, c)| [
            id,
            c.org_id,
            c.channel_id,
            c.channel_kind,
            c.contact_id,
            c.thread_kind,
            c.thread_id,
            c.last_message_at,
            c.last_message_preview,
            c.last_customer_message_at,
            c.unread_count,
            c.assignee_id,
            c.status
        ]);
        insert_all!(tx, INSERT_MESSAGE, self.messages, |m| [
            m.row.message_id,
            m.row.conversation_id,
            m.row.org_id,
            m.row.direction,
            m.row.platform_message_id,
            m.row.sent_at,
            m.row.text,
            m.row.attachments,
            m.delivery_state,
            m.failure_reason,
            m.row.author_id,
            m.unsent
        ]);
        insert_all!(tx, INSERT_MEDIA, media, |m| [
            m.row.message_id,
            m.row.index,
            m.row.org_id,
            m.row.conversation_id,
            m.row.channel_id,
            m.row.source,
            m.state,
            m.storage_key,
            m.size_bytes,
            m.content_type,
            m.reason
        ]);
        insert_all!(tx, INSERT_DELIVERY, deliveries, |d| [
            d.row.message_id,
            d.row.reply_id,
            d.row.index,
            d.row.conversation_id,
            d.row.org_id,
            d.row.channel_id,
            d.row.payload,
            d.state,
            d.row.queued_at
        ]);
        Ok(())
    }
}

impl InboxRows for MemoryRows {
    async fn ensure_contact(&mut self, c: NewContact<'_>) -> Result<(), ApplyError> {
        self.contacts
            .entry(c.contact_id)
            .or_insert_with(|| Contact::new(&c, None));
        Ok(())
    }

    async fn contact_followed(
        &mut self,
        c: NewContact<'_>,
        following: bool,
    ) -> Result<(), ApplyError> {
        self.contacts
            .entry(c.contact_id)
            .and_modify(|existing| existing.following = Some(following))
            .or_insert_with(|| Contact::new(&c, Some(following)));
        Ok(())
    }

    async fn contact_profile(
        &mut self,
        contact_id: Uuid,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<(), ApplyError> {
        if let Some(contact) = self.contacts.get_mut(&contact_id).filter(|c| !c.erased) {
            contact.display_name = display_name;
            contact.avatar_url = avatar_url;
            contact.profile_state = "DONE";
        }
        Ok(())
    }

    async fn contact_profile_unavailable(&mut self, contact_id: Uuid) -> Result<(), ApplyError> {
        if let Some(contact) = self.contacts.get_mut(&contact_id).filter(|c| !c.erased) {
            contact.profile_state = "UNAVAILABLE";
        }
        Ok(())
    }

    async fn contact_erased(&mut self, contact_id: Uuid) -> Result<(), ApplyError> {
        if let Some(contact) = self.contacts.get_mut(&contact_id) {
            contact.display_name = None;
            contact.avatar_url = None;
            contact.profile_state = "ERASED";
            contact.erased = true;
        }
        Ok(())
    }

    async fn inbound(&mut self, i: Inbound<'_>) -> Result<(), ApplyError> {
        match self.conversations.get_mut(&i.conversation_id) {
            Some(c) => {
                c.unread_count += 1;
                c.status = "OPEN";
                if c.last_customer_message_at.is_none_or(|at| at < i.sent_at) {
                    c.last_customer_message_at = Some(i.sent_at);
                }
                if c.last_message_at <= i.sent_at {
                    c.last_message_preview = Some(i.preview.to_owned());
                    c.last_message_at = i.sent_at;
                }
            }
            None => {
                self.conversations.insert(
                    i.conversation_id,
                    Conversation {
                        org_id: i.org_id,
                        channel_id: i.channel_id,
                        channel_kind: i.channel_kind.to_owned(),
                        contact_id: i.contact_id,
                        thread_kind: i.thread_kind,
                        thread_id: i.thread_id.to_owned(),
                        last_message_at: i.sent_at,
                        last_message_preview: Some(i.preview.to_owned()),
                        last_customer_message_at: Some(i.sent_at),
                        unread_count: 1,
                        assignee_id: None,
                        status: "OPEN",
                    },
                );
            }
        }
        Ok(())
    }

    async fn touch(
        &mut self,
        conversation_id: Uuid,
        at: i64,
        preview: &str,
    ) -> Result<(), ApplyError> {
        if let Some(c) = self.conversations.get_mut(&conversation_id) {
            if c.last_message_at <= at {
                c.last_message_at = at;
                c.last_message_preview = Some(preview.to_owned());
            }
        }
        Ok(())
    }

    async fn conversation_exists(&mut self, conversation_id: Uuid) -> Result<bool, ApplyError> {
        Ok(self.conversations.contains_key(&conversation_id))
    }

    async fn change_conversation(
        &mut self,
        conversation_id: Uuid,
        change: ConversationChange,
    ) -> Result<(), ApplyError> {
        if let Some(c) = self.conversations.get_mut(&conversation_id) {
            match change {
                ConversationChange::MarkedRead => c.unread_count = 0,
                ConversationChange::Assigned(assignee) => c.assignee_id = assignee,
                ConversationChange::Status(status) => c.status = status,
            }
        }
        Ok(())
    }

    async fn insert_message(&mut self, row: NewMessage) -> Result<(), ApplyError> {
        if self.message_index.contains_key(&row.message_id) {
            return Err(duplicate("rm_messages", row.message_id));
        }
        let index = self.messages.len();
        self.message_index.insert(row.message_id, index);
        if let Some(id) = &row.platform_message_id {
            self.by_platform_id
                .entry((row.conversation_id, id.clone()))
                .or_default()
                .push(index);
        }
        if row.direction == "OUTBOUND" && row.delivery_state == Some("QUEUED") {
            self.queued
                .entry(row.conversation_id)
                .or_default()
                .push(index);
        }
        self.messages.push(Message {
            delivery_state: row.delivery_state,
            failure_reason: None,
            unsent: false,
            row,
        });
        Ok(())
    }

    async fn echo_of_ours(
        &mut self,
        message_id: Uuid,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError> {
        let Some(&index) = self.message_index.get(&message_id) else {
            return Ok(false);
        };
        if self.messages[index].row.conversation_id != conversation_id {
            return Ok(false);
        }
        self.messages[index].delivery_state = Some("DELIVERED");
        self.set_platform_id(index, Some(platform_message_id.to_owned()));
        Ok(true)
    }

    async fn message_exists(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<bool, ApplyError> {
        Ok(self
            .by_platform_id
            .get(&(conversation_id, platform_message_id.to_owned()))
            .is_some_and(|list| !list.is_empty()))
    }

    async fn delivered_by_platform_id(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
        only_queued: bool,
    ) -> Result<(), ApplyError> {
        for index in self.with_platform_id(conversation_id, platform_message_id) {
            let message = &mut self.messages[index];
            if !only_queued || message.delivery_state == Some("QUEUED") {
                message.delivery_state = Some("DELIVERED");
            }
        }
        Ok(())
    }

    async fn delivered_up_to(
        &mut self,
        conversation_id: Uuid,
        watermark: i64,
    ) -> Result<(), ApplyError> {
        let Some(queued) = self.queued.get_mut(&conversation_id) else {
            return Ok(());
        };
        let messages = &mut self.messages;
        queued.retain(|&index| {
            let message = &mut messages[index];
            if message.delivery_state != Some("QUEUED") {
                // Delivered or failed some other way: no longer a candidate.
                return false;
            }
            if message.row.sent_at <= watermark {
                message.delivery_state = Some("DELIVERED");
                return false;
            }
            true
        });
        Ok(())
    }

    async fn unsent(
        &mut self,
        conversation_id: Uuid,
        platform_message_id: &str,
    ) -> Result<(), ApplyError> {
        for index in self.with_platform_id(conversation_id, platform_message_id) {
            self.messages[index].unsent = true;
        }
        Ok(())
    }

    async fn bubble_outcome(
        &mut self,
        message_id: Uuid,
        outcome: BubbleOutcome,
    ) -> Result<(), ApplyError> {
        let Some(&index) = self.message_index.get(&message_id) else {
            return Ok(());
        };
        match outcome {
            BubbleOutcome::Delivered {
                platform_message_id,
            } => {
                self.messages[index].delivery_state = Some("DELIVERED");
                self.set_platform_id(index, platform_message_id);
            }
            BubbleOutcome::Failed { reason } => {
                let message = &mut self.messages[index];
                message.delivery_state = Some("FAILED");
                message.failure_reason = Some(reason);
            }
        }
        Ok(())
    }

    async fn insert_media(&mut self, row: NewMedia) -> Result<(), ApplyError> {
        let key = (row.message_id, row.index);
        if self.media.contains_key(&key) {
            return Err(duplicate("rm_media", format!("{}/{}", key.0, key.1)));
        }
        self.media_order.push(key);
        self.media.insert(
            key,
            Media {
                row,
                state: "PENDING",
                storage_key: None,
                size_bytes: None,
                content_type: None,
                reason: None,
            },
        );
        Ok(())
    }

    async fn media_outcome(
        &mut self,
        message_id: Uuid,
        index: i32,
        outcome: MediaOutcome,
    ) -> Result<(), ApplyError> {
        let Some(media) = self.media.get_mut(&(message_id, index)) else {
            return Ok(());
        };
        match outcome {
            MediaOutcome::Stored {
                storage_key,
                size_bytes,
                content_type,
            } => {
                media.state = "STORED";
                media.storage_key = Some(storage_key);
                media.size_bytes = Some(size_bytes);
                media.content_type = content_type;
            }
            MediaOutcome::Failed { reason } => {
                media.state = "FAILED";
                media.reason = Some(reason);
            }
        }
        Ok(())
    }

    async fn insert_delivery(&mut self, row: NewDelivery) -> Result<(), ApplyError> {
        if self.deliveries.contains_key(&row.message_id) {
            return Err(duplicate("rm_deliveries", row.message_id));
        }
        self.delivery_order.push(row.message_id);
        self.deliveries.insert(
            row.message_id,
            Delivery {
                row,
                state: "PENDING",
            },
        );
        Ok(())
    }

    async fn delivery_step(
        &mut self,
        message_id: Uuid,
        step: DeliveryStep,
    ) -> Result<(), ApplyError> {
        let Some(delivery) = self.deliveries.get_mut(&message_id) else {
            return Ok(());
        };
        match step {
            DeliveryStep::Deferred if delivery.state == "SENDING" => delivery.state = "PENDING",
            DeliveryStep::Sending { at } if delivery.state == "PENDING" => {
                delivery.state = "SENDING";
                delivery.row.queued_at = at;
            }
            DeliveryStep::Done => delivery.state = "DONE",
            _ => {}
        }
        Ok(())
    }
}
