DROP TABLE durable_checkpoints;
