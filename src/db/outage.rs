//! The store's failure state, one for the whole writer: when it began, when the next attempt is
//! due, and the last error. Every message the writer handles shares it, so a store that keeps
//! failing costs one backoff, not one retry budget per message:
//!
//! - in the background (a batch arrived, a tick, the writer's retry timer) the writer makes an
//!   attempt only when one is due, and never waits for the next: a tick during the backoff
//!   does nothing;
//! - a `Flush` or `Shutdown` retries with the backoff until the retry budget, counted from the
//!   moment the store began failing, is spent, then answers; once it is spent, at most one
//!   attempt (if one is due);
//! - a query makes at most one attempt (if one is due), so it answers within one attempt.
//!
//! Each attempt waits for the store (a pooled connection, SQLite's lock) at most what is left of
//! the budget, and at least [`PROBE_PATIENCE`]. So a marker is answered within the budget, plus
//! one attempt of at most [`PROBE_PATIENCE`] that may be under way when it arrives, plus its
//! own last attempt: within the budget plus a second, whatever the store answers.

use std::time::{Duration, Instant};

use crate::error::StoreError;

/// The first delay after a failure; it doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest delay between two attempts while the store fails.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The shortest wait for the store (a connection, SQLite's lock) an attempt gets once the
/// budget is spent.
pub(crate) const PROBE_PATIENCE: Duration = Duration::from_millis(200);

/// Whether the store is failing, and the backoff (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Outage {
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    /// When the first failed attempt of this outage started.
    since: Instant,
    /// No attempt before this.
    next: Instant,
    /// The delay after the next failure.
    delay: Duration,
    /// Failed attempts so far.
    attempts: u64,
    /// How long the last failed attempt took.
    took: Duration,
    /// The last failure.
    error: StoreError,
}

impl Outage {
    /// The store failed its last attempt.
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// The last failure, while failing.
    pub(crate) fn error(&self) -> Option<&StoreError> {
        self.failing.as_ref().map(|f| &f.error)
    }

    /// When the next attempt is due, while failing.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.failing.as_ref().map(|f| f.next)
    }

    /// How long the last failed attempt took (zero while not failing): a `Flush` or
    /// `Shutdown` starts another only if one as long ends within its deadline.
    pub(crate) fn last_attempt_took(&self) -> Duration {
        self.failing.as_ref().map_or(Duration::ZERO, |f| f.took)
    }

    /// Whether an attempt may start at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.next_attempt().is_none_or(|next| next <= now)
    }

    /// Until when a `Flush` or `Shutdown` retries: the budget after the store began failing
    /// (`now + budget` while it is not failing).
    pub(crate) fn deadline(&self, now: Instant, budget: Duration) -> Instant {
        self.failing.as_ref().map_or(now, |f| f.since) + budget
    }

    /// How long an attempt starting at `now` may wait for the store: what is left of the
    /// budget, at least [`PROBE_PATIENCE`] (`budget` while the store is not failing).
    pub(crate) fn patience(&self, now: Instant, budget: Duration) -> Duration {
        self.deadline(now, budget)
            .saturating_duration_since(now)
            .max(PROBE_PATIENCE)
    }

    /// An attempt that started at `started` failed with `error` at `now`; the next is due
    /// after the backoff. True if this begins an outage.
    pub(crate) fn failed(&mut self, started: Instant, now: Instant, error: StoreError) -> bool {
        match &mut self.failing {
            Some(f) => {
                f.took = now.saturating_duration_since(started);
                f.next = now + f.delay;
                f.delay = (f.delay * 2).min(MAX_BACKOFF);
                f.attempts += 1;
                f.error = error;
                false
            }
            None => {
                self.failing = Some(Failing {
                    since: started,
                    next: now + FIRST_BACKOFF,
                    delay: FIRST_BACKOFF * 2,
                    attempts: 1,
                    took: now.saturating_duration_since(started),
                    error,
                });
                true
            }
        }
    }

    /// An attempt succeeded at `now`: if that ends an outage, how long it lasted and how many
    /// attempts failed.
    pub(crate) fn recovered(&mut self, now: Instant) -> Option<(Duration, u64)> {
        self.failing
            .take()
            .map(|f| (now.saturating_duration_since(f.since), f.attempts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> StoreError {
        StoreError::retryable("database is locked")
    }

    #[test]
    fn one_backoff_for_every_message() {
        let budget = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert!(o.is_due(t0) && !o.is_failing());
        assert_eq!(o.patience(t0, budget), budget);
        let t1 = t0 + Duration::from_millis(300);
        assert!(o.failed(t0, t1, busy()), "an outage begins");
        assert_eq!(o.next_attempt(), Some(t1 + FIRST_BACKOFF));
        assert!(!o.is_due(t1) && o.is_due(t1 + FIRST_BACKOFF));
        // the budget counts from the start of the first failed attempt
        assert_eq!(o.deadline(t1, budget), t0 + budget);
        assert_eq!(o.patience(t1, budget), Duration::from_millis(1_700));
        assert_eq!(o.last_attempt_took(), Duration::from_millis(300));
        let mut now = t1;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let next = o.next_attempt().unwrap();
            delays.push((next - now).as_millis());
            now = next;
            assert!(!o.failed(now, now, busy()));
        }
        assert_eq!(
            delays,
            [10, 20, 40, 80, 160, 320, 640, 1_000, 1_000],
            "doubling up to a second"
        );
        // the budget spent, an attempt still gets the probe's patience
        assert_eq!(o.patience(t0 + budget * 3, budget), PROBE_PATIENCE);
        let (lasted, attempts) = o.recovered(now).unwrap();
        assert_eq!((lasted, attempts), (now - t0, 10));
        assert!(o.recovered(now).is_none() && o.is_due(now));
    }
}
