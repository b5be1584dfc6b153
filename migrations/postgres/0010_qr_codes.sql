-- QR assignment codes (LINE), per organization and channel.
CREATE TABLE rm_qr_codes (
    code_id    UUID     PRIMARY KEY,
    org_id     UUID     NOT NULL,
    channel_id UUID     NOT NULL,
    agent_id   UUID     NOT NULL,
    code       TEXT   NOT NULL,
    line_url   TEXT   NOT NULL,
    revoked    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX rm_qr_codes_by_org ON rm_qr_codes (org_id, channel_id, created_at);
