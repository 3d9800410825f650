//! Durable forwarding at the sink (`durable` with `forward`): which of the batches the sink
//! holds a journal checkpoint covers. The rule is the embedded writer's (`Durable` in
//! `crate::db::writer`): a `Checkpoint(P)` marker comes behind everything derived from the
//! events up to `P`, and the front door sends another marker right behind it, so every batch
//! held when that next marker arrives derives from events up to `P`, and no later batch does.
//! Those batches are committed to the journal's outbox with `P` (`crate::journal::outbox`),
//! then published; the batches after them wait for the next checkpoint.

use std::sync::{Arc, Mutex};

use crate::journal::Journal;
use crate::model::WriteBatch;

/// The batches the sink holds until a checkpoint covers them.
#[derive(Debug, Default)]
pub(crate) struct CheckpointCover {
    /// Batches received and not yet committed to the outbox, oldest first.
    held: Vec<WriteBatch>,
    /// Held batches, from the front, that the checkpoint at `position` covers.
    covered: usize,
    /// The latest checkpoint position received.
    position: u64,
    /// The last position committed to the outbox.
    committed: u64,
    /// A checkpoint marker arrived and the marker behind it has not yet.
    open: bool,
}

impl CheckpointCover {
    /// Holds a batch until a checkpoint covers it.
    pub(crate) fn hold(&mut self, batch: WriteBatch) {
        self.held.push(batch);
        if self.open {
            self.covered = self.held.len();
        }
    }

    /// A `Checkpoint(position)` marker arrived: it covers what is held, and what arrives
    /// until the next marker.
    pub(crate) fn checkpoint(&mut self, position: u64) {
        self.position = self.position.max(position);
        self.covered = self.held.len();
        self.open = true;
    }

    /// Another marker arrived: the covered batches and their position, if a checkpoint is due
    /// (there is something new to commit). The batches are the caller's until it reports the
    /// commit ([`Self::committed`]) or gives them back ([`Self::failed`]).
    pub(crate) fn marker_passed(&mut self) -> Option<(u64, Vec<WriteBatch>)> {
        if !std::mem::take(&mut self.open) {
            return None;
        }
        if self.covered == 0 && self.position <= self.committed {
            return None;
        }
        let covered = self.held.drain(..self.covered).collect();
        self.covered = 0;
        Some((self.position, covered))
    }

    /// The batches of the checkpoint at `position` are in the outbox.
    pub(crate) fn committed(&mut self, position: u64) {
        self.committed = self.committed.max(position);
    }

    /// The outbox could not take them: they go back to the front, for the next checkpoint
    /// (which covers them too: they are older than anything it covers).
    pub(crate) fn failed(&mut self, batches: Vec<WriteBatch>) {
        self.held.splice(0..0, batches);
    }

    /// The last position committed to the outbox.
    pub(crate) fn committed_position(&self) -> u64 {
        self.committed
    }

    /// Gives up everything held (the pipeline stops without a checkpoint of it).
    pub(crate) fn take_all(&mut self) -> Vec<WriteBatch> {
        self.covered = 0;
        std::mem::take(&mut self.held)
    }
}

/// Durable mode's part of the forwarding sink (`crate::actors::nats_sink`'s module docs).
pub(crate) struct DurableSink {
    /// The journal whose outbox the checkpoints commit to.
    pub journal: Arc<Journal>,
    /// The batches held until a checkpoint covers them.
    pub cover: CheckpointCover,
    /// Outbox messages JetStream has acknowledged, removed from the outbox by the next commit
    /// (shared with the publisher task, which adds to it).
    pub acknowledged: Arc<Mutex<Vec<String>>>,
}

impl DurableSink {
    /// Takes the acknowledged messages' ids, to remove them from the outbox.
    pub(crate) fn take_acknowledged(&self) -> Vec<String> {
        std::mem::take(&mut *self.acknowledged.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Gives back ids [`Self::take_acknowledged`] took, for a commit that failed.
    pub(crate) fn give_back(&self, ids: Vec<String>) {
        self.acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TrackEvent;
    use crate::model::Record;

    fn batch(name: &str) -> WriteBatch {
        WriteBatch {
            records: vec![Record::from_event(&TrackEvent::command(name), 1.0)],
            ..WriteBatch::default()
        }
    }

    fn names(batches: &[WriteBatch]) -> Vec<String> {
        batches
            .iter()
            .map(|b| b.records[0].name().to_string())
            .collect()
    }

    #[test]
    fn a_checkpoint_covers_what_came_before_the_marker_behind_it() {
        let mut c = CheckpointCover::default();
        c.hold(batch("a"));
        assert!(c.marker_passed().is_none(), "no checkpoint yet");
        c.checkpoint(5);
        c.hold(batch("b")); // between the checkpoint and the marker behind it: covered
        let (position, covered) = c.marker_passed().expect("due");
        assert_eq!(
            (position, names(&covered)),
            (5, vec!["a".into(), "b".into()])
        );
        c.committed(5);
        c.hold(batch("c")); // after the marker: the next checkpoint's
        assert!(c.marker_passed().is_none());
        c.checkpoint(5);
        let (position, covered) = c.marker_passed().expect("c is new");
        assert_eq!((position, names(&covered)), (5, vec!["c".into()]));
        c.committed(5);
        c.checkpoint(5);
        assert!(c.marker_passed().is_none(), "nothing new");
        c.checkpoint(9);
        let (position, covered) = c.marker_passed().expect("a new position");
        assert_eq!((position, covered.len()), (9, 0));
    }

    #[test]
    fn batches_the_outbox_refused_go_first_into_the_next_checkpoint() {
        let mut c = CheckpointCover::default();
        c.hold(batch("a"));
        c.checkpoint(3);
        let (_, covered) = c.marker_passed().unwrap();
        c.hold(batch("b"));
        c.failed(covered);
        c.checkpoint(7);
        let (position, covered) = c.marker_passed().unwrap();
        assert_eq!(
            (position, names(&covered)),
            (7, vec!["a".into(), "b".into()])
        );
        c.committed(7);
        assert_eq!(c.committed_position(), 7);
        c.hold(batch("d"));
        assert_eq!(names(&c.take_all()), ["d"]);
    }
}
