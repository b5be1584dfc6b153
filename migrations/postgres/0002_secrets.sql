-- Platform secrets (page tokens, LINE channel secrets and tokens), encrypted
-- with AES-256-GCM under OMNIBOX_SECRET_KEY. The log only holds `secret_id`
-- and a keyed fingerprint.
CREATE TABLE secrets (
    secret_id  UUID        PRIMARY KEY,
    purpose    TEXT        NOT NULL,
    nonce      BYTEA       NOT NULL,
    ciphertext BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
