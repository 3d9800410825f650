//! The detector's actor: feeds each batch of closed windows to its [`Detectors`]. A series it
//! has no detectors for (after a start, or after they were dropped as idle) is first warmed
//! from its latest stored windows, so a restart does not start the detector over: the one
//! read this actor makes from the store, once per series, batched.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix::prelude::*;
use actix::WeakRecipient;

use crate::actors::deliver;
use crate::clock::Clock;
use crate::cores::detector::{Detectors, HISTORY_WINDOWS};
use crate::counters::Counters;
use crate::db::pool::Pool;
use crate::messages::{
    Closed, Control, PatternFound, Records, Subscription, SubscriptionId, Write,
};
use crate::model::{ClosedWindow, PatternRecord, SeriesKey, WriteBatch};
use crate::window_stats::WindowStats;

/// The detector's actor: feeds each batch of closed windows to [`Detectors`] and sends the
/// patterns found to the queue (which passes them to the writer).
pub(crate) struct DetectorActor {
    pub detectors: Detectors,
    /// For warming detectors from stored windows (read only).
    pub history: Pool,
    /// The aggregation window, ms.
    pub window_ms: i64,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
    /// Patterns go to the queue, and so do the rows the aggregator sends this way.
    pub write: Recipient<Write>,
    /// The records the sampler and the aggregator send this way go on to the queue.
    pub records: Recipient<Records>,
    /// Markers go on to the queue.
    pub next: Recipient<Control>,
    /// Pattern subscribers ([`crate::SubscribePatterns`]): each pattern found is sent to each.
    /// Weak handles: a subscription does not keep its subscriber's actor alive, and one
    /// whose actor is gone is dropped (at the next pattern or the next subscription).
    pub subscribers: Vec<(SubscriptionId, WeakRecipient<PatternFound>)>,
}

impl DetectorActor {
    /// Warms the detectors of the series among `closed` that have none, from their stored
    /// windows before the first closed one (at most [`HISTORY_WINDOWS`] windows back). A
    /// failed read is logged: the series then starts cold. The read is watched like the
    /// writer's calls (`StoreWatch`), so a store that stops answering during it is seen.
    fn warm(&mut self, closed: &[ClosedWindow]) {
        let unknown = self.detectors.unknown(closed);
        if unknown.is_empty() {
            return;
        }
        let watch = self.history.watch();
        watch.call(|| self.warm_from_history(unknown));
    }

    fn warm_from_history(&mut self, unknown: Vec<(SeriesKey, i64)>) {
        let now = self.clock.now_ms();
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

impl DetectorActor {
    /// Publishes the detectors' gauge and the evictions since the last call.
    fn count_detectors(&mut self) {
        let c = &self.counters;
        Counters::add(&c.detectors_evicted, self.detectors.take_evicted());
        c.detector_series
            .store(self.detectors.len() as u64, Relaxed);
    }
}

impl DetectorActor {
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

/// A subscription starts or ends.
impl Handler<Subscription> for DetectorActor {
    type Result = ();
    fn handle(&mut self, change: Subscription, _: &mut Context<Self>) {
        match change {
            Subscription::Add(id, recipient) => {
                self.prune_subscribers();
                self.subscribers.push((id, recipient.downgrade()));
            }
            Subscription::Remove(id) => self.subscribers.retain(|(s, _)| *s != id),
        }
    }
}

impl Actor for DetectorActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        Counters::sub(&self.counters.actors_running, 1);
    }
}

impl Handler<Closed> for DetectorActor {
    type Result = ();
    fn handle(&mut self, Closed(closed): Closed, _: &mut Context<Self>) {
        self.detectors.begin_batch();
        self.warm(&closed);
        let patterns = self.detectors.observe(closed, self.clock.now_ms());
        self.count_detectors();
        if !patterns.is_empty() {
            Counters::add(&self.counters.patterns_detected, patterns.len() as u64);
            self.publish(&patterns);
            let batch = WriteBatch {
                patterns,
                ..WriteBatch::default()
            };
            deliver(&self.write, Write(batch));
        }
    }
}

/// Everything the queue takes comes through here, the markers included: one sender, so the
/// queue sees data and markers in the order the sampler and the aggregator produced them
/// (durable mode's checkpoints depend on it: records of events after a checkpoint must not
/// reach the queue before the checkpoint does).
impl Handler<Records> for DetectorActor {
    type Result = ();
    fn handle(&mut self, records: Records, _: &mut Context<Self>) {
        deliver(&self.records, records);
    }
}

/// Rows from the aggregator, on to the queue in order (see `Handler<Records>`).
impl Handler<Write> for DetectorActor {
    type Result = ();
    fn handle(&mut self, write: Write, _: &mut Context<Self>) {
        deliver(&self.write, write);
    }
}

impl Handler<Control> for DetectorActor {
    type Result = ();
    fn handle(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match &marker {
            Control::Tick => {
                let evicted = self.detectors.evict_idle(self.clock.now_ms());
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
            Control::Shutdown(_) => ctx.stop(),
            _ => {}
        }
        deliver(&self.next, marker);
    }
}
