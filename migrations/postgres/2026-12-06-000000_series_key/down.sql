-- Back to keys by series name. Fails (UNIQUE) while two series share a name: the old schema
-- cannot hold both.
CREATE TABLE rollup_pending_old (
    resolution TEXT NOT NULL,
    series TEXT NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    PRIMARY KEY (resolution, series, bucket_start_ms, instance_id)
);
INSERT INTO rollup_pending_old (resolution, series, bucket_start_ms, instance_id, gen)
SELECT resolution, metric || CASE WHEN context_key = '' THEN '' ELSE '.' || context_key END,
    bucket_start_ms, instance_id, max(gen)
FROM rollup_pending
GROUP BY 1, 2, 3, 4;
DROP TABLE rollup_pending;
ALTER TABLE rollup_pending_old RENAME TO rollup_pending;
ALTER TABLE rollup_pending RENAME CONSTRAINT rollup_pending_old_pkey TO rollup_pending_pkey;

ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_resolution_metric_context_key_start_key;
ALTER TABLE metric_rollups DROP COLUMN context_key;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_resolution_series_window_start_ms_key
    UNIQUE (resolution, series, window_start_ms);

DROP INDEX metric_windows_key_start;
ALTER TABLE metric_windows DROP CONSTRAINT metric_windows_instance_id_metric_context_key_start_key;
ALTER TABLE metric_windows DROP COLUMN context_key;
ALTER TABLE metric_windows ADD CONSTRAINT metric_windows_instance_id_series_window_start_ms_key
    UNIQUE (instance_id, series, window_start_ms);
CREATE INDEX metric_windows_series_start ON metric_windows (series, window_start_ms);

DROP INDEX patterns_metric_start;
ALTER TABLE patterns DROP COLUMN context;
ALTER TABLE patterns DROP COLUMN metric;
CREATE INDEX patterns_series_start ON patterns (series, window_start_ms);
