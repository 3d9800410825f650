-- Back to series without labels. Rows of a labelled series are deleted (the old keys cannot
-- hold two label sets of one series apart); the unlabelled rows are kept.
DELETE FROM metric_windows WHERE labels_key <> 0;
DELETE FROM metric_rollups WHERE labels_key <> 0;
DELETE FROM rollup_pending WHERE labels_key <> 0;
DELETE FROM patterns WHERE labels <> '{}';
ALTER TABLE patterns DROP COLUMN labels;

ALTER TABLE rollup_pending DROP CONSTRAINT rollup_pending_pkey;
ALTER TABLE rollup_pending DROP COLUMN labels_key;
ALTER TABLE rollup_pending DROP COLUMN labels;
ALTER TABLE rollup_pending ADD CONSTRAINT rollup_pending_pkey
    PRIMARY KEY (resolution, metric, context_key, bucket_start_ms, instance_id);

ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_resolution_metric_context_labels_start_key;
ALTER TABLE metric_rollups DROP COLUMN labels_key;
ALTER TABLE metric_rollups DROP COLUMN labels;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_resolution_metric_context_key_start_key
    UNIQUE (resolution, metric, context_key, window_start_ms);

DROP INDEX metric_windows_key_start;
ALTER TABLE metric_windows DROP CONSTRAINT metric_windows_instance_metric_context_labels_start_key;
ALTER TABLE metric_windows DROP COLUMN labels_key;
ALTER TABLE metric_windows DROP COLUMN labels;
ALTER TABLE metric_windows ADD CONSTRAINT metric_windows_instance_id_metric_context_key_start_key
    UNIQUE (instance_id, metric, context_key, window_start_ms);
CREATE INDEX metric_windows_key_start ON metric_windows (metric, context_key, window_start_ms);
