//! The writer's upkeep between batches: the roll-up job and retention's pruning rounds, run
//! once everything held is written.

use super::*;

impl WriterCore {
    /// Every `rollup_interval_ms` on the pipeline clock (and at once if the clock was set back
    /// before the last run), once everything is written: rolls up the hour, day and week
    /// buckets that closed (see [`crate::rollup`]). A failure is logged and
    /// counted; the buckets stay pending for the next run.
    pub(crate) fn roll_up_if_due(&mut self, now: i64, c: &Counters) {
        // durable mode: batches not yet covered by a checkpoint wait by design
        let waiting = match &self.durable {
            Some(d) => d.covered,
            None => self.held.len(),
        };
        if !self.rollups || !due(now, self.last_rollup_ms, self.rollup_interval_ms) || waiting > 0 {
            return;
        }
        went_back("roll-up", now, self.last_rollup_ms);
        self.last_rollup_ms = now;
        let mut run = RollupRun::default();
        let result = self.pool.watch().call(|| {
            self.pool.get().and_then(|mut conn| {
                conn.roll_up(now, self.lateness_ms, &mut run)
                    .map_err(StoreError::from_diesel)
            })
        });
        Counters::add(&c.rollups_written, run.rows);
        match result {
            Ok(()) if run.skipped => {
                log::debug!("roll-up skipped: another instance holds the lock")
            }
            Ok(()) if run.rows > 0 => {
                log::debug!("rolled up {} hour, day and week buckets", run.rows)
            }
            Ok(()) => {}
            Err(e) => {
                Counters::add(&c.db_errors, 1);
                log::warn!(
                    "roll-up failed, retrying in {} ms: {e}",
                    self.rollup_interval_ms
                );
            }
        }
    }

    /// Starts a retention round if one is due at `now` (every `retention.interval_ms` on the
    /// pipeline clock, and at once if the clock was set back before the last round, once
    /// everything is written) and none is under way: plans its cut-offs
    /// from the maximum ages and, with roll-ups on, the oldest pending roll-up marks. A failure
    /// is logged and counted; the next round comes an interval later.
    pub(crate) fn start_prune_if_due(&mut self, now: i64, c: &Counters) {
        let interval = self.retention.interval_ms.min(i64::MAX as u64) as i64;
        if self.prune.is_some()
            || !self.retention.is_enabled()
            || !self.held.is_empty()
            || !due(now, self.last_prune_ms, interval)
        {
            return;
        }
        went_back("retention round", now, self.last_prune_ms);
        self.last_prune_ms = now;
        let pending = self.pool.watch().call(|| {
            self.pool
                .get()
                .and_then(|mut conn| conn.oldest_pending().map_err(StoreError::from_diesel))
        });
        match pending {
            Ok(pending) => {
                let round = PruneRound::plan(&self.retention, now, self.rollups, pending);
                self.prune = Some(round);
            }
            Err(e) => {
                Counters::add(&c.db_errors, 1);
                log::warn!("retention round not started, next in {interval} ms: {e}");
            }
        }
    }

    /// Deletes one chunk of the round under way (one transaction of at most
    /// `retention.batch_size` rows) and returns whether the round has more to do. Does nothing
    /// while batches are held: the writer's own writes go first, and the round goes on after
    /// them. The round ends when every table is done, when another instance holds the
    /// retention lock (it is pruning), or at a store error (logged and counted; the next round
    /// comes an interval after this one started).
    pub(crate) fn prune_chunk(&mut self, c: &Counters) -> bool {
        if !self.held.is_empty() {
            return false;
        }
        let Some(round) = self.prune.as_mut() else {
            return false;
        };
        let Some((table, cutoff)) = round.current() else {
            self.end_prune();
            return false;
        };
        let batch_size = self.retention.batch_size;
        let pool = &self.pool;
        let result = self.pool.watch().call(|| {
            pool.get().and_then(|mut conn| {
                conn.prune_chunk(table, cutoff, batch_size)
                    .map_err(StoreError::from_diesel)
            })
        });
        match result {
            Ok(Some(removed)) => {
                Counters::add(&c.rows_pruned, removed);
                round.record(removed, batch_size);
                if round.current().is_some() {
                    return true;
                }
            }
            Ok(None) => log::debug!("retention round ended: another instance is pruning"),
            Err(e) => {
                Counters::add(&c.db_errors, 1);
                log::warn!(
                    "retention: deleting old {} failed; the next round retries: {e}",
                    table.label()
                );
            }
        }
        self.end_prune();
        false
    }

    /// Ends the round under way, with a log line of what it removed.
    pub(super) fn end_prune(&mut self) {
        if let Some(round) = self.prune.take() {
            if round.total() > 0 {
                log::info!(
                    "retention removed {} rows in {} transactions ({})",
                    round.total(),
                    round.chunks,
                    round.summary()
                );
            }
        }
    }
}

/// Whether a job that runs every `interval` ms and last ran at `last` is due at `now`: an
/// interval has passed, or the clock is before the last run. A clock set back (after a jump
/// forward, a wrong NTP answer, a VM resumed with a bad clock) would otherwise hold the job
/// for as long as the jump was.
fn due(now: i64, last: i64, interval: i64) -> bool {
    now >= last.saturating_add(interval) || now < last
}

/// Logs a clock seen before the last run of `job`.
fn went_back(job: &str, now: i64, last: i64) {
    if now < last {
        log::warn!(
            "the clock is {} ms before the last {job} run; running it now and scheduling from here",
            last - now
        );
    }
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_job_is_due_after_its_interval_and_at_once_when_the_clock_went_back() {
        let hour = 3_600_000;
        assert!(due(0, i64::MIN, hour), "never ran");
        assert!(!due(1_000, 0, hour));
        assert!(due(hour, 0, hour));
        // a year ahead, then set back: due now, not in a year
        let year = 365 * 24 * hour;
        assert!(due(10, year, hour));
        assert!(due(i64::MAX, i64::MAX - 1, hour), "no overflow");
    }
}
