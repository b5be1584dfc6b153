-- read models (filled in by the projections crate)
CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, commit_position BIGINT NOT NULL, prepare_position BIGINT NOT NULL);
