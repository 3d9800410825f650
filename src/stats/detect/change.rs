//! The change view (off by default): a lasting change of level that no single value shows.
//!
//! The level view judges each value against the median of the recent values and, to let a
//! new level become the normal one, also against the median of the last `shift_window`
//! values, keeping the smaller surprise. That is right for a step (it alarms once, then
//! adapts) but blind to a change that builds up over more values than that: a fast drift
//! moves the short median along with it, and in bursty counts a rise of the whole level for
//! a while is, value by value, something the series has done before. The change view looks
//! at the level itself:
//!
//! - **Blocks.** Every `block` values (`change_window`) the median of the last `block`
//!   values is kept, the last `capacity` of them (`ceil(memory_window / change_window)`).
//!   All but the newest are compared with.
//! - **The recent level** is the median of the last `block` values, the one being judged
//!   among them. It is compared with the blocks that closed before the newest (which
//!   overlaps the recent values): their median is the usual level, and the spread of the
//!   block medians is the scale (the larger of `1.4826 * MAD` and the tail quantiles'
//!   spread, floored like the level view's), so a series whose level wanders is judged
//!   leniently and a steady one strictly.
//! - **Surprise.** The two-sided normal surprise of that z-score, capped by a "seen before"
//!   of its own: if `k` of the `n` blocks reached at least `1 / spike_ratio` of the recent
//!   level's deviation on the same side, at most `log10((n + 1) / (k + 1))` decades. Unlike
//!   the level view's rule it counts every block, those of an earlier change too: blocks at
//!   a new level count as they close, so once a change has lasted a few blocks it has been
//!   seen before and the view resets by itself; and a second lasting change to the same
//!   level while the first is in memory is not news (one block there caps it at about 1.6
//!   decades with `change_window` 24 and the default memory). The other side of that rule: a drift
//!   slow enough that each block stays within `spike_ratio` times the deviation of the
//!   blocks before it is never news here (the Mann-Kendall trend test reports it).
//! - **Nothing is judged** before `MIN_BLOCKS` earlier blocks are there.
//!
//! In the detector (`SeriesDetector`) the view is a channel of its own: its surprise is
//! turned into a score directly (`d / (d + score_half_decades)`, no likelihood), so with the
//! defaults it alarms only when the recent level is about 4.9 of its standard deviations out
//! (6 decades) and never seen within half that; its surprises do not enter the likelihood's
//! history (the level view's calibration is left as it is). It speaks only when the value's
//! own views raise no alarm, and only to alarm (below the bar its score would persist from
//! value to value, one detection per value for one change). An event it opens is placed by the recent level, not the value
//! (in bursty counts single values fall on both sides of the usual level), and no event ends
//! while the recent level's capped surprise is that of `anomaly_sigma` or more.
//!
//! State: `capacity + 1` medians reserved at the first block and a few fields, about
//! `8 memory_window / change_window` bytes (680 bytes with `change_window` 24). Cost per
//! value: three sorts, of `block` values and twice of at most `capacity` medians, and one
//! of `block` values when a block closes.

use std::collections::VecDeque;

use super::detector_settings::{DetectorSettings, CHANGE_MIN_BLOCKS as MIN_BLOCKS};
use super::finding::{Evidence, View};
use super::math::{decades_to_score, median_sorted, two_sided_decades, with_scratch, MAX_DECADES};

/// The change view's state for one series.
#[derive(Debug, Clone)]
pub(super) struct Change {
    /// Values per block.
    block: usize,
    /// Medians of the last `capacity` closed blocks, oldest first.
    medians: VecDeque<f64>,
    /// Bound of `medians`.
    capacity: usize,
    /// Values recorded since the last block closed.
    filling: usize,
}

/// What the change view says about one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ChangeJudgement {
    /// The usual level: the median of the earlier blocks' medians.
    pub expected: f64,
    /// The recent level: the median of the last `block` values.
    pub recent: f64,
    /// `(recent - expected) / scale`.
    pub z: f64,
    /// The surprise in decades, capped by "seen before" (and at `MAX_DECADES`).
    pub decades: f64,
}

impl ChangeJudgement {
    /// The score of the view's alarm, `d / (d + score_half_decades)`, when it is one (at
    /// least `alarm_score`, with `|z|` at least `anomaly_sigma`); `None` otherwise. Below the
    /// bar the view says nothing: its score persists from value to value while the recent
    /// level stays where it is, so one change would be a detection per value, where an alarm
    /// opens an event and is one.
    pub(super) fn alarm_score(&self, s: &DetectorSettings) -> Option<f64> {
        let score = decades_to_score(self.decades, s.score_half_decades);
        (score >= s.alarm_score && self.z.abs() >= s.anomaly_sigma).then_some(score)
    }

    /// The numbers behind a finding of the change view.
    pub(super) fn evidence(&self) -> Evidence {
        Evidence {
            view: View::Change,
            z: self.z,
            surprise_decades: self.decades,
            likelihood_decades: 0.0,
            period: None,
        }
    }
}

/// What a judgement needs besides the value and the memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    /// Least scale (the level view's floor).
    pub floor: f64,
    /// The tail quantile and its normal z, e.g. `(0.1, 1.2816)`.
    pub tail: (f64, f64),
    /// "Seen before" counts blocks at least `1 / spike_ratio` as far out.
    pub spike_ratio: f64,
}

impl Change {
    /// A view with blocks of `block` values (at least 1) that keeps `capacity` of them.
    pub(super) fn new(block: usize, capacity: usize) -> Self {
        Change {
            block: block.max(1),
            medians: VecDeque::new(),
            capacity,
            filling: 0,
        }
    }

    /// Judges `value`, which comes after `memory`; `None` before `MIN_BLOCKS` earlier
    /// blocks are there.
    pub(super) fn judge(
        &self,
        value: f64,
        memory: &VecDeque<f64>,
        rules: Rules,
    ) -> Option<ChangeJudgement> {
        // the newest block overlaps the recent values (in all but one of them when it has
        // just closed)
        let earlier = self.medians.len().checked_sub(1)?;
        if earlier < MIN_BLOCKS || memory.len() + 1 < self.block {
            return None;
        }
        let recent = with_scratch(|buf| {
            buf.extend(memory.range(memory.len() + 1 - self.block..).copied());
            buf.push(value);
            median_sorted(buf)
        });
        let (tail, tail_z) = rules.tail;
        let (expected, up, down, k) = with_scratch(|buf| {
            buf.extend(self.medians.range(..earlier).copied());
            let expected = median_sorted(buf);
            let n = buf.len();
            let at = |q: f64| ((q * (n - 1) as f64).round() as usize).min(n - 1);
            let (hi, lo) = (buf[at(1.0 - tail)], buf[at(tail)]);
            let reach = (recent - expected) / rules.spike_ratio;
            let k = buf
                .iter()
                .filter(|&&m| {
                    if recent >= expected {
                        m - expected >= reach
                    } else {
                        m - expected <= reach
                    }
                })
                .count();
            for m in buf.iter_mut() {
                *m = (*m - expected).abs();
            }
            let mad = 1.4826 * median_sorted(buf);
            let floor = mad.max(rules.floor);
            (
                expected,
                floor.max((hi - expected) / tail_z),
                floor.max((expected - lo) / tail_z),
                k,
            )
        });
        let z = if recent >= expected {
            (recent - expected) / up
        } else {
            (recent - expected) / down
        };
        let mut decades = two_sided_decades(z);
        if k > 0 {
            decades = decades.min(((earlier as f64 + 1.0) / (k as f64 + 1.0)).log10());
        }
        Some(ChangeJudgement {
            expected,
            recent,
            z,
            decades: decades.min(MAX_DECADES),
        })
    }

    /// Records that `memory` has grown by one value (already pushed): closes a block every
    /// `block` values.
    pub(super) fn record(&mut self, memory: &VecDeque<f64>) {
        self.filling += 1;
        if self.filling < self.block || memory.len() < self.block {
            return;
        }
        self.filling = 0;
        let median = with_scratch(|buf| {
            buf.extend(memory.range(memory.len() - self.block..).copied());
            median_sorted(buf)
        });
        if self.medians.capacity() == 0 {
            // one slot over the bound: a median is pushed before the oldest leaves
            self.medians.reserve_exact(self.capacity + 1);
        }
        self.medians.push_back(median);
        if self.medians.len() > self.capacity {
            self.medians.pop_front();
        }
    }

    /// Bytes held by the medians (for the state's bound).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.medians.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tail::tests::uniforms;
    use super::*;

    const RULES: Rules = Rules {
        floor: 1e-9,
        tail: (0.1, 1.2816),
        spike_ratio: 2.0,
    };

    /// Feeds `values` and returns the judgement of each (`None` while too short).
    fn run(block: usize, capacity: usize, values: &[f64]) -> Vec<Option<ChangeJudgement>> {
        let mut change = Change::new(block, capacity);
        let mut memory = VecDeque::new();
        values
            .iter()
            .map(|&v| {
                let j = change.judge(v, &memory, RULES);
                memory.push_back(v);
                if memory.len() > block * capacity {
                    memory.pop_front();
                }
                change.record(&memory);
                j
            })
            .collect()
    }

    /// Uniform noise in `(-1, 1)` (standard deviation 0.58), seeded.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        uniforms(n, seed)
            .into_iter()
            .map(|u| 2.0 * u - 1.0)
            .collect()
    }

    #[test]
    fn nothing_is_judged_before_enough_blocks() {
        let values: Vec<f64> = noise(200, 1).into_iter().map(|e| 10.0 + e).collect();
        let js = run(10, 100, &values);
        // MIN_BLOCKS earlier blocks plus the one that overlaps the recent values
        let first = js.iter().position(Option::is_some).unwrap();
        assert_eq!(first, (MIN_BLOCKS + 1) * 10);
    }

    #[test]
    fn a_steady_level_is_not_news_and_a_lasting_shift_is_then_resets() {
        let mut values: Vec<f64> = noise(1400, 2).into_iter().map(|e| 10.0 + e).collect();
        for v in &mut values[1000..] {
            *v += 3.0;
        }
        let js = run(10, 100, &values);
        let most_before = js[..1000]
            .iter()
            .flatten()
            .map(|j| j.decades)
            .fold(0.0, f64::max);
        assert!(most_before < 3.0, "{most_before}");
        // half a block in, the recent median is at the new level
        let at = js[1006].unwrap();
        assert!(at.z > 5.0 && at.decades > 10.0, "{at:?}");
        assert!(
            (at.expected - 10.0).abs() < 0.2 && at.recent > 12.0,
            "{at:?}"
        );
        // a few blocks later the new level has been seen before
        let later = js[1060].unwrap();
        assert!(later.decades < 1.5, "{later:?}");
    }

    #[test]
    fn a_slow_drift_has_been_seen_before_block_by_block() {
        // a limit, pinned: a drift of 0.01 per value (2.5, about 8 block-median standard
        // deviations, after 250 values) is always within twice the deviation of its own
        // earlier blocks, so it stays "seen before" (the trend test reports such drifts)
        let values: Vec<f64> = noise(1250, 3)
            .into_iter()
            .enumerate()
            .map(|(i, e)| 10.0 + e + 0.01 * i.saturating_sub(1000) as f64)
            .collect();
        let js = run(10, 100, &values);
        let last = js[1249].unwrap();
        assert!(last.z > 2.0, "the level has moved: {last:?}");
        for (i, j) in js.iter().enumerate().skip(1000) {
            let j = j.unwrap();
            assert!(j.decades < 2.0, "{i}: {j:?}");
        }
    }

    #[test]
    fn a_wandering_level_is_judged_leniently() {
        // a slow sine of amplitude 5 under noise: every level comes back
        let values: Vec<f64> = noise(3000, 4)
            .into_iter()
            .enumerate()
            .map(|(i, e)| 10.0 + 5.0 * (i as f64 / 150.0).sin() + e)
            .collect();
        let js = run(10, 100, &values);
        let most = js[1500..]
            .iter()
            .flatten()
            .map(|j| j.decades)
            .fold(0.0, f64::max);
        assert!(most < 2.1, "{most}");
    }

    #[test]
    fn the_medians_are_bounded() {
        let values = noise(10_000, 5);
        let mut change = Change::new(10, 50);
        let mut memory = VecDeque::new();
        for &v in &values {
            memory.push_back(v);
            if memory.len() > 500 {
                memory.pop_front();
            }
            change.record(&memory);
        }
        assert_eq!(change.medians.len(), 50);
        assert!(change.held_bytes() <= 51 * 8, "{}", change.held_bytes());
    }
}
