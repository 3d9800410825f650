DELETE FROM rollup_pending WHERE resolution = 'week';
DELETE FROM metric_rollups WHERE resolution = 'week';
