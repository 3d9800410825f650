DROP INDEX events_ts_brin;
CREATE INDEX events_kind_ts ON events (kind, ts_ms);
