-- `events` is append-mostly in time order: a BRIN index on ts_ms answers time-range reads
-- (filter `kind` on top) at a fraction of a B-tree's write cost. Measured with psql \copy of
-- 400k command rows on the 2-core machine: B-tree (kind, ts_ms) 1.45-1.74 s, BRIN (ts_ms)
-- 1.01-1.09 s, no secondary index 0.94-1.13 s.
DROP INDEX events_kind_ts;
CREATE INDEX events_ts_brin ON events USING brin (ts_ms);
