//! Pipeline counters: [`Counters`] (shared atomics every stage bumps, in batches) and [`Stats`]
//! (a consistent-enough snapshot of them, answered by `GetStats` without touching the store).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A snapshot of the pipeline's counters.
///
/// Conservation: `events_received = events_rejected + events_sampled_out + events_kept`, and each
/// kept event is written as a record (`records_written`), folded into a window or error count
/// (`events_aggregated`; durable once its window is written, at the latest by `Flush`),
/// dropped by the overflow policy (`events_dropped`), or still pending (`events_queued` plus
/// events between stages). After a `Flush` nothing is pending, so
/// `events_kept = records_written + events_aggregated + events_dropped + events_quarantined`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Events offered to the pipeline (`TrackEvent`s and the elements of `TrackBatch`es).
    pub events_received: u64,
    /// Events rejected as invalid (never stored).
    pub events_rejected: u64,
    /// Valid events dropped by sampling (their kept peers carry `sample_rate`).
    pub events_sampled_out: u64,
    /// Valid events kept by sampling.
    pub events_kept: u64,
    /// Kept events folded into metric windows or error counts instead of written one by one.
    pub events_aggregated: u64,
    /// Gauge: records waiting in the priority queues or handed to the writer, not yet written.
    pub events_queued: u64,
    /// Rows written to `events`.
    pub records_written: u64,
    /// Rows written (inserted or replaced) in `metric_windows`, snapshots included.
    pub windows_written: u64,
    /// Rows the pipeline produced in the store: events, closed metric windows, closed error
    /// counts, patterns and roll-up rows (each roll-up run's rows count). A window written
    /// once when it closes counts once, however many snapshots a `Flush` wrote of it before
    /// (those are `snapshot_rows_written`); a window reopened by late events counts again when
    /// it closes again. Bookkeeping rows (`writer_runs`, `rollup_pending`, `quarantine`) are
    /// not counted.
    pub rows_written: u64,
    /// Rewrites of still-open windows and error counts made by `Flush` (each replaces the
    /// previous snapshot of its row; the final write replaces the last). Writes the database
    /// did, but no new rows: reported here, not in `rows_written`.
    pub snapshot_rows_written: u64,
    /// Committed write transactions (batches; several records-only batches may share one).
    /// Roll-up runs commit separately and are not counted here.
    pub transactions: u64,
    /// Write batches committed.
    pub batches_written: u64,
    /// Rows per committed batch, on average.
    pub avg_batch_size: f64,
    /// Failed store operations (each failed attempt counts).
    pub db_errors: u64,
    /// Attempts repeated after a failure.
    pub retries: u64,
    /// Kept events dropped by the overflow policy (`max_queued_events`), or lost because the
    /// store was still failing when the pipeline stopped.
    pub events_dropped: u64,
    /// Gauge: aggregation windows open in memory.
    pub windows_open: u64,
    /// Patterns detected (and handed to the writer).
    pub patterns_detected: u64,
    /// Rows written (inserted or replaced) in `error_counts`.
    pub error_counts_written: u64,
    /// Hour, day and week roll-up rows written (inserted or replaced) in `metric_rollups` by this
    /// instance's roll-up runs.
    pub rollups_written: u64,
    /// Gauge: the pipeline's internal actors (sampler, aggregator, detector, queue, writer)
    /// running; 0 once `Shutdown` has answered.
    pub actors_running: u64,
    /// Gauge: rows the writer holds because the store failed (records, window and error-count
    /// snapshots, patterns), waiting for the next attempt. Bounded by what was accepted, not
    /// by the attempts: a newer snapshot of a held window or error count replaces the older.
    pub rows_held: u64,
    /// Rows the store refused for a reason a retry cannot fix, kept in the `quarantine` table
    /// with the error instead (see `StoreError::retryable`).
    pub rows_quarantined: u64,
    /// Kept events among them that were records (a quarantined window's events stay counted in
    /// `events_aggregated`). Conservation after a `Flush`: `events_kept = records_written +
    /// events_aggregated + events_dropped + events_quarantined`.
    pub events_quarantined: u64,
    /// Rows this instance's retention rounds deleted, every table together (`Config::retention`;
    /// the log line of each round says how many of each table). Outside the conservation
    /// laws: pruning removes rows already counted as written.
    pub rows_pruned: u64,
    /// Gauge: the keep probability in force for each sampling key that has a rate, fixed
    /// (`Config::sampling_rates`) or adapted to a target (`Config::sampling_targets`; 1.0 until
    /// the key's first interval ended). Kept events carry the rate they were kept at.
    pub sampling_rates_in_force: BTreeMap<String, f64>,
    /// Durable mode: events replayed from the journal at start (accepted by an earlier run,
    /// not yet in the store when it ended). Counted in `events_received` too, and sampled and
    /// routed like new events, so the conservation laws hold for them; admitted again like new
    /// events (those refused are counted in `events_rejected` too).
    pub events_replayed: u64,
    /// Durable mode: checkpoints committed (the store holds every event up to a journal
    /// position; the journal's entries up to it are deleted).
    pub checkpoints: u64,
    /// Durable mode: failed journal file operations (each failed commit or delete counts;
    /// a failed commit is retried every `fsync_interval_ms`).
    pub journal_errors: u64,
    /// Durable mode: false while the journal fails to commit (new events are refused with
    /// `TrackError::JournalUnavailable` once that has lasted `fsync_interval_ms`, and `Flush`
    /// answers `PipelineError::Journal`). Always true outside durable mode.
    pub journal_healthy: bool,
    /// Gauge, durable mode: for how long (ms) the journal has been failing to commit; 0 while
    /// it is healthy.
    pub journal_failing_ms: u64,
    /// Durable mode: journal entries set aside at start instead of replayed, because their
    /// checksum did not match or they could not be decoded (moved to the journal file's
    /// `journal_rejected` table; logged once with how many). Replayed events that fail
    /// validation are counted in `events_rejected` instead, like new ones.
    pub journal_entries_rejected: u64,
    /// Durable forwarding: messages an earlier run committed to the journal's outbox that
    /// this run published again at start and JetStream acknowledged (a crash left them
    /// unacknowledged, or their acknowledgement not yet removed from the outbox; each is stored
    /// once: docs/scale-out.md). Their rows count in the earlier run's figures, not this run's.
    pub batches_resent: u64,
    /// Gauge: series with pattern detectors in memory (at most `Config::max_detector_series`).
    pub detector_series: u64,
    /// Series whose detectors were evicted as least recently used to stay within
    /// `Config::max_detector_series` (warmed again from the store if they return).
    pub detectors_evicted: u64,
    /// Errors of new hashes counted in their window's `(other)` row because
    /// `Config::max_error_messages_per_window` hashes were counted there (also in
    /// `events_aggregated`: nothing is lost from the counts).
    pub error_messages_overflowed: u64,
    /// Metric samples of a new label set folded into their metric's overflow series
    /// (`{otel.metric.overflow="true"}`) because `Config::max_series_per_metric` label sets
    /// of the metric were open (also in `events_aggregated`: nothing is lost).
    pub series_overflowed: u64,
    /// Kept events not written when the pipeline stopped because the store kept failing, or
    /// did not answer at all, through `store_retry_budget_ms` (also in `events_dropped`, so the
    /// conservation laws hold). Durable mode: they stay in the journal and are replayed on the
    /// next start. Logged at error level with the reason.
    pub events_unwritten_at_stop: u64,
}

impl Stats {
    /// `1 - rows_written / events_received`: the share of rows saved against writing every
    /// event as a row (0 when nothing was received). Sampling, aggregation into windows and
    /// error counting are what save rows; snapshot rewrites by `Flush` are not rows (see
    /// `snapshot_rows_written`).
    pub fn write_reduction(&self) -> f64 {
        if self.events_received == 0 {
            0.0
        } else {
            1.0 - self.rows_written as f64 / self.events_received as f64
        }
    }

    /// `1 - transactions / events_received`: the share of commits saved against one
    /// transaction per event (0 when nothing was received).
    pub fn transaction_reduction(&self) -> f64 {
        if self.events_received == 0 {
            0.0
        } else {
            1.0 - self.transactions as f64 / self.events_received as f64
        }
    }
}

/// The live counters, shared by every stage. Stages add per batch, not per event.
///
/// Not only a report: they are the pipeline's flow control too. Admission at the front door
/// ([`Counters::room_for`]) reads how many accepted events are still on their way to the queue
/// and how many records the queue holds (`queue_occupancy`), so that an event waits or is
/// refused by policy instead of being dropped by the queue's overflow policy.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub sampled_out: AtomicU64,
    pub kept: AtomicU64,
    pub aggregated: AtomicU64,
    pub queued: AtomicU64,
    /// Records in the priority queues or handed to the writer, as the queue itself counts them
    /// (its overflow policy's measure): it falls only when the queue has read the writer's
    /// `Committed`, unlike `queued`, which the writer lowers as it commits. Admission
    /// (`Tracker::room_for`) measures room with this one, so it never lets in what the
    /// queue, still behind on `Committed` messages in its mailbox, would drop.
    pub queue_occupancy: AtomicU64,
    pub records_written: AtomicU64,
    pub windows_written: AtomicU64,
    /// Snapshot (not final) window and error-count rows written.
    pub snapshot_rows: AtomicU64,
    pub error_counts_written: AtomicU64,
    pub patterns_written: AtomicU64,
    pub rollups_written: AtomicU64,
    pub transactions: AtomicU64,
    pub batches_written: AtomicU64,
    pub batch_rows: AtomicU64,
    pub db_errors: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub windows_open: AtomicU64,
    pub patterns_detected: AtomicU64,
    pub actors_running: AtomicU64,
    pub rows_held: AtomicU64,
    /// Records the queue has taken in (queued or dropped), ever: with the others, bounds how
    /// many records can still reach the queue (see the supervisor's `TrackBatch`). Added to
    /// with `Release` after `queued`, read with `Acquire` before it.
    pub admitted: AtomicU64,
    pub rows_quarantined: AtomicU64,
    pub events_quarantined: AtomicU64,
    pub rows_pruned: AtomicU64,
    /// The sampler's rates in force, replaced by the sampler when one changes (at most once
    /// per batch of events or tick).
    pub sampling_rates: Mutex<BTreeMap<String, f64>>,
    pub replayed: AtomicU64,
    pub checkpoints: AtomicU64,
    pub journal_errors: AtomicU64,
    /// When the journal began failing (ms since the Unix epoch), 0 while it is healthy.
    pub journal_failing_since_ms: AtomicU64,
    pub journal_entries_rejected: AtomicU64,
    pub resent: AtomicU64,
    pub detector_series: AtomicU64,
    pub detectors_evicted: AtomicU64,
    pub error_messages_overflowed: AtomicU64,
    pub series_overflowed: AtomicU64,
    pub unwritten_at_stop: AtomicU64,
    /// Events folded into final windows and error counts that were written or quarantined
    /// ([`crate::model::WriteBatch::folded`]): with `aggregated`, what of the folded events
    /// is still on its way to the store ([`Counters::give_up_unwritten`]).
    pub folded_settled: AtomicU64,
}

impl Counters {
    /// Flow control: whether `n` more events, not yet counted as received, fit under
    /// `max_queued`: every accepted event not yet past the queue (as if each became a record),
    /// plus the records queued or in flight as the queue counts them, plus these.
    pub(crate) fn room_for(&self, n: usize, max_queued: usize) -> bool {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let settled = self.sampled_out.load(Relaxed)
            + self.aggregated.load(Relaxed)
            + self.admitted.load(Acquire);
        let accepted = self.received.load(Relaxed) - self.rejected.load(Relaxed);
        let on_the_way = accepted.saturating_sub(settled);
        // the queue's own count (see `queue_occupancy`), read after `admitted`
        self.queue_occupancy.load(Acquire) + on_the_way + n as u64 <= max_queued as u64
    }
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        if n > 0 {
            // saturating: a gauge never wraps below zero
            let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
        }
    }

    /// The pipeline gives up on a store that does not answer as it stops: counts every kept
    /// event not yet written (records anywhere between the sampler and the store, and events
    /// folded into windows and error counts not yet written) as dropped and unwritten at stop,
    /// keeping the conservation laws, and empties the gauges of what waits for the store.
    /// Returns how many events that is.
    pub(crate) fn give_up_unwritten(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let aggregated = get(&self.aggregated);
        let folded = aggregated.saturating_sub(get(&self.folded_settled));
        let settled = aggregated
            + get(&self.records_written)
            + get(&self.events_quarantined)
            + get(&self.dropped);
        let records = get(&self.kept).saturating_sub(settled);
        Counters::sub(&self.aggregated, folded);
        Counters::add(&self.dropped, records + folded);
        Counters::add(&self.unwritten_at_stop, records + folded);
        self.queued.store(0, Relaxed);
        self.rows_held.store(0, Relaxed);
        records + folded
    }

    /// Publishes the sampler's rates in force.
    pub(crate) fn set_sampling_rates(&self, rates: BTreeMap<String, f64>) {
        *self
            .sampling_rates
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = rates;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let records = get(&self.records_written);
        let windows = get(&self.windows_written);
        let errors = get(&self.error_counts_written);
        let patterns = get(&self.patterns_written);
        let batches = get(&self.batches_written);
        let rollups = get(&self.rollups_written);
        Stats {
            events_received: get(&self.received),
            events_rejected: get(&self.rejected),
            events_sampled_out: get(&self.sampled_out),
            events_kept: get(&self.kept),
            events_aggregated: get(&self.aggregated),
            events_queued: get(&self.queued),
            records_written: records,
            windows_written: windows,
            rows_written: (records + windows + errors + patterns + rollups)
                .saturating_sub(get(&self.snapshot_rows)),
            snapshot_rows_written: get(&self.snapshot_rows),
            transactions: get(&self.transactions),
            batches_written: batches,
            avg_batch_size: if batches == 0 {
                0.0
            } else {
                get(&self.batch_rows) as f64 / batches as f64
            },
            db_errors: get(&self.db_errors),
            retries: get(&self.retries),
            events_dropped: get(&self.dropped),
            windows_open: get(&self.windows_open),
            patterns_detected: get(&self.patterns_detected),
            error_counts_written: errors,
            rollups_written: rollups,
            actors_running: get(&self.actors_running),
            rows_held: get(&self.rows_held),
            rows_quarantined: get(&self.rows_quarantined),
            events_quarantined: get(&self.events_quarantined),
            rows_pruned: get(&self.rows_pruned),
            sampling_rates_in_force: self
                .sampling_rates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            events_replayed: get(&self.replayed),
            checkpoints: get(&self.checkpoints),
            batches_resent: get(&self.resent),
            journal_errors: get(&self.journal_errors),
            journal_healthy: get(&self.journal_failing_since_ms) == 0,
            journal_failing_ms: match get(&self.journal_failing_since_ms) {
                0 => 0,
                since => crate::util::unix_ms().saturating_sub(since).max(1),
            },
            journal_entries_rejected: get(&self.journal_entries_rejected),
            detector_series: get(&self.detector_series),
            detectors_evicted: get(&self.detectors_evicted),
            error_messages_overflowed: get(&self.error_messages_overflowed),
            series_overflowed: get(&self.series_overflowed),
            events_unwritten_at_stop: get(&self.unwritten_at_stop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_reduction_and_snapshot() {
        let c = Counters::default();
        Counters::add(&c.received, 1000);
        Counters::add(&c.records_written, 40);
        Counters::add(&c.windows_written, 10);
        Counters::add(&c.batches_written, 5);
        Counters::add(&c.batch_rows, 50);
        Counters::sub(&c.queued, 3);
        let s = c.snapshot();
        assert_eq!(s.rows_written, 50);
        assert_eq!(s.avg_batch_size, 10.0);
        assert_eq!(s.events_queued, 0);
        assert!((s.write_reduction() - 0.95).abs() < 1e-12);
        assert_eq!(Stats::default().write_reduction(), 0.0);
    }
}
