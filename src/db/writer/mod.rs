//! The DB writer: the only actor that touches the store.
//!
//! [`WriterCore`] holds the pool, the batches waiting to be written (`held`, in order) and the
//! per-epoch bases; [`DbWriter`] owns it on an Arbiter (thread) of its own, so blocking I/O
//! never stalls the event loop. Batches arrive from the queue; the writer writes once
//! its mailbox is empty (a self-notification runs after the mailbox), so everything that
//! arrived meanwhile is written together. A batch the store fails is held (in order, before
//! anything newer) and retried with one backoff that every message shares ([`Outage`], in
//! `src/db/outage.rs`): in the background only when an attempt is due, by a `Flush` or
//! `Shutdown` until the retry budget since the store began failing is spent, by a query once.
//! Nothing is dropped while the pipeline runs, and what is held is bounded by what was
//! accepted: a newer snapshot of a held window or error count replaces the older one
//! ([`WriterCore::hold`]).
//!
//! Retries are idempotent: every batch carries a [`BatchMark`] committed with it, and a batch
//! whose previous attempt failed (possibly after the server committed it, e.g. the connection
//! died during COMMIT) is first looked up and counted as written instead of written twice.
//!
//! Records-only batches that wait together are written in one transaction (at most
//! [`MAX_COALESCED_RECORDS`] records): under load the queues hand over several batches while
//! one is being written, and writing them at once saves a commit and a `writer_runs` update per
//! batch, and on PostgreSQL makes one larger COPY. Batches with windows, error counts or
//! patterns keep a transaction of their own, as do records handed over with batching off
//! (`Config::batching`: one transaction per record), and a retry writes one batch at a time, so a
//! store that keeps failing long transactions still makes progress. `Stats::batches_written`
//! counts batches, `Stats::transactions` commits.
//!
//! Between batches the writer also runs the roll-up job and the retention rounds
//! ([`crate::retention`]): a round deletes old rows one short transaction (chunk) at a time,
//! and only while nothing is held, so the writer's own batches always go first and it never
//! waits for SQLite's write lock behind itself.

mod durable;
mod queries;
mod upkeep;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::db::bookkeeping::{Bases, BatchMark, Checkpoint, Outcome, Written};
use crate::db::models::merge_rows;
use crate::db::outage::{Outage, MAX_BACKOFF, PROBE_PATIENCE};
use crate::db::pool::Pool;
use crate::db::rollup_sql::RollupRun;
use crate::error::{PipelineError, StoreError};
use crate::journal::Journal;
use crate::messages::{Committed, Pattern, QueryPatterns, QueryWindows};
use crate::model::{Record, WindowSnapshot, WriteBatch};
use crate::retention::{PruneRound, Retention};
use crate::rollup::{merge_into_buckets, Grid, Part};
use crate::settings::Settings;
use crate::telemetry::TransactionMetrics;
use crate::window_stats::WindowStats;

/// Most records written in one transaction by coalescing batches (a single larger batch is
/// never split). Large enough for a PostgreSQL COPY to reach its speed (FACTS.md: ~345k rows/s
/// at 10k rows per COPY), small enough to keep a retry, or SQLite's write lock, short.
const MAX_COALESCED_RECORDS: usize = 10_000;

/// The writer's state.
#[derive(Debug)]
pub(crate) struct WriterCore {
    pool: Pool,
    /// This pipeline's `instance_id`, on every row.
    instance_id: String,
    /// Batches received and not yet committed, oldest first.
    held: VecDeque<Pending>,
    /// This writer run's id (see [`BatchMark`]).
    run_id: i64,
    /// The `seq` of the last batch received.
    last_seq: i64,
    /// What the store held before each open window epoch (see [`Bases`]).
    bases: Bases,
    /// Each committed transaction's duration and rows, through the `metrics` facade.
    metrics: TransactionMetrics,
    /// How long a `Flush` or `Shutdown` retries after the store began failing.
    retry_budget: Duration,
    /// Whether the store is failing, and the backoff every message shares.
    outage: Outage,
    /// The current write has made an attempt (see [`Self::ready`]).
    tried: bool,
    /// The aggregation window (ms), for merging open windows into query answers.
    window_ms: i64,
    /// Roll-ups on, how often (ms), and the lateness a bucket waits for.
    rollups: bool,
    rollup_interval_ms: i64,
    lateness_ms: i64,
    /// When (pipeline clock, ms) the last roll-up run started.
    last_rollup_ms: i64,
    /// How long each table keeps its rows, and how pruning runs.
    retention: Retention,
    /// When (pipeline clock, ms) the last retention round started.
    last_prune_ms: i64,
    /// The retention round under way, pruned a chunk at a time.
    prune: Option<PruneRound>,
    /// Durable mode: which held batches a checkpoint covers (`None`: durable mode is off).
    durable: Option<Durable>,
    /// Test hook: report the next successful commit as a failure (the COMMIT reply lost).
    #[cfg(test)]
    lose_next_commit_reply: bool,
}

/// Durable mode's part of the writer: batches are committed only with a checkpoint, in one
/// transaction with the `durable_checkpoints` row of the position they cover.
///
/// A `Checkpoint(P)` marker comes after everything derived from the events up to `P`, and the
/// supervisor sends another marker right behind it: what arrives between the two derives from
/// those events too. So every batch held when that next marker arrives is covered by `P`, and
/// batches after it are not (they may derive from later events): they wait for the next
/// checkpoint. A commit of the covered batches and `P` is then the store's state through `P`
/// exactly, and the journal after `P` is exactly what the store lacks.
#[derive(Debug)]
struct Durable {
    journal: Arc<Journal>,
    /// Held batches, from the front, that the checkpoint at `position` covers.
    covered: usize,
    /// The latest checkpoint position received.
    position: u64,
    /// The position the store holds (the last committed checkpoint).
    committed: u64,
    /// A checkpoint marker arrived and the marker behind it has not yet.
    open: bool,
    /// What the last attempt wrote, kept in case it committed although it reported a
    /// failure (a lost COMMIT reply): its outcomes and its position.
    attempted: (Vec<Outcome>, u64),
}

/// How long `Shutdown` waits for the journal to delete what the last checkpoint covers.
const TRUNCATE_WAIT: Duration = Duration::from_secs(5);

/// Room between the `seq`s of consecutive batches: a batch the store refuses is split in
/// halves, each with a `seq` of its own inside its parent's range `(lo, mark.seq]`, so commits
/// stay in `seq` order (20 levels of halving: more than the 10,000 records of a batch).
const SEQ_SPACING: i64 = 1 << 20;

/// A batch waiting to be written.
#[derive(Debug)]
struct Pending {
    batch: WriteBatch,
    mark: BatchMark,
    /// The `seq` below this batch's range (the previous batch's, or its split sibling's).
    lo: i64,
    /// The queue batch this (part of a) batch confirms when it is done, with its record count:
    /// the whole batch, or the last part of one that was split.
    confirms: Option<usize>,
    /// The last attempt, which wrote this batch (and perhaps the following ones in the same
    /// transaction), failed: the store may hold it already (look before writing).
    maybe_committed: bool,
}

/// How many batches at the front of `held` to write in one transaction: the leading run of
/// records-only batches that may share one, up to `max_records` records in all; at least one
/// batch.
fn coalesced_len(held: &VecDeque<Pending>, max_records: usize) -> usize {
    let mut records = 0;
    let run = held
        .iter()
        .take_while(|p| {
            records += p.batch.records.len();
            records_only(&p.batch) && !p.batch.own_transaction && records <= max_records
        })
        .count();
    run.max(1)
}

/// Windows and error counts are written against per-epoch bases ([`Bases`]), one batch per
/// transaction; only batches without them (and without patterns and user sketches, which the
/// records' statement does not write) are coalesced.
fn records_only(b: &WriteBatch) -> bool {
    b.windows.is_empty() && b.errors.is_empty() && b.patterns.is_empty() && b.users.is_empty()
}

impl WriterCore {
    pub(crate) fn new(pool: Pool, settings: &Settings) -> Self {
        let run_id = (crate::util::os_random_u64() >> 1) as i64;
        WriterCore {
            pool,
            instance_id: settings.instance_id.clone(),
            metrics: TransactionMetrics::new(settings),
            held: VecDeque::new(),
            run_id,
            last_seq: 0,
            bases: Bases::default(),
            retry_budget: settings.store_retry_budget,
            outage: Outage::default(),
            tried: false,
            window_ms: settings.window_ms,
            rollups: settings.rollups,
            rollup_interval_ms: settings.rollup_interval_ms,
            lateness_ms: settings.allowed_lateness_ms,
            last_rollup_ms: i64::MIN,
            retention: settings.retention.clone(),
            last_prune_ms: i64::MIN,
            prune: None,
            durable: None,
            #[cfg(test)]
            lose_next_commit_reply: false,
        }
    }

    /// Durable mode: commits only with checkpoints of `journal` (see [`Durable`]).
    pub(crate) fn with_journal(mut self, journal: Option<Arc<Journal>>) -> Self {
        self.durable = journal.map(|journal| Durable {
            journal,
            covered: 0,
            position: 0,
            committed: 0,
            open: false,
            attempted: (Vec::new(), 0),
        });
        self
    }

    /// Durable mode: a `Checkpoint(position)` marker arrived; everything held, and everything
    /// that arrives until the next marker, is covered by `position`.
    pub(crate) fn checkpoint(&mut self, position: u64) {
        let held = self.held.len();
        if let Some(d) = &mut self.durable {
            d.position = d.position.max(position);
            d.covered = held;
            d.open = true;
        }
    }

    /// Durable mode: another marker arrived; batches held from now on wait for the next
    /// checkpoint.
    pub(crate) fn marker_passed(&mut self) {
        if let Some(d) = &mut self.durable {
            d.open = false;
        }
    }

    /// Durable mode: waits (a few seconds at most) until the journal has deleted the entries
    /// the last checkpoint covers, so a clean stop leaves it empty.
    pub(crate) fn wait_journal_truncated(&self) {
        if let Some(d) = &self.durable {
            if !d.journal.wait_truncated(d.committed, TRUNCATE_WAIT) {
                log::warn!("the journal did not delete its entries in time; a restart skips them");
            }
        }
    }

    /// Takes the settings that can change at run time.
    pub(crate) fn set_settings(&mut self, s: &Settings) {
        self.retry_budget = s.store_retry_budget;
        self.metrics = TransactionMetrics::new(s);
        self.rollups = s.rollups;
        self.rollup_interval_ms = s.rollup_interval_ms;
        self.lateness_ms = s.allowed_lateness_ms;
        if s.retention != self.retention {
            // at once: a round under way ends, and the next tick or flush starts one with the
            // new ages (none if every age is 0 now)
            self.retention = s.retention.clone();
            self.end_prune();
            self.last_prune_ms = i64::MIN;
        }
    }

    /// Nothing is held.
    pub(crate) fn is_idle(&self) -> bool {
        self.held.is_empty()
    }

    /// Queues a batch behind everything held; it is written by the next [`Self::write_held`].
    /// A window or error-count snapshot in it replaces the older snapshots of the same epoch
    /// still held ([`Self::drop_superseded`]).
    pub(crate) fn hold(&mut self, batch: WriteBatch) {
        if batch.is_empty() {
            return;
        }
        self.drop_superseded(&batch);
        let lo = self.last_seq;
        self.last_seq += SEQ_SPACING;
        let mark = BatchMark {
            run_id: self.run_id,
            seq: self.last_seq,
        };
        let confirms = batch.from_queue.then_some(batch.records.len());
        self.held.push_back(Pending {
            batch,
            mark,
            lo,
            confirms,
            maybe_committed: false,
        });
        if let Some(d) = self.durable.as_mut().filter(|d| d.open) {
            d.covered = self.held.len();
        }
    }

    /// Drops from the held batches every window and error-count snapshot that `batch` holds a
    /// newer state of (the same window, or error hash and window, and the same epoch): a
    /// snapshot is its epoch's whole state, so the newer one replaces the older, and a store
    /// that fails `Flush` after `Flush` holds one snapshot per open window, not one per
    /// attempt. A batch left empty goes too. Batches a failed attempt may have committed are
    /// left alone, and in durable mode so are the batches a checkpoint covers when `batch` is
    /// not covered by it (they are committed apart).
    fn drop_superseded(&mut self, batch: &WriteBatch) {
        if self.held.is_empty() || (batch.windows.is_empty() && batch.errors.is_empty()) {
            return;
        }
        let windows: std::collections::HashSet<_> = batch
            .windows
            .iter()
            .map(|w| (&w.key, w.start_ms, w.epoch))
            .collect();
        let errors: std::collections::HashSet<_> = batch
            .errors
            .iter()
            .map(|e| (e.error_hash.as_str(), e.start_ms, e.epoch))
            .collect();
        let first = match &self.durable {
            Some(d) if !d.open => d.covered,
            _ => 0,
        };
        let mut i = first;
        while i < self.held.len() {
            let p = &mut self.held[i];
            if !p.maybe_committed {
                let b = &mut p.batch;
                b.windows
                    .retain(|w| w.is_final || !windows.contains(&(&w.key, w.start_ms, w.epoch)));
                b.errors.retain(|e| {
                    e.is_final || !errors.contains(&(e.error_hash.as_str(), e.start_ms, e.epoch))
                });
                if b.is_empty() && p.confirms.is_none() {
                    self.held.remove(i);
                    if let Some(d) = self.durable.as_mut().filter(|d| i < d.covered) {
                        d.covered -= 1;
                    }
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Rows held: records, window and error-count snapshots, patterns.
    fn held_rows(&self) -> usize {
        self.held.iter().map(|p| p.batch.rows()).sum()
    }

    /// Writes everything held, in order, and returns what came from the queue among what
    /// was committed; for a `Flush` or `Shutdown`: while the store fails, retries with the
    /// backoff until the retry budget since it began failing is spent (see [`Outage`]). Stops
    /// at the first batch that still fails; it and the rest stay held, and the error is
    /// returned with the progress so far.
    pub(crate) fn write_held(&mut self, c: &Counters) -> (Committed, Result<(), PipelineError>) {
        self.write(c, Patience::Marker)
    }

    /// [`Self::write_held`] in the background (a batch arrived, a tick, the retry timer):
    /// while the store fails, one attempt if one is due, and no waiting for the next
    /// ([`Self::next_attempt_in`] says when).
    pub(crate) fn write_due(&mut self, c: &Counters) -> (Committed, Result<(), PipelineError>) {
        self.write(c, Patience::Background)
    }

    /// [`Self::write_held`] for a query: while the store fails, one attempt, and no waiting.
    pub(crate) fn write_once(&mut self, c: &Counters) -> (Committed, Result<(), PipelineError>) {
        self.write(c, Patience::Once)
    }

    /// While the store fails and something is held: how long until the next attempt is due.
    pub(crate) fn next_attempt_in(&self) -> Option<Duration> {
        let next = self
            .outage
            .next_attempt()
            .filter(|_| !self.held.is_empty())?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn write(&mut self, c: &Counters, mode: Patience) -> (Committed, Result<(), PipelineError>) {
        self.tried = false;
        let out = if self.durable.is_some() {
            self.write_checkpointed(c, mode)
        } else {
            self.write_in_order(c, mode)
        };
        c.rows_held.store(
            self.held_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        out
    }

    fn write_in_order(
        &mut self,
        c: &Counters,
        mode: Patience,
    ) -> (Committed, Result<(), PipelineError>) {
        let mut done = Committed::default();
        while !self.held.is_empty() {
            let started = Instant::now();
            let step = match self.write_front(c, mode) {
                Ok(step) => step,
                Err(e) => return (done, Err(e)),
            };
            let n = match step {
                Step::Split => continue,
                Step::Committed(n) => {
                    for p in self.held.range(..n) {
                        record_success(c, &p.batch);
                    }
                    n
                }
                Step::Quarantined => {
                    let b = &self.held[0].batch;
                    Counters::add(&c.rows_quarantined, b.rows() as u64);
                    Counters::add(&c.events_quarantined, b.records.len() as u64);
                    Counters::sub(&c.queued, b.records.len() as u64);
                    Counters::add(&c.folded_settled, b.folded());
                    1
                }
            };
            Counters::add(&c.transactions, 1);
            let rows = self.held.range(..n).map(|p| p.batch.rows()).sum();
            self.metrics.record(started.elapsed(), rows);
            for p in self.held.drain(..n) {
                if let Some(records) = p.confirms {
                    done.batches += 1;
                    done.records += records;
                }
            }
        }
        (done, Ok(()))
    }

    /// The front batch was refused for a reason a retry cannot fix: a single row goes to the
    /// quarantine table; a larger batch is split in halves (each with a `seq` of its own in
    /// the batch's range), which are tried in turn, so the refused rows are isolated in
    /// `log2(rows)` steps and the rest is written.
    fn isolate_front(&mut self, e: &StoreError, patience: Duration) -> Result<Step, StoreError> {
        if self.held.front().is_some_and(|p| p.batch.rows() <= 1) {
            let mut conn = self.pool.get_within(patience)?;
            let Some(front) = self.held.pop_front() else {
                return Ok(Step::Split);
            };
            let quarantined =
                conn.quarantine(&self.instance_id, &front.batch, &e.to_string(), front.mark);
            self.held.push_front(front);
            quarantined.map_err(StoreError::from_diesel)?;
            log::error!(
                "the store refused a row ({e}); it is in the quarantine table and the rest is written"
            );
            return Ok(Step::Quarantined);
        }
        let Some(front) = self.held.pop_front() else {
            return Ok(Step::Split);
        };
        let (first, second) = front.batch.split();
        let mid = front.lo + (front.mark.seq - front.lo) / 2;
        let run_id = front.mark.run_id;
        self.held.push_front(Pending {
            batch: second,
            mark: front.mark,
            lo: mid,
            confirms: front.confirms,
            maybe_committed: false,
        });
        self.held.push_front(Pending {
            batch: first,
            mark: BatchMark { run_id, seq: mid },
            lo: front.lo,
            confirms: None,
            maybe_committed: false,
        });
        Ok(Step::Split)
    }

    /// One attempt at the first `n` held batches, waiting at most `patience` for the store
    /// (a connection, SQLite's lock): if the last attempt may have committed them, looks them
    /// up; else writes them in one transaction. Returns how many batches at the front are now
    /// committed.
    fn attempt(&mut self, n: usize, patience: Duration) -> Result<usize, StoreError> {
        let mut conn = self.pool.get_within(patience)?;
        let Some(front) = self.held.front() else {
            return Ok(0);
        };
        if front.maybe_committed {
            if conn
                .is_committed(&self.instance_id, front.mark)
                .map_err(StoreError::from_diesel)?
            {
                // The flagged batches are exactly the failed attempt's transaction.
                let committed = self.held.iter().take_while(|p| p.maybe_committed).count();
                log::warn!(
                    "{committed} batch(es) from {} were committed by an attempt that reported failure; not writing them again",
                    front.mark.seq
                );
                for p in self.held.iter().take(committed) {
                    self.bases.forget_final(&p.batch);
                }
                return Ok(committed);
            }
            // Commits are in order: nothing after an uncommitted batch is committed either.
            for p in self.held.iter_mut() {
                p.maybe_committed = false;
            }
        }
        let n = n.clamp(1, self.held.len());
        let result = if n == 1 {
            let p = &self.held[0];
            conn.write_batch(&self.instance_id, &p.batch, p.mark, &mut self.bases)
                .map(drop)
        } else {
            let records: Vec<&[Record]> =
                self.held.range(..n).map(|p| &p.batch.records[..]).collect();
            let mark = self.held[n - 1].mark;
            conn.write_records(&self.instance_id, &records, mark)
                .map(drop)
        };
        #[cfg(test)]
        let result = match result {
            Ok(()) if std::mem::take(&mut self.lose_next_commit_reply) => {
                Err(diesel::result::Error::BrokenTransactionManager)
            }
            other => other,
        };
        result.map_err(|e| {
            let e = StoreError::from_diesel(e);
            // Any failure once the transaction began may hide a commit (a lost COMMIT reply);
            // a refusal of the data rolled the transaction back.
            for p in self.held.iter_mut().take(n) {
                p.maybe_committed = e.retryable;
            }
            e
        })?;
        Ok(n)
    }

    /// Writes the front of `held`: the first attempt coalesces records-only batches, retries
    /// write one batch. A failure of the store is retried as `mode` allows ([`Self::ready`]); a
    /// refusal of the data isolates the refused rows ([`Self::isolate_front`]).
    fn write_front(&mut self, c: &Counters, mode: Patience) -> Result<Step, PipelineError> {
        let mut n = coalesced_len(&self.held, MAX_COALESCED_RECORDS);
        loop {
            self.ready(mode)?;
            self.tried = true;
            let started = Instant::now();
            if self.outage.is_failing() {
                Counters::add(&c.retries, 1);
                n = 1;
            }
            let patience = self.patience(mode, started);
            let e = match self.pool.watch().call(|| self.attempt(n, patience)) {
                Ok(committed) => {
                    self.store_answers();
                    return Ok(Step::Committed(committed));
                }
                Err(e) => e,
            };
            Counters::add(&c.db_errors, 1);
            if e.is_gone() {
                log::error!("{e}; holding {} rows", self.held_rows());
                return Err(PipelineError::Store(e));
            }
            if !e.retryable {
                if n > 1 {
                    n = 1; // which of the coalesced batches was refused?
                    continue;
                }
                match self.pool.watch().call(|| self.isolate_front(&e, patience)) {
                    Ok(step) => return Ok(step),
                    Err(q) => {
                        log::warn!("quarantining a refused row failed: {q}");
                        self.store_failed(started, q);
                        continue;
                    }
                }
            }
            self.store_failed(started, e);
        }
    }

    /// Waits, if `mode` allows, until the next attempt is due (a `Flush` or `Shutdown` waits
    /// while that is within the retry budget since the store began failing; a marker's or a
    /// query's first attempt is made at once). `Err` (the store's last failure): no attempt
    /// now, answer with it.
    fn ready(&self, mode: Patience) -> Result<(), PipelineError> {
        if mode != Patience::Background && !self.tried {
            return Ok(());
        }
        let now = Instant::now();
        let Some(next) = self
            .outage
            .next_attempt()
            .filter(|_| !self.outage.is_due(now))
        else {
            return Ok(());
        };
        let fits =
            next + self.outage.last_attempt_took() <= self.outage.deadline(now, self.retry_budget);
        if mode == Patience::Marker && fits {
            std::thread::sleep(next - now);
            return Ok(());
        }
        let e = self.outage.error().cloned();
        Err(PipelineError::Store(e.unwrap_or_else(|| {
            StoreError::retryable("the store is failing")
        })))
    }

    /// How long an attempt starting at `now` may wait for the store: what is left of the
    /// budget (see [`Outage::patience`]); a query's attempt while the store fails, only
    /// [`PROBE_PATIENCE`].
    fn patience(&self, mode: Patience, now: Instant) -> Duration {
        match mode {
            Patience::Once if self.outage.is_failing() => PROBE_PATIENCE,
            _ => self.outage.patience(now, self.retry_budget),
        }
    }

    /// An attempt that started at `started` failed with `e`: the backoff goes on; the
    /// outage is logged once, when it begins.
    fn store_failed(&mut self, started: Instant, e: StoreError) {
        let rows = self.held_rows();
        if self.outage.failed(started, Instant::now(), e.clone()) {
            log::error!(
                "the store is failing ({e}); holding {rows} rows and retrying with backoff (at most {MAX_BACKOFF:?} apart)"
            );
        } else {
            log::debug!("the store is still failing ({rows} rows held): {e}");
        }
    }

    /// An attempt succeeded: the end of an outage is logged.
    fn store_answers(&mut self) {
        if let Some((lasted, attempts)) = self.outage.recovered(Instant::now()) {
            log::info!(
                "the store answers again after {lasted:?} and {attempts} failed attempts; writing the {} rows held",
                self.held_rows()
            );
        }
    }

    /// Gives up everything held (the store kept failing through the retry budget while the
    /// pipeline stops), keeping the counters' laws: records held are counted dropped and leave
    /// `events_queued`; events folded into held windows and error counts move from
    /// `events_aggregated` to `events_dropped`. Returns the events given up.
    ///
    /// After the supervisor gave up on a store that did not answer (`StoreWatch::give_up`),
    /// it has counted everything not written: what is held is let go without counting again.
    pub(crate) fn abandon_held(&mut self, c: &Counters) -> u64 {
        if self.pool.watch().given_up() {
            self.held.clear();
            if let Some(d) = &mut self.durable {
                d.covered = 0;
            }
            return 0;
        }
        let (mut records, mut folded) = (0u64, 0u64);
        for Pending { batch: b, .. } in self.held.drain(..) {
            records += b.records.len() as u64;
            folded += b.folded();
        }
        Counters::sub(&c.queued, records);
        Counters::sub(&c.aggregated, folded);
        Counters::add(&c.dropped, records + folded);
        Counters::add(&c.unwritten_at_stop, records + folded);
        c.rows_held.store(0, std::sync::atomic::Ordering::Relaxed);
        if let Some(d) = &mut self.durable {
            d.covered = 0;
            log::error!(
                "durable mode: the {} events not written stay in the journal {} and are replayed on the next start",
                records + folded,
                d.journal.id()
            );
        }
        records + folded
    }
}

/// How long a write may go on while the store fails (see [`Outage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// In the background: an attempt only if one is due, never waiting.
    Background,
    /// A query: one attempt, never waiting.
    Once,
    /// A `Flush` or `Shutdown`: one attempt, then more with the backoff until the retry
    /// budget since the store began failing is spent.
    Marker,
}

/// What one step of [`WriterCore::write_held`] did to the front of `held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The first `n` batches are committed.
    Committed(usize),
    /// The front batch was split in halves (nothing committed yet).
    Split,
    /// The front batch, a single refused row, is in the quarantine table.
    Quarantined,
}

/// Counts what a durable commit did with one batch (the caller counts its transaction).
fn count_outcome(c: &Counters, o: &Outcome) {
    let w = &o.written;
    Counters::add(&c.records_written, w.records);
    Counters::add(&c.windows_written, w.windows);
    Counters::add(&c.error_counts_written, w.errors);
    Counters::add(&c.patterns_written, w.patterns);
    Counters::add(&c.snapshot_rows, o.snapshots);
    Counters::add(&c.batches_written, 1);
    Counters::add(&c.batch_rows, w.rows());
    Counters::sub(&c.queued, w.records + o.quarantined_records);
    Counters::add(&c.rows_quarantined, o.quarantined_rows);
    Counters::add(&c.events_quarantined, o.quarantined_records);
    Counters::add(&c.folded_settled, o.folded);
}

/// Counts one committed batch (the caller counts its transaction).
fn record_success(c: &Counters, batch: &WriteBatch) {
    let w = Written::of(batch);
    Counters::add(&c.records_written, w.records);
    Counters::add(&c.windows_written, w.windows);
    Counters::add(&c.error_counts_written, w.errors);
    Counters::add(&c.patterns_written, w.patterns);
    let snapshots = batch.windows.iter().filter(|w| !w.is_final).count()
        + batch.errors.iter().filter(|e| !e.is_final).count();
    Counters::add(&c.snapshot_rows, snapshots as u64);
    Counters::add(&c.batches_written, 1);
    Counters::add(&c.batch_rows, w.rows());
    Counters::sub(&c.queued, w.records);
    Counters::add(&c.folded_settled, batch.folded());
    log::debug!(
        "batch written: {} records, {} windows, {} error counts, {} patterns",
        w.records,
        w.windows,
        w.errors,
        w.patterns
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::TrackEvent;
    use crate::model::{Record, WindowSnapshot};
    use crate::retention::Retention;
    use crate::stats::window::WindowState;
    use diesel::prelude::*;

    const T0: i64 = 1_764_000_000_000;

    /// A writer on a new SQLite file, and the counters it adds to.
    fn writer(path: &std::path::Path) -> (WriterCore, Counters) {
        let settings = Config::default().settings().unwrap();
        let pool =
            crate::db::open::open(&crate::db::Store::sqlite(path), Duration::from_secs(5)).unwrap();
        (WriterCore::new(pool, &settings), Counters::default())
    }

    fn batch(records: usize, window_values: &[f64], epoch: u64) -> WriteBatch {
        let mut state = WindowState::new();
        for &v in window_values {
            state.observe(v, 1.0);
        }
        WriteBatch {
            records: (0..records)
                .map(|i| {
                    Record::from_event(&TrackEvent::command("c").duration_ms(i as f64).at(T0), 1.0)
                })
                .collect(),
            windows: vec![WindowSnapshot {
                key: crate::model::SeriesKey::new("rt", None),
                start_ms: T0,
                end_ms: T0 + 60_000,
                epoch,
                state,
                is_final: false,
            }],
            ..WriteBatch::default()
        }
    }

    /// `n` command records with durations `first, first + 1, ...`, as the queues hand them over.
    fn records(n: usize, first: usize) -> WriteBatch {
        WriteBatch {
            records: (first..first + n)
                .map(|i| {
                    Record::from_event(&TrackEvent::command("c").duration_ms(i as f64).at(T0), 1.0)
                })
                .collect(),
            from_queue: true,
            ..WriteBatch::default()
        }
    }

    /// `events.duration_ms` in insertion order.
    fn durations(path: &std::path::Path) -> Vec<f64> {
        use crate::db::schema::events;
        let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        events::table
            .order(events::id)
            .select(events::duration_ms)
            .load::<Option<f64>>(&mut c)
            .unwrap()
            .into_iter()
            .flatten()
            .collect()
    }

    fn counts(path: &std::path::Path) -> (i64, i64) {
        use crate::db::schema::{events, metric_windows};
        let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let events: i64 = events::table.count().get_result(&mut c).unwrap();
        let window: i64 = metric_windows::table
            .select(metric_windows::count)
            .first(&mut c)
            .unwrap();
        (events, window)
    }

    #[test]
    fn a_batch_whose_commit_reply_was_lost_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        w.hold(batch(7, &[1.0, 2.0], 1));
        w.lose_next_commit_reply = true;
        w.write_held(&c).1.unwrap();
        assert_eq!(counts(&path), (7, 2));
        let stats = c.snapshot();
        assert_eq!(
            (stats.records_written, stats.db_errors, stats.retries),
            (7, 1, 1)
        );
        // The next snapshot of the same window epoch still replaces (base read before the
        // lost reply is kept), rather than adding the epoch twice.
        w.hold(batch(1, &[1.0, 2.0, 3.0], 1));
        w.write_held(&c).1.unwrap();
        assert_eq!(counts(&path), (8, 3));
    }

    #[test]
    fn a_batch_that_failed_before_commit_is_written_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        w.hold(batch(3, &[5.0], 1));
        w.write_held(&c).1.unwrap();
        // The mark of a batch not committed is not found: it is written, once.
        let mark = BatchMark {
            run_id: w.run_id,
            seq: 2 * SEQ_SPACING,
        };
        w.held.push_back(Pending {
            batch: batch(4, &[5.0, 6.0], 1),
            mark,
            lo: SEQ_SPACING,
            confirms: None,
            maybe_committed: true,
        });
        w.last_seq = 2 * SEQ_SPACING;
        assert_eq!(w.attempt(1, Duration::from_secs(5)), Ok(1));
        assert!(!w.held[0].maybe_committed);
        assert_eq!(counts(&path), (7, 2));
        // A new run never mistakes its batches for an older run's.
        let mut conn = w.pool.get().unwrap();
        assert!(conn
            .is_committed(
                &w.instance_id,
                BatchMark {
                    run_id: w.run_id,
                    seq: 2 * SEQ_SPACING
                }
            )
            .unwrap());
        assert!(!conn
            .is_committed(
                &w.instance_id,
                BatchMark {
                    run_id: 12345,
                    seq: 1
                }
            )
            .unwrap());
    }

    #[test]
    fn a_newer_snapshot_replaces_the_held_one_of_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        w.hold(batch(2, &[1.0], 1));
        w.hold(batch(0, &[1.0, 2.0], 1));
        assert_eq!(w.held_rows(), 3, "the first batch keeps its records only");
        w.hold(batch(0, &[1.0, 2.0, 3.0], 1));
        assert_eq!(
            (w.held.len(), w.held_rows()),
            (2, 3),
            "a batch left empty goes"
        );
        // a batch an attempt may have committed is left as it is
        w.held[1].maybe_committed = true;
        w.hold(batch(0, &[1.0, 2.0, 3.0, 4.0], 1));
        assert_eq!(w.held_rows(), 4);
        w.held[1].maybe_committed = false;
        w.hold(batch(0, &[7.0], 2));
        assert_eq!(w.held_rows(), 5, "another epoch is another window");
        w.write_held(&c).1.unwrap();
        assert_eq!(
            counts(&path),
            (2, 5),
            "the newest snapshot of epoch 1, then epoch 2 on it"
        );
        assert_eq!(c.snapshot().rows_held, 0);
    }

    #[test]
    fn leading_records_only_batches_are_coalesced_within_the_limit() {
        let held = |batches: Vec<WriteBatch>| -> VecDeque<Pending> {
            (1..)
                .zip(batches)
                .map(|(seq, batch)| Pending {
                    batch,
                    mark: BatchMark { run_id: 1, seq },
                    lo: seq - 1,
                    confirms: None,
                    maybe_committed: false,
                })
                .collect()
        };
        let r = |n| records(n, 0);
        assert_eq!(coalesced_len(&held(vec![r(3), r(2), r(4)]), 9), 3);
        assert_eq!(coalesced_len(&held(vec![r(3), r(2), r(4)]), 8), 2);
        assert_eq!(
            coalesced_len(&held(vec![r(3), batch(1, &[1.0], 1), r(4)]), 9),
            1
        );
        assert_eq!(coalesced_len(&held(vec![batch(1, &[1.0], 1), r(4)]), 9), 1);
        assert_eq!(coalesced_len(&held(vec![r(20), r(1)]), 9), 1, "never split");
        // user sketches are written by the batch statement only
        let with_users = WriteBatch {
            users: vec![crate::cores::users::UserWindow {
                command: "help".into(),
                context: String::new(),
                start_ms: 0,
                window_ms: 60_000,
                sketch: Default::default(),
            }],
            ..WriteBatch::default()
        };
        assert_eq!(coalesced_len(&held(vec![with_users.clone(), r(4)]), 9), 1);
        assert_eq!(coalesced_len(&held(vec![r(4), with_users]), 9), 1);
        // batching off: a record's batch is committed alone
        let alone = |n| WriteBatch {
            own_transaction: true,
            ..records(n, 0)
        };
        assert_eq!(coalesced_len(&held(vec![alone(1), alone(1), r(1)]), 9), 1);
        assert_eq!(coalesced_len(&held(vec![r(1), r(1), alone(1)]), 9), 2);
    }

    #[test]
    fn waiting_records_only_batches_share_one_transaction_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        w.hold(records(3, 0));
        w.hold(records(4, 3));
        w.hold(batch(0, &[1.0], 1));
        w.hold(records(2, 7));
        let (done, result) = w.write_held(&c);
        result.unwrap();
        let s = c.snapshot();
        assert_eq!(
            (s.records_written, s.batches_written, s.transactions),
            (9, 4, 3),
            "[3 + 4 records], [window], [2 records]"
        );
        assert_eq!(
            (done.batches, done.records),
            (3, 9),
            "the queue's batches, confirmed"
        );
        let expected: Vec<f64> = (0..9).map(|i| i as f64).collect();
        assert_eq!(durations(&path), expected);
    }

    #[test]
    fn a_coalesced_transaction_whose_commit_reply_was_lost_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        w.hold(records(3, 0));
        w.hold(records(4, 3));
        w.hold(records(1, 7));
        w.lose_next_commit_reply = true;
        w.write_held(&c).1.unwrap();
        let s = c.snapshot();
        assert_eq!(
            (s.records_written, s.batches_written, s.transactions),
            (8, 3, 1)
        );
        assert_eq!((s.db_errors, s.retries), (1, 1));
        let expected: Vec<f64> = (0..8).map(|i| i as f64).collect();
        assert_eq!(durations(&path), expected);
    }

    #[test]
    fn a_failed_coalesced_transaction_is_retried_one_batch_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, _) = writer(&path);
        let run_id = w.run_id;
        w.held.extend(
            [records(3, 0), records(4, 3)]
                .into_iter()
                .zip(1..)
                .map(|(batch, seq)| Pending {
                    batch,
                    mark: BatchMark { run_id, seq },
                    lo: seq - 1,
                    confirms: None,
                    // as after a failed attempt that did not commit
                    maybe_committed: true,
                }),
        );
        w.last_seq = 2;
        assert_eq!(
            w.attempt(1, Duration::from_secs(5)),
            Ok(1),
            "looked up, not committed: written alone"
        );
        assert!(w.held.iter().all(|p| !p.maybe_committed));
        assert_eq!(durations(&path).len(), 3);
    }

    /// Makes the store refuse (a real UNIQUE violation, from a trigger) every `events` row
    /// named `poison` and every window of series `poison`.
    fn poison(path: &std::path::Path) {
        use diesel::connection::SimpleConnection;
        let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.batch_execute(
            "CREATE TABLE guard (x INTEGER PRIMARY KEY); INSERT INTO guard VALUES (1);
             CREATE TRIGGER poison_events BEFORE INSERT ON events WHEN NEW.name = 'poison'
             BEGIN INSERT INTO guard VALUES (1); END;
             CREATE TRIGGER poison_windows BEFORE INSERT ON metric_windows
             WHEN NEW.series = 'poison' BEGIN INSERT INTO guard VALUES (1); END;",
        )
        .unwrap();
    }

    fn named(names: &[&str]) -> WriteBatch {
        WriteBatch {
            records: names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    Record::from_event(&TrackEvent::command(*n).duration_ms(i as f64).at(T0), 1.0)
                })
                .collect(),
            from_queue: true,
            ..WriteBatch::default()
        }
    }

    #[test]
    fn refused_rows_are_quarantined_and_the_rest_is_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        poison(&path);
        let mut names = vec!["ok"; 13];
        names[4] = "poison";
        names[11] = "poison";
        w.hold(named(&names));
        w.hold(named(&["after"; 3]));
        let (done, result) = w.write_held(&c);
        result.unwrap();
        let s = c.snapshot();
        assert_eq!(
            (s.records_written, s.rows_quarantined, s.events_quarantined),
            (14, 2, 2)
        );
        assert_eq!(
            (done.batches, done.records),
            (2, 16),
            "both queue batches confirmed once"
        );
        let expected: Vec<f64> = (0..13)
            .filter(|&i| i != 4 && i != 11)
            .chain(0..3)
            .map(|i| i as f64)
            .collect();
        assert_eq!(durations(&path), expected, "in order, none twice");
        assert!(w.is_idle());
        use crate::db::schema::quarantine;
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let rows: Vec<(String, String, String)> = quarantine::table
            .select((quarantine::kind, quarantine::payload, quarantine::error))
            .load(&mut conn)
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|(k, p, e)| k == "event"
            && p.contains("\"name\":\"poison\"")
            && e.contains("UNIQUE")));
    }

    #[test]
    fn a_refused_window_does_not_block_the_windows_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c) = writer(&path);
        poison(&path);
        let mut b = batch(0, &[1.0, 2.0], 1);
        let mut bad = b.windows[0].clone();
        bad.key.metric = "poison".into();
        b.windows.insert(0, bad);
        w.hold(b);
        w.hold(batch(2, &[5.0], 2));
        w.write_held(&c).1.unwrap();
        let s = c.snapshot();
        assert_eq!((s.rows_quarantined, s.events_quarantined), (1, 0));
        assert_eq!(s.records_written, 2);
        assert_eq!(counts(&path).0, 2);
    }

    /// A writer in durable mode on a new SQLite file, with its journal next to it.
    fn durable_writer(dir: &std::path::Path) -> (WriterCore, Counters, Arc<Journal>) {
        let (w, c) = writer(&dir.join("t.db"));
        let journal = crate::journal::recover(
            &dir.join("t.db.journal"),
            |_| Ok(0),
            Duration::from_millis(5),
            Arc::new(Counters::default()),
        )
        .unwrap()
        .journal;
        (w.with_journal(Some(journal.clone())), c, journal)
    }

    fn checkpoint_of(w: &WriterCore, journal: &Journal) -> u64 {
        w.pool.get().unwrap().checkpoint_of(journal.id()).unwrap()
    }

    #[test]
    fn durable_mode_commits_what_a_checkpoint_covers_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c, journal) = durable_writer(dir.path());
        w.hold(records(3, 0));
        let (done, result) = w.write_held(&c);
        result.unwrap();
        assert_eq!(
            (done.batches, durations(&path).len()),
            (0, 0),
            "no checkpoint yet"
        );
        w.checkpoint(5);
        w.hold(batch(2, &[1.0, 2.0], 1)); // arrives before the marker behind the checkpoint
        w.write_held(&c).1.unwrap();
        assert_eq!(
            durations(&path).len(),
            0,
            "the marker behind it has not come"
        );
        w.marker_passed();
        w.hold(records(4, 10)); // may derive from events after 5: waits
        let (done, result) = w.write_held(&c);
        result.unwrap();
        assert_eq!((done.batches, done.records), (1, 3));
        assert_eq!(counts(&path), (5, 2));
        assert_eq!(checkpoint_of(&w, &journal), 5);
        let s = c.snapshot();
        assert_eq!(
            (s.transactions, s.checkpoints, s.batches_written),
            (1, 1, 2)
        );
        assert_eq!((s.records_written, s.snapshot_rows_written), (5, 1));
        // the next checkpoint takes the rest; one with nothing new writes nothing
        w.checkpoint(9);
        w.marker_passed();
        w.write_held(&c).1.unwrap();
        assert_eq!(
            (durations(&path).len(), checkpoint_of(&w, &journal)),
            (9, 9)
        );
        w.checkpoint(9);
        w.marker_passed();
        w.write_held(&c).1.unwrap();
        assert_eq!(c.snapshot().transactions, 2);
        assert!(journal.wait_truncated(9, Duration::from_secs(10)));
    }

    #[test]
    fn durable_mode_quarantines_refused_rows_inside_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c, journal) = durable_writer(dir.path());
        poison(&path);
        let mut names = vec!["ok"; 9];
        names[2] = "poison";
        w.hold(named(&names));
        let mut b = batch(1, &[1.0, 2.0], 1);
        let mut bad = b.windows[0].clone();
        bad.key = crate::model::SeriesKey::new("poison", None);
        b.windows.push(bad);
        w.hold(b);
        w.checkpoint(3);
        w.marker_passed();
        let (done, result) = w.write_held(&c);
        result.unwrap();
        assert_eq!((done.batches, done.records), (1, 9));
        let s = c.snapshot();
        assert_eq!(
            (s.records_written, s.rows_quarantined, s.events_quarantined),
            (9, 2, 1)
        );
        assert_eq!((s.transactions, s.checkpoints), (1, 1));
        assert_eq!(counts(&path), (9, 2));
        assert_eq!(checkpoint_of(&w, &journal), 3);
        assert!(w.is_idle());
    }

    #[test]
    fn a_durable_checkpoint_whose_commit_reply_was_lost_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut w, c, journal) = durable_writer(dir.path());
        w.hold(records(3, 0));
        w.hold(batch(1, &[1.0, 2.0], 1));
        w.checkpoint(4);
        w.marker_passed();
        w.lose_next_commit_reply = true;
        let (done, result) = w.write_held(&c);
        result.unwrap();
        assert_eq!(done.batches, 1);
        assert_eq!(counts(&path), (4, 2));
        assert_eq!(checkpoint_of(&w, &journal), 4);
        let s = c.snapshot();
        assert_eq!((s.records_written, s.db_errors, s.retries), (4, 1, 1));
        assert_eq!((s.transactions, s.checkpoints), (1, 1));
        // the window's epoch keeps its base: a later snapshot replaces, never adds
        w.hold(batch(0, &[1.0, 2.0, 3.0], 1));
        w.checkpoint(5);
        w.marker_passed();
        w.write_held(&c).1.unwrap();
        assert_eq!(counts(&path), (4, 3));
    }

    #[test]
    fn a_retention_round_waits_for_held_batches_and_prunes_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let settings = Config {
            retention: Retention {
                events_max_age_ms: 60_000,
                batch_size: 3,
                interval_ms: 1_000,
                ..Retention::default()
            },
            ..Config::default()
        }
        .settings()
        .unwrap();
        let pool = crate::db::open::open(&crate::db::Store::sqlite(&path), Duration::from_secs(5))
            .unwrap();
        let (mut w, c) = (WriterCore::new(pool, &settings), Counters::default());
        w.hold(records(7, 0)); // all at T0
        w.write_held(&c).1.unwrap();
        w.hold(records(2, 7));
        let now = T0 + 60_001;
        w.start_prune_if_due(now, &c);
        assert!(w.prune.is_none(), "no round starts while batches are held");
        w.write_held(&c).1.unwrap();
        w.start_prune_if_due(now, &c);
        assert!(w.prune.is_some());
        assert!(w.prune_chunk(&c), "3 of 9 rows: more to do");
        // a batch arriving mid-round goes first: the round pauses until it is written
        w.hold(records(1, 9));
        assert!(!w.prune_chunk(&c));
        assert!(w.prune.is_some());
        assert_eq!(c.snapshot().rows_pruned, 3);
        w.write_held(&c).1.unwrap();
        let mut chunks = 1;
        while w.prune_chunk(&c) {
            chunks += 1;
        }
        assert_eq!(chunks, 3, "3 + 3 + 3 + 1 rows, the last chunk short");
        assert_eq!(c.snapshot().rows_pruned, 10);
        assert!(w.prune.is_none() && durations(&path).is_empty());
        // the next round is due an interval after this one started
        w.start_prune_if_due(now + 999, &c);
        assert!(w.prune.is_none());
        w.start_prune_if_due(now + 1_000, &c);
        assert!(w.prune.is_some());
        assert!(
            !w.prune_chunk(&c),
            "nothing left: one short chunk ends the round"
        );
        assert_eq!(c.snapshot().rows_pruned, 10);
    }

    #[test]
    fn store_errors_say_whether_a_retry_can_help() {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        let db = |kind, msg: &str| E::DatabaseError(kind, Box::new(msg.to_string()));
        assert!(
            !StoreError::from_diesel(db(K::UniqueViolation, "UNIQUE constraint failed")).retryable
        );
        assert!(
            !StoreError::from_diesel(db(K::NotNullViolation, "NOT NULL constraint failed"))
                .retryable
        );
        assert!(
            !StoreError::from_diesel(db(
                K::Unknown,
                "invalid byte sequence for encoding \"UTF8\": 0x00"
            ))
            .retryable
        );
        assert!(StoreError::from_diesel(db(K::Unknown, "database is locked")).retryable);
        assert!(
            StoreError::from_diesel(db(K::ClosedConnection, "server closed the connection"))
                .retryable
        );
        assert!(StoreError::from_diesel(E::BrokenTransactionManager).retryable);
    }
}
