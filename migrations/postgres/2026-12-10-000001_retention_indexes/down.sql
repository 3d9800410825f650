DROP INDEX metric_rollups_resolution_start;
DROP INDEX patterns_start;
DROP INDEX error_counts_start;
DROP INDEX metric_windows_start;
