-- Retention prunes `command_users` (distinct users) by resolution and window or bucket start:
-- window rows with the windows' maximum age, hour, day and week rows with their roll-ups'
-- (`Retention`), a chunk at a time through this index, so a chunk costs the rows it deletes
-- and never a scan of the table.
CREATE INDEX command_users_resolution_start ON command_users (resolution, window_start_ms);
