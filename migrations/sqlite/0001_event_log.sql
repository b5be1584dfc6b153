-- The event log. `position` is the rowid: the one writer that holds SQLite's
-- write lock assigns it, so positions appear in commit order.
-- Streams get a small integer key in creation order, so the index on
-- (stream_id, revision) is narrow and its hot pages are the recent streams.
CREATE TABLE streams (
    stream_id INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL UNIQUE,
    revision  INTEGER NOT NULL
);

CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    event_id    BLOB    NOT NULL UNIQUE,
    stream_id   INTEGER NOT NULL REFERENCES streams (stream_id),
    revision    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, revision)
);
