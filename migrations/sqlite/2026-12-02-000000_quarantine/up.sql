-- Rows the store refused for a reason a retry cannot fix (a constraint, a value the column
-- cannot hold), kept with the error instead of blocking every write after them.
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    quarantined_at_ms BIGINT NOT NULL
);
