-- Channels as members see them, and the token-expiry watchlist.
-- Instants are epoch microseconds (BIGINT) in every dialect: portable,
-- and they compare as numbers.
CREATE TABLE rm_channels (
    channel_id          BLOB    PRIMARY KEY,
    org_id              BLOB    NOT NULL,
    kind                TEXT    NOT NULL,
    external_id         TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    authorized_at       BIGINT    NOT NULL,
    last_used_at        BIGINT,
    token_expires_at    BIGINT,
    access_token_secret BLOB    NOT NULL,
    channel_secret      BLOB,
    assignment_mode     TEXT    NOT NULL,
    connected_at        BIGINT    NOT NULL
);
CREATE INDEX rm_channels_by_org ON rm_channels (org_id, connected_at);
CREATE INDEX rm_channels_by_expiry ON rm_channels (token_expires_at);
CREATE INDEX rm_channels_by_external_id ON rm_channels (kind, external_id);
