-- Replies waiting for the delivery worker, one row per bubble.
CREATE TABLE rm_deliveries (
    message_id      UUID      PRIMARY KEY,
    reply_id        UUID      NOT NULL,
    idx             INTEGER NOT NULL,
    conversation_id UUID      NOT NULL,
    org_id          UUID      NOT NULL,
    channel_id      UUID      NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    queued_at       BIGINT  NOT NULL
);
CREATE INDEX rm_deliveries_pending ON rm_deliveries (state, queued_at);
