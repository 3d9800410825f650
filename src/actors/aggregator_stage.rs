//! The aggregation stage, second of the chain (`crate::pipeline`): folds each batch of kept
//! samples into its [`Aggregator`], closes windows as event time and the clock pass them, and
//! hands on what comes out to the back stages (on their own thread): closed windows for the
//! detector, and window and error-count rows and records (first-of-hash errors, then the
//! sampler's) for the queue, then the markers, behind them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::cores::aggregator::{Aggregator, Output};
use crate::cores::sampler::Routed;
use crate::cores::users::UserWindow;
use crate::counters::Counters;
use crate::messages::Control;
use crate::model::{Record, WriteBatch};
use crate::pipeline::stage::{Batch, Next, Pass, Rows, Stage};

/// The aggregation stage: its [`Aggregator`] and the counters it adds to.
pub(crate) struct AggregatorStage {
    aggregator: Aggregator,
    counters: Arc<Counters>,
    /// Durable mode: checkpoints snapshot what changed, so `Flush` (which follows one) needs
    /// no snapshot of every window.
    durable: bool,
}

impl AggregatorStage {
    pub(crate) fn new(aggregator: Aggregator, counters: Arc<Counters>, durable: bool) -> Self {
        AggregatorStage {
            aggregator,
            counters,
            durable,
        }
    }

    /// Hands on what one step produced (records: the aggregator's, then `more`; the sampler's
    /// user sketches with the windows), and counts it.
    fn emit(
        &mut self,
        out: Output,
        mut more: Vec<Record>,
        users: Vec<UserWindow>,
        next: &mut impl Next<Batch>,
    ) {
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
            next.data(Batch::Rows(Rows::Records(records)));
        }
        if !out.windows.is_empty() || !out.errors.is_empty() || !users.is_empty() {
            let batch = WriteBatch {
                windows: out.windows,
                errors: out.errors,
                users,
                ..WriteBatch::default()
            };
            next.data(Batch::Rows(Rows::Write(batch)));
        }
        if !out.closed.is_empty() {
            log::debug!("closed {} windows", out.closed.len());
            next.data(Batch::Closed(out.closed));
        }
    }
}

impl Stage for AggregatorStage {
    /// The sampler's output: kept samples and errors to fold, records to hand on.
    type In = Routed;
    type Out = Batch;

    /// Folds the samples in, closes the windows event time passed, and hands on what came
    /// out with the sampler's records of the same events behind it.
    fn take(&mut self, routed: &mut Routed, now_ms: i64, next: &mut impl Next<Batch>) {
        let mut out = Output::default();
        let mut folded = false;
        for (event, rate) in routed.aggregate() {
            self.aggregator.observe(event, rate, now_ms, &mut out);
            folded = true;
        }
        if folded {
            self.aggregator.close_passed(now_ms, &mut out);
        }
        let users = std::mem::take(&mut routed.users);
        self.emit(out, routed.pack_records(), users, next);
    }

    /// Closes what the clock passed (`Tick`, `Flush`), snapshots (`Flush`, `Checkpoint`),
    /// copies the open windows a query asks for, takes new settings.
    fn marker(&mut self, marker: &mut Control, now_ms: i64, next: &mut impl Next<Batch>) -> Pass {
        let mut out = Output::default();
        let a = &mut self.aggregator;
        match marker {
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
            Control::Windows(q) => q.open = a.open_matching(&q.query),
            Control::Settings(s) => {
                a.set_lateness(s.allowed_lateness_ms);
                a.set_max_series(s.max_open_series);
                a.set_max_error_messages(s.max_error_messages_per_window);
                a.set_max_series_per_metric(s.max_series_per_metric);
            }
            Control::Shutdown(_)
            | Control::Patterns(..)
            | Control::Users(_)
            | Control::Admitted(_) => {}
        }
        self.emit(out, Vec::new(), Vec::new(), next);
        Pass::On
    }

    /// The pipeline stops: every window closes.
    fn stop(&mut self, now_ms: i64, next: &mut impl Next<Batch>) {
        let mut out = Output::default();
        self.aggregator.close_due(now_ms, true, &mut out);
        self.emit(out, Vec::new(), Vec::new(), next);
    }
}
