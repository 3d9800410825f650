//! The priority queues: records wait here until a trigger writes them.
//!
//! [`PriorityQueues`] is the logic: three FIFO queues (High, Normal, Low), the triggers
//! (a full batch, `high_priority_flush_threshold` High records, the batch interval, a flush)
//! and the overflow policy; with batching off (`Config::batching`), every record is due at once
//! as a batch of its own. The queue's stage (`QueueStage`) queues the records it receives, and on each
//! record batch, timer tick and confirmation ([`Committed`]) hands the due batches to the writer
//! while fewer than `max_in_flight_batches` are unconfirmed. Window, error-count and pattern
//! batches pass straight through, so the writer has one sender and markers stay in order.
//!
//! One actor holds all three queues, so "High before Normal before Low" is a property of one
//! function ([`PriorityQueues::take_batch`]) rather than a race between actors.

use std::collections::VecDeque;

use crate::event::Priority;
use crate::model::Record;
use crate::settings::Settings;

/// Limits the queues work with (from `Settings`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub max_batch_size: usize,
    pub high_threshold: usize,
    pub batch_interval_ms: i64,
    /// Records queued plus records in flight to the writer, at most.
    pub max_events: usize,
    /// `Config::batching`: off, each record is a batch of its own, due as soon as it is queued.
    pub batching: bool,
}

impl QueueLimits {
    pub(crate) fn from_settings(s: &Settings) -> Self {
        QueueLimits {
            max_batch_size: s.max_batch_size.get(),
            high_threshold: s.high_priority_flush_threshold.get(),
            batch_interval_ms: s.batch_interval.as_millis() as i64,
            max_events: s.max_queued_events.get(),
            batching: s.batching,
        }
    }
}

/// Three FIFO queues with batching triggers and a bounded total.
#[derive(Debug)]
pub(crate) struct PriorityQueues {
    queues: [VecDeque<Record>; 3],
    pub(crate) limits: QueueLimits,
    /// Clock time since when records have been waiting (set when the queues go from empty to
    /// non-empty, and again after each interval-driven write that left records behind).
    pending_since: Option<i64>,
    /// Records still owed to an interval-driven write: everything waiting when the interval
    /// elapsed is written then, even if it takes several batches; newer records wait for the
    /// next interval.
    interval_owed: usize,
}

/// What became of a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued, nothing dropped.
    Queued,
    /// Queued, and an older record of lower (or equal) priority was dropped to make room.
    QueuedWithEviction,
    /// Dropped: the queues were full of records of the same or higher priority.
    Dropped,
}

impl PriorityQueues {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        PriorityQueues {
            queues: Default::default(),
            limits,
            pending_since: None,
            interval_owed: 0,
        }
    }

    pub(crate) fn from_settings(s: &Settings) -> Self {
        PriorityQueues::new(QueueLimits::from_settings(s))
    }

    pub(crate) fn set_limits(&mut self, limits: QueueLimits) {
        self.limits = limits;
    }

    /// Records waiting, all priorities.
    pub(crate) fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Records waiting at one priority.
    #[cfg(test)]
    pub(crate) fn len_of(&self, p: Priority) -> usize {
        self.queues[p.index()].len()
    }

    /// Queues a record. With `in_flight` records already handed to the writer, the total may
    /// not exceed `max_events`: the overflow policy then drops the oldest Low record, else the
    /// incoming record if it is Low, else the oldest Normal, else the incoming record
    /// (High records are never evicted by others; an incoming High is dropped only when
    /// everything held is High).
    pub(crate) fn push(&mut self, record: Record, in_flight: usize, now_ms: i64) -> Pushed {
        self.pending_since.get_or_insert(now_ms);
        if self.len() + in_flight < self.limits.max_events {
            self.queues[record.priority.index()].push_back(record);
            return Pushed::Queued;
        }
        let incoming = record.priority;
        for victim in [Priority::Low, Priority::Normal] {
            if incoming == victim {
                return Pushed::Dropped;
            }
            if self.queues[victim.index()].pop_front().is_some() {
                self.queues[incoming.index()].push_back(record);
                return Pushed::QueuedWithEviction;
            }
        }
        Pushed::Dropped
    }

    /// Whether a trigger asks for a write now: a full batch waits, or enough High records, or
    /// the interval has elapsed on the clock with something waiting (or, batching off,
    /// anything waits).
    #[cfg(test)]
    pub(crate) fn due(&self, now_ms: i64) -> bool {
        (!self.limits.batching && self.len() > 0)
            || self.len() >= self.limits.max_batch_size
            || self.queues[Priority::High.index()].len() >= self.limits.high_threshold
            || self.interval_owed > 0
            || self.interval_elapsed(now_ms)
    }

    fn interval_elapsed(&self, now_ms: i64) -> bool {
        self.pending_since
            .is_some_and(|since| now_ms - since >= self.limits.batch_interval_ms)
    }

    /// Takes the next batch to write, or `None` when no trigger asks for one (`force`: write
    /// whatever waits). A batch holds up to `max_batch_size` records, High first, then Normal,
    /// then Low, each in arrival order; with batching off, one record, whenever one waits.
    pub(crate) fn take_batch(&mut self, now_ms: i64, force: bool) -> Option<Vec<Record>> {
        let len = self.len();
        if len == 0 {
            self.pending_since = None;
            self.interval_owed = 0;
            return None;
        }
        if self.interval_owed == 0 && self.interval_elapsed(now_ms) {
            self.interval_owed = len;
        }
        let high = self.queues[Priority::High.index()].len();
        let take = if !self.limits.batching {
            1
        } else if force || self.interval_owed > 0 || len >= self.limits.max_batch_size {
            self.limits.max_batch_size
        } else if high >= self.limits.high_threshold {
            high.min(self.limits.max_batch_size)
        } else {
            return None;
        };
        let mut batch = Vec::with_capacity(take.min(len));
        for q in &mut self.queues {
            let n = (take - batch.len()).min(q.len());
            batch.extend(q.drain(..n));
        }
        let owed_before = self.interval_owed;
        self.interval_owed = owed_before.saturating_sub(batch.len());
        if self.len() == 0 {
            self.pending_since = None;
            self.interval_owed = 0;
        } else if owed_before > 0 && self.interval_owed == 0 {
            self.pending_since = Some(now_ms);
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TrackEvent;

    fn limits() -> QueueLimits {
        QueueLimits {
            max_batch_size: 4,
            high_threshold: 3,
            batch_interval_ms: 1000,
            max_events: 10,
            batching: true,
        }
    }

    fn rec(p: Priority, name: &str) -> Record {
        Record::from_event(&TrackEvent::command(name).priority(p), 1.0)
    }

    #[test]
    fn nothing_is_due_below_the_triggers() {
        let mut q = PriorityQueues::new(limits());
        q.push(rec(Priority::Normal, "a"), 0, 0);
        q.push(rec(Priority::High, "b"), 0, 0);
        assert!(!q.due(999));
        assert_eq!(q.take_batch(999, false), None);
        assert!(q.due(1000));
    }

    #[test]
    fn size_trigger_takes_high_first() {
        let mut q = PriorityQueues::new(limits());
        for (p, n) in [
            (Priority::Low, "l"),
            (Priority::Normal, "n1"),
            (Priority::Normal, "n2"),
            (Priority::High, "h"),
        ] {
            q.push(rec(p, n), 0, 0);
        }
        let batch = q.take_batch(0, false).unwrap();
        let names: Vec<_> = batch.iter().map(|r| r.name().to_string()).collect();
        assert_eq!(names, ["h", "n1", "n2", "l"]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn high_threshold_writes_only_high() {
        let mut q = PriorityQueues::new(QueueLimits {
            max_batch_size: 100,
            ..limits()
        });
        q.push(rec(Priority::Normal, "n"), 0, 0);
        for _ in 0..3 {
            q.push(rec(Priority::High, "h"), 0, 0);
        }
        let batch = q.take_batch(0, false).unwrap();
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().all(|r| r.priority == Priority::High));
        assert_eq!(q.len_of(Priority::Normal), 1);
    }

    #[test]
    fn interval_and_force_write_everything_in_batches() {
        let mut q = PriorityQueues::new(QueueLimits {
            max_events: 100,
            ..limits()
        });
        for _ in 0..3 {
            q.push(rec(Priority::Low, "l"), 0, 0);
        }
        assert_eq!(q.take_batch(1000, false).unwrap().len(), 3);
        assert!(!q.due(1500));
        for _ in 0..6 {
            q.push(rec(Priority::Low, "l"), 0, 0);
        }
        assert_eq!(q.take_batch(1500, true).unwrap().len(), 4);
        assert_eq!(q.take_batch(1500, true).unwrap().len(), 2);
        assert_eq!(q.take_batch(1500, true), None);
    }

    proptest::proptest! {
        /// Whatever is pushed and whenever batches are taken: no batch exceeds the limit, the
        /// queues never hold more than the bound, and pushed = taken + dropped + waiting.
        #[test]
        fn batches_bounded_and_nothing_lost(
            ops in proptest::collection::vec((0u8..4, 0i64..3000), 1..500),
            max_batch in 1usize..20,
            high in 1usize..10,
            max_events in 1usize..60,
            batching in proptest::bool::ANY,
        ) {
            let mut q = PriorityQueues::new(QueueLimits { max_batch_size: max_batch, high_threshold: high, batch_interval_ms: 1000, max_events, batching });
            let (mut pushed, mut taken, mut dropped, mut now) = (0usize, 0usize, 0usize, 0i64);
            for (op, dt) in ops {
                now += dt;
                if op < 3 {
                    let p = [Priority::High, Priority::Normal, Priority::Low][op as usize];
                    pushed += 1;
                    if q.push(rec(p, "x"), 0, now) != Pushed::Queued {
                        dropped += 1;
                    }
                    proptest::prop_assert!(q.len() <= max_events);
                } else {
                    while let Some(batch) = q.take_batch(now, false) {
                        proptest::prop_assert!(!batch.is_empty() && batch.len() <= max_batch);
                        proptest::prop_assert!(batching || batch.len() == 1);
                        let ranks: Vec<_> = batch.iter().map(|r| r.priority).collect();
                        proptest::prop_assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "priority order");
                        taken += batch.len();
                    }
                }
            }
            while let Some(batch) = q.take_batch(now, true) {
                proptest::prop_assert!(batch.len() <= max_batch);
                taken += batch.len();
            }
            proptest::prop_assert_eq!(pushed, taken + dropped);
        }
    }

    #[test]
    fn batching_off_hands_over_each_record_alone_at_once_high_first() {
        let mut q = PriorityQueues::new(QueueLimits {
            batching: false,
            ..limits()
        });
        assert!(!q.due(0));
        q.push(rec(Priority::Low, "l"), 0, 0);
        assert!(q.due(0), "due as soon as it is queued, before any trigger");
        q.push(rec(Priority::High, "h"), 0, 0);
        let names: Vec<String> = std::iter::from_fn(|| q.take_batch(0, false))
            .map(|b| {
                assert_eq!(b.len(), 1);
                b[0].name().to_string()
            })
            .collect();
        assert_eq!(names, ["h", "l"]);
        // switched back on: the triggers apply again
        q.set_limits(limits());
        q.push(rec(Priority::Normal, "n"), 0, 0);
        assert_eq!(q.take_batch(0, false), None);
        assert_eq!(q.take_batch(0, true).map(|b| b.len()), Some(1));
    }

    #[test]
    fn overflow_drops_low_first_and_never_exceeds_the_bound() {
        let mut q = PriorityQueues::new(QueueLimits {
            max_batch_size: 100,
            high_threshold: 100,
            ..limits()
        });
        for _ in 0..8 {
            assert_eq!(q.push(rec(Priority::Low, "l"), 0, 0), Pushed::Queued);
        }
        // 2 in flight: full at 8 + 2
        assert_eq!(q.push(rec(Priority::Low, "l"), 2, 0), Pushed::Dropped);
        assert_eq!(
            q.push(rec(Priority::High, "h"), 2, 0),
            Pushed::QueuedWithEviction
        );
        assert_eq!(
            q.push(rec(Priority::Normal, "n"), 2, 0),
            Pushed::QueuedWithEviction
        );
        assert_eq!(q.len(), 8);
        assert_eq!(q.len_of(Priority::Low), 6);
        for _ in 0..6 {
            q.push(rec(Priority::High, "h"), 2, 0);
        }
        assert_eq!(q.len_of(Priority::Low), 0);
        assert_eq!(
            q.push(rec(Priority::High, "h"), 2, 0),
            Pushed::QueuedWithEviction
        ); // evicts the Normal
        assert_eq!(q.push(rec(Priority::High, "h"), 2, 0), Pushed::Dropped);
        assert_eq!(q.len(), 8);
        assert_eq!(q.len_of(Priority::High), 8);
    }
}
