-- A series is its metric, its context and its label set (issue 18): the tags of a metric
-- sample, sorted by key. `labels` holds the set as a JSON object with its keys in order
-- (`{}` for none, the canonical encoding), `labels_key` a stable hash of that text (XXH3-64
-- as a signed 64-bit integer; 0 for the empty set), which joins the uniqueness keys. Rows
-- written before hold the empty set: a series without tags is keyed as before.
-- Patterns get the label set of their series.
ALTER TABLE patterns ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

ALTER TABLE metric_windows ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE metric_windows ADD COLUMN labels_key BIGINT NOT NULL DEFAULT 0;
ALTER TABLE metric_windows DROP CONSTRAINT metric_windows_instance_id_metric_context_key_start_key;
ALTER TABLE metric_windows ADD CONSTRAINT metric_windows_instance_metric_context_labels_start_key
    UNIQUE (instance_id, metric, context_key, labels_key, window_start_ms);
DROP INDEX metric_windows_key_start;
CREATE INDEX metric_windows_key_start
    ON metric_windows (metric, context_key, labels_key, window_start_ms);

ALTER TABLE metric_rollups ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE metric_rollups ADD COLUMN labels_key BIGINT NOT NULL DEFAULT 0;
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_resolution_metric_context_key_start_key;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_resolution_metric_context_labels_start_key
    UNIQUE (resolution, metric, context_key, labels_key, window_start_ms);

ALTER TABLE rollup_pending ADD COLUMN labels_key BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_pending ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE rollup_pending DROP CONSTRAINT rollup_pending_pkey;
ALTER TABLE rollup_pending ADD CONSTRAINT rollup_pending_pkey
    PRIMARY KEY (resolution, metric, context_key, labels_key, bucket_start_ms, instance_id);
