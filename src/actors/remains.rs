//! [`Remains`]: what the actors still hold when they are torn down without `Shutdown`, and the
//! synchronous last flush that writes it.
//!
//! `Shutdown` empties the pipeline through the actors (a marker through the chain), so each
//! actor stops with nothing in hand. A bare `System` stop (or the application returning from
//! `main`) instead drops the actors in an order nobody controls. actix then handles each
//! actor's queued messages and calls its `stopped()` (measured: a message already in a mailbox
//! is delivered), but an actor downstream may already be gone. So:
//!
//! - every actor hands its state to the shared `Remains` in `stopped()`, and
//! - every send goes through [`deliver`]: a message whose receiver is gone is kept here, as
//!   that receiver's input, instead of vanishing.
//!
//! The last owner of the `Arc<Remains>` to go runs [`Remains::drop`]: everything kept is run
//! through the same pure cores, in flow order (sample, aggregate and close every window,
//! detect, queue, write), on the calling thread. When `Shutdown` ran first, nothing is kept
//! and the drop does nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use crate::aggregator::{Aggregator, Output};
use crate::clock::Clock;
use crate::config::Settings;
use crate::counters::Counters;
use crate::db::store::Pool;
use crate::db::writer::WriterCore;
use crate::detector::Detectors;
use crate::event::TrackEvent;
use crate::journal::Journal;
use crate::messages::{Closed, Committed, Control, Events, Records, Samples, Write};
use crate::model::{ClosedWindow, Kept, Record, WriteBatch};
use crate::queue::{PriorityQueues, Pushed};
use crate::sampler::{Routed, Sampler};

/// What the torn-down actors left, per stage, in flow order.
#[derive(Default)]
pub(crate) struct Left {
    pub events: Vec<TrackEvent>,
    pub sampler: Option<Sampler>,
    pub samples: Vec<Kept>,
    pub aggregator: Option<Aggregator>,
    pub closed: Vec<ClosedWindow>,
    pub detectors: Option<Detectors>,
    pub records: Vec<Record>,
    pub queues: Option<PriorityQueues>,
    pub batches: Vec<WriteBatch>,
    pub writer: Option<WriterCore>,
}

impl Left {
    fn is_empty(&self) -> bool {
        let holds = |q: &Option<PriorityQueues>| q.as_ref().is_some_and(|q| q.len() > 0);
        self.events.is_empty()
            && self.samples.is_empty()
            && self
                .aggregator
                .as_ref()
                .is_none_or(|a| a.open_windows() == 0)
            && self.closed.is_empty()
            && self.records.is_empty()
            && !holds(&self.queues)
            && self.batches.is_empty()
            && self.writer.as_ref().is_none_or(|w| w.held_events() == 0)
    }
}

/// The pipeline's last will (see the module docs). Shared by every actor.
pub(crate) struct Remains {
    left: Mutex<Left>,
    /// The settings in force (the supervisor updates them), for the cores nobody left.
    settings: Mutex<Arc<Settings>>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    pool: Pool,
    /// Durable mode: the journal, for a writer nobody left.
    journal: Option<Arc<Journal>>,
}

impl Remains {
    pub(crate) fn new(
        settings: Arc<Settings>,
        counters: Arc<Counters>,
        clock: Arc<dyn Clock>,
        pool: Pool,
    ) -> Self {
        Remains {
            left: Mutex::default(),
            settings: Mutex::new(settings),
            counters,
            clock,
            pool,
            journal: None,
        }
    }

    /// Durable mode: the last flush commits with a checkpoint of `journal`.
    pub(crate) fn with_journal(mut self, journal: Option<Arc<Journal>>) -> Self {
        self.journal = journal;
        self
    }

    /// The kept state, to add to.
    pub(crate) fn left(&self) -> MutexGuard<'_, Left> {
        self.left.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_settings(&self, settings: Arc<Settings>) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Runs everything kept through the pipeline's cores and writes it.
    fn flush(&self, left: Left) {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let c = &self.counters;
        let now = self.clock.now_ms();
        let Left {
            events,
            sampler,
            mut samples,
            aggregator,
            mut closed,
            detectors,
            mut records,
            queues,
            mut batches,
            writer,
        } = left;
        let mut sampler = sampler.unwrap_or_else(|| Sampler::from_settings(&settings));
        let n = events.len() as u64;
        let mut routed = Routed::default();
        sampler.route(events, now, &mut routed);
        Counters::add(&c.sampled_out, routed.sampled_out);
        Counters::add(&c.kept, n - routed.sampled_out);
        samples.append(&mut routed.aggregate);
        records.append(&mut routed.records);

        let mut aggregator = aggregator.unwrap_or_else(|| Aggregator::from_settings(&settings));
        let mut out = Output::default();
        for kept in samples {
            aggregator.observe(kept, now, &mut out);
        }
        aggregator.close_due(now, true, &mut out);
        Counters::add(&c.aggregated, out.aggregated);
        Counters::add(&c.dropped, out.dropped);
        c.windows_open
            .store(0, std::sync::atomic::Ordering::Relaxed);
        records.append(&mut out.records);
        closed.append(&mut out.closed);
        if !out.windows.is_empty() || !out.errors.is_empty() {
            batches.push(WriteBatch {
                windows: out.windows,
                errors: out.errors,
                ..WriteBatch::default()
            });
        }

        let mut detectors = detectors.unwrap_or_else(|| {
            Detectors::new(settings.detection.clone()).with_tail(settings.watch_percentile)
        });
        let patterns = detectors.observe(closed, now);
        if !patterns.is_empty() {
            Counters::add(&c.patterns_detected, patterns.len() as u64);
            batches.push(WriteBatch {
                patterns,
                ..WriteBatch::default()
            });
        }

        let mut queues = queues.unwrap_or_else(|| PriorityQueues::from_settings(&settings));
        let mut dropped = 0;
        let added = records.len() as u64;
        for record in records {
            // Room is not the question any more: everything goes to the store now.
            if queues.push(record, 0, now) != Pushed::Queued {
                dropped += 1;
            }
        }
        Counters::add(&c.queued, added - dropped);
        Counters::add(&c.dropped, dropped);
        while let Some(records) = queues.take_batch(now, true) {
            batches.push(WriteBatch {
                records,
                ..WriteBatch::default()
            });
        }

        let mut writer = match writer {
            Some(w) => w,
            None => {
                WriterCore::new(self.pool.clone(), &settings).with_journal(self.journal.clone())
            }
        };
        for batch in batches {
            writer.hold(batch);
        }
        // durable mode: nothing is accepted any more, so all of it is the state through the
        // journal's last position
        writer.checkpoint_everything();
        match writer.write_held(c).1 {
            Ok(()) => {
                writer.wait_journal_truncated();
                log::info!("pipeline flushed on stop")
            }
            Err(e) => {
                let lost = writer.abandon_held(c);
                log::error!(
                    "pipeline stopped while the store is failing: {lost} events not written ({e})"
                );
            }
        }
    }
}

impl Drop for Remains {
    fn drop(&mut self) {
        let left = std::mem::take(&mut *self.left());
        if !left.is_empty() {
            self.flush(left);
        }
    }
}

/// A message that, when its receiver is gone, is kept in [`Remains`] as that receiver's input.
pub(crate) trait Spill: Message<Result = ()> + Send + 'static {
    fn spill(self, left: &mut Left);
}

impl Spill for Events {
    fn spill(mut self, left: &mut Left) {
        left.events.append(&mut self.0);
    }
}

impl Spill for Samples {
    fn spill(mut self, left: &mut Left) {
        left.samples.append(&mut self.0);
    }
}

impl Spill for Records {
    fn spill(mut self, left: &mut Left) {
        left.records.append(&mut self.0);
    }
}

impl Spill for Closed {
    fn spill(mut self, left: &mut Left) {
        left.closed.append(&mut self.0);
    }
}

impl Spill for Write {
    fn spill(self, left: &mut Left) {
        left.batches.push(self.0);
    }
}

impl Spill for Committed {
    /// The queue is gone: nothing to make room in.
    fn spill(self, _: &mut Left) {}
}

impl Spill for Control {
    /// The pipeline is being torn down: markers have nowhere to go (a reply channel dropped
    /// here answers its waiter with an error).
    fn spill(self, _: &mut Left) {}
}

/// The mailbox capacity every internal actor sets: in effect unbounded (2^30 messages, each
/// a batch), as `do_send` is, so [`deliver`] never meets a full mailbox. (`usize::MAX`
/// overflows actix's sender accounting.)
pub(crate) const UNBOUNDED: usize = 1 << 30;

/// Sends `msg`, or keeps it in `remains` if its receiver is gone. Mailboxes are unbounded
/// ([`UNBOUNDED`]), so a send never waits or fails for room.
pub(crate) fn deliver<M: Spill>(to: &Recipient<M>, msg: M, remains: &Remains) {
    match to.try_send(msg) {
        Ok(()) => {}
        // Only before the receiver has set its capacity (it is starting): it is there.
        Err(SendError::Full(msg)) => to.do_send(msg),
        Err(SendError::Closed(msg)) => {
            log::debug!(
                "{} kept for the last flush: its receiver is gone",
                std::any::type_name::<M>()
            );
            msg.spill(&mut remains.left())
        }
    }
}
