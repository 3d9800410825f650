-- Scale-out workers (docs/scale-out.md, "Exactly once into PostgreSQL"): the claims of
-- committed messages are pruned once older than `WorkerOptions::applied_max_age` (default 7
-- days), in chunks that find their rows through these indexes, never by a scan of the table.
CREATE INDEX nats_applied_applied_at ON nats_applied (applied_at_ms);
CREATE INDEX forward_applied_applied_at ON forward_applied (applied_at_ms);
