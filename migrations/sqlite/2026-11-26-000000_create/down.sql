DROP TABLE patterns;
DROP TABLE error_counts;
DROP TABLE metric_windows;
DROP TABLE events;
