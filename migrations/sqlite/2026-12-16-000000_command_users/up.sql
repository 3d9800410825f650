-- Distinct users per command (docs/metrics.md, "Distinct users"): one HyperLogLog sketch per
-- instance, command, context ('' for none), resolution ('window', 'hour', 'day', 'week') and
-- window or bucket start. A write merges into its row (register maximum), so a window written
-- twice, late, or replayed from the journal counts each user once; the hour, day and week rows
-- are merged at the same write. Instances merge when queried.
CREATE TABLE command_users (
    instance_id TEXT NOT NULL,
    command TEXT NOT NULL,
    context TEXT NOT NULL,
    resolution TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_ms BIGINT NOT NULL,
    registers BLOB NOT NULL,
    estimate DOUBLE NOT NULL,
    PRIMARY KEY (instance_id, command, context, resolution, window_start_ms)
);
CREATE INDEX command_users_by_command ON command_users (command, resolution, window_start_ms);
