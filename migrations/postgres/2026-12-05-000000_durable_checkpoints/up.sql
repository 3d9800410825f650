-- Durable mode: for each journal (a local file of one pipeline), the position through which
-- the store holds its events. Written in the same transaction as the rows it covers, so a
-- restart replays the journal after it exactly once.
CREATE TABLE durable_checkpoints (
    journal_id TEXT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
