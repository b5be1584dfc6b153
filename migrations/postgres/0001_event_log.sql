-- The event log. `$all` is ordered by (tx_id, seq): the id of the writing
-- transaction, then a sequence within it. Readers only return rows whose
-- tx_id is below the oldest transaction still running (pg_snapshot_xmin), so
-- a transaction that drew a lower number but commits later can never be
-- skipped: it is either visible or still holds the horizon back.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id       BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id    UUID   NOT NULL UNIQUE,
    stream      TEXT   NOT NULL,
    revision    BIGINT NOT NULL,
    event_type  TEXT   NOT NULL,
    data        JSON   NOT NULL,
    metadata    JSON   NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream, revision)
);

CREATE INDEX events_all_order ON events (tx_id, seq);
