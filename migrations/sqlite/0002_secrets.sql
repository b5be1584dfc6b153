-- Platform secrets (page tokens, LINE channel secrets and tokens), encrypted
-- with AES-256-GCM under OMNIBOX_SECRET_KEY. The log only holds `secret_id`
-- and a keyed fingerprint.
CREATE TABLE secrets (
    secret_id  BLOB    PRIMARY KEY,
    purpose    TEXT    NOT NULL,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    created_at TEXT    NOT NULL
);
