//! The detection stage, third of the chain (`crate::pipeline`), first on the stages' thread
//! (its actor is the generic `Shell`): feeds each batch of closed windows to its
//! [`Detectors`] and hands the patterns found on, behind the rows it passes through. A series it
//! has no detectors for (after a start, or after they were dropped as idle) is first warmed
//! from its latest stored windows, so a restart does not start the detector over: the one
//! read this actor makes from the store, once per series, batched.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix::prelude::*;
use actix::WeakRecipient;

use crate::cores::detector::{Detectors, HISTORY_WINDOWS};
use crate::counters::Counters;
use crate::db::pool::Pool;
use crate::messages::{Control, PatternFound, Subscription, SubscriptionId};
use crate::model::{ClosedWindow, PatternRecord, SeriesKey, WriteBatch};
use crate::pipeline::stage::{Batch, Next, Pass, Rows, Shell, Stage};
use crate::window_stats::WindowStats;

/// The detection stage: its [`Detectors`], fed the closed windows; the rows bound for the
/// queue pass through, in order.
pub(crate) struct DetectorStage {
    pub detectors: Detectors,
    /// For warming detectors from stored windows (read only).
    pub history: Pool,
    /// The aggregation window, ms.
    pub window_ms: i64,
    pub counters: Arc<Counters>,
    /// Pattern subscribers ([`crate::SubscribePatterns`]): each pattern found is sent to each.
    /// Weak handles: a subscription does not keep its subscriber's actor alive, and one
    /// whose actor is gone is dropped (at the next pattern or the next subscription).
    pub subscribers: Vec<(SubscriptionId, WeakRecipient<PatternFound>)>,
}

impl DetectorStage {
    /// Warms the detectors of the series among `closed` that have none, from their stored
    /// windows before the first closed one (at most [`HISTORY_WINDOWS`] windows back). A
    /// failed read is logged: the series then starts cold. The read is watched like the
    /// writer's calls (`StoreWatch`), so a store that stops answering during it is seen.
    fn warm(&mut self, closed: &[ClosedWindow], now: i64) {
        let unknown = self.detectors.unknown(closed);
        if unknown.is_empty() {
            return;
        }
        let watch = self.history.watch();
        watch.call(|| self.warm_from_history(unknown, now));
    }

    fn warm_from_history(&mut self, unknown: Vec<(SeriesKey, i64)>, now: i64) {
        let mut conn = match self.history.get() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot read window history to warm the detectors: {e}");
                return;
            }
        };
        for chunk in unknown.chunks(500) {
            let keys: Vec<SeriesKey> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let to = chunk.iter().map(|&(_, t)| t).max().unwrap_or(i64::MIN);
            let from = chunk
                .iter()
                .map(|&(_, t)| t)
                .min()
                .unwrap_or(i64::MIN)
                .saturating_sub(HISTORY_WINDOWS.saturating_mul(self.window_ms));
            let windows = match conn.recent_windows(&keys, from, to) {
                Ok(w) => w,
                Err(e) => {
                    log::warn!("cannot read window history to warm the detectors: {e}");
                    return;
                }
            };
            // by series (metric, context and labels), then start
            let same = |a: &WindowStats, b: &WindowStats| {
                (&a.metric, &a.context, &a.labels) == (&b.metric, &b.context, &b.labels)
            };
            type Of<'a> = (&'a str, Option<&'a str>, &'a crate::model::Labels);
            let mut by_series: HashMap<Of<'_>, &[WindowStats]> = HashMap::new();
            for run in windows.chunk_by(same) {
                by_series.insert(
                    (&run[0].metric, run[0].context.as_deref(), &run[0].labels),
                    run,
                );
            }
            for (key, first) in chunk {
                let history = by_series
                    .get(&(key.metric.as_str(), key.context.as_deref(), &key.labels))
                    .copied()
                    .unwrap_or(&[]);
                self.detectors.warm(key, history, *first, now);
            }
        }
    }
}

impl DetectorStage {
    /// Publishes the detectors' gauge and the evictions since the last call.
    fn count_detectors(&mut self) {
        let c = &self.counters;
        Counters::add(&c.detectors_evicted, self.detectors.take_evicted());
        c.detector_series
            .store(self.detectors.len() as u64, Relaxed);
    }
}

impl DetectorStage {
    /// Sends each pattern to every subscriber; a subscriber whose actor is gone is dropped.
    ///
    /// With `do_send`: the detector never waits for a subscriber, and a subscriber that cannot
    /// keep up queues the patterns in its own mailbox (unbounded: its memory, not the
    /// pipeline's; actix's `do_send` ignores the mailbox capacity).
    fn publish(&mut self, patterns: &[PatternRecord]) {
        self.prune_subscribers();
        if self.subscribers.is_empty() {
            return;
        }
        let live: Vec<Recipient<PatternFound>> = self
            .subscribers
            .iter()
            .filter_map(|(_, r)| r.upgrade())
            .collect();
        for p in patterns {
            let pattern = p.to_pattern();
            for r in &live {
                r.do_send(PatternFound(pattern.clone()));
            }
        }
    }

    /// Drops the subscribers whose actor is gone.
    fn prune_subscribers(&mut self) {
        self.subscribers
            .retain(|(_, r)| r.upgrade().is_some_and(|r| r.connected()));
    }
}

/// A subscription starts or ends (from the tracker: a side input of the detector's actor).
impl Handler<Subscription> for Shell<DetectorStage> {
    type Result = ();
    fn handle(&mut self, change: Subscription, _: &mut Context<Self>) {
        let stage = &mut self.stage;
        match change {
            Subscription::Add(id, recipient) => {
                stage.prune_subscribers();
                stage.subscribers.push((id, recipient.downgrade()));
            }
            Subscription::Remove(id) => stage.subscribers.retain(|(s, _)| *s != id),
        }
    }
}

impl Stage for DetectorStage {
    type In = Batch;
    /// Everything the queue takes comes through here, the markers included: one sender, so
    /// the queue sees data and markers in the order the sampler and the aggregator produced
    /// them (durable mode's checkpoints depend on it: records of events after a checkpoint
    /// must not reach the queue before the checkpoint does).
    type Out = Rows;

    /// Closed windows: warms the detectors of new series, runs them, publishes and hands on
    /// the patterns found. Rows: on to the queue.
    fn take(&mut self, batch: &mut Batch, now_ms: i64, next: &mut impl Next<Rows>) {
        let closed = match batch {
            Batch::Rows(rows) => {
                let rows = std::mem::replace(rows, Rows::Records(Vec::new()));
                return next.data(rows);
            }
            Batch::Closed(closed) => std::mem::take(closed),
        };
        self.detectors.begin_batch();
        self.warm(&closed, now_ms);
        let patterns = self.detectors.observe(closed, now_ms);
        self.count_detectors();
        if !patterns.is_empty() {
            Counters::add(&self.counters.patterns_detected, patterns.len() as u64);
            self.publish(&patterns);
            let batch = WriteBatch {
                patterns,
                ..WriteBatch::default()
            };
            next.data(Rows::Write(batch));
        }
    }

    /// A tick drops the detectors of idle series; settings are taken.
    fn marker(&mut self, marker: &mut Control, now_ms: i64, _: &mut impl Next<Rows>) -> Pass {
        match marker {
            Control::Tick => {
                let evicted = self.detectors.evict_idle(now_ms);
                if evicted > 0 {
                    log::debug!("dropped the detectors of {evicted} idle series");
                }
                if evicted >= 1_000 {
                    crate::util::release_freed_memory();
                }
                self.count_detectors();
            }
            Control::Settings(s) => {
                self.detectors
                    .set_settings(s.detection.clone(), s.watch_percentile);
                self.detectors.set_max_series(s.max_detector_series);
            }
            _ => {}
        }
        Pass::On
    }

    /// Holds nothing to write: a detector's state is rebuilt from the stored windows.
    fn stop(&mut self, _: i64, _: &mut impl Next<Rows>) {}
}
