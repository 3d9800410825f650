//! Exact quantiles of a small window: the values themselves, sorted.
//!
//! A window keeps its values (and their weights, when they differ) while it holds at most
//! [`EXACT_LIMIT`] = 256 of them, and answers quantiles exactly; the 257th value folds them
//! into the [`Sketch`](super::sketch::Sketch).
//!
//! # Why 256
//!
//! Memory. 256 values take 2 KiB (8 bytes each, one shared weight), the same order as the
//! sketch they stand in for: the sketch of a window of latencies over 1..1000 ms holds 384
//! bins in 1 572 heap bytes. With per-value weights (a sample rate changed inside the window)
//! a value takes 16 bytes, 4 KiB at the bound, as the sketch's `f64` weighted bins double too.
//! Growth is capped at the bound, so a small window never holds more than that.
//!
//! # Definition (equal weights): numpy's `linear`, Hyndman and Fan's type 7
//!
//! With the values sorted, `x_(0) <= ... <= x_(n-1)`, the `q`-quantile is found at the
//! virtual index `h = (n - 1) q`: with `j = floor(h)` and `g = h - j`, it is
//! `x_(j) + g (x_(j+1) - x_(j))` (and `x_(n-1)` at `q = 1`), computed as numpy's `_lerp` does
//! (from the upper neighbour when `g >= 0.5`), so it equals `numpy.quantile(x, q)` to the bit
//! (test `matches_numpy_bit_for_bit`, against numpy 2.4.6). Five samples 100, 200, 300, 400,
//! 500 give p99 = 496.
//!
//! # Definition (differing weights)
//!
//! Weights count relative to each other only. Normalise them to mean 1, `u_k = w_k n / W`
//! (`W` the total), and lay the sorted values end to end on a line of length `n`, value `k`
//! over `[U_(k-1), U_k]` with `U_k = u_0 + ... + u_k`. Value `k` is *held* over the inner part
//! of its stretch, `[U_(k-1) + c_k, U_k - c_k]` with `c_k = min(1/2, u_k / 2)` (a point at the
//! centre when `u_k <= 1`); between two held parts the quantile function is linear. The
//! `q`-quantile is its value at `t = a + q (b - a)`, where `a` and `b` are the first and last
//! held points. So:
//!
//! - with equal weights every `u_k = 1`, value `k` is held at the single point `k + 1/2`, and
//!   this is type 7 above (the equal-weight case is computed by the type 7 code itself);
//! - multiplying every weight by a constant changes nothing;
//! - a value with `u_k >= 1` behaves as `u_k` unit values would: it holds the quantile
//!   function for `u_k - 1` of the `n - 1` units (one value sampled at rate 0.1 among values
//!   kept at rate 1 is most of the window, as the ten events it stands for would be);
//! - `q = 0` and `q = 1` give the smallest and the largest value whatever their weights, as
//!   in type 7; a value of tiny weight is a point at its place on the line, so next to a heavy
//!   neighbour it still draws half a unit of the line towards itself (weights 1.5, 1.5, ~0 on
//!   1, 2, 3 give a median of 1.75, not 1.5);
//! - ties are ordered by weight, so the answer depends only on the multiset of pairs.

use std::cmp::Ordering;

use super::moments::pow2;
use super::sketch::{Sketch, SketchDecodeError};
use crate::encoding::Reader;

/// Largest number of values a window keeps, and answers quantiles of exactly: 256 values
/// take 2 KiB (8 bytes each; 16 with per-value weights), the order of the 1.5 KiB of the
/// sketch of a typical latency window that they stand in for.
pub const EXACT_LIMIT: usize = 256;

/// The values of a small window, sorted; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exact {
    /// Every value had the same weight.
    Uniform {
        /// The weight of each value (1 / sample rate); 1.0 while empty.
        unit_weight: f64,
        /// The values, ascending in `f64::total_cmp` order.
        values: Vec<f64>,
    },
    /// Values had different weights.
    Weighted {
        /// `(value, weight)`, ascending by value and then by weight.
        points: Vec<(f64, f64)>,
    },
}

impl Exact {
    /// No values.
    pub(crate) const fn new() -> Self {
        Exact::Uniform {
            unit_weight: 1.0,
            values: Vec::new(),
        }
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Exact::Uniform { values, .. } => values.len(),
            Exact::Weighted { points } => points.len(),
        }
    }

    /// Adds `v` (finite) with `weight` (finite, positive). The caller keeps the length
    /// within [`EXACT_LIMIT`].
    pub(crate) fn insert(&mut self, v: f64, weight: f64) {
        if let Exact::Uniform {
            unit_weight,
            values,
        } = self
        {
            if values.is_empty() {
                *unit_weight = weight;
            }
            if *unit_weight == weight {
                grow_for_one(values);
                let at = values.partition_point(|x| x.total_cmp(&v) != Ordering::Greater);
                values.insert(at, v);
                return;
            }
        }
        let points = self.make_weighted();
        grow_for_one(points);
        let at = points.partition_point(|p| cmp_points(p, &(v, weight)) != Ordering::Greater);
        points.insert(at, (v, weight));
    }

    /// Adds every value of `other`. The caller keeps the total within [`EXACT_LIMIT`].
    pub(crate) fn merge(&mut self, other: &Exact) {
        if other.len() == 0 {
            return;
        }
        if self.len() == 0 {
            *self = other.clone();
            return;
        }
        if let (
            Exact::Uniform {
                unit_weight,
                values,
            },
            Exact::Uniform {
                unit_weight: other_weight,
                values: other_values,
            },
        ) = (&mut *self, other)
        {
            if unit_weight == other_weight {
                reserve_total(values, other_values.len());
                values.extend_from_slice(other_values);
                values.sort_by(f64::total_cmp);
                return;
            }
        }
        let points = self.make_weighted();
        reserve_total(points, other.len());
        match other {
            Exact::Uniform {
                unit_weight,
                values,
            } => points.extend(values.iter().map(|&v| (v, *unit_weight))),
            Exact::Weighted { points: other } => points.extend_from_slice(other),
        }
        points.sort_by(cmp_points);
    }

    /// The `q`-quantile (module docs); `q` is clamped to `[0, 1]`, NaN counts as 0. `None`
    /// when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        match self {
            Exact::Uniform { values, .. } => linear(values, q),
            Exact::Weighted { points } => weighted_linear(points, q),
        }
    }

    /// Adds every value, with its weight, to `sketch`.
    pub(crate) fn add_to(&self, sketch: &mut Sketch) {
        match self {
            Exact::Uniform {
                unit_weight,
                values,
            } => values
                .iter()
                .for_each(|&v| sketch.add_weighted(v, *unit_weight)),
            Exact::Weighted { points } => {
                points.iter().for_each(|&(v, w)| sketch.add_weighted(v, w))
            }
        }
    }

    /// The sketch of the values.
    pub(crate) fn to_sketch(&self) -> Sketch {
        let mut sketch = Sketch::new();
        self.add_to(&mut sketch);
        sketch
    }

    /// Heap bytes allocated (capacity, not just length).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Exact::Uniform { values, .. } => values.capacity() * std::mem::size_of::<f64>(),
            Exact::Weighted { points } => points.capacity() * std::mem::size_of::<(f64, f64)>(),
        }
    }

    /// Whether every value has the same weight.
    pub(crate) fn is_uniform(&self) -> bool {
        matches!(self, Exact::Uniform { .. })
    }

    /// Appends the values: uniform, `f64 unit_weight` then each `f64 value`; weighted, each
    /// `f64 value, f64 weight`. The representation tag and the count are the caller's.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Exact::Uniform {
                unit_weight,
                values,
            } => {
                out.extend_from_slice(&unit_weight.to_le_bytes());
                values
                    .iter()
                    .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            Exact::Weighted { points } => {
                for (v, w) in points {
                    out.extend_from_slice(&v.to_le_bytes());
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    }

    /// Reads `count` values written by [`Exact::encode`] (`uniform` says which layout),
    /// checking that they are finite, sorted, with finite positive weights.
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        count: u64,
        uniform: bool,
    ) -> Result<Exact, SketchDecodeError> {
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= EXACT_LIMIT)
            .ok_or(SketchDecodeError::Invalid("too many exact values"))?;
        let weight_ok = |w: f64| w.is_finite() && w > 0.0;
        let exact = if uniform {
            let unit_weight = r.f64()?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                values.push(r.f64()?);
            }
            if !weight_ok(unit_weight) {
                return Err(SketchDecodeError::Invalid("unit weight"));
            }
            Exact::Uniform {
                unit_weight,
                values,
            }
        } else {
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                points.push((r.f64()?, r.f64()?));
            }
            if points.iter().any(|&(_, w)| !weight_ok(w)) {
                return Err(SketchDecodeError::Invalid("value weight"));
            }
            Exact::Weighted { points }
        };
        let sorted = match &exact {
            Exact::Uniform { values, .. } => {
                values.windows(2).all(|p| p[0].total_cmp(&p[1]).is_le())
            }
            Exact::Weighted { points } => {
                points.windows(2).all(|p| cmp_points(&p[0], &p[1]).is_le())
            }
        };
        if !sorted {
            return Err(SketchDecodeError::Invalid("exact values out of order"));
        }
        if exact.values().any(|v| !v.is_finite()) {
            return Err(SketchDecodeError::Invalid("non-finite exact value"));
        }
        Ok(exact)
    }

    /// The values, ascending.
    pub(crate) fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let (uniform, weighted) = match self {
            Exact::Uniform { values, .. } => (values.as_slice(), &[][..]),
            Exact::Weighted { points } => (&[][..], points.as_slice()),
        };
        uniform.iter().copied().chain(weighted.iter().map(|p| p.0))
    }

    /// Switches to per-value weights (no-op if already there) and returns them.
    fn make_weighted(&mut self) -> &mut Vec<(f64, f64)> {
        if let Exact::Uniform {
            unit_weight,
            values,
        } = self
        {
            let w = *unit_weight;
            let mut points = Vec::with_capacity(values.capacity());
            points.extend(values.iter().map(|&v| (v, w)));
            *self = Exact::Weighted { points };
        }
        match self {
            Exact::Weighted { points } => points,
            Exact::Uniform { .. } => unreachable!("made weighted above"),
        }
    }
}

/// Orders `(value, weight)` pairs by value, then weight (`total_cmp` on both).
fn cmp_points(a: &(f64, f64), b: &(f64, f64)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1))
}

/// Makes room for one more element, doubling up to [`EXACT_LIMIT`] and no further.
fn grow_for_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        let target = (v.capacity() * 2).clamp(4, EXACT_LIMIT.max(v.len() + 1));
        v.reserve_exact(target - v.len());
    }
}

/// Makes room for `extra` more elements without passing the larger of the total and
/// twice the current capacity, capped at [`EXACT_LIMIT`].
fn reserve_total<T>(v: &mut Vec<T>, extra: usize) {
    let total = v.len() + extra;
    if total > v.capacity() {
        let target = (v.capacity() * 2).clamp(total, EXACT_LIMIT.max(total));
        v.reserve_exact(target - v.len());
    }
}

/// numpy's `_lerp`: `a + (b - a) t`, from `b` when `t >= 0.5`. When `b - a` overflows (the
/// two lie on either side of 0 and near `f64::MAX`) the finite form `a (1 - t) + b t`.
pub(crate) fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if !d.is_finite() {
        return (a * (1.0 - t) + b * t).clamp(a.min(b), a.max(b));
    }
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Type 7 on sorted `values` (module docs); `q` in `[0, 1]`.
pub(crate) fn linear(values: &[f64], q: f64) -> Option<f64> {
    let last = values.len().checked_sub(1)?;
    let h = last as f64 * q;
    let j = h.floor();
    let lo = (j as usize).min(last);
    let hi = (lo + 1).min(last);
    Some(lerp(values[lo], values[hi], h - j))
}

/// The weighted definition (module docs) on sorted `points`; `q` in `[0, 1]`.
fn weighted_linear(points: &[(f64, f64)], q: f64) -> Option<f64> {
    let (&(first, _), &(last_value, _)) = (points.first()?, points.last()?);
    if points.len() == 1 {
        return Some(first);
    }
    // Bring the largest weight into [1, 4) by a power of two (exact), so the total is finite.
    let max_weight = points.iter().fold(0.0f64, |m, p| m.max(p.1));
    let down = pow2(-binary_exponent(max_weight).min(1022));
    let total: f64 = points.iter().map(|p| p.1 * down).sum();
    let unit = points.len() as f64 / total;
    let inner = |w: f64| (w * down * unit / 2.0).min(0.5);
    let end: f64 = points.iter().map(|p| p.1 * down * unit).sum();
    let start = inner(points[0].1);
    let stop = end - inner(points[points.len() - 1].1);
    let t = start + q * (stop - start);
    // Walk the stretches: (value, end of its held part) of the previous one, the cumulative U.
    let mut cumulative = 0.0;
    let mut previous: Option<(f64, f64)> = None;
    for &(v, w) in points {
        let c = inner(w);
        let held_from = cumulative + c;
        cumulative += w * down * unit;
        let held_to = cumulative - c;
        if let Some((pv, p_to)) = previous {
            if t < held_from {
                let span = held_from - p_to;
                let g = if span > 0.0 {
                    ((t - p_to) / span).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                return Some(lerp(pv, v, g));
            }
        }
        if t <= held_to {
            return Some(v);
        }
        previous = Some((v, held_to));
    }
    Some(last_value)
}

/// The binary exponent of a positive finite `x` (`floor(log2 x)`), within the normal range.
fn binary_exponent(x: f64) -> i32 {
    if x < f64::MIN_POSITIVE {
        return -1022;
    }
    (((x.to_bits() >> 52) & 0x7ff) as i32 - 1023).clamp(-1022, 1023)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(values: &[f64]) -> Exact {
        let mut e = Exact::new();
        values.iter().for_each(|&v| e.insert(v, 1.0));
        e
    }

    #[test]
    fn type_7_matches_numpy_on_known_cases() {
        // numpy.quantile(x, q) for these.
        let five = uniform(&[300.0, 100.0, 500.0, 200.0, 400.0]);
        assert_eq!(five.quantile(0.99), Some(496.0));
        assert_eq!(five.quantile(0.5), Some(300.0));
        assert_eq!(five.quantile(0.9), Some(460.0));
        assert_eq!(five.quantile(0.95), Some(480.0));
        assert_eq!(five.quantile(1.0), Some(500.0));
        assert_eq!(five.quantile(0.0), Some(100.0));
        let four = uniform(&[1.0, 3.0, 7.0, 15.0]);
        assert_eq!(four.quantile(0.5), Some(5.0));
        assert_eq!(four.quantile(0.25), Some(2.5));
        assert_eq!(uniform(&[1.0, 2.0]).quantile(0.3), Some(1.3));
        assert_eq!(Exact::new().quantile(0.5), None);
        assert_eq!(uniform(&[7.0]).quantile(0.42), Some(7.0));
    }

    #[test]
    fn matches_numpy_bit_for_bit() {
        // numpy 2.4.6: numpy.quantile(x, QS) for each x (default method "linear").
        const QS: [f64; 10] = [0.0, 0.01, 0.1, 1.0 / 3.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];
        let cases: [(Vec<f64>, [f64; 10]); 6] = [
            (
                vec![100.0, 200.0, 300.0, 400.0, 500.0],
                [
                    100.0,
                    104.0,
                    140.0,
                    233.33333333333331,
                    300.0,
                    460.0,
                    480.0,
                    496.0,
                    499.6,
                    500.0,
                ],
            ),
            (
                vec![1.0, 2.0],
                [
                    1.0,
                    1.01,
                    1.1,
                    1.3333333333333333,
                    1.5,
                    1.9,
                    1.95,
                    1.99,
                    1.999,
                    2.0,
                ],
            ),
            (
                vec![3.0, 1.0, 3.0, 3.0, 2.0, 1.0, 7.5],
                [
                    1.0,
                    1.0,
                    1.0,
                    2.0,
                    3.0,
                    4.800000000000002,
                    6.149999999999997,
                    7.229999999999998,
                    7.472999999999999,
                    7.5,
                ],
            ),
            (
                vec![-1e-3, 250.0, -7.25, 0.0, 1e6, 3.3, -42.0, 0.1],
                [
                    -42.0,
                    -39.5675,
                    -17.674999999999997,
                    -0.000666666666666667,
                    0.05,
                    300174.9999999998,
                    650087.4999999995,
                    930017.4999999998,
                    993001.7500000003,
                    1000000.0,
                ],
            ),
            (
                vec![1e-300, 1e300, -1e300, 5.0, 1e-10],
                [
                    -1e+300,
                    -9.600000000000001e+299,
                    -6e+299,
                    3.333333333333333e-11,
                    1e-10,
                    6.000000000000001e+299,
                    7.999999999999999e+299,
                    9.6e+299,
                    9.96e+299,
                    1e+300,
                ],
            ),
            (
                (0..256u32)
                    .map(|i| f64::from((i * 7919) % 1000) * 1.37 - 300.0)
                    .collect(),
                [
                    -300.0,
                    -289.5195,
                    -166.42499999999998,
                    164.43000000000006,
                    388.425,
                    930.945,
                    998.4175,
                    1049.9295,
                    1059.3619500000002,
                    1060.41,
                ],
            ),
        ];
        for (values, want) in cases {
            let e = uniform(&values);
            for (q, want) in QS.iter().zip(want) {
                assert_eq!(e.quantile(*q), Some(want), "q={q} of {values:?}");
            }
        }
    }

    #[test]
    fn lerp_is_finite_across_the_whole_range() {
        assert_eq!(lerp(-f64::MAX, f64::MAX, 0.5), 0.0);
        let x = lerp(-f64::MAX, f64::MAX, 0.99);
        assert!(x.is_finite() && x > 0.9 * f64::MAX);
        assert_eq!(lerp(5.0, 5.0, 0.7), 5.0);
    }

    #[test]
    fn a_heavy_value_holds_most_of_the_quantiles() {
        let mut e = Exact::new();
        for v in [100.0, 200.0, 300.0, 400.0, 500.0] {
            e.insert(v, 1.0);
        }
        e.insert(1000.0, 10.0);
        assert!(!e.is_uniform());
        assert_eq!(e.quantile(0.5), Some(1000.0));
        assert_eq!(e.quantile(0.0), Some(100.0));
        assert_eq!(e.quantile(1.0), Some(1000.0));
        let p10 = e.quantile(0.1).unwrap_or(f64::NAN);
        assert!(p10 > 200.0 && p10 < 300.0, "{p10}");
    }

    #[test]
    fn growth_stops_at_the_bound() {
        let mut e = Exact::new();
        for i in 0..EXACT_LIMIT {
            e.insert(i as f64, 1.0);
        }
        assert_eq!(e.heap_bytes(), EXACT_LIMIT * 8);
        let mut a = uniform(&vec![1.0; 200]);
        a.merge(&uniform(&[2.0; 56]));
        assert!(a.heap_bytes() <= EXACT_LIMIT * 8);
        a = uniform(&vec![1.0; 150]);
        a.insert(2.0, 3.0);
        a.merge(&uniform(&[2.0; 105]));
        assert_eq!(a.len(), EXACT_LIMIT);
        assert!(a.heap_bytes() <= EXACT_LIMIT * 16, "{}", a.heap_bytes());
    }
}
