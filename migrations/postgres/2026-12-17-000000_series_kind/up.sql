-- What a series measures (issue 18 item 3): `kind` is 'distribution' (performance and
-- datastore samples; every row written before), 'counter' or 'gauge', and joins the uniqueness
-- keys: the counter `x` and the distribution `x` are two series, stored, merged and rolled up
-- apart. A counter's `sum` is the sum of its increments corrected for sampling; a gauge's
-- last value and its event time are in `last_value` / `last_ts_ms` (NULL for the other kinds
-- and for an empty gauge). The `sketch` blob (the window state) carries all of it too: merges
-- read the blob.

ALTER TABLE metric_windows ADD COLUMN kind TEXT NOT NULL DEFAULT 'distribution';
ALTER TABLE metric_windows ADD COLUMN last_value DOUBLE PRECISION;
ALTER TABLE metric_windows ADD COLUMN last_ts_ms BIGINT;
ALTER TABLE metric_windows DROP CONSTRAINT metric_windows_instance_metric_context_labels_start_key;
ALTER TABLE metric_windows ADD CONSTRAINT metric_windows_instance_metric_context_labels_kind_start_key
    UNIQUE (instance_id, metric, context_key, labels_key, kind, window_start_ms);
DROP INDEX metric_windows_key_start;
CREATE INDEX metric_windows_key_start
    ON metric_windows (metric, context_key, labels_key, kind, window_start_ms);

ALTER TABLE metric_rollups ADD COLUMN kind TEXT NOT NULL DEFAULT 'distribution';
ALTER TABLE metric_rollups ADD COLUMN last_value DOUBLE PRECISION;
ALTER TABLE metric_rollups ADD COLUMN last_ts_ms BIGINT;
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_resolution_metric_context_labels_start_key;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_resolution_metric_context_labels_kind_start_key
    UNIQUE (resolution, metric, context_key, labels_key, kind, window_start_ms);

ALTER TABLE rollup_pending ADD COLUMN kind TEXT NOT NULL DEFAULT 'distribution';
ALTER TABLE rollup_pending DROP CONSTRAINT rollup_pending_pkey;
ALTER TABLE rollup_pending ADD CONSTRAINT rollup_pending_pkey
    PRIMARY KEY (resolution, metric, context_key, labels_key, kind, bucket_start_ms, instance_id);
