DROP INDEX forward_applied_applied_at;
DROP INDEX nats_applied_applied_at;
