//! The DB writer: the only actor that touches the store.
//!
//! [`WriterCore`] holds the pool, the batches waiting to be written (`held`, in order) and the
//! per-epoch bases; [`DbWriter`] runs it on a `SyncArbiter` thread so blocking I/O never stalls
//! the event loop. A failing batch is retried with exponential backoff for
//! `store_retry_budget_ms`, then held (in order, before anything newer) and retried on the next
//! wake, tick or flush: nothing is dropped while the pipeline runs.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::counters::Counters;
use crate::db::store::{Bases, Pool, Written};
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
    held: VecDeque<WriteBatch>,
    /// What the store held before each open window epoch (see [`Bases`]).
    bases: Bases,
    /// How long to retry one batch before holding it.
    retry_budget: Duration,
}

impl WriterCore {
    pub(crate) fn new(pool: Pool, instance_id: String, hash_ids: bool, retry_budget: Duration) -> Self {
        WriterCore { pool, instance_id, hash_ids, held: VecDeque::new(), bases: Bases::default(), retry_budget }
    }

    pub(crate) fn set_retry_budget(&mut self, budget: Duration) {
        self.retry_budget = budget;
    }

    /// Writes everything in the inbox and everything held, in order. Stops at the first batch
    /// that still fails after the retry budget; it and the rest stay held.
    pub(crate) fn write_all(&mut self, stages: &Stages) -> Result<(), PipelineError> {
        self.held.extend(stages.writer_in.drain());
        while let Some(batch) = self.held.pop_front() {
            if batch.is_empty() {
                continue;
            }
            match self.write_with_retry(&batch, stages) {
                Ok(written) => record_success(stages, &batch, written),
                Err(e) => {
                    self.held.push_front(batch);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn write_with_retry(&mut self, batch: &WriteBatch, stages: &Stages) -> Result<Written, PipelineError> {
        let c = &stages.counters;
        let deadline = Instant::now() + self.retry_budget;
        let mut delay = FIRST_BACKOFF;
        loop {
            let result = self
                .pool
                .get()
                .and_then(|mut conn| {
                    conn.write_batch(&self.instance_id, self.hash_ids, batch, &mut self.bases)
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(written) => return Ok(written),
                Err(e) => {
                    Counters::add(&c.db_errors, 1);
                    if Instant::now() + delay > deadline {
                        log::error!("store write failed, holding {} rows for a later retry: {e}", batch.rows());
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
            .map(|b| {
                let windows: u64 = b.windows.iter().filter(|w| w.is_final).map(|w| w.state.count()).sum();
                let errors: u64 = b.errors.iter().filter(|e| e.is_final).map(|e| e.count).sum();
                b.records.len() as u64 + windows + errors
            })
            .sum()
    }

    pub(crate) fn query_windows(&mut self, q: &crate::messages::QueryWindows) -> Result<Vec<WindowStats>, PipelineError> {
        let mut conn = self.pool.get().map_err(PipelineError::Store)?;
        conn.query_windows(q).map_err(|e| PipelineError::Store(e.to_string()))
    }

    pub(crate) fn query_patterns(&mut self, q: &crate::messages::QueryPatterns) -> Result<Vec<Pattern>, PipelineError> {
        let mut conn = self.pool.get().map_err(PipelineError::Store)?;
        conn.query_patterns(q).map_err(|e| PipelineError::Store(e.to_string()))
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
        let _ = stages.batches_in_flight.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
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
