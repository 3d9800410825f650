-- Roll-ups: windows of every instance merged into hour and day buckets (from the stored
-- sketches), computed once by whichever writer holds the roll-up lock.
CREATE TABLE metric_rollups (
    id BIGSERIAL PRIMARY KEY,
    resolution TEXT NOT NULL,
    series TEXT NOT NULL,
    metric TEXT NOT NULL,
    context TEXT,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    estimated_count DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    mean DOUBLE PRECISION NOT NULL,
    stddev DOUBLE PRECISION NOT NULL,
    p50 DOUBLE PRECISION NOT NULL,
    p90 DOUBLE PRECISION NOT NULL,
    p95 DOUBLE PRECISION NOT NULL,
    p99 DOUBLE PRECISION NOT NULL,
    sketch BYTEA,
    source_rows BIGINT NOT NULL,
    computed_at_ms BIGINT NOT NULL,
    UNIQUE (resolution, series, window_start_ms)
);

-- Buckets whose sources changed since they were last rolled up, one mark per instance (so
-- writers of different instances never contend for a row; '' marks set by the roll-up job).
-- Every window write bumps `gen` of its hour's mark; rolling a bucket up deletes a mark only
-- if its `gen` is unchanged, so a write racing with the roll-up leaves the bucket due again.
CREATE TABLE rollup_pending (
    resolution TEXT NOT NULL,
    series TEXT NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    PRIMARY KEY (resolution, series, bucket_start_ms, instance_id)
);

-- Windows written before this migration: their hours are pending, so they get rolled up.
INSERT INTO rollup_pending (resolution, series, bucket_start_ms, instance_id, gen)
SELECT 'hour', series, window_start_ms - (window_start_ms % 3600000), '', 1
FROM metric_windows
GROUP BY series, window_start_ms - (window_start_ms % 3600000);
