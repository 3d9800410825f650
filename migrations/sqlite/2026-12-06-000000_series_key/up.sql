-- A series is its metric and its context (issue 9): `performance("a.b")` and
-- `performance("a").context("b")` are two series, although both are shown as `a.b`. What was
-- keyed by the `series` name is keyed by (metric, context_key) from here on; `context_key` is
-- generated as COALESCE(context, ''), so that the series without a context is one key (UNIQUE
-- treats NULLs as distinct; intake refuses an empty context, so '' stands for none only).
-- `series` stays, written as before, for display.

-- Patterns get the metric and context of their series, from the windows written under its
-- name (a name two series shared goes to the first one written; a name without windows is a
-- metric of its own, without context).
ALTER TABLE patterns ADD COLUMN metric TEXT NOT NULL DEFAULT '';
ALTER TABLE patterns ADD COLUMN context TEXT;
UPDATE patterns SET
    metric = COALESCE(
        (SELECT w.metric FROM metric_windows w WHERE w.series = patterns.series ORDER BY w.id LIMIT 1),
        series),
    context =
        (SELECT w.context FROM metric_windows w WHERE w.series = patterns.series ORDER BY w.id LIMIT 1);
DROP INDEX patterns_series_start;
CREATE INDEX patterns_metric_start ON patterns (metric, window_start_ms);

-- SQLite cannot drop a table's UNIQUE constraint: the tables are rebuilt, rows and ids kept.
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
    UNIQUE (instance_id, metric, context_key, window_start_ms)
);
INSERT INTO metric_windows_new (id, instance_id, series, metric, context, window_start_ms,
    window_end_ms, count, estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99,
    sketch, is_final)
SELECT id, instance_id, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, is_final
FROM metric_windows;
DROP TABLE metric_windows;
ALTER TABLE metric_windows_new RENAME TO metric_windows;
CREATE INDEX metric_windows_key_start ON metric_windows (metric, context_key, window_start_ms);

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
    UNIQUE (resolution, metric, context_key, window_start_ms)
);
INSERT INTO metric_rollups_new (id, resolution, series, metric, context, window_start_ms,
    window_end_ms, count, estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99,
    sketch, source_rows, computed_at_ms)
SELECT id, resolution, series, metric, context, window_start_ms, window_end_ms, count,
    estimated_count, sum, min, max, mean, stddev, p50, p90, p95, p99, sketch, source_rows,
    computed_at_ms
FROM metric_rollups;
DROP TABLE metric_rollups;
ALTER TABLE metric_rollups_new RENAME TO metric_rollups;

CREATE TABLE rollup_pending_new (
    resolution TEXT NOT NULL,
    metric TEXT NOT NULL,
    context_key TEXT NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    PRIMARY KEY (resolution, metric, context_key, bucket_start_ms, instance_id)
);
-- A pending mark stands for every series of its name.
INSERT INTO rollup_pending_new (resolution, metric, context_key, bucket_start_ms, instance_id, gen)
SELECT p.resolution, w.metric, w.context_key, p.bucket_start_ms, p.instance_id, p.gen
FROM rollup_pending p
JOIN (SELECT DISTINCT series, metric, context_key FROM metric_windows) w ON w.series = p.series;
-- A roll-up of a name two series shared merged both: every hour of those series is rolled up
-- again (and so, from its hours, every day), and read from the windows until it is.
INSERT OR IGNORE INTO rollup_pending_new (resolution, metric, context_key, bucket_start_ms,
    instance_id, gen)
SELECT DISTINCT 'hour', metric, context_key, window_start_ms - (window_start_ms % 3600000), '', 1
FROM metric_windows
WHERE series IN (
    SELECT series FROM (SELECT DISTINCT series, metric, context_key FROM metric_windows)
    GROUP BY series HAVING count(*) > 1);
DROP TABLE rollup_pending;
ALTER TABLE rollup_pending_new RENAME TO rollup_pending;
