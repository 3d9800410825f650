//! The short-history rules, used from `early_min_history` values until the statistical
//! detector's `warmup`: the guide's rules, made safe for a handful of values.
//!
//! The recent average is the mean `m` of the remembered values that did not themselves raise
//! an alarm (an earlier spike does not inflate the average a later drop is judged against),
//! and `s` their sample standard deviation (floored at `relative_scale_floor * |m|`). With
//! `n` such values, `t = (value - m) / (s sqrt(1 + 1/n))` follows Student's t with `n - 1`
//! degrees of freedom for normal data (a prediction interval), so "beyond `anomaly_sigma`
//! standard deviations" is tested at the same false-alarm rate as `anomaly_sigma` for a
//! known normal: two-sided `p <= P(|Z| > anomaly_sigma)` (0.27% for 3). With 5 values that
//! is about 7 sample standard deviations; the bar falls towards 3 as history grows. An alarm
//! is a spike when `value > spike_ratio * m`, a drop when `value < drop_ratio * m` (positive
//! `m`), else an anomaly.

use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::erf::erfc;

use super::math::MAX_DECADES;

/// The short-history verdict on one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct EarlyVerdict {
    /// Mean of the clean recent values.
    pub average: f64,
    /// Prediction t statistic.
    pub t: f64,
    /// `-log10` of its two-sided p-value.
    pub decades: f64,
    /// Whether the value is beyond the bar.
    pub alarm: bool,
}

/// Judges `value` against `clean` (the recent values that raised no alarm); `None` with
/// fewer than `min_values` of them.
pub(super) fn judge(
    clean: &[f64],
    value: f64,
    min_values: usize,
    sigma: f64,
    relative_floor: f64,
) -> Option<EarlyVerdict> {
    let n = clean.len();
    if n < min_values.max(3) {
        return None;
    }
    let nf = n as f64;
    let mean = clean.iter().sum::<f64>() / nf;
    let var = clean.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (nf - 1.0);
    let sd = var
        .sqrt()
        .max(relative_floor * mean.abs())
        .max(f64::MIN_POSITIVE.sqrt());
    let t = (value - mean) / (sd * (1.0 + 1.0 / nf).sqrt());
    if t.is_nan() {
        // values so large that their mean or spread overflowed: no verdict
        return None;
    }
    let dist = StudentsT::new(0.0, 1.0, nf - 1.0).ok()?;
    // (statrs panics on a NaN or infinite argument)
    let p = if t.is_finite() {
        2.0 * dist.sf(t.abs())
    } else {
        0.0
    };
    let decades = if p > 0.0 {
        (-p.log10()).clamp(0.0, MAX_DECADES)
    } else {
        MAX_DECADES
    };
    let p_bar = erfc(sigma / std::f64::consts::SQRT_2);
    Some(EarlyVerdict {
        average: mean,
        t,
        decades,
        alarm: p <= p_bar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_values_need_a_gross_change() {
        let clean = [100.0, 101.0, 99.0, 100.5, 99.5];
        let calm = judge(&clean, 102.0, 5, 3.0, 0.0).unwrap();
        assert!(!calm.alarm, "{calm:?}");
        assert!((calm.average - 100.0).abs() < 1e-9);
        let spike = judge(&clean, 500.0, 5, 3.0, 0.0).unwrap();
        assert!(spike.alarm && spike.t > 100.0, "{spike:?}");
        // About 6.9 sample sds is the bar with five values (sd 0.79 here).
        assert!(!judge(&clean, 105.0, 5, 3.0, 0.0).unwrap().alarm);
        assert!(judge(&clean, 106.5, 5, 3.0, 0.0).unwrap().alarm);
        assert!(judge(&clean[..4], 500.0, 5, 3.0, 0.0).is_none());
    }
}
