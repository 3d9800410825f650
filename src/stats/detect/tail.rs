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

/// Fewest excesses a tail is fitted to: fewer say too little of its shape (the estimate's
/// standard error is about `1.15 / sqrt(m)` near shape 0), and no cap applies. With the
/// default `memory_window` and `evt_fraction` 0.05 the cap begins once 1,000 values that
/// raised no alarm are remembered.
pub(super) const MIN_EXCESSES: usize = 50;

/// A generalised Pareto distribution of excesses over a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Gpd {
    /// Shape: `> 0` heavy tail, `0` exponential, `< 0` bounded by `scale / -shape`.
    pub(super) shape: f64,
    /// Scale (same unit as the excesses), `> 0`.
    pub(super) scale: f64,
}

/// Shapes beyond these are clamped: outside them the moments the fit rests on do not exist
/// (`xi >= 1`: no mean) or a handful of excesses is saying more than it can. Above 0.5 the
/// estimate's variance is no longer finite: there it is rough.
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

/// The one-sided surprise in decades of a deviation `x` (`> 0`, on one side of the median)
/// by the fitted tail of `deviations` (the remembered deviations on the same side, each
/// `> 0`; reordered here) among `n` remembered values (both sides): the threshold `t` is the
/// deviation below the `ceil(fraction * n)` largest, and the excesses are the deviations
/// strictly above it (a tie at the threshold, as integer counts make, is not an excess of
/// size zero), `P(X > t)` their count over `n + 1`.
///
/// `None`, and no cap, when `x` is not beyond the threshold, when fewer than
/// [`MIN_EXCESSES`] excesses remain, or when the fitted tail is not heavy (shape `<= 0`: as
/// light as an exponential or lighter, which the normal surprise describes near enough).
/// Both guards keep plain noise from being capped: a shape fitted to a few dozen excesses
/// of normal noise is often above 0, and with 10 excesses an 8-sd outlier 500 values into a
/// series was missed in 12 seeds of 100, against 1 of 100 without the tail and with it as
/// now (the test `in_plain_noise_the_fitted_tail_masks_no_outlier` in `detect/mod.rs`).
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
    let above = &mut deviations[cut + 1..];
    let mut excesses = 0;
    for i in 0..above.len() {
        if above[i] > threshold {
            above[excesses] = above[i] - threshold;
            excesses += 1;
        }
    }
    let gpd = Gpd::fit(&mut above[..excesses])?;
    if gpd.shape <= 0.0 {
        return None;
    }
    let log10_p = (excesses as f64 / (n as f64 + 1.0)).log10() + gpd.log10_survival(x - threshold);
    Some((-log10_p).clamp(0.0, MAX_DECADES))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Deterministic uniforms in (0, 1) (splitmix64), no extra dependency; the detector's
    /// tests draw from them too.
    pub(in crate::stats::detect) fn uniforms(n: usize, mut state: u64) -> Vec<f64> {
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
        gpd_sample_seeded(shape, scale, n, 42)
    }

    /// [`gpd_sample`] with a seed of one's own.
    fn gpd_sample_seeded(shape: f64, scale: f64, n: usize, seed: u64) -> Vec<f64> {
        uniforms(n, seed)
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
    fn a_record_in_a_heavy_tail_is_decades_less_news_and_a_light_tail_is_rarely_capped() {
        let n = 2_000;
        let record = |d: &[f64]| 2.0 * d.iter().copied().fold(0.0, f64::max);
        let (mut heavy_errors, mut heavy_over, mut light_capped, mut light_least) =
            (Vec::new(), f64::MIN, 0, f64::MAX);
        for seed in 0..50 {
            // Pareto deviations (shape 0.5) with a record twice the largest remembered: about
            // four decades of news
            let mut heavy = gpd_sample_seeded(0.5, 1.0, n, seed);
            let x = record(&heavy);
            let truth = 2.0 * (1.0 + 0.5 * x).log10();
            let d = tail_decades(&mut heavy, n, x, 0.05).expect("a heavy tail is fitted");
            heavy_errors.push((d - truth).abs());
            heavy_over = heavy_over.max(d - truth);
            // exponential deviations, the same record: about seven decades, and capped only
            // when the fit strays above shape 0
            let mut light = gpd_sample_seeded(0.0, 1.0, n, seed);
            let x = record(&light);
            if let Some(d) = tail_decades(&mut light, n, x, 0.05) {
                light_capped += 1;
                light_least = light_least.min(d);
            }
        }
        heavy_errors.sort_by(f64::total_cmp);
        // measured with these seeds: median error 0.41 decades, at most 1.59 too much news;
        // the light tail capped in 24 of 50 (the fitted shape is above 0 about half the
        // time), never below 4.48 decades
        assert!(heavy_errors[25] < 0.6, "{heavy_errors:?}");
        assert!(heavy_over < 2.0, "{heavy_over}");
        assert!(light_capped <= 30, "{light_capped}");
        assert!(light_least > 4.0, "{light_least}");
    }

    #[test]
    fn below_the_threshold_with_little_history_or_in_a_light_tail_the_tail_says_nothing() {
        let mut heavy = gpd_sample(0.5, 1.0, 2_000);
        assert_eq!(tail_decades(&mut heavy.clone(), 2_000, 0.5, 0.05), None);
        assert_eq!(tail_decades(&mut heavy[..100], 100, 500.0, 0.05), None);
        assert!(tail_decades(&mut heavy, 2_000, 500.0, 0.05).is_some());
        // a bounded tail (uniform deviations): no cap however far out
        let mut bounded = gpd_sample(-1.0, 1.0, 2_000);
        assert_eq!(tail_decades(&mut bounded, 2_000, 5.0, 0.05), None);
        // integer counts: ties at the threshold are not excesses of size zero
        let mut ties: Vec<f64> = (0..2_000).map(|i| [1.0, 1.0, 2.0, 3.0][i % 4]).collect();
        assert_eq!(tail_decades(&mut ties, 2_000, 9.0, 0.05), None);
    }
}
