//! The statistics: plain types with synchronous methods, no actors.
//!
//! - [`sketch`]: a DDSketch with 0.9% relative accuracy (a compact, mergeable quantile sketch).
//! - [`window`]: one series' window state (count, weighted count, sum, min, max, Welford mean
//!   and variance, sketch), merged with Chan's formula.
//! - [`detect`]: the pattern detector (spike, drop, anomaly, trend).

pub mod detect;
pub mod sketch;
pub mod window;
