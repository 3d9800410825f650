//! Peaks over threshold: how rare a value is by the shape of the series' own tail.
//!
//! The level view's normal surprise assumes a light tail: in a series of bursty counts, where
//! a burst twice as large as any remembered one is routine, it calls each such burst dozens
//! of decades of surprise. Extreme value theory says what to use instead (Pickands-Balkema-de
//! Haan): above a high threshold `t`, the excesses of almost any distribution follow a
//! generalised Pareto distribution, whose shape `xi` says how heavy the tail is (`xi > 0`:
//! polynomial, bursts of any size recur; `xi = 0`: exponential; `xi < 0`: bounded). The
//! probability of a deviation `x > t` is then `P(X > t) * S(x - t)`, which extrapolates
//! beyond the largest value remembered. This is the streaming detector SPOT's model (Siffer,
//! Fouque, Termier and Largouet, "Anomaly detection in streams with extreme value theory",
//! KDD 2017); the fit is by probability-weighted moments (Hosking and Wallis 1987), in closed
//! form, not by maximum likelihood.

use super::math::MAX_DECADES;

/// Fewest excesses a tail is fitted to: fewer say too little of its shape, and no cap
/// applies.
pub(super) const MIN_EXCESSES: usize = 10;

/// A generalised Pareto distribution of excesses over a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Gpd {
    /// Shape: `> 0` heavy tail, `0` exponential, `< 0` bounded by `scale / -shape`.
    pub(super) shape: f64,
    /// Scale (same unit as the excesses), `> 0`.
    pub(super) scale: f64,
}

/// Shapes beyond these are clamped: outside them the moments the fit rests on do not exist
/// (`xi >= 1`: no mean) or a handful of excesses is saying more than it can.
const SHAPE_RANGE: (f64, f64) = (-1.0, 0.9);

impl Gpd {
    /// Fits excesses (each `>= 0`; sorted here, ascending) by probability-weighted moments;
    /// `None` for fewer than [`MIN_EXCESSES`] or when they are all equal (no spread to fit).
    pub(super) fn fit(excesses: &mut [f64]) -> Option<Gpd> {
        let m = excesses.len();
        if m < MIN_EXCESSES {
            return None;
        }
        excesses.sort_unstable_by(|a, b| a.total_cmp(b));
        if excesses[0] == excesses[m - 1] {
            return None;
        }
        let n = m as f64;
        let a0 = excesses.iter().sum::<f64>() / n;
        // a1 = E[y (1 - F(y))], F by the plotting position (i - 0.35) / m
        let a1 = excesses
            .iter()
            .enumerate()
            .map(|(i, &y)| (1.0 - (i as f64 + 0.65) / n) * y)
            .sum::<f64>()
            / n;
        let denominator = a0 - 2.0 * a1;
        if a0 <= 0.0 || denominator <= 0.0 || !denominator.is_finite() {
            return None;
        }
        // Hosking and Wallis: k = a0 / (a0 - 2 a1) - 2, sigma = 2 a0 a1 / (a0 - 2 a1),
        // and xi = -k
        let shape = (2.0 - a0 / denominator).clamp(SHAPE_RANGE.0, SHAPE_RANGE.1);
        // the scale that keeps the fitted mean, a0 = sigma / (1 - xi), once xi is clamped
        let scale = a0 * (1.0 - shape);
        (scale > 0.0 && scale.is_finite()).then_some(Gpd { shape, scale })
    }

    /// `log10 P(Y > y)` for an excess `y >= 0` (`-inf` beyond a bounded tail's end).
    pub(super) fn log10_survival(&self, y: f64) -> f64 {
        let y = y.max(0.0);
        if self.shape.abs() < 1e-9 {
            return -y / self.scale / std::f64::consts::LN_10;
        }
        let base = 1.0 + self.shape * y / self.scale;
        if base <= 0.0 {
            f64::NEG_INFINITY
        } else {
            -base.log10() / self.shape
        }
    }
}

/// The surprise in decades of a deviation `x` (`> 0`, on one side of the median) by the
/// fitted tail of `deviations` (the remembered deviations on the same side, each `> 0`;
/// reordered here) among `n` remembered values: the `ceil(fraction * n)` largest are the
/// excesses. `None` when `x` is not beyond the threshold or the tail cannot be fitted: the
/// tail has nothing to say and no cap applies.
pub(super) fn tail_decades(deviations: &mut [f64], n: usize, x: f64, fraction: f64) -> Option<f64> {
    let m = (fraction * n as f64).ceil() as usize;
    if m < MIN_EXCESSES || deviations.len() <= m {
        return None;
    }
    // the threshold is the largest deviation below the m largest
    let cut = deviations.len() - m - 1;
    deviations.select_nth_unstable_by(cut, |a, b| a.total_cmp(b));
    let threshold = deviations[cut];
    if x <= threshold {
        return None;
    }
    let excesses = &mut deviations[cut + 1..];
    for e in excesses.iter_mut() {
        *e -= threshold;
    }
    let gpd = Gpd::fit(excesses)?;
    let log10_p = (m as f64 / (n as f64 + 1.0)).log10() + gpd.log10_survival(x - threshold);
    Some((-log10_p).clamp(0.0, MAX_DECADES))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic uniforms in (0, 1) (splitmix64), no extra dependency.
    fn uniforms(n: usize, mut state: u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            })
            .collect()
    }

    /// Draws from a generalised Pareto distribution by inverting its survival function.
    fn gpd_sample(shape: f64, scale: f64, n: usize) -> Vec<f64> {
        uniforms(n, 42)
            .into_iter()
            .map(|u| {
                if shape == 0.0 {
                    -scale * u.ln()
                } else {
                    scale * (u.powf(-shape) - 1.0) / shape
                }
            })
            .collect()
    }

    #[test]
    fn the_fit_recovers_the_shape_of_light_and_heavy_tails() {
        for (shape, scale) in [(0.0, 1.0), (0.5, 2.0), (-0.3, 1.0)] {
            let mut y = gpd_sample(shape, scale, 4_000);
            let fit = Gpd::fit(&mut y).unwrap();
            assert!((fit.shape - shape).abs() < 0.08, "{shape}: {fit:?}");
            assert!((fit.scale / scale - 1.0).abs() < 0.1, "{scale}: {fit:?}");
        }
    }

    #[test]
    fn too_few_or_equal_excesses_are_not_fitted() {
        assert_eq!(Gpd::fit(&mut [1.0; 5]), None);
        assert_eq!(Gpd::fit(&mut [0.0; 50]), None);
        assert_eq!(Gpd::fit(&mut [3.0; 50]), None);
    }

    #[test]
    fn a_bounded_tail_gives_no_probability_beyond_its_end() {
        let gpd = Gpd {
            shape: -0.5,
            scale: 1.0,
        };
        assert!(gpd.log10_survival(1.0).is_finite());
        assert_eq!(gpd.log10_survival(2.5), f64::NEG_INFINITY);
    }

    #[test]
    fn a_record_is_judged_by_the_tail_it_comes_from() {
        let n = 2_000;
        // exponential deviations against Pareto ones (shape 0.5), each with a record twice
        // the largest remembered: the fitted tail's surprise is within a third of the true
        // one (an extrapolation far beyond the data), and the heavy tail's record is
        // decades less news than the light one's
        let mut light = gpd_sample(0.0, 1.0, n);
        let mut heavy = gpd_sample(0.5, 1.0, n);
        let record = |d: &[f64]| 2.0 * d.iter().copied().fold(0.0, f64::max);
        let (x_light, x_heavy) = (record(&light), record(&heavy));
        let light_truth = x_light / std::f64::consts::LN_10;
        let heavy_truth = 2.0 * (1.0 + 0.5 * x_heavy).log10();
        let light_d = tail_decades(&mut light, n, x_light, 0.05).unwrap();
        let heavy_d = tail_decades(&mut heavy, n, x_heavy, 0.05).unwrap();
        for (d, truth) in [(light_d, light_truth), (heavy_d, heavy_truth)] {
            assert!((d - truth).abs() < truth / 3.0, "{d} against {truth}");
        }
        assert!(heavy_d < light_d - 2.0, "{light_d} {heavy_d}");
    }

    #[test]
    fn below_the_threshold_or_with_little_history_the_tail_says_nothing() {
        let mut d = gpd_sample(0.0, 1.0, 2_000);
        assert_eq!(tail_decades(&mut d.clone(), 2_000, 0.5, 0.05), None);
        assert_eq!(tail_decades(&mut d[..100], 100, 50.0, 0.05), None);
        assert!(tail_decades(&mut d, 2_000, 50.0, 0.05).is_some());
    }
}
