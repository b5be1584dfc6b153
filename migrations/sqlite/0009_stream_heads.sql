-- A stream's head revision is read from the (stream_id, revision) index and
-- cached by the writer thread, no longer stored in `streams`: keeping it
-- there cost one more statement and write per append.
ALTER TABLE streams DROP COLUMN revision;
