-- Scale-out workers (docs/scale-out.md): the JetStream stream sequences whose rows are
-- committed, written in the same transaction as the rows, so a message delivered again (its
-- worker died before acknowledging it) is written once.
CREATE TABLE nats_applied (
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream, seq)
);
