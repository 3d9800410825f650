-- One row per writer run: the last batch it committed. A batch retried after a failure whose
-- outcome is unknown (connection lost around COMMIT) is skipped when last_seq >= its seq.
CREATE TABLE writer_runs (
    instance_id TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, run_id)
);
