//! Durable mode's commits: the batches a journal checkpoint covers, committed with it in one
//! transaction.

use super::*;

impl WriterCore {
    /// Durable mode's [`Self::write_held`]: commits the batches the latest checkpoint covers
    /// with it, in one transaction, retrying a failure of the store as `mode` allows (see
    /// [`Outage`]). Nothing is committed while a checkpoint marker waits for the marker behind it,
    /// nor when there is nothing new to commit.
    pub(super) fn write_checkpointed(
        &mut self,
        c: &Counters,
        mode: Patience,
    ) -> (Committed, Result<(), PipelineError>) {
        let mut done = Committed::default();
        loop {
            let Some(d) = &self.durable else {
                return (done, Ok(()));
            };
            if d.open || (d.covered == 0 && d.position <= d.committed) {
                return (done, Ok(()));
            }
            if let Err(e) = self.ready(mode) {
                return (done, Err(e));
            }
            self.tried = true;
            let started = Instant::now();
            if self.outage.is_failing() {
                Counters::add(&c.retries, 1);
            }
            let patience = self.patience(mode, started);
            match self.pool.watch().call(|| self.attempt_checkpoint(patience)) {
                Ok((n, outcomes, position)) => {
                    self.store_answers();
                    self.settle_checkpoint(c, n, &outcomes, position, &mut done);
                }
                Err(e) => {
                    Counters::add(&c.db_errors, 1);
                    if e.is_gone() {
                        log::error!("{e}; holding {} rows", self.held_rows());
                        return (done, Err(PipelineError::Store(e)));
                    }
                    self.store_failed(started, e);
                }
            }
        }
    }

    /// One attempt at the covered batches and the checkpoint: if the last attempt may have
    /// committed, looks that up first. Returns how many batches at the front are committed,
    /// what became of each, and the position the store now holds.
    fn attempt_checkpoint(
        &mut self,
        patience: Duration,
    ) -> Result<(usize, Vec<Outcome>, u64), StoreError> {
        let mut conn = self.pool.get_within(patience)?;
        let Some(d) = self.durable.as_mut() else {
            return Ok((0, Vec::new(), 0));
        };
        let flagged = self.held.iter().take_while(|p| p.maybe_committed).count();
        if flagged > 0 {
            if conn
                .is_committed(&self.instance_id, self.held[0].mark)
                .map_err(StoreError::from_diesel)?
            {
                log::warn!(
                    "a checkpoint of {flagged} batch(es) was committed by an attempt that reported failure; not writing it again"
                );
                for p in self.held.iter().take(flagged) {
                    self.bases.forget_final(&p.batch);
                }
                let (outcomes, position) = std::mem::take(&mut d.attempted);
                return Ok((flagged, outcomes, position));
            }
            for p in self.held.iter_mut() {
                p.maybe_committed = false;
            }
        }
        let n = d.covered.min(self.held.len());
        let batches: Vec<(&WriteBatch, BatchMark)> =
            self.held.range(..n).map(|p| (&p.batch, p.mark)).collect();
        let checkpoint = Checkpoint {
            journal_id: d.journal.id(),
            position: d.position,
        };
        d.attempted = (Vec::new(), d.position);
        let result = conn.write_durable(
            &self.instance_id,
            &batches,
            &mut self.bases,
            checkpoint,
            &mut d.attempted.0,
        );
        #[cfg(test)]
        let result = match result {
            Ok(()) if std::mem::take(&mut self.lose_next_commit_reply) => {
                Err(diesel::result::Error::BrokenTransactionManager)
            }
            other => other,
        };
        match result {
            Ok(()) => Ok((n, std::mem::take(&mut d.attempted.0), d.position)),
            Err(e) => {
                let e = StoreError::from_diesel(e);
                for p in self.held.iter_mut().take(n) {
                    p.maybe_committed = e.retryable;
                }
                Err(e)
            }
        }
    }

    /// Counts a committed checkpoint of the first `n` held batches, confirms the queue's
    /// among them, and lets the journal delete what the store now holds.
    fn settle_checkpoint(
        &mut self,
        c: &Counters,
        n: usize,
        outcomes: &[Outcome],
        position: u64,
        done: &mut Committed,
    ) {
        for (i, p) in self.held.drain(..n).enumerate() {
            match outcomes.get(i) {
                Some(o) => count_outcome(c, o),
                None => record_success(c, &p.batch),
            }
            if let Some(records) = p.confirms {
                done.batches += 1;
                done.records += records;
            }
        }
        Counters::add(&c.transactions, 1);
        Counters::add(&c.checkpoints, 1);
        if let Some(d) = &mut self.durable {
            d.covered = d.covered.saturating_sub(n);
            d.committed = d.committed.max(position);
            d.journal.truncate_through(d.committed);
        }
        log::debug!("checkpoint {position} committed ({n} batches)");
    }
}
