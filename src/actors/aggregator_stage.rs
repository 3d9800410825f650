//! The aggregation stage, second of the front stages ([`crate::actors::front`]): folds each
//! batch of kept samples into its [`Aggregator`], closes windows as event time and the clock
//! pass them, and hands on what comes out to the back stages (on their own thread): closed
//! windows to the detector, and window and error-count rows and records (first-of-hash errors
//! and the sampler's) through the detector to the queue, then the markers, behind them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::deliver;
use crate::cores::aggregator::{Aggregator, Output};
use crate::counters::Counters;
use crate::messages::{Closed, Control, Records, Write};
use crate::model::{Kept, Record, WriteBatch};

/// Where the back stages (on their own thread) take what the front stages produce: all of it
/// at the detector, which passes what is for the queue on, in order.
pub(crate) struct BackStages {
    /// Records (the first error of a hash in a window, and the sampler's).
    pub records: Recipient<Records>,
    /// Window and error-count rows.
    pub write: Recipient<Write>,
    /// Closed windows, for the detectors.
    pub closed: Recipient<Closed>,
    /// Markers, behind the data sent before them.
    pub control: Recipient<Control>,
}

/// The aggregation stage: its [`Aggregator`], and where its output goes.
pub(crate) struct AggregatorStage {
    aggregator: Aggregator,
    counters: Arc<Counters>,
    back: BackStages,
    /// Durable mode: checkpoints snapshot what changed, so `Flush` (which follows one) needs
    /// no snapshot of every window.
    durable: bool,
}

impl AggregatorStage {
    pub(crate) fn new(
        aggregator: Aggregator,
        counters: Arc<Counters>,
        back: BackStages,
        durable: bool,
    ) -> Self {
        AggregatorStage {
            aggregator,
            counters,
            back,
            durable,
        }
    }

    /// Folds `samples` in (the clock read `now_ms`), closes the windows event time passed,
    /// and hands on what came out with `records` (the sampler's, of the same events) behind it.
    pub(crate) fn fold(&mut self, samples: Vec<Kept>, records: Vec<Record>, now_ms: i64) {
        let mut out = Output::default();
        if !samples.is_empty() {
            for kept in samples {
                self.aggregator.observe(kept, now_ms, &mut out);
            }
            self.aggregator.close_passed(now_ms, &mut out);
        }
        self.emit(out, records);
    }

    /// Does the aggregator's part of `marker`, hands on what that produced, then the marker.
    pub(crate) fn marker(&mut self, mut marker: Control, now_ms: i64) {
        let mut out = Output::default();
        let a = &mut self.aggregator;
        match &mut marker {
            Control::Tick => a.close_due(now_ms, false, &mut out),
            Control::Flush(_) => {
                a.close_due(now_ms, false, &mut out);
                if self.durable {
                    a.snapshot_changed(&mut out);
                } else {
                    a.snapshot(&mut out);
                }
            }
            Control::Checkpoint(_) => a.snapshot_changed(&mut out),
            // the pipeline stops: every window closes
            Control::Shutdown(_) => a.close_due(now_ms, true, &mut out),
            Control::Windows(q) => q.open = a.open_matching(&q.query),
            Control::Settings(s) => {
                a.set_lateness(s.allowed_lateness_ms);
                a.set_max_series(s.max_open_series);
                a.set_max_error_messages(s.max_error_messages_per_window);
                a.set_max_series_per_metric(s.max_series_per_metric);
            }
            Control::Patterns(..) | Control::Admitted(_) => {}
        }
        self.emit(out, Vec::new());
        deliver(&self.back.control, marker);
    }

    /// Hands on what one step produced (records: the aggregator's, then `more`), and counts it.
    fn emit(&mut self, out: Output, mut more: Vec<Record>) {
        let c = &self.counters;
        Counters::add(&c.aggregated, out.aggregated);
        Counters::add(&c.error_messages_overflowed, out.overflowed);
        Counters::add(&c.series_overflowed, out.series_overflowed);
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
        let mut records = out.records;
        if records.is_empty() {
            records = more;
        } else {
            records.append(&mut more);
        }
        if !records.is_empty() {
            deliver(&self.back.records, Records(records));
        }
        if !out.windows.is_empty() || !out.errors.is_empty() {
            let batch = WriteBatch {
                windows: out.windows,
                errors: out.errors,
                ..WriteBatch::default()
            };
            deliver(&self.back.write, Write(batch));
        }
        if !out.closed.is_empty() {
            log::debug!("closed {} windows", out.closed.len());
            deliver(&self.back.closed, Closed(out.closed));
        }
    }
}
