//! The statistics of one metric series in one time window, mergeable exactly.
//!
//! [`WindowState`] keeps exact count, weighted count, sum, min and max, Welford's running
//! mean and sum of squared deviations, and a [`Sketch`] for quantiles. Two states of the
//! same window (from another instance, or a window already written plus late events)
//! merge with Chan et al.'s parallel formula, so merging the parts of a value set gives
//! the state of the whole: count, weighted count (for integer weights), min, max and the
//! sketch exactly, sum, mean and variance up to floating-point rounding.
//!
//! [`WindowState::to_bytes`] is what the `sketch` column stores, so that a window read
//! back from the store can be merged exactly:
//!
//! ```text
//! u8      version = 1
//! varint  count (u64, LEB128)
//! f64 x6  weighted_count, sum, min, max, mean, m2 (little-endian)
//! ...     the sketch, in the format of crate::stats::sketch, to the end
//! ```
//!
//! Measured: a window of 100 000 log-uniform latencies over 1..1000 ms takes 1 572 heap
//! bytes (384 `u32` bins plus growth slack) plus 160 bytes inline
//! (`size_of::<WindowState>()`), and serialises to 847 bytes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::sketch::{Reader, Sketch, SketchDecodeError, DEFAULT_RELATIVE_ACCURACY};

/// Version byte written first by [`WindowState::to_bytes`].
const FORMAT_VERSION: u8 = 1;

/// Why a byte string is not a valid serialised [`WindowState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WindowDecodeError {
    /// The version byte is not one this code reads.
    #[error("unsupported window format version {0}")]
    UnsupportedVersion(u8),
    /// A field has an impossible value; the message names it.
    #[error("invalid window blob: {0}")]
    Invalid(&'static str),
    /// The bytes are truncated, or the embedded sketch is malformed.
    #[error("malformed window blob: {0}")]
    Format(#[from] SketchDecodeError),
}

/// The state of one metric series in one time window.
///
/// Values are assumed validated by the caller: finite, and with `|v|` below ~1e150 so
/// that sums and squared deviations stay within `f64` (beyond that the sum, mean or
/// variance can overflow; count, min, max and quantiles cannot). A NaN or infinite
/// value, or a weight that is not finite and positive, is ignored rather than allowed to
/// poison the window.
///
/// ```
/// # use eventbatch::stats::window::WindowState;
/// let mut w = WindowState::new();
/// for v in [12.0, 15.0, 250.0] {
///     w.observe(v, 10.0); // sampled at rate 0.1
/// }
/// assert_eq!(w.count(), 3);
/// assert_eq!(w.weighted_count(), 30.0);
/// assert_eq!(w.max(), 250.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WindowState {
    /// Values observed (after sampling): the exact `count` column, and the `n` of the
    /// mean and the variance.
    count: u64,
    /// Sum of the weights (1 / sample rate): the number of events corrected for
    /// sampling, the `estimated_count` column.
    weighted_count: f64,
    /// Sum of the observed values (unweighted, like the mean).
    sum: f64,
    /// Smallest observed value (0 while empty); exact, and clamps the sketch estimates.
    min: f64,
    /// Largest observed value (0 while empty); exact, and clamps the sketch estimates.
    max: f64,
    /// Welford running mean of the observed values. Unweighted: sampling keeps each event
    /// with the same probability within a series, so the observed values are an unbiased
    /// sample and their mean and variance estimate those of all events.
    mean: f64,
    /// Welford sum of squared deviations from `mean`; variance = `m2 / (count - 1)`.
    /// Kept instead of a sum of squares, which loses precision when the mean is large.
    m2: f64,
    /// Weighted DDSketch of the values, for quantiles within 1% relative error.
    sketch: Sketch,
}

/// The aggregates of a window as plain data, the numbers written to a `metric_windows` row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Values observed.
    pub count: u64,
    /// Events corrected for sampling (sum of 1 / sample rate).
    pub estimated_count: f64,
    /// Sum of the observed values.
    pub sum: f64,
    /// Smallest observed value.
    pub min: f64,
    /// Largest observed value.
    pub max: f64,
    /// Mean of the observed values.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for fewer than two values.
    pub stddev: f64,
    /// Median estimate (weighted, within 1% relative).
    pub p50: f64,
    /// 90th percentile estimate.
    pub p90: f64,
    /// 95th percentile estimate.
    pub p95: f64,
    /// 99th percentile estimate.
    pub p99: f64,
}

impl Default for WindowState {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowState {
    /// An empty window.
    pub fn new() -> Self {
        WindowState {
            count: 0,
            weighted_count: 0.0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            m2: 0.0,
            sketch: Sketch::new(),
        }
    }

    /// Records `value` observed with `weight` (1 / sample rate; 1.0 when not sampled).
    /// Ignored if `value` is not finite or `weight` is not finite and positive.
    pub fn observe(&mut self, value: f64, weight: f64) {
        if !value.is_finite() || !weight.is_finite() || weight <= 0.0 {
            return;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.weighted_count += weight;
        self.sum += value;
        // Welford: update the mean, then m2 with the deviations before and after.
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        self.sketch.add_weighted(value, weight);
    }

    /// Folds `other` (the same series and window, seen elsewhere) into `self`, with
    /// Chan et al.'s parallel update for the mean and `m2`.
    pub fn merge(&mut self, other: &WindowState) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        self.count += other.count;
        self.weighted_count += other.weighted_count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        // Cannot fail: every WindowState sketch has DEFAULT_RELATIVE_ACCURACY (new() and
        // from_bytes() ensure it).
        let merged = self.sketch.merge(&other.sketch);
        debug_assert!(
            merged.is_ok(),
            "window sketches share one relative accuracy"
        );
    }

    /// Values observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Events corrected for sampling: the sum of the weights.
    pub fn weighted_count(&self) -> f64 {
        self.weighted_count
    }

    /// Sum of the observed values (0 when empty).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest observed value (0 when empty).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Largest observed value (0 when empty).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Mean of the observed values (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample variance (n - 1); 0 for fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).max(0.0)
        }
    }

    /// Sample standard deviation (n - 1); 0 for fewer than two values.
    pub fn stddev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The weighted `q`-quantile estimate, within 1% relative error of the exact order
    /// statistic (rank convention in [`crate::stats::sketch`]) and clamped into
    /// `[min, max]`. `q` is clamped to `[0, 1]` (NaN counts as 0); 0 for an empty window.
    pub fn quantile(&self, q: f64) -> f64 {
        match self.sketch.quantile(q) {
            Some(v) if self.count > 0 => v.clamp(self.min, self.max),
            _ => 0.0,
        }
    }

    /// The sketch, for callers that need more than [`WindowState::quantile`].
    pub fn sketch(&self) -> &Sketch {
        &self.sketch
    }

    /// Bytes this window holds on the heap (the sketch's bins); the rest of the state is
    /// `size_of::<WindowState>()` inline.
    pub fn heap_bytes(&self) -> usize {
        self.sketch.heap_bytes()
    }

    /// The aggregates as plain data; every float is 0 for an empty window.
    pub fn summary(&self) -> WindowSummary {
        WindowSummary {
            count: self.count,
            estimated_count: self.weighted_count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: self.mean,
            stddev: self.stddev(),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }

    /// Serialises the whole state (format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let sketch = self.sketch.to_bytes();
        let mut out = Vec::with_capacity(1 + 10 + 6 * 8 + sketch.len());
        out.push(FORMAT_VERSION);
        super::sketch::put_varint(&mut out, self.count);
        for x in [
            self.weighted_count,
            self.sum,
            self.min,
            self.max,
            self.mean,
            self.m2,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&sketch);
        out
    }

    /// Reads a state written by [`WindowState::to_bytes`]. Any byte string gives either a
    /// valid state or an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<WindowState, WindowDecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.byte()?;
        if version != FORMAT_VERSION {
            return Err(WindowDecodeError::UnsupportedVersion(version));
        }
        let count = r.varint()?;
        let mut fields = [0.0; 6];
        for x in &mut fields {
            *x = r.f64()?;
        }
        let [weighted_count, sum, min, max, mean, m2] = fields;
        let sketch = Sketch::decode(&mut r)?;
        r.finish()?;

        if sketch.relative_accuracy() != DEFAULT_RELATIVE_ACCURACY {
            return Err(WindowDecodeError::Invalid("sketch relative accuracy"));
        }
        if sketch.observations() != count {
            return Err(WindowDecodeError::Invalid(
                "count does not match the sketch",
            ));
        }
        if count == 0 {
            if fields.iter().any(|&x| x != 0.0) {
                return Err(WindowDecodeError::Invalid(
                    "empty window with nonzero fields",
                ));
            }
        } else if fields.iter().any(|x| !x.is_finite()) {
            return Err(WindowDecodeError::Invalid("non-finite field"));
        } else if weighted_count <= 0.0 || min > max || m2 < 0.0 {
            return Err(WindowDecodeError::Invalid("inconsistent aggregates"));
        }
        Ok(WindowState {
            count,
            weighted_count,
            sum,
            min,
            max,
            mean,
            m2,
            sketch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use statrs::statistics::Statistics;

    /// The documented relative error bound of quantiles.
    const BOUND: f64 = 0.01;

    /// p1 .. p99.9, plus the ends.
    const QS: [f64; 13] = [
        0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0,
    ];

    fn window_of(values: &[f64], weight: f64) -> WindowState {
        let mut w = WindowState::new();
        for &v in values {
            w.observe(v, weight);
        }
        w
    }

    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    /// The order statistic at rank floor(q (n - 1)), the sketch's convention.
    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    /// Relative error of `est` against `exact` (0 when both are 0).
    fn rel_err(est: f64, exact: f64) -> f64 {
        if est == exact {
            0.0
        } else {
            (est - exact).abs() / exact.abs()
        }
    }

    /// `a` and `b` agree within `1e-9` relative to `scale`.
    fn near(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-9 * scale.max(a.abs()).max(b.abs()).max(f64::MIN_POSITIVE)
    }

    /// A deterministic stream of log-uniform values over `lo..hi` (xorshift64*).
    fn log_uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let u =
                    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                lo * (hi / lo).powf(u)
            })
            .collect()
    }

    #[test]
    fn empty_window_is_all_zero() {
        let w = WindowState::new();
        let s = w.summary();
        assert_eq!(s.count, 0);
        for x in [
            s.estimated_count,
            s.sum,
            s.min,
            s.max,
            s.mean,
            s.stddev,
            s.p50,
            s.p90,
            s.p95,
            s.p99,
        ] {
            assert_eq!(x, 0.0);
        }
        assert_eq!(w.quantile(0.5), 0.0);
        assert_eq!(WindowState::from_bytes(&w.to_bytes()), Ok(w));
    }

    #[test]
    fn single_value_is_exact_after_clamping() {
        let w = window_of(&[123.456], 1.0);
        let s = w.summary();
        assert_eq!(
            (s.count, s.min, s.max, s.mean, s.stddev),
            (1, 123.456, 123.456, 123.456, 0.0)
        );
        // Clamped into [min, max] = one point: the quantiles are exact.
        assert_eq!((s.p50, s.p99), (123.456, 123.456));
        assert_eq!(w.quantile(f64::NAN), 123.456);
    }

    #[test]
    fn zeros_negatives_and_mixed_signs() {
        let w = window_of(&[0.0, 0.0, 0.0], 1.0);
        assert_eq!((w.quantile(0.5), w.stddev(), w.mean()), (0.0, 0.0, 0.0));

        let values = [-50.0, -5.0, 0.0, 5.0, 50.0];
        let w = window_of(&values, 1.0);
        assert_eq!((w.min(), w.max(), w.sum()), (-50.0, 50.0, 0.0));
        assert!(near(w.mean(), 0.0, 50.0));
        for q in QS {
            let exact = exact_quantile(&values, q);
            assert!(rel_err(w.quantile(q), exact) <= BOUND, "q={q}");
        }
        assert!(near(w.stddev(), values.iter().std_dev(), 1.0));
    }

    #[test]
    fn one_huge_one_tiny_value() {
        // Squares of |v| up to ~1e150 stay finite, so the variance does too.
        let w = window_of(&[1e-150, 1e150], 1.0);
        assert!(rel_err(w.quantile(0.0), 1e-150) <= BOUND);
        assert!(rel_err(w.quantile(1.0), 1e150) <= BOUND);
        assert_eq!((w.min(), w.max()), (1e-150, 1e150));
        assert!(near(w.mean(), 5e149, 0.0));
        assert!(near(w.stddev(), 1e150 / 2f64.sqrt(), 0.0));
    }

    #[test]
    fn invalid_input_is_ignored() {
        let mut w = window_of(&[1.0, 2.0], 1.0);
        let before = w.clone();
        w.observe(f64::NAN, 1.0);
        w.observe(f64::INFINITY, 1.0);
        w.observe(3.0, 0.0);
        w.observe(3.0, -2.0);
        w.observe(3.0, f64::NAN);
        assert_eq!(w, before);
    }

    #[test]
    fn weights_scale_the_estimated_count_only() {
        let values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let plain = window_of(&values, 1.0);
        let sampled = window_of(&values, 4.0);
        assert_eq!(sampled.weighted_count(), 32.0);
        assert_eq!(sampled.count(), 8);
        assert_eq!(sampled.mean(), plain.mean());
        assert_eq!(sampled.stddev(), plain.stddev());
        for q in QS {
            assert_eq!(sampled.quantile(q), plain.quantile(q));
        }
    }

    #[test]
    fn mixed_weights_weight_the_quantiles() {
        let mut w = WindowState::new();
        w.observe(10.0, 1.0);
        w.observe(1000.0, 9.0); // one kept event standing for nine
        assert_eq!(w.weighted_count(), 10.0);
        assert!(!w.sketch().is_uniform());
        // Rank 0.5 * 10 * (1/2) = 2.5: past the weight 1 of 10.0.
        assert!(rel_err(w.quantile(0.5), 1000.0) <= BOUND);
        assert_eq!(w.quantile(0.0), 10.0);
        assert_eq!(WindowState::from_bytes(&w.to_bytes()), Ok(w));
    }

    #[test]
    fn merge_with_empty_either_way() {
        let a = window_of(&[1.0, 2.0, 3.0], 2.0);
        let mut left = a.clone();
        left.merge(&WindowState::new());
        assert_eq!(left, a);
        let mut right = WindowState::new();
        right.merge(&a);
        assert_eq!(right, a);
    }

    #[test]
    fn decode_rejects_truncated_and_garbage_bytes() {
        let w = window_of(&[1.0, 20.0, 300.0], 1.0);
        let bytes = w.to_bytes();
        for len in 0..bytes.len() {
            assert!(
                WindowState::from_bytes(&bytes[..len]).is_err(),
                "prefix {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(7);
        assert!(WindowState::from_bytes(&longer).is_err());
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(
            WindowState::from_bytes(&bad),
            Err(WindowDecodeError::UnsupportedVersion(2))
        );
        // A count that disagrees with the sketch.
        let mut bad = bytes.clone();
        bad[1] = 4;
        assert_eq!(
            WindowState::from_bytes(&bad),
            Err(WindowDecodeError::Invalid(
                "count does not match the sketch"
            ))
        );
        assert!(WindowState::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn sketch_of_another_accuracy_is_rejected() {
        let mut other = Sketch::with_relative_accuracy(0.02).unwrap_or_default();
        other.add(1.0);
        let mut bytes = vec![FORMAT_VERSION, 1];
        for x in [1.0f64, 1.0, 1.0, 1.0, 1.0, 0.0] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.extend_from_slice(&other.to_bytes());
        assert_eq!(
            WindowState::from_bytes(&bytes),
            Err(WindowDecodeError::Invalid("sketch relative accuracy"))
        );
    }

    #[test]
    fn latency_window_fits_in_two_kib() {
        let values = log_uniform(100_000, 1.0, 1000.0, 0x5eed);
        let w = window_of(&values, 1.0);
        let bytes = w.to_bytes();
        println!(
            "100k log-uniform 1..1000 ms: heap_bytes = {}, size_of::<WindowState>() = {}, \
             serialised = {} bytes",
            w.heap_bytes(),
            std::mem::size_of::<WindowState>(),
            bytes.len()
        );
        assert!(w.heap_bytes() < 2048, "heap_bytes = {}", w.heap_bytes());
        assert!(bytes.len() < 2048, "serialised = {}", bytes.len());
        assert_eq!(WindowState::from_bytes(&bytes).as_ref(), Ok(&w));
        let sketch_bytes = w.sketch().to_bytes().len();
        println!(
            "  of which sketch = {sketch_bytes} bytes, {} observations",
            w.count()
        );
    }

    #[test]
    fn max_relative_error_over_many_quantiles() {
        let mut worst: f64 = 0.0;
        for (seed, (lo, hi)) in [(1.0, 1000.0), (1e-3, 1e4), (0.5, 2.0), (1e-9, 1e9)]
            .into_iter()
            .enumerate()
        {
            let values = log_uniform(50_000, lo, hi, seed as u64 + 11);
            let mut s = Sketch::new();
            for &v in &values {
                s.add(v);
            }
            let sorted = sorted(&values);
            for i in 0..=1000 {
                let q = f64::from(i) / 1000.0;
                let est = s.quantile(q).unwrap_or(f64::NAN);
                worst = worst.max(rel_err(est, exact_quantile(&sorted, q)));
            }
        }
        println!("max relative quantile error (unclamped sketch): {worst:.6}");
        assert!(worst <= DEFAULT_RELATIVE_ACCURACY * (1.0 + 1e-9));
    }

    /// Values for property tests: log-uniform over 1..1e4 (skewed), its negatives, zeros,
    /// small integers (many ties) and a wide log-uniform range.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => (0.0f64..4.0).prop_map(|e| 10f64.powf(e)),
            1 => (0.0f64..4.0).prop_map(|e| -(10f64.powf(e))),
            1 => Just(0.0),
            1 => (0u32..20).prop_map(f64::from),
            1 => (-20.0f64..20.0).prop_map(|e| 10f64.powf(e)),
        ]
    }

    /// Weights as 1 / sample rate: integers, and rates like 0.3 that give fractions.
    fn weight() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(1.0),
            Just(2.0),
            Just(10.0),
            Just(1.0 / 0.3),
            1.0f64..50.0
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn merge_of_parts_equals_whole(
            values in prop::collection::vec((value(), 0usize..5), 0..600),
            weight in prop_oneof![Just(1.0), Just(4.0), Just(100.0)],
        ) {
            let all: Vec<f64> = values.iter().map(|(v, _)| *v).collect();
            let whole = window_of(&all, weight);
            let mut parts = vec![WindowState::new(); 5];
            for (v, part) in &values {
                parts[*part].observe(*v, weight);
            }
            let mut merged = WindowState::new();
            for part in &parts {
                merged.merge(part);
            }
            let scale = all.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let abs_sum: f64 = all.iter().map(|v| v.abs()).sum();
            prop_assert_eq!(merged.count(), whole.count());
            prop_assert_eq!(merged.weighted_count(), whole.weighted_count());
            prop_assert_eq!(merged.min(), whole.min());
            prop_assert_eq!(merged.max(), whole.max());
            prop_assert!(near(merged.sum(), whole.sum(), abs_sum));
            prop_assert!(near(merged.mean(), whole.mean(), scale));
            prop_assert!(near(merged.stddev(), whole.stddev(), scale),
                "{} vs {}", merged.stddev(), whole.stddev());
            for q in QS {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
            prop_assert_eq!(merged.sketch(), whole.sketch());
        }

        #[test]
        fn quantiles_within_one_percent(values in prop::collection::vec(value(), 1..3000)) {
            let w = window_of(&values, 1.0);
            let sorted = sorted(&values);
            for q in QS {
                let (est, exact) = (w.quantile(q), exact_quantile(&sorted, q));
                prop_assert!(rel_err(est, exact) <= BOUND, "q={} est={} exact={}", q, est, exact);
            }
        }

        #[test]
        fn uniform_weight_scales_count_not_quantiles(
            values in prop::collection::vec(value(), 1..500),
            weight in weight(),
        ) {
            let plain = window_of(&values, 1.0);
            let sampled = window_of(&values, weight);
            let n = values.len() as f64;
            prop_assert!(near(sampled.weighted_count(), weight * n, 0.0));
            prop_assert!(sampled.sketch().is_uniform());
            for q in QS {
                prop_assert_eq!(sampled.quantile(q), plain.quantile(q));
            }
        }

        #[test]
        fn mixed_weights_match_the_weighted_order_statistic(
            pairs in prop::collection::vec((value(), weight()), 1..800),
        ) {
            let mut w = WindowState::new();
            for (v, wt) in &pairs {
                w.observe(*v, *wt);
            }
            let mut sorted = pairs.clone();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total: f64 = sorted.iter().map(|p| p.1).sum();
            let n = sorted.len() as f64;
            prop_assert!(near(w.weighted_count(), total, 0.0));
            for q in QS {
                // Smallest k with C_k > r, r = q W (n-1)/n. The sketch sums the weights in
                // another order, so a rank within rounding of a C_k may land on either side.
                let r = q * total * (n - 1.0) / n;
                let slack = 1e-9 * total;
                let first_above = |t: f64| {
                    let mut c = 0.0;
                    sorted.iter().position(|p| { c += p.1; c > t }).unwrap_or(sorted.len() - 1)
                };
                let (lo, hi) = (first_above(r - slack), first_above(r + slack));
                let est = w.quantile(q);
                prop_assert!(
                    sorted[lo..=hi].iter().any(|p| rel_err(est, p.0) <= BOUND),
                    "q={} est={} exact={}", q, est, sorted[lo].0
                );
            }
        }

        #[test]
        fn round_trip_is_exact(pairs in prop::collection::vec((value(), weight()), 0..300)) {
            let mut w = WindowState::new();
            for (v, wt) in &pairs {
                w.observe(*v, *wt);
            }
            prop_assert_eq!(WindowState::from_bytes(&w.to_bytes()), Ok(w));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = WindowState::from_bytes(&bytes);
        }

        #[test]
        fn decode_of_mutated_blob_never_panics(
            values in prop::collection::vec(value(), 1..50),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = window_of(&values, 1.0).to_bytes();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(w) = WindowState::from_bytes(&bytes) {
                let s = w.summary();
                prop_assert!(!s.p50.is_nan() && !s.p99.is_nan());
            }
        }

        #[test]
        fn mean_and_stddev_agree_with_statrs(values in prop::collection::vec(value(), 2..1000)) {
            let w = window_of(&values, 1.0);
            let scale = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            prop_assert!(near(w.mean(), values.iter().mean(), scale));
            prop_assert!(near(w.stddev(), values.iter().std_dev(), scale),
                "{} vs {}", w.stddev(), values.iter().std_dev());
        }
    }
}
