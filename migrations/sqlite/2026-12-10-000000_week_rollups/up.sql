-- Week roll-ups (ISO weeks: Monday 00:00 UTC to the next Monday) join hours and days in
-- `metric_rollups` and `rollup_pending`, told apart by `resolution` = 'week'. A week bucket
-- starts at 345600000 + k * 604800000 (1970-01-05, the first Monday after the epoch).
-- Days rolled up before this migration mark their weeks pending, so those weeks get rolled up.
INSERT INTO rollup_pending (resolution, metric, context_key, bucket_start_ms, instance_id, gen)
SELECT DISTINCT 'week', metric, context_key,
       window_start_ms - ((window_start_ms - 345600000) % 604800000 + 604800000) % 604800000,
       '', 1
FROM metric_rollups
WHERE resolution = 'day';
