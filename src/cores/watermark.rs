//! The event-time watermark of a series (and of the error counts), which closes the
//! aggregator's windows (`crate::cores::aggregator`).

/// An event-time watermark that a lone event far ahead does not move.
///
/// Event times move it forward as they come, except a *jump*: an event more than one window
/// plus the lateness ahead of it (one that would close every open window at once) moves it
/// only once a second such event confirms it, and then to the earlier of the two. Until
/// then the event is folded into its own window, which stays open like any other (written by
/// `Flush`, closed by the clock, or at shutdown), and later events are not late because of
/// it. A series' first event sets it (so a series whose very first event is far ahead still
/// makes its later events late). Cost: one comparison per event; the price is that a real
/// jump (a series that comes back after a pause) closes the windows it passed one event
/// later, or by the clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watermark {
    /// The watermark: no window ending (plus the lateness) at or before it stays open.
    pub ts: i64,
    /// An event time beyond `ts + jump` that no other event has confirmed yet.
    ahead: Option<i64>,
}

impl Watermark {
    /// No event seen.
    pub(crate) const NONE: Watermark = Watermark {
        ts: i64::MIN,
        ahead: None,
    };

    /// Sees an event at `ts`; `jump` is how far ahead of the watermark an event may be and
    /// still move it on its own. Returns the watermark.
    pub(crate) fn see(&mut self, ts: i64, jump: i64) -> i64 {
        let reach = self.ts.saturating_add(jump);
        if ts <= reach || self.ts == i64::MIN {
            self.ts = self.ts.max(ts);
            return self.ts;
        }
        match self.ahead {
            // a second event beyond the reach: both confirm the earlier of the two
            Some(other) if other > reach => {
                self.ts = other.min(ts);
                let later = other.max(ts);
                self.ahead = (later > self.ts.saturating_add(jump)).then_some(later);
            }
            _ => self.ahead = Some(ts),
        }
        self.ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event time of the first event (2025-11-24).
    const T0: i64 = 1_764_000_000_000;

    #[test]
    fn a_lone_event_far_ahead_does_not_move_the_watermark_two_do() {
        const HOUR: i64 = 3_600_000;
        let jump = 65_000;
        let mut w = Watermark::NONE;
        assert_eq!(w.see(T0, jump), T0, "the first event sets it");
        assert_eq!(
            w.see(T0 + 23 * HOUR, jump),
            T0,
            "a lone event far ahead does not"
        );
        for i in 1..=50 {
            assert_eq!(w.see(T0 + i * 100, jump), T0 + i * 100);
        }
        // a pause beyond the reach, confirmed by the outlier still ahead: the earlier
        assert_eq!(w.see(T0 + 600_000, jump), T0 + 600_000);
        assert_eq!(w.ahead, Some(T0 + 23 * HOUR));
        // without one, the event after a pause waits for the next
        let mut w = Watermark::NONE;
        w.see(T0, jump);
        assert_eq!(w.see(T0 + 1, jump), T0 + 1);
        assert_eq!(w.see(T0 + 600_000, jump), T0 + 1);
        assert_eq!(w.see(T0 + 600_100, jump), T0 + 600_000);
        assert_eq!(w.see(T0 + 600_200, jump), T0 + 600_200);
        // two events far ahead move it, to the earlier
        w.see(T0 + 10 * HOUR, jump);
        assert_eq!(w.see(T0 + 9 * HOUR, jump), T0 + 9 * HOUR);
        assert_eq!(w.ahead, Some(T0 + 10 * HOUR));
    }
}
