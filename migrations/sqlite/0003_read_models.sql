-- Read models: derived from the log, rebuilt from it at will.
-- Each projector's checkpoint lives here, updated in the same transaction as
-- its writes, so a crash can neither apply an event twice nor skip one.
CREATE TABLE projection_checkpoints (
    name             TEXT    PRIMARY KEY,
    commit_position  INTEGER NOT NULL,
    prepare_position INTEGER NOT NULL
);

CREATE TABLE rm_organizations (
    org_id     BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE rm_members (
    member_id    BLOB    PRIMARY KEY,
    org_id       BLOB    NOT NULL,
    email        TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    available    INTEGER NOT NULL,
    token_sha256 TEXT    NOT NULL UNIQUE,
    added_at     TEXT    NOT NULL
);
CREATE INDEX rm_members_by_org ON rm_members (org_id, email);
