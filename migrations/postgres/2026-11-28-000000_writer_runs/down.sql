DROP TABLE writer_runs;
