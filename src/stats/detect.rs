//! Pattern detection on one series: the maths, pure and synchronous.
//!
//! A [`SeriesDetector`] is fed one value at a time (a closed window's mean in the pipeline,
//! a CSV row's value in `eventbatch detect`) and answers with a [`Detection`]: a continuous
//! anomaly score in `[0, 1]` and the [`Finding`]s (spike, drop, anomaly, trend up, trend
//! down) that the value triggers. Cost per value is `O(baseline_window log baseline_window +
//! memory_window + trend_window^2)`; memory is `O(baseline_window + memory_window +
//! likelihood_window)` floats per series.
//!
//! # The anomaly score
//!
//! 1. **Robust point surprise.** The baseline is the median of the last `baseline_window`
//!    values. The scale is asymmetric: above the median it is the larger of `1.4826 * MAD`
//!    and `(q(1 - tail_quantile) - median) / z(1 - tail_quantile)` (below, the mirror
//!    image), floored at `relative_scale_floor * |median|`. The quantile term keeps
//!    multi-modal but normal behaviour (a daily square wave, a busy hour) from looking
//!    like outliers, the MAD keeps a few outliers from inflating the scale. The robust
//!    z-score is also computed against the median of only the last `shift_window` values
//!    (same scale), and the smaller of the two is kept: once a level shift has lasted
//!    `shift_window / 2` values the new level *is* the baseline, so a shift alarms once
//!    instead of until the long median catches up. Its two-sided normal tail probability
//!    `p` gives the point surprise in decades, `d = -log10 p`.
//! 2. **Seen before.** If at least one of the last `memory_window` values is as extreme as
//!    this one (on the same side of the median), `d` is capped at
//!    `log10((n + 1) / (k + 1))` for `k` such values out of `n`: a level the series has
//!    already visited (a daily peak, a recurring burst) is not news.
//! 3. **Anomaly likelihood** (after Numenta's post-processing for NAB): the mean of the
//!    last `smoothing_window` surprises is compared with the mean and standard deviation
//!    (floored at `likelihood_sd_floor`) of that same average over the previous
//!    `likelihood_window` values; its one-sided normal tail gives `l` decades. This
//!    calibrates the score per series: in a series that is always jumpy, large `d` are
//!    routine.
//! 4. `D = sqrt(d * l)` (both must be surprising) and `score = D / (D + score_half_decades)`,
//!    monotone in both surprises; `score = 0.5` when `D = score_half_decades`.
//! 5. **Alert hygiene.** No score and no finding before `warmup` values. When an alarm
//!    fires (score `>= alarm_score` and `|z| >= anomaly_sigma`), the scores of the next
//!    `cooldown` values are multiplied by `cooldown_factor` and no further spike, drop or
//!    anomaly is reported in that time: one finding per event.
//!
//! # Findings
//!
//! - [`PatternKind::Spike`]: an alarm with `observed > spike_ratio * baseline` (positive
//!   baseline); [`PatternKind::Drop`]: `observed < drop_ratio * baseline`;
//!   [`PatternKind::Anomaly`]: any other alarm. The ratio alone never alarms: a value must
//!   also be statistically surprising, so a baseline near zero does not make everything a
//!   spike. Confidence: the anomaly score.
//! - [`PatternKind::TrendUp`] / [`PatternKind::TrendDown`]: a one-sided Mann-Kendall test on
//!   the last `trend_window` values (normal approximation with the tie correction) with
//!   `p < trend_alpha`, whose least-squares change over the window is at least
//!   `anomaly_sigma` times the noise (robust scale of first differences over `sqrt 2`).
//!   Reported once when the trend starts; the next report in the same direction needs the
//!   test to have lost significance (`p >= 0.05`) first. Confidence: `1 - p`. Trends do not
//!   enter the anomaly score.
//!
//! # Non-finite input
//!
//! NaN and infinite values are ignored: they score 0, report nothing and leave the state
//! unchanged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

/// The kinds of pattern the detector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// The observation is far above the baseline (ratio and statistics agree).
    Spike,
    /// The observation is far below the baseline (ratio and statistics agree).
    Drop,
    /// The observation is statistically surprising without being a spike or drop by ratio.
    Anomaly,
    /// Recent observations rise significantly (Mann-Kendall).
    TrendUp,
    /// Recent observations fall significantly (Mann-Kendall).
    TrendDown,
}

impl PatternKind {
    /// All kinds, in a fixed order.
    pub const ALL: [PatternKind; 5] = [
        PatternKind::Spike,
        PatternKind::Drop,
        PatternKind::Anomaly,
        PatternKind::TrendUp,
        PatternKind::TrendDown,
    ];

    /// The name used in the store and on the command line (`spike`, `drop`, `anomaly`,
    /// `trend_up`, `trend_down`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PatternKind::Spike => "spike",
            PatternKind::Drop => "drop",
            PatternKind::Anomaly => "anomaly",
            PatternKind::TrendUp => "trend_up",
            PatternKind::TrendDown => "trend_down",
        }
    }

    /// Parses a name produced by [`PatternKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        PatternKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for PatternKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detector settings. Counts are in observations (closed windows or CSV rows). The
/// defaults were chosen on the NAB subset in `shared/data/nab` as a whole (no per-file
/// tuning) and sit on a plateau: changing any window by a third moves the NAB standard
/// score by about two points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorSettings {
    /// An alarm is a spike when `observed > spike_ratio * baseline` (> 1).
    pub spike_ratio: f64,
    /// An alarm is a drop when `observed < drop_ratio * baseline` (in `(0, 1)`).
    pub drop_ratio: f64,
    /// Minimum robust z-score `|observed - baseline| / scale` for a spike, drop or anomaly.
    pub anomaly_sigma: f64,
    /// Minimum anomaly score for a spike, drop or anomaly (in `(0, 1)`).
    pub alarm_score: f64,
    /// Values behind the baseline median and scale.
    pub baseline_window: usize,
    /// Values behind the short-term median: a level shift longer than half of this becomes
    /// the baseline.
    pub shift_window: usize,
    /// Values remembered for "seen before" (0 disables the cap).
    pub memory_window: usize,
    /// Quantile (each side) that bounds the normal spread of the baseline, in `(0, 0.5)`.
    pub tail_quantile: f64,
    /// Floor of the scale relative to `|median|`, so a flat series does not make every
    /// wiggle infinitely surprising.
    pub relative_scale_floor: f64,
    /// Surprises averaged before the likelihood test.
    pub smoothing_window: usize,
    /// Averages behind the likelihood test's mean and standard deviation.
    pub likelihood_window: usize,
    /// Floor of the likelihood test's standard deviation, in decades.
    pub likelihood_sd_floor: f64,
    /// Combined surprise (decades) at which the score is 0.5.
    pub score_half_decades: f64,
    /// Values seen before the first score or finding.
    pub warmup: usize,
    /// Values after an alarm during which scores are damped and no alarm is raised.
    pub cooldown: usize,
    /// Factor applied to scores during the cooldown, in `[0, 1]`.
    pub cooldown_factor: f64,
    /// Values in the Mann-Kendall trend test (0 disables trends; else at least 4).
    pub trend_window: usize,
    /// Significance level of the trend test, in `(0, 1)`.
    pub trend_alpha: f64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            spike_ratio: 2.0,
            drop_ratio: 0.5,
            anomaly_sigma: 3.0,
            alarm_score: 0.5,
            baseline_window: 300,
            shift_window: 12,
            memory_window: 2000,
            tail_quantile: 0.1,
            relative_scale_floor: 0.01,
            smoothing_window: 5,
            likelihood_window: 300,
            likelihood_sd_floor: 0.2,
            score_half_decades: 6.0,
            warmup: 30,
            cooldown: 100,
            cooldown_factor: 0.5,
            trend_window: 24,
            trend_alpha: 1e-3,
        }
    }
}

impl DetectorSettings {
    /// Checks every field; `Err((field, value))` names the first bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        fn check(
            ok: bool,
            field: &'static str,
            value: impl ToString,
        ) -> Result<(), (&'static str, String)> {
            if ok {
                Ok(())
            } else {
                Err((field, value.to_string()))
            }
        }
        let open01 = |v: f64| v > 0.0 && v < 1.0;
        check(
            self.spike_ratio > 1.0 && self.spike_ratio.is_finite(),
            "spike_ratio",
            self.spike_ratio,
        )?;
        check(open01(self.drop_ratio), "drop_ratio", self.drop_ratio)?;
        check(
            self.anomaly_sigma > 0.0 && self.anomaly_sigma.is_finite(),
            "anomaly_sigma",
            self.anomaly_sigma,
        )?;
        check(open01(self.alarm_score), "alarm_score", self.alarm_score)?;
        check(
            self.baseline_window >= 3,
            "baseline_window",
            self.baseline_window,
        )?;
        check(self.shift_window >= 1, "shift_window", self.shift_window)?;
        check(
            self.tail_quantile > 0.0 && self.tail_quantile < 0.5,
            "tail_quantile",
            self.tail_quantile,
        )?;
        check(
            self.relative_scale_floor >= 0.0 && self.relative_scale_floor.is_finite(),
            "relative_scale_floor",
            self.relative_scale_floor,
        )?;
        check(
            self.smoothing_window >= 1,
            "smoothing_window",
            self.smoothing_window,
        )?;
        check(
            self.likelihood_window >= 2,
            "likelihood_window",
            self.likelihood_window,
        )?;
        check(
            self.likelihood_sd_floor > 0.0 && self.likelihood_sd_floor.is_finite(),
            "likelihood_sd_floor",
            self.likelihood_sd_floor,
        )?;
        check(
            self.score_half_decades > 0.0 && self.score_half_decades.is_finite(),
            "score_half_decades",
            self.score_half_decades,
        )?;
        check(
            (0.0..=1.0).contains(&self.cooldown_factor),
            "cooldown_factor",
            self.cooldown_factor,
        )?;
        check(
            self.trend_window == 0 || self.trend_window >= 4,
            "trend_window",
            self.trend_window,
        )?;
        check(open01(self.trend_alpha), "trend_alpha", self.trend_alpha)?;
        Ok(())
    }
}

/// One pattern found on one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub kind: PatternKind,
    /// How sure the detector is, in `[0, 1]`: the anomaly score for spike, drop and
    /// anomaly; `1 - p` of the trend test for trends.
    pub confidence: f64,
    /// The value that triggered the finding (for trends, the latest value).
    pub observed: f64,
    /// What was expected: the baseline median (for trends, the value the fitted line had
    /// at the start of the trend window).
    pub baseline: f64,
    /// One human-readable line with the statistics behind the finding.
    pub description: String,
}

/// The detector's answer for one observation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    /// Anomaly score in `[0, 1]`, monotone in how surprising the value is (0 during warm-up
    /// and for non-finite input).
    pub score: f64,
    /// Patterns found on this observation (usually none).
    pub findings: Vec<Finding>,
}

/// `-log10 P(|Z| > |z|)` for a standard normal `Z`, accurate far into the tail.
fn two_sided_decades(z: f64) -> f64 {
    let u = z.abs() / std::f64::consts::SQRT_2;
    let p = erfc(u);
    let ln_p = if p > 1e-300 {
        p.ln()
    } else {
        // Asymptotic expansion of erfc for large u.
        -u * u - (u * std::f64::consts::PI.sqrt()).ln()
    };
    (-ln_p / std::f64::consts::LN_10).max(0.0)
}

/// `-log10 P(Z > z)` (one-sided), 0 for `z <= 0`.
fn one_sided_decades(z: f64) -> f64 {
    if z <= 0.0 {
        0.0
    } else {
        (two_sided_decades(z) + std::f64::consts::LOG10_2).max(0.0)
    }
}

/// Median of a slice, sorting it in place. The slice must not be empty.
fn median_sorted(buf: &mut [f64]) -> f64 {
    buf.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = buf.len();
    if n % 2 == 1 {
        buf[n / 2]
    } else {
        0.5 * (buf[n / 2 - 1] + buf[n / 2])
    }
}

/// Surprise values are capped here (decades) so scores stay finite and comparable.
const MAX_DECADES: f64 = 300.0;
/// A trend is over (and may be reported again) once its test's p-value reaches this.
const TREND_RELEASE_P: f64 = 0.05;

/// The baseline against which one value is judged.
struct Baseline {
    median: f64,
    /// Scale for values above the median.
    up: f64,
    /// Scale for values below the median.
    down: f64,
}

/// Direction of the trend currently reported, for hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrendState {
    None,
    Up,
    Down,
}

/// One series' detector: the history of recent values and the state for alert hygiene.
/// See the module docs for the statistics.
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    /// Validated settings (invalid values are replaced by the defaults, see [`Self::new`]).
    settings: DetectorSettings,
    /// `z` of the upper tail quantile, e.g. 1.2816 for 0.1.
    tail_z: f64,
    /// The last `baseline_window` finite values, oldest first.
    history: VecDeque<f64>,
    /// The last `memory_window` finite values, for the "seen before" cap.
    memory: VecDeque<f64>,
    /// The last `smoothing_window` point surprises (decades).
    surprises: VecDeque<f64>,
    /// The last `likelihood_window` smoothed surprises, with running sums.
    averages: VecDeque<f64>,
    /// Sum of `averages`.
    avg_sum: f64,
    /// Sum of squares of `averages`.
    avg_sumsq: f64,
    /// Observations left in the current cooldown.
    cooldown_left: usize,
    /// Trend currently reported.
    trend: TrendState,
    /// Reused buffer for sorting.
    scratch: Vec<f64>,
}

impl SeriesDetector {
    /// A detector with no history. Settings that fail [`DetectorSettings::validate`] are
    /// replaced by the defaults (with a warning): validate earlier to report them.
    pub fn new(settings: DetectorSettings) -> Self {
        let settings = match settings.validate() {
            Ok(()) => settings,
            Err((field, value)) => {
                log::warn!("invalid detector setting {field} = {value}; using the defaults");
                DetectorSettings::default()
            }
        };
        let tail_z = Normal::standard().inverse_cdf(1.0 - settings.tail_quantile);
        SeriesDetector {
            tail_z,
            history: VecDeque::with_capacity(settings.baseline_window + 1),
            memory: VecDeque::with_capacity(settings.memory_window + 1),
            surprises: VecDeque::with_capacity(settings.smoothing_window + 1),
            averages: VecDeque::with_capacity(settings.likelihood_window + 1),
            avg_sum: 0.0,
            avg_sumsq: 0.0,
            cooldown_left: 0,
            trend: TrendState::None,
            scratch: Vec::with_capacity(settings.baseline_window),
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// Number of finite values seen so far, up to `baseline_window`.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Median and asymmetric robust scale of the history (which must not be empty).
    fn baseline(&mut self) -> Baseline {
        let s = &self.settings;
        self.scratch.clear();
        self.scratch.extend(self.history.iter().copied());
        let median = median_sorted(&mut self.scratch);
        let n = self.scratch.len();
        let at = |q: f64| ((q * (n - 1) as f64).round() as usize).min(n - 1);
        let q_hi = self.scratch[at(1.0 - s.tail_quantile)];
        let q_lo = self.scratch[at(s.tail_quantile)];
        for v in self.scratch.iter_mut() {
            *v = (*v - median).abs();
        }
        let mad = median_sorted(&mut self.scratch);
        let floor = (1.4826 * mad)
            .max(s.relative_scale_floor * median.abs())
            .max(f64::MIN_POSITIVE.sqrt());
        Baseline {
            median,
            up: floor.max((q_hi - median) / self.tail_z),
            down: floor.max((median - q_lo) / self.tail_z),
        }
    }

    /// Median of the last `shift_window` values.
    fn recent_median(&mut self) -> f64 {
        self.scratch.clear();
        self.scratch.extend(
            self.history
                .iter()
                .rev()
                .take(self.settings.shift_window)
                .copied(),
        );
        median_sorted(&mut self.scratch)
    }

    /// Feeds the next value; see the module docs.
    pub fn observe(&mut self, value: f64) -> Detection {
        let mut detection = Detection::default();
        if !value.is_finite() {
            return detection;
        }
        if self.history.len() >= self.settings.warmup.max(2) {
            self.score(value, &mut detection);
        }
        self.push(value);
        if let Some(f) = self.trend_finding() {
            detection.findings.push(f);
        }
        detection
    }

    /// Scores `value` against the current state (before it joins the history).
    fn score(&mut self, value: f64, detection: &mut Detection) {
        let base = self.baseline();
        let z_of = |b: f64| {
            let scale = if value >= b { base.up } else { base.down };
            (value - b) / scale
        };
        let mut baseline = base.median;
        let mut z = z_of(baseline);
        let recent = self.recent_median();
        if z_of(recent).abs() < z.abs() {
            baseline = recent;
            z = z_of(recent);
        }
        let s = &self.settings;

        // Point surprise, capped when the memory holds values as extreme.
        let mut point = two_sided_decades(z).min(MAX_DECADES);
        if s.memory_window > 0 {
            let k = if value >= base.median {
                self.memory.iter().filter(|&&v| v >= value).count()
            } else {
                self.memory.iter().filter(|&&v| v <= value).count()
            };
            if k > 0 {
                let cap = ((self.memory.len() as f64 + 1.0) / (k as f64 + 1.0)).log10();
                point = point.min(cap);
            }
        }

        // Anomaly likelihood of the smoothed surprise.
        self.surprises.push_back(point);
        if self.surprises.len() > s.smoothing_window {
            self.surprises.pop_front();
        }
        let average = self.surprises.iter().sum::<f64>() / self.surprises.len() as f64;
        let n = self.averages.len() as f64;
        let likelihood = if n >= 2.0 {
            let mean = self.avg_sum / n;
            let var = ((self.avg_sumsq - self.avg_sum * mean) / (n - 1.0)).max(0.0);
            let sd = var.sqrt().max(s.likelihood_sd_floor);
            one_sided_decades((average - mean) / sd).min(MAX_DECADES)
        } else {
            0.0
        };
        self.averages.push_back(average);
        self.avg_sum += average;
        self.avg_sumsq += average * average;
        if self.averages.len() > s.likelihood_window {
            if let Some(old) = self.averages.pop_front() {
                self.avg_sum -= old;
                self.avg_sumsq -= old * old;
            }
        }

        let combined = (point * likelihood).sqrt();
        let mut score = combined / (combined + s.score_half_decades);
        // Also turns -0.0 and NaN into 0.
        score = if score > 0.0 { score.min(1.0) } else { 0.0 };

        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            score *= s.cooldown_factor;
        } else if score >= s.alarm_score && z.abs() >= s.anomaly_sigma {
            self.cooldown_left = s.cooldown;
            let kind = if baseline > 0.0 && value > s.spike_ratio * baseline {
                PatternKind::Spike
            } else if baseline > 0.0 && value < s.drop_ratio * baseline {
                PatternKind::Drop
            } else {
                PatternKind::Anomaly
            };
            detection.findings.push(Finding {
                kind,
                confidence: score,
                observed: value,
                baseline,
                description: format!(
                    "{} {} against baseline {}: robust z {z:.1}, surprise \
                     {point:.1} decades, likelihood {likelihood:.1} decades",
                    kind.as_str(),
                    short(value),
                    short(baseline)
                ),
            });
        }
        detection.score = score;
    }

    /// Appends a finite value to the history and the memory.
    fn push(&mut self, value: f64) {
        self.history.push_back(value);
        if self.history.len() > self.settings.baseline_window {
            self.history.pop_front();
        }
        if self.settings.memory_window > 0 {
            self.memory.push_back(value);
            if self.memory.len() > self.settings.memory_window {
                self.memory.pop_front();
            }
        }
    }

    /// Mann-Kendall test on the last `trend_window` values, with hysteresis.
    fn trend_finding(&mut self) -> Option<Finding> {
        let s = &self.settings;
        let n = s.trend_window;
        if n == 0 || self.history.len() < n.max(s.warmup) {
            return None;
        }
        let xs: Vec<f64> = self
            .history
            .iter()
            .skip(self.history.len() - n)
            .copied()
            .collect();
        let mut stat = 0i64;
        for i in 0..n {
            for j in i + 1..n {
                stat += match xs[j].partial_cmp(&xs[i]) {
                    Some(std::cmp::Ordering::Greater) => 1,
                    Some(std::cmp::Ordering::Less) => -1,
                    _ => 0,
                };
            }
        }
        // Variance with the tie correction.
        self.scratch.clear();
        self.scratch.extend(xs.iter().copied());
        self.scratch.sort_unstable_by(|a, b| a.total_cmp(b));
        let mut ties = 0.0;
        let mut run = 1.0f64;
        for w in self.scratch.windows(2) {
            if w[0] == w[1] {
                run += 1.0;
            } else {
                ties += run * (run - 1.0) * (2.0 * run + 5.0);
                run = 1.0;
            }
        }
        ties += run * (run - 1.0) * (2.0 * run + 5.0);
        let nf = n as f64;
        let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
        if var <= 0.0 {
            self.trend = TrendState::None;
            return None;
        }
        let zs = if stat > 0 {
            (stat as f64 - 1.0) / var.sqrt()
        } else if stat < 0 {
            (stat as f64 + 1.0) / var.sqrt()
        } else {
            0.0
        };
        let p = 0.5 * erfc(zs.abs() / std::f64::consts::SQRT_2);
        let direction = if zs > 0.0 {
            TrendState::Up
        } else {
            TrendState::Down
        };
        if p >= TREND_RELEASE_P || direction != self.trend {
            self.trend = TrendState::None;
        }
        if p >= s.trend_alpha || self.trend == direction {
            return None;
        }
        // Effect size: least-squares change over the window against the noise.
        let mean_t = (nf - 1.0) / 2.0;
        let mean_x = xs.iter().sum::<f64>() / nf;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, &x) in xs.iter().enumerate() {
            let dt = i as f64 - mean_t;
            sxy += dt * (x - mean_x);
            sxx += dt * dt;
        }
        let slope = sxy / sxx;
        let change = slope * (nf - 1.0);
        // Noise: robust scale of the first differences over the whole history, over sqrt 2
        // (a trend shifts the differences but does not widen them).
        self.scratch.clear();
        self.scratch.extend(
            self.history
                .iter()
                .zip(self.history.iter().skip(1))
                .map(|(a, b)| b - a),
        );
        let dmed = median_sorted(&mut self.scratch);
        for v in self.scratch.iter_mut() {
            *v = (*v - dmed).abs();
        }
        let noise = (1.4826 * median_sorted(&mut self.scratch) / std::f64::consts::SQRT_2)
            .max(1e-9 * mean_x.abs())
            .max(f64::MIN_POSITIVE.sqrt());
        if change.abs() < s.anomaly_sigma * noise {
            return None;
        }
        self.trend = direction;
        let kind = if direction == TrendState::Up {
            PatternKind::TrendUp
        } else {
            PatternKind::TrendDown
        };
        let start = mean_x - slope * mean_t;
        Some(Finding {
            kind,
            confidence: (1.0 - p).clamp(0.0, 1.0),
            observed: xs[n - 1],
            baseline: start,
            description: format!(
                "{} over the last {n} values: Mann-Kendall S {stat}, p {p:.2e}, change {} \
                 ({:.1} x noise)",
                kind.as_str(),
                short(change),
                change.abs() / noise
            ),
        })
    }
}

/// A number for a sentence: four significant digits.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard normal noise (xorshift + Box-Muller), no extra dependency.
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn run(values: impl IntoIterator<Item = f64>) -> Vec<Detection> {
        let mut d = SeriesDetector::new(DetectorSettings::default());
        values.into_iter().map(|v| d.observe(v)).collect()
    }

    fn kinds(ds: &[Detection]) -> Vec<(usize, PatternKind)> {
        ds.iter()
            .enumerate()
            .flat_map(|(i, d)| d.findings.iter().map(move |f| (i, f.kind)))
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for k in PatternKind::ALL {
            assert_eq!(PatternKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(PatternKind::parse("Spike"), None);
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(DetectorSettings::default().validate(), Ok(()));
        let bad = DetectorSettings {
            anomaly_sigma: f64::NAN,
            ..DetectorSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "anomaly_sigma");
        let bad = DetectorSettings {
            baseline_window: 0,
            ..DetectorSettings::default()
        };
        assert_eq!(bad.validate(), Err(("baseline_window", "0".to_string())));
        let bad = DetectorSettings {
            drop_ratio: 1.5,
            ..DetectorSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "drop_ratio");
        let parsed: DetectorSettings = serde_json::from_str(r#"{"cooldown": 7}"#).unwrap();
        assert_eq!(parsed.cooldown, 7);
        assert!(serde_json::from_str::<DetectorSettings>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn constant_series_raises_nothing() {
        for level in [0.0, 5.0, -3.0, 1e9] {
            let ds = run(std::iter::repeat_n(level, 2000));
            assert!(kinds(&ds).is_empty(), "level {level}");
            assert!(ds.iter().all(|d| d.score == 0.0), "level {level}");
        }
    }

    #[test]
    fn steady_noise_raises_nothing_after_warmup() {
        for seed in 1..=5u64 {
            let mut noise = Noise(0x9E37_79B9_7F4A_7C15 ^ seed);
            let ds = run((0..5000).map(|_| 100.0 + 5.0 * noise.normal()));
            let found = kinds(&ds);
            assert!(found.is_empty(), "seed {seed}: {found:?}");
            assert!(ds.iter().all(|d| d.score < 0.5));
        }
    }

    #[test]
    fn single_spike_is_one_spike() {
        let mut noise = Noise(42);
        let mut values: Vec<f64> = (0..1000).map(|_| 100.0 + 2.0 * noise.normal()).collect();
        values[600] = 400.0;
        let ds = run(values);
        let found: Vec<_> = kinds(&ds)
            .into_iter()
            .filter(|(_, k)| !matches!(k, PatternKind::TrendUp | PatternKind::TrendDown))
            .collect();
        assert_eq!(found, vec![(600, PatternKind::Spike)]);
        let f = &ds[600].findings[0];
        assert!(f.confidence >= 0.5 && f.confidence <= 1.0);
        assert!((f.baseline - 100.0).abs() < 2.0);
        assert_eq!(f.observed, 400.0);
        // The spike is the most surprising row, by far.
        let max_other = ds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 600)
            .map(|(_, d)| d.score)
            .fold(0.0, f64::max);
        assert!(
            ds[600].score > max_other + 0.2,
            "{} vs {max_other}",
            ds[600].score
        );
    }

    #[test]
    fn drop_is_a_drop_and_near_zero_baseline_is_not_a_spike() {
        let mut noise = Noise(7);
        let mut values: Vec<f64> = (0..800).map(|_| 50.0 + noise.normal()).collect();
        values[500] = 5.0;
        assert_eq!(kinds(&run(values)), vec![(500, PatternKind::Drop)]);
        // Baseline near zero with noise: tripling is ordinary, nothing is reported.
        let mut noise = Noise(8);
        let ds = run((0..2000).map(|_| (0.01 + 0.01 * noise.normal()).abs()));
        assert!(kinds(&ds).is_empty(), "{:?}", kinds(&ds));
    }

    #[test]
    fn level_shift_alarms_once_then_adapts() {
        let mut noise = Noise(3);
        let values: Vec<f64> = (0..2000)
            .map(|i| if i < 800 { 10.0 } else { 30.0 } + noise.normal())
            .collect();
        let ds = run(values);
        let found: Vec<_> = kinds(&ds)
            .into_iter()
            .filter(|(_, k)| !matches!(k, PatternKind::TrendUp | PatternKind::TrendDown))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0 >= 800 && found[0].0 < 805, "{found:?}");
        // 30 is three times 10: by ratio, the shift starts with a spike.
        assert_eq!(found[0].1, PatternKind::Spike);
        assert!(ds[850..].iter().all(|d| d.score < 0.5));
    }

    #[test]
    fn linear_ramp_is_a_trend_up_with_p_value_confidence() {
        let mut noise = Noise(11);
        let values: Vec<f64> = (0..400)
            .map(|i| 100.0 + if i < 200 { 0.0 } else { (i - 200) as f64 } + 0.5 * noise.normal())
            .collect();
        let ds = run(values);
        let trends: Vec<_> = ds
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.findings.iter().map(move |f| (i, f)))
            .filter(|(_, f)| matches!(f.kind, PatternKind::TrendUp | PatternKind::TrendDown))
            .collect();
        assert_eq!(trends.len(), 1, "{trends:?}");
        let (i, f) = trends[0];
        assert_eq!(f.kind, PatternKind::TrendUp);
        assert!((200..230).contains(&i), "found at {i}");
        assert!(f.confidence > 0.999 && f.confidence <= 1.0);
        assert!(f.description.contains("Mann-Kendall"));
        // A falling ramp is a TrendDown.
        let ds = run((0..300).map(|i| 1000.0 - if i < 100 { 0.0 } else { (i - 100) as f64 }));
        let down: Vec<_> = kinds(&ds)
            .into_iter()
            .filter(|(_, k)| *k == PatternKind::TrendDown)
            .collect();
        assert_eq!(down.len(), 1, "{down:?}");
    }

    #[test]
    fn non_finite_input_is_ignored() {
        let mut d = SeriesDetector::new(DetectorSettings::default());
        for i in 0..500 {
            let v = match i % 50 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => 10.0 + (i % 3) as f64,
            };
            let det = d.observe(v);
            if !v.is_finite() {
                assert_eq!(det, Detection::default());
            }
            assert!((0.0..=1.0).contains(&det.score));
        }
        assert_eq!(d.history_len(), 300);
    }

    #[test]
    fn invalid_settings_fall_back_to_defaults() {
        let d = SeriesDetector::new(DetectorSettings {
            likelihood_window: 0,
            ..DetectorSettings::default()
        });
        assert_eq!(d.settings(), &DetectorSettings::default());
    }

    proptest::proptest! {
        #[test]
        fn score_is_always_in_unit_interval(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    -1e12f64..1e12,
                    proptest::num::f64::ANY,
                    proptest::strategy::Just(0.0),
                ],
                0..400,
            )
        ) {
            let mut d = SeriesDetector::new(DetectorSettings { warmup: 3, ..DetectorSettings::default() });
            for v in values {
                let det = d.observe(v);
                proptest::prop_assert!((0.0..=1.0).contains(&det.score), "{}", det.score);
                for f in det.findings {
                    proptest::prop_assert!((0.0..=1.0).contains(&f.confidence));
                }
            }
        }
    }
}
