//! What the forwarding sink hands its publisher task: a batch encoded as a message (or the
//! parts of one over the server's limit), with what it carries for the counters.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::counters::Counters;
use crate::db::bookkeeping::Written;
use crate::forward::wire::{self, Origin};
use crate::messages::Reply;
use crate::model::WriteBatch;

/// What a message carries, for the counters once it is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tally {
    pub(super) written: Written,
    snapshots: u64,
    folded: u64,
    /// Came from the queue: confirmed to it when acknowledged.
    pub(super) from_queue: bool,
}

impl Tally {
    pub(super) fn of(batch: &WriteBatch) -> Tally {
        Tally {
            written: Written::of(batch),
            snapshots: (batch.windows.iter().filter(|w| !w.is_final).count()
                + batch.errors.iter().filter(|e| !e.is_final).count())
                as u64,
            folded: batch.folded(),
            from_queue: batch.from_queue,
        }
    }

    /// Counts the message as written, as the writer counts a committed batch.
    pub(super) fn count(&self, c: &Counters) {
        let w = &self.written;
        Counters::add(&c.records_written, w.records);
        Counters::add(&c.windows_written, w.windows);
        Counters::add(&c.error_counts_written, w.errors);
        Counters::add(&c.patterns_written, w.patterns);
        Counters::add(&c.snapshot_rows, self.snapshots);
        Counters::add(&c.batches_written, 1);
        Counters::add(&c.transactions, 1);
        Counters::add(&c.batch_rows, w.rows());
        Counters::sub(&c.queued, w.records);
        Counters::add(&c.folded_settled, self.folded);
    }

    /// Counts the message as lost: the pipeline stopped before JetStream acknowledged it. Its
    /// folded events move from `aggregated` (counted when folded) to `dropped`, as
    /// `Counters::give_up_unwritten` moves them, so that the conservation law holds.
    pub(super) fn abandon(&self, c: &Counters) -> u64 {
        let lost = self.written.records + self.folded;
        Counters::sub(&c.queued, self.written.records);
        Counters::sub(&c.aggregated, self.folded);
        Counters::add(&c.dropped, lost);
        Counters::add(&c.unwritten_at_stop, lost);
        lost
    }
}

/// One message on its way.
pub(super) struct Message {
    pub(super) id: String,
    pub(super) body: bytes::Bytes,
    /// What it carries; `None` for a message of an earlier run, published again from the
    /// outbox (counted in `Stats::batches_resent` once acknowledged).
    pub(super) tally: Option<Tally>,
    /// In the journal's outbox (durable mode): removed from it once acknowledged.
    pub(super) outbox: bool,
    /// When its batch travels in parts (it was over the server's limit): how many of them
    /// JetStream has not acknowledged yet; the queue's batch is confirmed with the last.
    pub(super) parts: Option<Arc<AtomicUsize>>,
}

impl Message {
    /// `batch` encoded as the next messages of `origin`: one, or, when its body would be over
    /// `max_body` bytes (the server refuses a larger one, every time), parts of it that fit,
    /// each the next message of `origin` ([`wire::encode_to_fit`]). A single row over the
    /// limit travels alone: the server refuses it, and it is retried and counted as lost at
    /// the stop like any message JetStream never acknowledged.
    pub(super) fn of(
        origin: &mut Origin,
        batch: &WriteBatch,
        outbox: bool,
        max_body: usize,
    ) -> Vec<Message> {
        // the common case: one message, encoded from the borrowed batch (no copy)
        origin.seq += 1;
        let body = wire::encode(origin, batch);
        if body.len() <= max_body {
            return vec![Message {
                id: origin.msg_id(),
                body: body.into(),
                tally: Some(Tally::of(batch)),
                outbox,
                parts: None,
            }];
        }
        origin.seq -= 1;
        let parts = wire::encode_to_fit(origin, batch.clone(), max_body);
        let left = (parts.len() > 1).then(|| {
            log::debug!(
                "forwarding: a batch of {} rows sent in {} parts",
                batch.rows(),
                parts.len()
            );
            Arc::new(AtomicUsize::new(parts.len()))
        });
        parts
            .into_iter()
            .map(|(seq, part, body)| {
                if body.len() > max_body {
                    log::error!(
                        "forwarding: a row of {} bytes encoded is over the server's limit of \
                         {max_body}: it cannot be sent",
                        body.len()
                    );
                }
                Message {
                    id: Origin {
                        seq,
                        ..origin.clone()
                    }
                    .msg_id(),
                    body: body.into(),
                    tally: Some(Tally {
                        from_queue: batch.from_queue,
                        ..Tally::of(&part)
                    }),
                    outbox,
                    parts: left.clone(),
                }
            })
            .collect()
    }

    /// Counts the message as lost (the pipeline stopped before JetStream acknowledged it);
    /// a message of an earlier run stays in the outbox and counts nothing.
    pub(super) fn abandon(&self, c: &Counters) -> u64 {
        self.tally.map_or(0, |t| t.abandon(c))
    }
}

/// From the actor to the publisher task.
pub(super) enum Outgoing {
    Publish(Message),
    /// Answer once everything before is acknowledged; after `budget`, `Err` (and with
    /// `abandon`, count what is left as lost and stop).
    Drain {
        reply: Reply<()>,
        abandon: bool,
    },
}
