-- Inbound media: what must be fetched from the platforms (PENDING) and
-- what was (STORED, FAILED). The media fetcher works from this table.
CREATE TABLE rm_media (
    message_id      UUID      NOT NULL,
    idx             INTEGER NOT NULL,
    org_id          UUID      NOT NULL,
    conversation_id UUID      NOT NULL,
    channel_id      UUID      NOT NULL,
    source          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    storage_key     TEXT,
    size_bytes      BIGINT,
    content_type    TEXT,
    reason          TEXT,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX rm_media_pending ON rm_media (state);

-- Profiles to look up on the platforms.
ALTER TABLE rm_contacts ADD COLUMN profile_state TEXT;
