DROP TABLE nats_applied;
