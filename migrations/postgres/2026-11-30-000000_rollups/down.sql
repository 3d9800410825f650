DROP TABLE rollup_pending;
DROP TABLE metric_rollups;
