CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    priority TEXT NOT NULL,
    user_hash TEXT,
    server_hash TEXT,
    success BOOLEAN,
    duration_ms DOUBLE,
    value DOUBLE,
    error_type TEXT,
    error_category TEXT,
    sample_rate DOUBLE NOT NULL DEFAULT 1.0,
    tags TEXT,
    payload TEXT
);
CREATE INDEX events_kind_ts ON events (kind, ts_ms);

CREATE TABLE metric_windows (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    series TEXT NOT NULL,
    metric TEXT NOT NULL,
    context TEXT,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    estimated_count DOUBLE NOT NULL,
    sum DOUBLE NOT NULL,
    min DOUBLE NOT NULL,
    max DOUBLE NOT NULL,
    mean DOUBLE NOT NULL,
    stddev DOUBLE NOT NULL,
    p50 DOUBLE NOT NULL,
    p90 DOUBLE NOT NULL,
    p95 DOUBLE NOT NULL,
    p99 DOUBLE NOT NULL,
    sketch BLOB,
    is_final BOOLEAN NOT NULL,
    UNIQUE (instance_id, series, window_start_ms)
);
CREATE INDEX metric_windows_series_start ON metric_windows (series, window_start_ms);

CREATE TABLE error_counts (
    instance_id TEXT NOT NULL,
    error_hash TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_category TEXT,
    window_start_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    first_ts_ms BIGINT NOT NULL,
    last_ts_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, error_hash, window_start_ms)
);

CREATE TABLE patterns (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    series TEXT NOT NULL,
    kind TEXT NOT NULL,
    confidence DOUBLE NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL,
    observed DOUBLE NOT NULL,
    baseline DOUBLE NOT NULL,
    description TEXT NOT NULL,
    detected_at_ms BIGINT NOT NULL
);
CREATE INDEX patterns_series_start ON patterns (series, window_start_ms);
