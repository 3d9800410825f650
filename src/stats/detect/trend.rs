//! Trends: a one-sided Mann-Kendall test on the last `trend_window` values (normal
//! approximation with the tie correction), `p < trend_alpha`, whose least-squares change over
//! the window is at least `anomaly_sigma` times the noise (robust scale of first differences
//! over `sqrt 2`). Reported once when the trend starts; the next report in the same direction
//! needs the test to have lost significance (`p >= 0.05`) first. Cost `O(trend_window^2 +
//! baseline_window log baseline_window)` per value.

use std::collections::vec_deque::Iter;

use statrs::function::erf::erfc;

use super::detector_settings::PatternKind;
use super::finding::{describe_trend, Evidence, Finding, View};
use super::math::{median_sorted, MAX_DECADES};

/// A trend is over (and may be reported again) once its test's p-value reaches this.
const TREND_RELEASE_P: f64 = 0.05;

/// Direction of the trend currently reported, for hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrendState {
    None,
    Up,
    Down,
}

/// Mann-Kendall `S` and its variance (with the tie correction) for `xs`.
fn mann_kendall(xs: &[f64], scratch: &mut Vec<f64>) -> (i64, f64) {
    let n = xs.len();
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
    scratch.clear();
    scratch.extend(xs.iter().copied());
    scratch.sort_unstable_by(|a, b| a.total_cmp(b));
    let mut ties = 0.0;
    let mut run = 1.0f64;
    for w in scratch.windows(2) {
        if w[0] == w[1] {
            run += 1.0;
        } else {
            ties += run * (run - 1.0) * (2.0 * run + 5.0);
            run = 1.0;
        }
    }
    ties += run * (run - 1.0) * (2.0 * run + 5.0);
    let nf = n as f64;
    (stat, (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0)
}

/// Noise level: robust scale of the first differences of `history`, over `sqrt 2` (a trend
/// shifts the differences but does not widen them).
fn noise(history: Iter<'_, f64>, level: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(history.clone().zip(history.skip(1)).map(|(a, b)| b - a));
    let dmed = median_sorted(scratch);
    for v in scratch.iter_mut() {
        *v = (*v - dmed).abs();
    }
    (1.4826 * median_sorted(scratch) / std::f64::consts::SQRT_2)
        .max(1e-9 * level.abs())
        .max(f64::MIN_POSITIVE.sqrt())
}

/// The trend test's inputs that come from the settings.
pub(super) struct TrendTest {
    pub window: usize,
    pub alpha: f64,
    pub min_history: usize,
    pub sigma: f64,
}

impl TrendTest {
    /// Runs the test on the end of `history`, updating the hysteresis `state`.
    pub(super) fn run(
        &self,
        history: Iter<'_, f64>,
        state: &mut TrendState,
        scratch: &mut Vec<f64>,
    ) -> Option<Finding> {
        let n = self.window;
        if n == 0 || history.len() < n.max(self.min_history) {
            return None;
        }
        let xs: Vec<f64> = history.clone().skip(history.len() - n).copied().collect();
        let (stat, var) = mann_kendall(&xs, scratch);
        if var <= 0.0 {
            *state = TrendState::None;
            return None;
        }
        let zs = match stat.signum() {
            1 => (stat as f64 - 1.0) / var.sqrt(),
            -1 => (stat as f64 + 1.0) / var.sqrt(),
            _ => 0.0,
        };
        let p = 0.5 * erfc(zs.abs() / std::f64::consts::SQRT_2);
        let direction = if zs > 0.0 {
            TrendState::Up
        } else {
            TrendState::Down
        };
        if p >= TREND_RELEASE_P || direction != *state {
            *state = TrendState::None;
        }
        if p >= self.alpha || *state == direction {
            return None;
        }
        // Effect size: least-squares change over the window against the noise.
        let nf = n as f64;
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
        let noise = noise(history, mean_x, scratch);
        if change.abs() < self.sigma * noise {
            return None;
        }
        *state = direction;
        let kind = if direction == TrendState::Up {
            PatternKind::TrendUp
        } else {
            PatternKind::TrendDown
        };
        Some(Finding {
            kind,
            confidence: (1.0 - p).clamp(0.0, 1.0),
            observed: xs[n - 1],
            baseline: mean_x - slope * mean_t,
            description: describe_trend(kind, mean_x - slope * mean_t, mean_x + slope * mean_t, n),
            evidence: Evidence {
                view: View::Trend,
                z: zs,
                // p underflows to 0 for a long clean trend: capped like every surprise
                surprise_decades: (-p.log10()).clamp(0.0, MAX_DECADES),
                likelihood_decades: 0.0,
                period: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn a_trend_too_clean_for_a_p_value_has_a_capped_surprise() {
        // 1,000 values rising without noise: p underflows to 0, -log10 p would be infinite
        // (written as JSON `null`, read back as nothing)
        let history: VecDeque<f64> = (0..1_000).map(f64::from).collect();
        let test = TrendTest {
            window: 1_000,
            alpha: 1e-3,
            min_history: 0,
            sigma: 3.0,
        };
        let f = test
            .run(history.iter(), &mut TrendState::None, &mut Vec::new())
            .expect("a trend");
        assert_eq!(f.kind, PatternKind::TrendUp);
        assert_eq!(f.evidence.surprise_decades, MAX_DECADES);
    }
}
