-- Retention prunes `quarantine` by the time its rows were set aside
-- (`Retention::quarantine_max_age_ms`), a chunk at a time through this index.
CREATE INDEX quarantine_at ON quarantine (quarantined_at_ms);
