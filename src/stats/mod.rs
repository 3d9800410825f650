//! The statistics: plain types with synchronous methods, no actors.
//!
//! - [`sketch`]: a DDSketch with 0.9% relative accuracy (a compact, mergeable quantile sketch).
//! - [`window`]: one series' window state (count, weighted count, sum, min, max, Welford mean
//!   and variance, exact quantiles up to 256 values and the sketch beyond), merged with Chan's
//!   formula; finite for every finite input.
//! - `exact`: the small window's sorted values and their quantiles (numpy's `linear`).
//! - `moments`: sum, mean and variance in power-of-two scaled units, so they stay finite.
//! - [`detect`]: the pattern detector (spike, drop, anomaly, trend).
//! - `hll`: a HyperLogLog sketch of distinct ids (0.81% standard error), for distinct users.

pub mod detect;
mod exact;
pub(crate) mod hll;
mod moments;
pub mod sketch;
pub mod window;

/// What the property tests of [`sketch`] and [`window`] share.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    /// Values: log-uniform over 1..1e4 (skewed), its negatives, zeros, small integers (many
    /// ties) and a wide log-uniform range, `10^-wide..10^wide`.
    pub(crate) fn value(wide: f64) -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => (0.0f64..4.0).prop_map(|e| 10f64.powf(e)),
            1 => (0.0f64..4.0).prop_map(|e| -(10f64.powf(e))),
            1 => Just(0.0),
            1 => (0u32..20).prop_map(f64::from),
            1 => (-wide..wide).prop_map(|e| 10f64.powf(e)),
        ]
    }
}
