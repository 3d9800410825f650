//! The seasonal view: finds a series' period from its autocorrelation and judges each value
//! against the same phase of earlier cycles.
//!
//! - **Period.** Every [`RECHECK`] values, the biased autocorrelation `r(k)` of the memory
//!   (mean removed) is computed for lags `1..=len/2`. The period is the lag of the highest
//!   `r(k)` after the first lag where `r` turns negative (a smooth but aperiodic series never
//!   turns, so it has no period), kept only if `r(period) >= season_min_acf`. At least two
//!   cycles must be in memory. Cost: `O(memory * memory / 2)` per check, so
//!   `O(memory^2 / (2 RECHECK))` per value on average.
//! - **Seasonal expectation.** The candidates for value `t` are the remembered values at
//!   `t - k P + d` for every whole cycle `k` still in memory and every phase offset
//!   `|d| <= jitter = max(1, P / 100)`. The expectation is their median and the local scale
//!   their spread: the larger of `1.4826 * MAD` and `(q(1 - tail) - q(tail)) / (2 z(1 -
//!   tail))`, so a phase where earlier cycles disagree (a transition that comes a little
//!   early or late) is judged leniently and a phase where they agree strictly. A daily peak
//!   is not news; a missing peak, a peak at the wrong height or a flat stretch where the
//!   cycle moves is.
//! - **Level offset.** As with the level view's short median, the residual (value minus
//!   expectation) is also taken against the median of the last `shift_window` residuals,
//!   and the smaller of the two is kept: a shift of the whole cycle alarms once, then becomes
//!   the new normal.
//! - **Scale.** The larger of the local scale and `1.4826 * median(|residual|)` over the
//!   last `baseline_window` residuals, floored like the level view's scale.
//! - **Seen before.** The z-score of each of the last `baseline_window` residuals is kept
//!   (0 for one that was not judged, fewer than `min_residuals` before it, and for one whose
//!   value continued an event, [`Season::forget_last`]). If `k + 1` of them reached at least
//!   `1 / spike_ratio` of this residual's z on the same side, its surprise is at most
//!   `log10((n + 1) / (k + 1))` decades for `n` kept: twice is news, the third time has been
//!   seen before. In standard deviations, not in the series' units, so a spike off its phase
//!   among regular spikes is still news. The level view's rule differs in two ways: it looks
//!   at `memory_window` values, and counts the values judged normal in full (only the
//!   alarms count from the second on).

use std::collections::VecDeque;

use super::math::{median_sorted, with_scratch};

/// Values between two period searches.
pub(super) const RECHECK: usize = 128;

/// Seasonal state of one series: the period in force and the recent seasonal residuals.
#[derive(Debug, Clone)]
pub(super) struct Season {
    /// Period in values, when the memory shows one.
    period: Option<usize>,
    /// Values since the last period search.
    since_check: usize,
    /// The last `capacity` seasonal residuals (value minus the candidates' median), oldest
    /// first.
    residuals: VecDeque<f64>,
    /// The z-score of each residual in `residuals`, for "seen before": 0 for those not
    /// judged (fewer than `min_residuals` before them) and for an event's continuation
    /// ([`Season::forget_last`]).
    zs: VecDeque<f64>,
    /// Whether the last [`Season::judge`] recorded a residual.
    recorded: bool,
    /// Bound of `residuals` (the baseline window).
    capacity: usize,
    /// Minimum autocorrelation at the period.
    min_acf: f64,
}

/// What the seasonal view says about one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SeasonalJudgement {
    /// The value the earlier cycles (and the recent level offset) lead to expect.
    pub expected: f64,
    /// `(value - expected) / scale`.
    pub z: f64,
    /// The period in force.
    pub period: usize,
    /// "Seen before" for residuals: `log10((n + 1) / (k + 1))` when `k` of the last `n`
    /// residuals (all but one) reached `1 / spike_ratio` of this one on the same side;
    /// infinite when none did.
    pub cap: f64,
}

/// What a judgement needs besides the value and the memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    /// Residuals behind the recent offset (the detector's `shift_window`).
    pub shift_window: usize,
    /// Least scale (the level view's floor).
    pub floor: f64,
    /// Residuals seen before anything is judged (the detector's `warmup`).
    pub min_residuals: usize,
    /// The tail quantile and its normal z, e.g. `(0.1, 1.2816)`.
    pub tail: (f64, f64),
    /// "Seen before" counts residuals at least `1 / spike_ratio` of this one's z.
    pub spike_ratio: f64,
}

impl Season {
    pub(super) fn new(capacity: usize, min_acf: f64) -> Self {
        Season {
            period: None,
            since_check: RECHECK,
            residuals: VecDeque::new(),
            zs: VecDeque::new(),
            recorded: false,
            capacity,
            min_acf,
        }
    }

    /// The period in force, if any.
    pub(super) fn period(&self) -> Option<usize> {
        self.period
    }

    /// Re-runs the period search when it is due.
    pub(super) fn maybe_update_period(&mut self, memory: &VecDeque<f64>) {
        self.since_check += 1;
        if self.since_check < RECHECK {
            return;
        }
        self.since_check = 0;
        self.period = with_scratch(|buf| find_period(memory, self.min_acf, buf));
    }

    /// The same-phase candidates for the value after `memory` (see the module docs) into
    /// `out`; the period, or `None` without one.
    fn candidates(&self, memory: &VecDeque<f64>, out: &mut Vec<f64>) -> Option<usize> {
        let p = self.period?;
        let jitter = (p / 100).max(1);
        let len = memory.len();
        out.clear();
        let mut k = 1;
        while k * p + jitter <= len {
            let centre = len - k * p;
            let hi = (centre + jitter).min(len - 1);
            out.extend(memory.range(centre - jitter..=hi).copied());
            k += 1;
        }
        Some(p)
    }

    /// Judges `value` against earlier cycles and records its residual. `None` without a
    /// period or before `min_residuals` residuals have been seen.
    pub(super) fn judge(
        &mut self,
        value: f64,
        memory: &VecDeque<f64>,
        rules: Rules,
    ) -> Option<SeasonalJudgement> {
        self.recorded = false;
        let Rules {
            shift_window,
            floor,
            min_residuals,
            tail,
            spike_ratio,
        } = rules;
        let local = with_scratch(|cands| {
            let period = self.candidates(memory, cands);
            period.filter(|_| !cands.is_empty()).map(|p| {
                let centre = median_sorted(cands);
                let n = cands.len();
                let at = |q: f64| ((q * (n - 1) as f64).round() as usize).min(n - 1);
                let spread = (cands[at(1.0 - tail.0)] - cands[at(tail.0)]) / (2.0 * tail.1);
                for c in cands.iter_mut() {
                    *c = (*c - centre).abs();
                }
                (p, centre, spread.max(1.4826 * median_sorted(cands)))
            })
        });
        let (period, centre, local_scale) = local?;
        let raw = value - centre;
        let judgement = if self.residuals.len() >= min_residuals.max(2) {
            let scale = self.scale().max(local_scale).max(floor);
            let offset = self.recent_median(shift_window);
            let adjusted = raw - offset;
            let r = if adjusted.abs() < raw.abs() {
                adjusted
            } else {
                raw
            };
            let z = r / scale;
            let reach = z / spike_ratio;
            let as_extreme = self
                .zs
                .iter()
                .filter(|&&old| if z >= 0.0 { old >= reach } else { old <= reach })
                .count();
            let k = as_extreme.saturating_sub(1);
            let n = self.zs.len();
            let cap = if k > 0 {
                ((n as f64 + 1.0) / (k as f64 + 1.0)).log10()
            } else {
                f64::INFINITY
            };
            Some(SeasonalJudgement {
                expected: value - r,
                z,
                period,
                cap,
            })
        } else {
            None
        };
        self.residuals.push_back(raw);
        self.zs.push_back(judgement.map_or(0.0, |j| j.z));
        self.recorded = true;
        if self.residuals.len() > self.capacity {
            self.residuals.pop_front();
            self.zs.pop_front();
        }
        judgement
    }

    /// Leaves the residual the last [`Season::judge`] recorded (if it recorded one) out of
    /// "seen before": its value continued an event, and an event that has ended masks
    /// nothing (as in the level view, which leaves an event's aftermath out too).
    pub(super) fn forget_last(&mut self) {
        if self.recorded {
            if let Some(z) = self.zs.back_mut() {
                *z = 0.0;
            }
        }
    }

    /// `1.4826 * median(|residual|)`.
    fn scale(&self) -> f64 {
        with_scratch(|buf| {
            buf.extend(self.residuals.iter().map(|r| r.abs()));
            1.4826 * median_sorted(buf)
        })
    }

    /// Median of the last `n` residuals.
    fn recent_median(&self, n: usize) -> f64 {
        with_scratch(|buf| {
            buf.extend(self.residuals.iter().rev().take(n.max(1)));
            median_sorted(buf)
        })
    }
}

/// The period of `memory` by autocorrelation (see the module docs), or `None`.
fn find_period(memory: &VecDeque<f64>, min_acf: f64, buf: &mut Vec<f64>) -> Option<usize> {
    let n = memory.len();
    if n < 8 {
        return None;
    }
    let mean = memory.iter().sum::<f64>() / n as f64;
    buf.clear();
    buf.extend(memory.iter().map(|v| v - mean));
    let var: f64 = buf.iter().map(|v| v * v).sum();
    if var <= 0.0 || !var.is_finite() {
        return None;
    }
    let acf = |k: usize| {
        buf[..n - k]
            .iter()
            .zip(&buf[k..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / var
    };
    let mut crossed = false;
    let mut best: Option<(usize, f64)> = None;
    for k in 1..=n / 2 {
        let r = acf(k);
        if !crossed {
            crossed = r < 0.0;
            continue;
        }
        if best.is_none_or(|(_, b)| r > b) {
            best = Some((k, r));
        }
    }
    best.filter(|&(_, r)| r >= min_acf).map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        shift_window: 12,
        floor: 1e-9,
        min_residuals: 30,
        tail: (0.1, 1.2816),
        spike_ratio: 2.0,
    };

    #[test]
    fn finds_the_period_of_a_square_wave_and_none_in_a_ramp() {
        let wave: VecDeque<f64> = (0..1000)
            .map(|i| if i % 96 < 30 { 80.0 } else { 20.0 })
            .collect();
        assert_eq!(find_period(&wave, 0.5, &mut Vec::new()), Some(96));
        let ramp: VecDeque<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(find_period(&ramp, 0.5, &mut Vec::new()), None);
        let flat: VecDeque<f64> = std::iter::repeat_n(3.0, 500).collect();
        assert_eq!(find_period(&flat, 0.5, &mut Vec::new()), None);
    }

    /// Feeds `v` as the next value: the period search when due, then the judgement.
    fn feed(season: &mut Season, memory: &mut VecDeque<f64>, v: f64) -> Option<SeasonalJudgement> {
        season.maybe_update_period(memory);
        let j = season.judge(v, memory, RULES);
        memory.push_back(v);
        j
    }

    #[test]
    fn a_residual_is_news_twice_then_it_has_been_seen_before() {
        // A spike every 100 values (art_increase_spike_density): its own phase expects it.
        let base = |i: usize| {
            let noise = 0.1 * ((i * 7919) % 13) as f64;
            if i.is_multiple_of(100) {
                20.0 + noise
            } else {
                noise
            }
        };
        let mut memory = VecDeque::new();
        let mut season = Season::new(300, 0.5);
        for i in 0..1000 {
            feed(&mut season, &mut memory, base(i));
        }
        assert_eq!(season.period(), Some(100));
        // Off its phase a spike is news. The regular spikes' raw residuals are as large (the
        // phase's candidates hold each spike beside its quiet neighbours, median 0), but not
        // in standard deviations: that spread is wide, so each is about 2.5 of them.
        let mut caps = Vec::new();
        for i in 1000..1300 {
            let v = if i % 100 == 50 { 20.0 } else { base(i) };
            let j = feed(&mut season, &mut memory, v).expect("judged");
            if i % 100 == 0 {
                assert!(j.z.abs() < 5.0, "a regular spike: {j:?}");
            }
            if i % 100 == 50 {
                assert!(j.z > 10.0, "{j:?}");
                caps.push(j.cap);
            }
        }
        // The first and the second are not capped; the third has been seen before: two
        // earlier residuals reached half its z, and all but one count (k = 1, n = 300).
        assert_eq!(caps[0], f64::INFINITY, "{caps:?}");
        assert_eq!(caps[1], f64::INFINITY, "{caps:?}");
        assert!(
            (caps[2] - (301.0f64 / 2.0).log10()).abs() < 1e-9,
            "{caps:?}"
        );
    }

    #[test]
    fn a_missing_peak_is_a_large_residual() {
        let wave = |i: usize| if i % 96 < 30 { 80.0 } else { 20.0 };
        let mut memory: VecDeque<f64> = VecDeque::new();
        let mut season = Season::new(300, 0.5);
        let mut last = None;
        for i in 0..1000 {
            season.maybe_update_period(&memory);
            let v = wave(i) + 0.1 * ((i * 7919) % 13) as f64;
            last = season.judge(v, &memory, RULES);
            memory.push_back(v);
        }
        assert_eq!(season.period(), Some(96));
        assert!(last.is_some_and(|j| j.z.abs() < 5.0), "{last:?}");
        // At 1000 % 96 = 40 the wave is low; in the middle of the high phase (1066) stay low.
        for i in 1000..1066 {
            season.maybe_update_period(&memory);
            season.judge(wave(i), &memory, RULES);
            memory.push_back(wave(i));
        }
        let j = season.judge(20.0, &memory, RULES).unwrap();
        assert!(j.z < -10.0, "{j:?}");
        assert!((j.expected - 80.0).abs() < 2.0, "{j:?}");
    }
}
