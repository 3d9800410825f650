//! The aggregator's actor: folds each batch of samples into its [`Aggregator`], closes windows
//! as event time and the clock pass them, and hands on what comes out.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::remains::{deliver, Remains};
use crate::aggregator::{Aggregator, Output};
use crate::clock::Clock;
use crate::counters::Counters;
use crate::messages::{Closed, Control, Records, Samples, Write};
use crate::model::WriteBatch;

/// The aggregator's actor: folds each batch of samples in, closes windows as event time and
/// the clock pass them, and hands on what comes out: closed windows to the detector, and
/// window and error-count rows and first-of-hash error records through the detector to the
/// queue (with the sampler's records, which it passes on in order).
pub(crate) struct AggregatorActor {
    pub aggregator: Aggregator,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
    /// Records (the first error of a hash in a window, and the sampler's, passed on) go to
    /// the detector, which passes them to the queue.
    pub records: Recipient<Records>,
    /// Window and error-count rows go the same way.
    pub write: Recipient<Write>,
    pub detector: Recipient<Closed>,
    /// Markers go on to the detector.
    pub next: Recipient<Control>,
    pub remains: Arc<Remains>,
    /// Durable mode: checkpoints snapshot what changed, so `Flush` (which follows one) needs
    /// no snapshot of every window.
    pub durable: bool,
}

impl AggregatorActor {
    /// Hands on what one step produced.
    fn emit(&mut self, out: Output) {
        let c = &self.counters;
        Counters::add(&c.aggregated, out.aggregated);
        Counters::add(&c.error_messages_overflowed, out.overflowed);
        if out.dropped > 0 {
            Counters::add(&c.dropped, out.dropped);
            log::warn!(
                "{} open series (max_open_series): dropped {} samples of new series",
                self.aggregator.open_series(),
                out.dropped
            );
        }
        c.windows_open
            .store(self.aggregator.open_windows() as u64, Relaxed);
        if !out.records.is_empty() {
            deliver(&self.records, Records(out.records), &self.remains);
        }
        if !out.windows.is_empty() || !out.errors.is_empty() {
            let batch = WriteBatch {
                windows: out.windows,
                errors: out.errors,
                ..WriteBatch::default()
            };
            deliver(&self.write, Write(batch), &self.remains);
        }
        if !out.closed.is_empty() {
            log::debug!("closed {} windows", out.closed.len());
            deliver(&self.detector, Closed(out.closed), &self.remains);
        }
    }
}

impl Actor for AggregatorActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
    }

    /// Hands the open windows to the last flush.
    fn stopped(&mut self, _: &mut Context<Self>) {
        Counters::sub(&self.counters.actors_running, 1);
        if self.aggregator.open_windows() > 0 {
            let empty = Aggregator::new(self.aggregator.window_ms, self.aggregator.lateness_ms);
            let aggregator = std::mem::replace(&mut self.aggregator, empty);
            self.remains.left().aggregator = Some(aggregator);
        }
    }
}

impl Handler<Samples> for AggregatorActor {
    type Result = ();
    fn handle(&mut self, Samples(samples): Samples, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let mut out = Output::default();
        for kept in samples {
            self.aggregator.observe(kept, now, &mut out);
        }
        self.aggregator.close_passed(now, &mut out);
        self.emit(out);
    }
}

/// The sampler's records, passed on behind what the aggregator produced before them: the
/// queue gets everything from one sender, in order (see the detector's `Handler<Records>`).
impl Handler<Records> for AggregatorActor {
    type Result = ();
    fn handle(&mut self, records: Records, _: &mut Context<Self>) {
        deliver(&self.records, records, &self.remains);
    }
}

impl Handler<Control> for AggregatorActor {
    type Result = ();
    fn handle(&mut self, mut marker: Control, ctx: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let mut out = Output::default();
        match &mut marker {
            Control::Tick => self.aggregator.close_due(now, false, &mut out),
            Control::Flush(_) => {
                self.aggregator.close_due(now, false, &mut out);
                if self.durable {
                    self.aggregator.snapshot_changed(&mut out);
                } else {
                    self.aggregator.snapshot(&mut out);
                }
            }
            Control::Checkpoint(_) => self.aggregator.snapshot_changed(&mut out),
            Control::Shutdown(_) => {
                self.aggregator.close_due(now, true, &mut out);
                ctx.stop();
            }
            Control::Windows(q) => {
                q.open = self
                    .aggregator
                    .open_copies(&q.query.key(), q.query.from_ms, q.query.to_ms)
            }
            Control::Settings(s) => {
                self.aggregator.set_lateness(s.allowed_lateness_ms);
                self.aggregator.set_max_series(s.max_open_series);
                self.aggregator
                    .set_max_error_messages(s.max_error_messages_per_window);
            }
            Control::Patterns(..) | Control::Admitted(_) => {}
        }
        self.emit(out);
        deliver(&self.next, marker, &self.remains);
    }
}
