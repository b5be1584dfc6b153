-- The omnichannel inbox: one row per conversation, its messages, contacts.
-- Instants are epoch microseconds (BIGINT): portable, and they compare as numbers.
CREATE TABLE rm_conversations (
    conversation_id         BLOB      PRIMARY KEY,
    org_id                  BLOB      NOT NULL,
    channel_id              BLOB      NOT NULL,
    channel_kind            TEXT    NOT NULL,
    contact_id              BLOB      NOT NULL,
    thread_kind             TEXT    NOT NULL,
    thread_id               TEXT    NOT NULL,
    last_message_at         BIGINT  NOT NULL,
    last_message_preview    TEXT,
    last_customer_message_at BIGINT,
    unread_count            INTEGER NOT NULL,
    assignee_id             BLOB,
    status                  TEXT    NOT NULL
);
CREATE INDEX rm_conversations_inbox ON rm_conversations (org_id, last_message_at DESC, conversation_id DESC);
CREATE INDEX rm_conversations_by_channel ON rm_conversations (channel_id, last_message_at DESC, conversation_id DESC);

CREATE TABLE rm_messages (
    message_id          BLOB      PRIMARY KEY,
    conversation_id     BLOB      NOT NULL,
    org_id              BLOB      NOT NULL,
    direction           TEXT    NOT NULL,
    platform_message_id TEXT,
    sent_at             BIGINT  NOT NULL,
    text                TEXT,
    attachments         TEXT    NOT NULL,
    delivery_state      TEXT,
    failure_reason      TEXT,
    author_id           BLOB,
    unsent              INTEGER      NOT NULL
);
CREATE INDEX rm_messages_by_conversation ON rm_messages (conversation_id, sent_at, message_id);
CREATE INDEX rm_messages_by_platform_id ON rm_messages (conversation_id, platform_message_id);

CREATE TABLE rm_contacts (
    contact_id       BLOB   PRIMARY KEY,
    org_id           BLOB   NOT NULL,
    channel_id       BLOB   NOT NULL,
    platform_user_id TEXT NOT NULL,
    display_name     TEXT,
    avatar_url       TEXT,
    following        INTEGER
);
