DROP INDEX quarantine_at;
