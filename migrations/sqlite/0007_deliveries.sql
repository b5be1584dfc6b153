-- Replies waiting for the delivery worker, one row per bubble.
CREATE TABLE rm_deliveries (
    message_id      BLOB      PRIMARY KEY,
    reply_id        BLOB      NOT NULL,
    idx             INTEGER NOT NULL,
    conversation_id BLOB      NOT NULL,
    org_id          BLOB      NOT NULL,
    channel_id      BLOB      NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    queued_at       BIGINT  NOT NULL
);
CREATE INDEX rm_deliveries_pending ON rm_deliveries (state, queued_at);
