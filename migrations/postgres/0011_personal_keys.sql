-- Per-contact keys for personal data (crypto-shredding). Events carry a
-- contact's name, avatar, texts and file names sealed under that contact's
-- key; erasing the contact deletes its rows here, and what the log holds
-- can no longer be read. Each key is itself sealed with OMNIBOX_SECRET_KEY.
CREATE TABLE personal_keys (
    key_id     UUID    PRIMARY KEY,
    org_id     UUID    NOT NULL,
    contact_id UUID    NOT NULL,
    nonce      BYTEA   NOT NULL,
    wrapped    BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX personal_keys_contact ON personal_keys (contact_id, created_at);
CREATE INDEX personal_keys_org ON personal_keys (org_id);
