-- What a series measures (issue 18 item 3): `kind` is 'distribution' (performance and
-- datastore samples; every row written before), 'counter' or 'gauge', and joins the uniqueness
-- keys: the counter `x` and the distribution `x` are two series, stored, merged and rolled up
-- apart. A counter's `sum` is the sum of its increments corrected for sampling; a gauge's
-- last value and its event time are in `last_value` / `last_ts_ms` (NULL for the other kinds
-- and for an empty gauge). The `sketch` blob (the window state) carries all of it too: merges
-- read the blob.

-- SQLite cannot change a table's UNIQUE constraint: the tables are rebuilt, rows and ids kept.
CREATE TABLE metric_windows_new (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    series TEXT NOT NULL,
    metric TEXT NOT NULL,
    context TEXT,
    context_key TEXT NOT NULL GENERATED ALWAYS AS (COALESCE(context, '')) STORED,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    estimated_count DOUBLE NOT NULL,
    sum DOUBLE NOT NULL,
    min DOUBLE NOT NULL,
    max DOUBLE NOT NULL,
    mean DOUBLE NOT NULL,
    stddev DOUBLE NOT NULL,
    p50 DOUBLE NOT NULL,
    p90 DOUBLE NOT NULL,
    p95 DOUBLE NOT NULL,
    p99 DOUBLE NOT NULL,
    sketch BLOB,
    is_final BOOLEAN NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    labels_key BIGINT NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'distribution',
    last_value DOUBLE,
    last_ts_ms BIGINT,
    UNIQUE (instance_id, metric, context_key, labels_key, kind, window_start_ms)
);
INSERT INTO metric_windows_new (id, instance_id, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, is_final, labels,
    labels_key)
SELECT id, instance_id, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, is_final, labels,
    labels_key
FROM metric_windows;
DROP TABLE metric_windows;
ALTER TABLE metric_windows_new RENAME TO metric_windows;
CREATE INDEX metric_windows_key_start
    ON metric_windows (metric, context_key, labels_key, kind, window_start_ms);
CREATE INDEX metric_windows_start ON metric_windows (window_start_ms);

CREATE TABLE metric_rollups_new (
    id INTEGER PRIMARY KEY,
    resolution TEXT NOT NULL,
    series TEXT NOT NULL,
    metric TEXT NOT NULL,
    context TEXT,
    context_key TEXT NOT NULL GENERATED ALWAYS AS (COALESCE(context, '')) STORED,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    estimated_count DOUBLE NOT NULL,
    sum DOUBLE NOT NULL,
    min DOUBLE NOT NULL,
    max DOUBLE NOT NULL,
    mean DOUBLE NOT NULL,
    stddev DOUBLE NOT NULL,
    p50 DOUBLE NOT NULL,
    p90 DOUBLE NOT NULL,
    p95 DOUBLE NOT NULL,
    p99 DOUBLE NOT NULL,
    sketch BLOB,
    source_rows BIGINT NOT NULL,
    computed_at_ms BIGINT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    labels_key BIGINT NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'distribution',
    last_value DOUBLE,
    last_ts_ms BIGINT,
    UNIQUE (resolution, metric, context_key, labels_key, kind, window_start_ms)
);
INSERT INTO metric_rollups_new (id, resolution, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, source_rows,
    computed_at_ms, labels, labels_key)
SELECT id, resolution, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, source_rows,
    computed_at_ms, labels, labels_key
FROM metric_rollups;
DROP TABLE metric_rollups;
ALTER TABLE metric_rollups_new RENAME TO metric_rollups;
CREATE INDEX metric_rollups_resolution_start ON metric_rollups (resolution, window_start_ms);

CREATE TABLE rollup_pending_new (
    resolution TEXT NOT NULL,
    metric TEXT NOT NULL,
    context_key TEXT NOT NULL,
    labels_key BIGINT NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    kind TEXT NOT NULL DEFAULT 'distribution',
    bucket_start_ms BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    PRIMARY KEY (resolution, metric, context_key, labels_key, kind, bucket_start_ms, instance_id)
);
INSERT INTO rollup_pending_new (resolution, metric, context_key, labels_key, labels, bucket_start_ms, instance_id, gen)
SELECT resolution, metric, context_key, labels_key, labels, bucket_start_ms, instance_id, gen FROM rollup_pending;
DROP TABLE rollup_pending;
ALTER TABLE rollup_pending_new RENAME TO rollup_pending;
