//! Count, min, max, sum, mean and variance of a window's values: finite for every finite input.
//!
//! # The maths
//!
//! The mean and the sum of squared deviations `m2` follow Welford's update for one value and
//! Chan et al.'s parallel formula for a merge, as before. What is new is the unit they are
//! kept in: the sum and `m2` are held in units of `2^e` and `2^(2e)`, where the *scale
//! exponent* `e` is the smallest non-negative integer with `max |v| * 2^-e < 2^448`
//! ([`SAFE_EXP`]). Every difference, square and product of the updates is then computed on
//! scaled values, `v * 2^-e`, and stays finite:
//!
//! - a scaled value is below `2^448`, a difference of two below `2^449`, its square below
//!   `2^898`; summed over at most `2^64` values, `m2` stays below `2^962`;
//! - the scaled sum stays below `2^448 * 2^64 = 2^512`.
//!
//! For values below `2^448` (about `7.3e134`: every latency, size or count a user sends)
//! `e = 0` and the arithmetic is operation for operation the one used before this module
//! existed, so results on ordinary data are bit for bit unchanged. When a larger value arrives,
//! `e` rises and the scaled sum and `m2` are multiplied by a power of two, which is exact
//! (except for contributions below `2^-1022` of the new unit, i.e. more than 2^-1470 times
//! smaller than the largest value: far below the rounding of the sum itself).
//!
//! The mean is kept in real units (it lies between min and max, so it cannot overflow) and is
//! clamped into `[min, max]` when read.
//!
//! # What the results are
//!
//! - `sum`: the sum to rounding; **saturated at `±f64::MAX`** when the true sum lies beyond
//!   (e.g. `2 x 1e308`). The sum is kept unsaturated in scaled units, so later values of the
//!   other sign bring it back exactly (`1e308 + 1e308 - 1e308` is `1e308`).
//! - `mean`: always finite.
//! - `variance`: saturated at `f64::MAX` (reached when the standard deviation passes
//!   ~1.34e154); `stddev` is computed from the scaled `m2` directly and saturates at
//!   `f64::MAX` only when the true sample standard deviation exceeds it (possible: `f64::MAX`
//!   and `-f64::MAX` have a sample standard deviation of `sqrt(2) * f64::MAX`).
//!
//! Alternatives weighed: a running sum clamped at `±f64::MAX` gives `f64::MAX - 1e308`
//! (~8e307) for `1e308, 1e308, -1e308` instead of `1e308`; `mean * count` changes the sum of
//! ordinary data in its last bits, which stored windows are compared on. Scaling keeps both
//! right, at the cost of one multiplication by a power of two per value.

/// Scaled values stay below `2^SAFE_EXP`; see the module docs for why 448 leaves room.
pub(crate) const SAFE_EXP: i32 = 448;

/// `2^SAFE_EXP`: values below it need no scaling.
const SAFE_LIMIT: f64 = f64::from_bits(((SAFE_EXP + 1023) as u64) << 52);

/// The largest scale exponent a finite value can need (`f64::MAX < 2^1024`).
pub(crate) const MAX_SCALE: i32 = 1024 - SAFE_EXP;

/// Moments of the observed values (unweighted), with `sum` and `m2` in scaled units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Moments {
    /// Values observed: the `n` of the mean and the variance.
    count: u64,
    /// Smallest value (0 while empty).
    min: f64,
    /// Largest value (0 while empty).
    max: f64,
    /// Welford running mean, in real units (not clamped; clamped when read).
    mean: f64,
    /// Sum of squared deviations from the mean, in units of `2^(2 scale)`.
    m2: f64,
    /// Sum of the values, in units of `2^scale`; never saturated.
    sum: f64,
    /// The scale exponent `e` (module docs): `0` unless some `|v| >= 2^SAFE_EXP`.
    scale: i32,
}

impl Moments {
    /// No values.
    pub(crate) const fn new() -> Self {
        Moments {
            count: 0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            m2: 0.0,
            sum: 0.0,
            scale: 0,
        }
    }

    /// Rebuilds moments from stored fields (`sum` and `m2` in units of `2^scale`), raising
    /// the scale if the values need it (blobs of format 1 are stored with scale 0).
    /// `None` if the fields are impossible.
    pub(crate) fn from_parts(
        count: u64,
        [min, max, mean, sum, m2]: [f64; 5],
        scale: i32,
    ) -> Option<Moments> {
        let fields = [min, max, mean, sum, m2];
        if !(0..=MAX_SCALE).contains(&scale) || fields.iter().any(|x| !x.is_finite()) {
            return None;
        }
        if count == 0 {
            return (scale == 0 && fields.iter().all(|&x| x == 0.0)).then(Moments::new);
        }
        if min > max || m2 < 0.0 {
            return None;
        }
        let mut m = Moments {
            count,
            min,
            max,
            mean,
            m2,
            sum,
            scale,
        };
        m.raise_scale(scale_for(min.abs().max(max.abs())));
        Some(m)
    }

    /// The stored fields: `[min, max, mean, sum, m2]` (raw, the last two scaled) and the scale.
    pub(crate) fn parts(&self) -> ([f64; 5], i32) {
        (
            [self.min, self.max, self.mean, self.sum, self.m2],
            self.scale,
        )
    }

    /// Records `v`, which must be finite.
    pub(crate) fn observe(&mut self, v: f64) {
        debug_assert!(v.is_finite());
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count = self.count.saturating_add(1);
        if self.scale == 0 && v.abs() < SAFE_LIMIT {
            // Scale 0, the usual case: the unscaled update, without the multiplications by 1.
            self.sum += v;
            let delta = v - self.mean;
            self.mean += delta / self.count as f64;
            self.m2 += delta * (v - self.mean);
            return;
        }
        self.raise_scale(scale_for(v.abs()));
        let (down, up) = (pow2(-self.scale), pow2(self.scale));
        let scaled = v * down;
        self.sum += scaled;
        // Welford: update the mean, then m2 with the deviations before and after.
        // (the mean is updated in scaled units: adding a real-unit step to a real-unit mean
        // can overflow on the way although both ends lie within [min, max])
        let delta = scaled - self.mean * down;
        self.mean = saturate((self.mean * down + delta / self.count as f64) * up);
        self.m2 += delta * (scaled - self.mean * down);
    }

    /// Folds `other` into `self` with Chan et al.'s parallel update, at the larger scale.
    pub(crate) fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let mut other = other.clone();
        let scale = self.scale.max(other.scale);
        self.raise_scale(scale);
        other.raise_scale(scale);
        let (down, up) = (pow2(-scale), pow2(scale));
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean * down - self.mean * down;
        self.mean = saturate((self.mean * down + delta * (nb / n)) * up);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values observed.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value (0 when empty).
    pub(crate) fn min(&self) -> f64 {
        self.min
    }

    /// Largest value (0 when empty).
    pub(crate) fn max(&self) -> f64 {
        self.max
    }

    /// The sum, saturated at `±f64::MAX`.
    pub(crate) fn sum(&self) -> f64 {
        saturate(self.sum * pow2(self.scale))
    }

    /// The mean, clamped into `[min, max]` (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        self.mean.clamp(self.min, self.max)
    }

    /// `m2 / (count - 1)` in units of `2^(2 scale)`; 0 for fewer than two values.
    fn scaled_variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).max(0.0)
        }
    }

    /// Sample variance (n - 1), saturated at `f64::MAX`; 0 for fewer than two values.
    pub(crate) fn variance(&self) -> f64 {
        let up = pow2(self.scale);
        saturate(self.scaled_variance() * up * up)
    }

    /// Sample standard deviation (n - 1), saturated at `f64::MAX`.
    pub(crate) fn stddev(&self) -> f64 {
        saturate(self.scaled_variance().sqrt() * pow2(self.scale))
    }

    /// Raises the scale exponent to `scale` (no-op if it is already there or above).
    fn raise_scale(&mut self, scale: i32) {
        if scale <= self.scale {
            return;
        }
        let down = pow2(self.scale - scale);
        self.sum *= down;
        self.m2 = self.m2 * down * down;
        self.scale = scale;
    }
}

/// The scale exponent a value of magnitude `a` needs: 0 below `2^SAFE_EXP`, otherwise the `e`
/// that brings `a * 2^-e` into `[2^(SAFE_EXP - 1), 2^SAFE_EXP)`.
pub(crate) fn scale_for(a: f64) -> i32 {
    if a < SAFE_LIMIT {
        return 0;
    }
    // `a` is normal here, so its biased exponent field is its binary exponent plus 1023.
    let exponent = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    (exponent - (SAFE_EXP - 1)).clamp(0, MAX_SCALE)
}

/// `2^k` for `k` in the normal range `[-1022, 1023]` (exact, built from the bits).
pub(crate) fn pow2(k: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    let k = k.clamp(-1022, 1023);
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `x` with infinities replaced by `±f64::MAX` (NaN cannot reach here).
pub(crate) fn saturate(x: f64) -> f64 {
    x.clamp(-f64::MAX, f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments_of(values: &[f64]) -> Moments {
        let mut m = Moments::new();
        for &v in values {
            m.observe(v);
        }
        m
    }

    #[test]
    fn pow2_and_scale_for() {
        assert_eq!(pow2(0), 1.0);
        assert_eq!(SAFE_LIMIT, pow2(SAFE_EXP));
        assert_eq!(pow2(10), 1024.0);
        assert_eq!(pow2(-1), 0.5);
        assert_eq!(pow2(1023), 2f64.powi(1023));
        assert_eq!(scale_for(1e134), 0);
        assert_eq!(scale_for(pow2(SAFE_EXP)), 1);
        assert_eq!(scale_for(f64::MAX), MAX_SCALE);
        for a in [1e135, 1e200, 1e308, f64::MAX] {
            let scaled = a * pow2(-scale_for(a));
            assert!(
                scaled < pow2(SAFE_EXP) && scaled >= pow2(SAFE_EXP - 1),
                "{a}"
            );
        }
    }

    #[test]
    fn overflowing_sum_comes_back_exactly() {
        let m = moments_of(&[1e308, 1e308, -1e308]);
        assert_eq!(m.sum(), 1e308);
        assert_eq!(moments_of(&[1e308, 1e308]).sum(), f64::MAX);
        assert_eq!(moments_of(&[-1e308, -1e308]).sum(), -f64::MAX);
    }

    #[test]
    fn scale_rises_with_the_largest_value_only() {
        let mut m = moments_of(&[1.0, 2.0, 3.0]);
        assert_eq!(m.scale, 0);
        m.observe(1e300);
        assert_eq!(m.scale, scale_for(1e300));
        let before = m.scale;
        m.observe(-5.0);
        assert_eq!(m.scale, before);
    }

    #[test]
    fn from_parts_rejects_impossible_fields() {
        assert!(Moments::from_parts(0, [0.0; 5], 0).is_some());
        assert!(Moments::from_parts(0, [1.0, 0.0, 0.0, 0.0, 0.0], 0).is_none());
        assert!(Moments::from_parts(2, [2.0, 1.0, 1.5, 3.0, 0.5], 0).is_none());
        assert!(Moments::from_parts(2, [1.0, 2.0, 1.5, 3.0, -0.5], 0).is_none());
        assert!(Moments::from_parts(2, [1.0, 2.0, 1.5, f64::NAN, 0.5], 0).is_none());
        assert!(Moments::from_parts(2, [1.0, 2.0, 1.5, 3.0, 0.5], -1).is_none());
        assert!(Moments::from_parts(2, [1.0, 2.0, 1.5, 3.0, 0.5], MAX_SCALE + 1).is_none());
        // Format 1 stored unscaled moments; huge values get their scale on the way in.
        let m = Moments::from_parts(2, [1e300, 1e300, 1e300, 2e300, 0.0], 0);
        assert_eq!(m.map(|m| m.scale), Some(scale_for(1e300)));
    }
}
