-- Retention deletes rows older than a cut-off in small transactions; each finds its rows
-- through an index on the time column, so a chunk costs the rows it deletes and never a scan of
-- the table. (`events` already has one: events_kind_ts on SQLite, the BRIN index on ts_ms on
-- PostgreSQL.)
CREATE INDEX metric_windows_start ON metric_windows (window_start_ms);
CREATE INDEX error_counts_start ON error_counts (window_start_ms);
CREATE INDEX patterns_start ON patterns (window_start_ms);
CREATE INDEX metric_rollups_resolution_start ON metric_rollups (resolution, window_start_ms);
