//! The DB writer: the only actor that touches the store.
//!
//! [`WriterCore`] holds the pool, the batches waiting to be written (`held`, in order) and the
//! per-epoch bases; [`DbWriter`] runs it on a `SyncArbiter` thread so blocking I/O never stalls
//! the event loop. A failing batch is retried with exponential backoff for
//! `store_retry_budget_ms`, then held (in order, before anything newer) and retried on the next
//! wake, tick or flush: nothing is dropped while the pipeline runs.
//!
//! Retries are idempotent: every batch carries a [`BatchMark`] committed with it, and a batch
//! whose previous attempt failed (possibly after the server committed it, e.g. the connection
//! died during COMMIT) is first looked up and counted as written instead of written twice.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::counters::Counters;
use crate::db::store::{Bases, BatchMark, Pool, Written};
use crate::error::PipelineError;
use crate::messages::{Pattern, ReadPatterns, ReadWindows, Wake, WindowStats, WriteAll};
use crate::model::WriteBatch;
use crate::pipeline::{lock, Stages};

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The writer's state, shared with the supervisor's synchronous stop path.
#[derive(Debug)]
pub(crate) struct WriterCore {
    pool: Pool,
    /// This pipeline's `instance_id`, on every row.
    instance_id: String,
    /// Store users and servers hashed.
    hash_ids: bool,
    /// Batches taken from the inbox and not yet committed, oldest first.
    held: VecDeque<Pending>,
    /// This writer run's id (see [`BatchMark`]).
    run_id: i64,
    /// The `seq` of the last batch taken from the inbox.
    last_seq: i64,
    /// What the store held before each open window epoch (see [`Bases`]).
    bases: Bases,
    /// How long to retry one batch before holding it.
    retry_budget: Duration,
    /// When (pipeline clock, ms) the next roll-up run is due.
    next_rollup_ms: i64,
    /// Test hook: report the next successful commit as a failure (the COMMIT reply lost).
    #[cfg(test)]
    lose_next_commit_reply: bool,
}

/// A batch waiting to be written.
#[derive(Debug)]
struct Pending {
    batch: WriteBatch,
    mark: BatchMark,
    /// A previous attempt failed: the store may hold it already (look before writing).
    maybe_committed: bool,
}

impl WriterCore {
    pub(crate) fn new(
        pool: Pool,
        instance_id: String,
        hash_ids: bool,
        retry_budget: Duration,
    ) -> Self {
        let run_id = (crate::util::SplitMix64::from_entropy().next_u64() >> 1) as i64;
        WriterCore {
            pool,
            instance_id,
            hash_ids,
            held: VecDeque::new(),
            run_id,
            last_seq: 0,
            bases: Bases::default(),
            retry_budget,
            next_rollup_ms: i64::MIN,
            #[cfg(test)]
            lose_next_commit_reply: false,
        }
    }

    pub(crate) fn set_retry_budget(&mut self, budget: Duration) {
        self.retry_budget = budget;
    }

    /// Writes everything in the inbox and everything held, in order. Stops at the first batch
    /// that still fails after the retry budget; it and the rest stay held.
    pub(crate) fn write_all(&mut self, stages: &Stages) -> Result<(), PipelineError> {
        for batch in stages.writer_in.drain() {
            if batch.is_empty() {
                continue;
            }
            self.last_seq += 1;
            let mark = BatchMark {
                run_id: self.run_id,
                seq: self.last_seq,
            };
            self.held.push_back(Pending {
                batch,
                mark,
                maybe_committed: false,
            });
        }
        while let Some(mut pending) = self.held.pop_front() {
            match self.write_with_retry(&mut pending, stages) {
                Ok(written) => record_success(stages, &pending.batch, written),
                Err(e) => {
                    self.held.push_front(pending);
                    return Err(e);
                }
            }
        }
        self.roll_up_if_due(stages);
        Ok(())
    }

    /// Every `rollup_interval_ms` on the pipeline clock, once everything is written: rolls up
    /// the hour and day buckets that closed (see [`crate::rollup`]). A failure is logged and
    /// counted; the buckets stay pending for the next run.
    fn roll_up_if_due(&mut self, stages: &Stages) {
        let (enabled, interval, lateness) = {
            let s = stages.settings();
            (s.rollups, s.rollup_interval_ms, s.allowed_lateness_ms)
        };
        let now = stages.clock.now_ms();
        if !enabled || now < self.next_rollup_ms {
            return;
        }
        self.next_rollup_ms = now.saturating_add(interval);
        let result = self
            .pool
            .get()
            .and_then(|mut conn| conn.roll_up(now, lateness).map_err(|e| e.to_string()));
        match result {
            Ok(run) => {
                Counters::add(&stages.counters.rollups_written, run.rows);
                if run.skipped {
                    log::debug!("roll-up skipped: another instance holds the lock");
                } else if run.rows > 0 {
                    log::debug!("rolled up {} hour and day buckets", run.rows);
                }
            }
            Err(e) => {
                Counters::add(&stages.counters.db_errors, 1);
                log::warn!("roll-up failed, retrying in {interval} ms: {e}");
            }
        }
    }

    /// One attempt: look the batch up if an earlier attempt may have committed it, else write it.
    fn attempt(&mut self, p: &mut Pending) -> Result<Written, String> {
        let mut conn = self.pool.get()?;
        if p.maybe_committed {
            if conn
                .is_committed(&self.instance_id, p.mark)
                .map_err(|e| e.to_string())?
            {
                log::warn!(
                    "batch {} was committed by an attempt that reported failure; not writing it again",
                    p.mark.seq
                );
                self.bases.forget_final(&p.batch);
                return Ok(Written::of(&p.batch));
            }
            p.maybe_committed = false;
        }
        let result = conn.write_batch(
            &self.instance_id,
            self.hash_ids,
            &p.batch,
            p.mark,
            &mut self.bases,
        );
        #[cfg(test)]
        let result = match result {
            Ok(_) if std::mem::take(&mut self.lose_next_commit_reply) => {
                Err(diesel::result::Error::BrokenTransactionManager)
            }
            other => other,
        };
        result.map_err(|e| {
            // Any failure once the transaction began may hide a commit (a lost COMMIT reply).
            p.maybe_committed = true;
            e.to_string()
        })
    }

    fn write_with_retry(
        &mut self,
        p: &mut Pending,
        stages: &Stages,
    ) -> Result<Written, PipelineError> {
        let c = &stages.counters;
        let deadline = Instant::now() + self.retry_budget;
        let mut delay = FIRST_BACKOFF;
        loop {
            match self.attempt(p) {
                Ok(written) => return Ok(written),
                Err(e) => {
                    Counters::add(&c.db_errors, 1);
                    if Instant::now() + delay > deadline {
                        log::error!(
                            "store write failed, holding {} rows for a later retry: {e}",
                            p.batch.rows()
                        );
                        return Err(PipelineError::Store(e));
                    }
                    log::warn!("store write failed, retrying in {delay:?}: {e}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_BACKOFF);
                    Counters::add(&c.retries, 1);
                }
            }
        }
    }

    /// Everything still held: events that will be lost if the pipeline stops now.
    pub(crate) fn held_events(&self) -> u64 {
        self.held
            .iter()
            .map(|Pending { batch: b, .. }| {
                let windows: u64 = b
                    .windows
                    .iter()
                    .filter(|w| w.is_final)
                    .map(|w| w.state.count())
                    .sum();
                let errors: u64 = b
                    .errors
                    .iter()
                    .filter(|e| e.is_final)
                    .map(|e| e.count)
                    .sum();
                b.records.len() as u64 + windows + errors
            })
            .sum()
    }

    pub(crate) fn query_windows(
        &mut self,
        q: &crate::messages::QueryWindows,
    ) -> Result<Vec<WindowStats>, PipelineError> {
        let mut conn = self.pool.get().map_err(PipelineError::Store)?;
        conn.query_windows(q)
            .map_err(|e| PipelineError::Store(e.to_string()))
    }

    pub(crate) fn query_patterns(
        &mut self,
        q: &crate::messages::QueryPatterns,
    ) -> Result<Vec<Pattern>, PipelineError> {
        let mut conn = self.pool.get().map_err(PipelineError::Store)?;
        conn.query_patterns(q)
            .map_err(|e| PipelineError::Store(e.to_string()))
    }
}

fn record_success(stages: &Stages, batch: &WriteBatch, w: Written) {
    let c = &stages.counters;
    Counters::add(&c.records_written, w.records);
    Counters::add(&c.windows_written, w.windows);
    Counters::add(&c.error_counts_written, w.errors);
    Counters::add(&c.patterns_written, w.patterns);
    Counters::add(&c.transactions, 1);
    Counters::add(&c.batches_written, 1);
    Counters::add(&c.batch_rows, w.records + w.windows + w.errors + w.patterns);
    Counters::sub(&c.queued, w.records);
    if batch.from_queue {
        let _ = stages
            .batches_in_flight
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }
    log::debug!(
        "batch written: {} records, {} windows, {} error counts, {} patterns",
        w.records,
        w.windows,
        w.errors,
        w.patterns
    );
}

/// The writer's actor, on its own thread (`SyncArbiter`).
pub(crate) struct DbWriter {
    pub stages: Arc<Stages>,
    /// Woken after each write so it can hand over more batches (it limits those in flight).
    pub queue: Addr<crate::queue::QueueActor>,
}

impl Actor for DbWriter {
    type Context = SyncContext<Self>;
}

impl DbWriter {
    fn write(&mut self) -> Result<(), PipelineError> {
        let result = lock(&self.stages.writer).write_all(&self.stages);
        self.queue.do_send(Wake);
        result
    }
}

impl Handler<Wake> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut SyncContext<Self>) {
        let _ = self.write();
    }
}

impl Handler<WriteAll> for DbWriter {
    type Result = Result<(), PipelineError>;
    fn handle(&mut self, _: WriteAll, _: &mut SyncContext<Self>) -> Self::Result {
        self.write()
    }
}

impl Handler<ReadWindows> for DbWriter {
    type Result = Result<Vec<WindowStats>, PipelineError>;
    fn handle(&mut self, msg: ReadWindows, _: &mut SyncContext<Self>) -> Self::Result {
        lock(&self.stages.writer).query_windows(&msg.0)
    }
}

impl Handler<ReadPatterns> for DbWriter {
    type Result = Result<Vec<Pattern>, PipelineError>;
    fn handle(&mut self, msg: ReadPatterns, _: &mut SyncContext<Self>) -> Self::Result {
        lock(&self.stages.writer).query_patterns(&msg.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::event::TrackEvent;
    use crate::model::{Record, WindowSnapshot};
    use crate::stats::window::WindowState;
    use diesel::prelude::*;

    const T0: i64 = 1_764_000_000_000;

    fn stages(path: &std::path::Path) -> Stages {
        let settings = Config::default().validate().unwrap();
        let pool = crate::db::store::open(&crate::db::Store::sqlite(path), Duration::from_secs(5))
            .unwrap();
        Stages::new(
            Config::default(),
            settings,
            pool,
            Arc::new(ManualClock::new(T0)),
        )
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
                series: "rt".into(),
                metric: "rt".into(),
                context: None,
                start_ms: T0,
                end_ms: T0 + 60_000,
                epoch,
                state,
                is_final: false,
            }],
            ..WriteBatch::default()
        }
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
        let stages = stages(&path);
        stages.writer_in.push(batch(7, &[1.0, 2.0], 1));
        {
            let mut w = lock(&stages.writer);
            w.lose_next_commit_reply = true;
            w.write_all(&stages).unwrap();
        }
        assert_eq!(counts(&path), (7, 2));
        let stats = stages.stats();
        assert_eq!(
            (stats.records_written, stats.db_errors, stats.retries),
            (7, 1, 1)
        );
        // The next snapshot of the same window epoch still replaces (base read before the
        // lost reply is kept), rather than adding the epoch twice.
        stages.writer_in.push(batch(1, &[1.0, 2.0, 3.0], 1));
        lock(&stages.writer).write_all(&stages).unwrap();
        assert_eq!(counts(&path), (8, 3));
    }

    #[test]
    fn a_batch_that_failed_before_commit_is_written_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let stages = stages(&path);
        stages.writer_in.push(batch(3, &[5.0], 1));
        lock(&stages.writer).write_all(&stages).unwrap();
        // The mark of a batch not committed is not found: it is written, once.
        let mut w = lock(&stages.writer);
        let mut p = Pending {
            batch: batch(4, &[5.0, 6.0], 1),
            mark: BatchMark {
                run_id: w.run_id,
                seq: 2,
            },
            maybe_committed: true,
        };
        w.last_seq = 2;
        let written = w.attempt(&mut p).unwrap();
        assert_eq!(written.records, 4);
        drop(w);
        assert_eq!(counts(&path), (7, 2));
        // A new run never mistakes its batches for an older run's.
        let mut conn = lock(&stages.writer).pool.get().unwrap();
        assert!(conn
            .is_committed(
                &stages.settings().instance_id,
                BatchMark {
                    run_id: lock(&stages.writer).run_id,
                    seq: 2
                }
            )
            .unwrap());
        assert!(!conn
            .is_committed(
                &stages.settings().instance_id,
                BatchMark {
                    run_id: 12345,
                    seq: 1
                }
            )
            .unwrap());
    }
}
