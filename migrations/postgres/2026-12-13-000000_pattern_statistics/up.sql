-- Which statistics of a window moved, as a JSON array (one pattern per event, issue 20):
-- `[{"statistic": "mean", "kind": "spike", "confidence": 0.9, "observed": 500, "baseline":
-- 100, "view": "level", "z": 40.2, ...}, ...]`. NULL for patterns written before.
ALTER TABLE patterns ADD COLUMN statistics TEXT;
