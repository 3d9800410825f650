-- A series is its metric and its context (issue 9): `performance("a.b")` and
-- `performance("a").context("b")` are two series, although both are shown as `a.b`. What was
-- keyed by the `series` name is keyed by (metric, context_key) from here on; `context_key` is
-- generated as COALESCE(context, ''), so that the series without a context is one key (the
-- same on SQLite, which has no NULLS NOT DISTINCT; intake refuses an empty context, so ''
-- stands for none only). `series` stays, written as before, for display.

-- Patterns get the metric and context of their series, from the windows written under its
-- name (a name two series shared goes to the first one written; a name without windows is a
-- metric of its own, without context).
ALTER TABLE patterns ADD COLUMN metric TEXT NOT NULL DEFAULT '';
ALTER TABLE patterns ADD COLUMN context TEXT;
UPDATE patterns p SET metric = w.metric, context = w.context
FROM (SELECT DISTINCT ON (series) series, metric, context FROM metric_windows ORDER BY series, id) w
WHERE w.series = p.series;
UPDATE patterns SET metric = series WHERE metric = '';
ALTER TABLE patterns ALTER COLUMN metric DROP DEFAULT;
DROP INDEX patterns_series_start;
CREATE INDEX patterns_metric_start ON patterns (metric, window_start_ms);

ALTER TABLE metric_windows
    ADD COLUMN context_key TEXT NOT NULL GENERATED ALWAYS AS (COALESCE(context, '')) STORED;
ALTER TABLE metric_windows DROP CONSTRAINT metric_windows_instance_id_series_window_start_ms_key;
ALTER TABLE metric_windows ADD CONSTRAINT metric_windows_instance_id_metric_context_key_start_key
    UNIQUE (instance_id, metric, context_key, window_start_ms);
DROP INDEX metric_windows_series_start;
CREATE INDEX metric_windows_key_start ON metric_windows (metric, context_key, window_start_ms);

ALTER TABLE metric_rollups
    ADD COLUMN context_key TEXT NOT NULL GENERATED ALWAYS AS (COALESCE(context, '')) STORED;
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_resolution_series_window_start_ms_key;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_resolution_metric_context_key_start_key
    UNIQUE (resolution, metric, context_key, window_start_ms);

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
INSERT INTO rollup_pending_new (resolution, metric, context_key, bucket_start_ms, instance_id, gen)
SELECT DISTINCT 'hour', metric, context_key, window_start_ms - (window_start_ms % 3600000), '', 1
FROM metric_windows
WHERE series IN (
    SELECT series FROM (SELECT DISTINCT series, metric, context_key FROM metric_windows) s
    GROUP BY series HAVING count(*) > 1)
ON CONFLICT DO NOTHING;
DROP TABLE rollup_pending;
ALTER TABLE rollup_pending_new RENAME TO rollup_pending;
ALTER TABLE rollup_pending RENAME CONSTRAINT rollup_pending_new_pkey TO rollup_pending_pkey;
