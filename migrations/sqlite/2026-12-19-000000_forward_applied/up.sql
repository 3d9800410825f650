-- Scale-out workers (docs/scale-out.md): the forwarded batches whose rows are committed, by
-- their origin (the sending instance, its run and the batch's number in the run), written in
-- the same transaction as the rows. A batch published again after the stream's duplicate
-- window (a durable instance re-sending its outbox after a crash) is a new stream message with
-- a new sequence, which nats_applied does not know: it is found here and written once.
CREATE TABLE forward_applied (
    instance_id TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, run_id, seq)
);
