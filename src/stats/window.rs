//! The statistics of one metric series in one time window, mergeable exactly.
//!
//! [`WindowState`] keeps exact count, weighted count, min and max, the sum and Welford's
//! running mean and sum of squared deviations (in the power-of-two scaled units of
//! `stats/moments.rs`, which keep them finite), and the values' quantiles in one of two forms:
//!
//! - **Exact** while the window holds at most [`EXACT_LIMIT`] = 256 values: the values
//!   themselves, sorted, and quantiles by linear interpolation between order statistics
//!   (numpy's default, `linear`, Hyndman and Fan's type 7; with differing weights, the
//!   weighted form defined in `stats/exact.rs`). 256 values take 2 KiB (4 KiB with
//!   per-value weights), the order of the sketch they stand in for.
//! - **Sketch** beyond that: the values are folded into a DDSketch ([`Sketch`]) and quantiles
//!   are within 1% relative error of the lower order statistic `x_(floor(q (n - 1)))` (with
//!   weights, the rank convention of [`crate::stats::sketch`]), clamped into `[min, max]`.
//!
//! Note the change of definition at the bound: for 256 values and fewer, the p99 of
//! 100, 200, 300, 400, 500 is 496 (numpy's answer); the sketch would say ~400.
//!
//! Two states of the same window (from another instance, or a window already written plus
//! late events) merge with Chan et al.'s parallel formula, so merging the parts of a value
//! set gives the state of the whole: count, weighted count (for integer weights), min and max
//! exactly, sum, mean and variance up to floating-point rounding, and quantiles exactly: two
//! exact parts whose total is within the bound merge into the exact window; otherwise both are
//! folded into sketches, which merge bin for bin into the sketch of the whole.
//!
//! # Finite in, finite out
//!
//! For any finite values and any finite positive weights, every statistic is finite (never
//! NaN): sum, variance and stddev saturate at `±f64::MAX` when the true value lies beyond,
//! the weighted count saturates at `f64::MAX`; the mean, min, max and quantiles lie within
//! the values' range. On values below ~7e134 the arithmetic is the one used before, bit for
//! bit. Details in `stats/moments.rs`.
//!
//! # Format
//!
//! [`WindowState::to_bytes`] is what the `sketch` column stores, so that a window read back
//! from the store can be merged exactly. Version 2 (written since exact small windows):
//!
//! ```text
//! u8      version = 2
//! varint  count (u64, LEB128)
//! f64 x4  weighted_count, min, max, mean (little-endian)
//! varint  scale exponent e
//! f64 x2  sum / 2^e, m2 / 2^(2e)
//! u8      quantiles: 0 = exact, one weight; 1 = exact, per-value weights; 2 = sketch;
//!         3 = a counter's window; 4 = a gauge's window
//! 0:      f64 unit weight, then `count` f64 values, ascending
//! 1:      `count` pairs f64 value, f64 weight, ascending by value then weight
//! 2:      the sketch, in the format of crate::stats::sketch, to the end
//! 3:      f64 the increments' sum corrected for sampling
//! 4:      if count > 0: varint zigzag(last value's time, ms), f64 last value
//! ```
//!
//! A counter's or a gauge's window ([`SeriesKind`]) keeps no values, so no quantiles: its
//! quantiles read 0.
//!
//! Version 1 (written before; still read, as a sketch window with `e = 0`):
//!
//! ```text
//! u8      version = 1
//! varint  count (u64, LEB128)
//! f64 x6  weighted_count, sum, min, max, mean, m2 (little-endian)
//! ...     the sketch, in the format of crate::stats::sketch, to the end
//! ```
//!
//! Measured (tests `latency_window_fits_in_two_kib`, `small_window_memory_is_bounded`): a
//! window of 100 000 log-uniform latencies over 1..1000 ms takes 1 680 heap bytes (384 `u32`
//! bins plus growth slack) and serialises to 849 bytes; an exact window of 256 values takes
//! 2 048 heap bytes (4 096 with per-value weights) and serialises to 2 109 bytes (4 149);
//! `size_of::<WindowState>()` is 168 bytes inline.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::exact::Exact;
pub use super::exact::EXACT_LIMIT;
use super::moments::Moments;
use super::sketch::{Sketch, DEFAULT_RELATIVE_ACCURACY};
use crate::encoding::{put_varint, unzigzag, zigzag, Reader, SketchDecodeError};

/// `x`, or `±f64::MAX` where it is beyond (a sum of finite terms never becomes infinite).
fn saturating(x: f64) -> f64 {
    x.clamp(-f64::MAX, f64::MAX)
}

/// Version byte written first by [`WindowState::to_bytes`].
const FORMAT_VERSION: u8 = 2;

/// The format written before version 2, still read.
const FORMAT_VERSION_1: u8 = 1;

/// Quantiles tag: exact values with one shared weight.
const TAG_EXACT_UNIFORM: u8 = 0;

/// Quantiles tag: exact values with per-value weights.
const TAG_EXACT_WEIGHTED: u8 = 1;

/// Quantiles tag: a sketch.
const TAG_SKETCH: u8 = 2;

/// Tag of a counter's window: no values kept, the increments' sum corrected for sampling.
const TAG_COUNTER: u8 = 3;

/// Tag of a gauge's window: no values kept, the last value and its time.
const TAG_GAUGE: u8 = 4;

/// What a series measures, and so what each of its windows keeps. A series is one kind: the
/// kind is part of its key, so the same name used as two kinds is two series.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Values whose distribution matters (latencies, sizes): count, sum, min, max, mean,
    /// stddev and quantiles.
    #[default]
    Distribution,
    /// Increments: their sum corrected for sampling (each kept increment counts
    /// `1 / sample_rate` times, as the estimated count does), and so a rate; no quantiles.
    Counter,
    /// A level set from time to time: the last value (by event time), min and max; no
    /// quantiles.
    Gauge,
}

impl SeriesKind {
    /// Every kind, in the order of their codes.
    pub const ALL: [SeriesKind; 3] = [
        SeriesKind::Distribution,
        SeriesKind::Counter,
        SeriesKind::Gauge,
    ];

    /// The name stored in the `kind` columns: `distribution`, `counter`, `gauge`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Distribution => "distribution",
            SeriesKind::Counter => "counter",
            SeriesKind::Gauge => "gauge",
        }
    }

    /// The kind named `name` (as [`SeriesKind::as_str`] writes it).
    pub fn parse(name: &str) -> Option<SeriesKind> {
        SeriesKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A gauge's last value: the value of the latest event time; of values at one millisecond,
/// the largest, so that merging in any order gives the same last value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Last {
    /// Event time of the value, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

impl Last {
    /// Whether `self` comes after `other`: a later time, or the same time and a larger value.
    fn after(&self, other: &Last) -> bool {
        (self.ts_ms, self.value).partial_cmp(&(other.ts_ms, other.value))
            == Some(std::cmp::Ordering::Greater)
    }
}

/// The bounds `[start, end)` of the window of `width_ms` that holds `ts_ms` (`start` a
/// multiple of the width), or `None` when they do not fit in an `i64` (or the width is not
/// positive): checked arithmetic, so a timestamp near `i64::MIN` or `i64::MAX` can never give
/// a window that ends before it starts. Events are admitted only when their window fits
/// (`TrackEvent::admit`), so the aggregator's own window arithmetic cannot wrap.
pub(crate) fn window_bounds(ts_ms: i64, width_ms: i64) -> Option<(i64, i64)> {
    if width_ms <= 0 {
        return None;
    }
    let start = ts_ms.div_euclid(width_ms).checked_mul(width_ms)?;
    Some((start, start.checked_add(width_ms)?))
}

/// Why a byte string is not a valid serialised [`WindowState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WindowDecodeError {
    /// The version byte is not one this code reads.
    #[error("unsupported window format version {0}")]
    UnsupportedVersion(u8),
    /// A field has an impossible value; the message names it.
    #[error("invalid window blob: {0}")]
    Invalid(&'static str),
    /// The bytes are truncated, or the embedded sketch or values are malformed.
    #[error("malformed window blob: {0}")]
    Format(#[from] SketchDecodeError),
}

/// The state of one metric series in one time window.
///
/// Any finite value with any finite positive weight is accepted, and every statistic stays
/// finite (module docs). A NaN or infinite value, or a weight that is not finite and
/// positive, is ignored rather than allowed to poison the window.
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
/// assert_eq!(w.quantile(0.5), 15.0); // exact: a small window keeps its values
///
/// let mut small = WindowState::new();
/// for v in [100.0, 200.0, 300.0, 400.0, 500.0] {
///     small.observe(v, 1.0);
/// }
/// assert_eq!(small.quantile(0.99), 496.0); // numpy.quantile(x, 0.99)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WindowState {
    /// Count, min, max, sum, mean and m2 of the observed values (unweighted: sampling keeps
    /// each event with the same probability within a series, so the observed values are an
    /// unbiased sample and their mean and variance estimate those of all events).
    moments: Moments,
    /// Sum of the weights (1 / sample rate), saturated at `f64::MAX`: the number of events
    /// corrected for sampling, the `estimated_count` column.
    weighted_count: f64,
    /// The values (small windows) or their sketch, for quantiles; or what a counter's or a
    /// gauge's window keeps instead.
    quantiles: Quantiles,
}

/// Where a window's quantiles come from, or what a window of a counter or a gauge keeps
/// instead (no values: a counter pays for no sketch).
#[derive(Debug, Clone, PartialEq)]
enum Quantiles {
    /// At most [`EXACT_LIMIT`] values, kept sorted: exact quantiles.
    Exact(Exact),
    /// A weighted DDSketch of the values: quantiles within 1% relative error.
    Sketch(Sketch),
    /// A counter: the sum of `increment * weight`, saturated at `±f64::MAX`.
    Counter(f64),
    /// A gauge: the last value, `None` while empty.
    Gauge(Option<Last>),
}

/// The aggregates of a window as plain data, the numbers written to a `metric_windows` row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Values observed.
    pub count: u64,
    /// Events corrected for sampling (sum of 1 / sample rate).
    pub estimated_count: f64,
    /// Sum of the observed values (saturated at `±f64::MAX`); for a counter, the sum of its
    /// increments corrected for sampling ([`WindowState::corrected_sum`]).
    pub sum: f64,
    /// Smallest observed value.
    pub min: f64,
    /// Largest observed value.
    pub max: f64,
    /// Mean of the observed values.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for fewer than two values.
    pub stddev: f64,
    /// Median: exact for windows of up to [`EXACT_LIMIT`] values, else within 1% relative.
    pub p50: f64,
    /// 90th percentile, as `p50`.
    pub p90: f64,
    /// 95th percentile, as `p50`.
    pub p95: f64,
    /// 99th percentile, as `p50`.
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
            moments: Moments::new(),
            weighted_count: 0.0,
            quantiles: Quantiles::Exact(Exact::new()),
        }
    }

    /// An empty window of a series of `kind`.
    pub fn of_kind(kind: SeriesKind) -> Self {
        let quantiles = match kind {
            SeriesKind::Distribution => Quantiles::Exact(Exact::new()),
            SeriesKind::Counter => Quantiles::Counter(0.0),
            SeriesKind::Gauge => Quantiles::Gauge(None),
        };
        WindowState {
            quantiles,
            ..WindowState::new()
        }
    }

    /// What the series of this window measures.
    pub fn kind(&self) -> SeriesKind {
        match self.quantiles {
            Quantiles::Exact(_) | Quantiles::Sketch(_) => SeriesKind::Distribution,
            Quantiles::Counter(_) => SeriesKind::Counter,
            Quantiles::Gauge(_) => SeriesKind::Gauge,
        }
    }

    /// Records `value` observed with `weight` (1 / sample rate; 1.0 when not sampled).
    /// Ignored if `value` is not finite or `weight` is not finite and positive. A gauge's
    /// value takes its time from [`WindowState::observe_at`]; here it counts as time 0.
    pub fn observe(&mut self, value: f64, weight: f64) {
        self.observe_at(value, weight, 0);
    }

    /// Records `value` observed at `ts_ms` (event time, which only a gauge keeps: its last
    /// value is the one of the latest time) with `weight`, as [`WindowState::observe`]. A
    /// counter's `value` is an increment: its sum adds `value * weight`.
    pub fn observe_at(&mut self, value: f64, weight: f64, ts_ms: i64) {
        if !value.is_finite() || !weight.is_finite() || weight <= 0.0 {
            return;
        }
        self.moments.observe(value);
        self.weighted_count = (self.weighted_count + weight).min(f64::MAX);
        match &mut self.quantiles {
            Quantiles::Exact(exact) if exact.len() < EXACT_LIMIT => exact.insert(value, weight),
            Quantiles::Counter(sum) => *sum = saturating(*sum + value * weight),
            Quantiles::Gauge(last) => {
                let seen = Last { ts_ms, value };
                if last.is_none_or(|l| seen.after(&l)) {
                    *last = Some(seen);
                }
            }
            _ => self.sketch_mut().add_weighted(value, weight),
        }
    }

    /// A counter's increments summed with their weights (each kept increment counts
    /// `1 / sample_rate` times): the counter's sum corrected for sampling, exact for rates
    /// whose inverse is an integer. `None` for another kind.
    pub fn corrected_sum(&self) -> Option<f64> {
        match self.quantiles {
            Quantiles::Counter(sum) => Some(sum),
            _ => None,
        }
    }

    /// A gauge's last value, `None` for an empty gauge or another kind.
    pub fn last(&self) -> Option<Last> {
        match self.quantiles {
            Quantiles::Gauge(last) => last,
            _ => None,
        }
    }

    /// Folds `other` (the same series and window, seen elsewhere) into `self`, with
    /// Chan et al.'s parallel update for the mean and `m2`. Stays exact while both are and
    /// their total is within [`EXACT_LIMIT`].
    ///
    /// Both must be of one kind (the kind is part of the series key, so the pipeline never
    /// merges two kinds); a state of another kind is left out, with a warning.
    pub fn merge(&mut self, other: &WindowState) {
        if other.count() == 0 {
            return;
        }
        if self.count() == 0 {
            *self = other.clone();
            return;
        }
        if self.kind() != other.kind() {
            log::warn!(
                "a {} window merged into a {} window: left out",
                other.kind().as_str(),
                self.kind().as_str()
            );
            return;
        }
        self.moments.merge(&other.moments);
        self.weighted_count = (self.weighted_count + other.weighted_count).min(f64::MAX);
        match (&mut self.quantiles, &other.quantiles) {
            (Quantiles::Counter(mine), Quantiles::Counter(theirs)) => {
                *mine = saturating(*mine + theirs)
            }
            (Quantiles::Gauge(mine), Quantiles::Gauge(theirs)) => {
                if let Some(theirs) = theirs.filter(|t| mine.is_none_or(|m| t.after(&m))) {
                    *mine = Some(theirs);
                }
            }
            (_, Quantiles::Counter(_) | Quantiles::Gauge(_)) => {
                unreachable!("kinds checked above")
            }
            (Quantiles::Exact(mine), Quantiles::Exact(theirs))
                if mine.len() + theirs.len() <= EXACT_LIMIT =>
            {
                mine.merge(theirs)
            }
            (_, Quantiles::Exact(theirs)) => theirs.add_to(self.sketch_mut()),
            (_, Quantiles::Sketch(theirs)) => {
                // Cannot fail: every WindowState sketch has DEFAULT_RELATIVE_ACCURACY (new(),
                // Exact::to_sketch() and from_bytes() ensure it).
                let merged = self.sketch_mut().merge(theirs);
                debug_assert!(
                    merged.is_ok(),
                    "window sketches share one relative accuracy"
                );
            }
        }
    }

    /// The sketch, folding the exact values into it first if the window holds them.
    fn sketch_mut(&mut self) -> &mut Sketch {
        if let Quantiles::Exact(exact) = &self.quantiles {
            self.quantiles = Quantiles::Sketch(exact.to_sketch());
        }
        match &mut self.quantiles {
            Quantiles::Sketch(sketch) => sketch,
            _ => unreachable!("called for distributions only, folded into a sketch above"),
        }
    }

    /// Values observed.
    pub fn count(&self) -> u64 {
        self.moments.count()
    }

    /// Events corrected for sampling: the sum of the weights (saturated at `f64::MAX`).
    pub fn weighted_count(&self) -> f64 {
        self.weighted_count
    }

    /// Sum of the observed values (0 when empty), saturated at `±f64::MAX`.
    pub fn sum(&self) -> f64 {
        self.moments.sum()
    }

    /// Smallest observed value (0 when empty).
    pub fn min(&self) -> f64 {
        self.moments.min()
    }

    /// Largest observed value (0 when empty).
    pub fn max(&self) -> f64 {
        self.moments.max()
    }

    /// Mean of the observed values (0 when empty); always within `[min, max]`.
    pub fn mean(&self) -> f64 {
        self.moments.mean()
    }

    /// Sample variance (n - 1), saturated at `f64::MAX`; 0 for fewer than two values.
    pub fn variance(&self) -> f64 {
        self.moments.variance()
    }

    /// Sample standard deviation (n - 1), saturated at `f64::MAX`; 0 for fewer than two
    /// values.
    pub fn stddev(&self) -> f64 {
        self.moments.stddev()
    }

    /// The weighted `q`-quantile, clamped into `[min, max]`; `q` is clamped to `[0, 1]` (NaN
    /// counts as 0); 0 for an empty window. Exact (linear interpolation, numpy's default)
    /// while the window holds at most [`EXACT_LIMIT`] values, else within 1% relative error
    /// of the order statistic of [`crate::stats::sketch`]'s rank convention.
    pub fn quantile(&self, q: f64) -> f64 {
        let estimate = match &self.quantiles {
            Quantiles::Exact(exact) => exact.quantile(q),
            Quantiles::Sketch(sketch) => sketch.quantile(q),
            Quantiles::Counter(_) | Quantiles::Gauge(_) => None,
        };
        match estimate {
            Some(v) if self.count() > 0 => v.clamp(self.min(), self.max()),
            _ => 0.0,
        }
    }

    /// Whether quantiles are exact (the window holds its values; see [`EXACT_LIMIT`]).
    pub fn is_exact(&self) -> bool {
        matches!(self.quantiles, Quantiles::Exact(_))
    }

    /// The sketch of the values, for callers that need more than
    /// [`WindowState::quantile`]: borrowed for a large window, built (and owned) for an
    /// exact one.
    pub fn sketch(&self) -> Cow<'_, Sketch> {
        match &self.quantiles {
            Quantiles::Exact(exact) => Cow::Owned(exact.to_sketch()),
            Quantiles::Sketch(sketch) => Cow::Borrowed(sketch),
            Quantiles::Counter(_) | Quantiles::Gauge(_) => Cow::Owned(Sketch::new()),
        }
    }

    /// Bytes this window holds on the heap: the exact values (capacity, at most 2 KiB, or
    /// 4 KiB with per-value weights) or the sketch's bins; the rest of the state is
    /// `size_of::<WindowState>()` inline.
    pub fn heap_bytes(&self) -> usize {
        match &self.quantiles {
            Quantiles::Exact(exact) => exact.heap_bytes(),
            Quantiles::Sketch(sketch) => sketch.heap_bytes(),
            Quantiles::Counter(_) | Quantiles::Gauge(_) => 0,
        }
    }

    /// The aggregates as plain data; every float is 0 for an empty window.
    pub fn summary(&self) -> WindowSummary {
        WindowSummary {
            count: self.count(),
            estimated_count: self.weighted_count,
            sum: self.corrected_sum().unwrap_or_else(|| self.sum()),
            min: self.min(),
            max: self.max(),
            mean: self.mean(),
            stddev: self.stddev(),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }

    /// Serialises the whole state (format version 2, in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let ([min, max, mean, sum, m2], scale) = self.moments.parts();
        let mut out = Vec::with_capacity(64 + 16 * self.count().min(EXACT_LIMIT as u64) as usize);
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.count());
        for x in [self.weighted_count, min, max, mean] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        put_varint(&mut out, scale as u64);
        for x in [sum, m2] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        match &self.quantiles {
            Quantiles::Exact(exact) => {
                out.push(if exact.is_uniform() {
                    TAG_EXACT_UNIFORM
                } else {
                    TAG_EXACT_WEIGHTED
                });
                exact.encode(&mut out);
            }
            Quantiles::Sketch(sketch) => {
                out.push(TAG_SKETCH);
                out.extend_from_slice(&sketch.to_bytes());
            }
            Quantiles::Counter(sum) => {
                out.push(TAG_COUNTER);
                out.extend_from_slice(&sum.to_le_bytes());
            }
            Quantiles::Gauge(last) => {
                out.push(TAG_GAUGE);
                if let Some(last) = last {
                    put_varint(&mut out, zigzag(last.ts_ms));
                    out.extend_from_slice(&last.value.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a state written by [`WindowState::to_bytes`], in format version 2 or 1 (a blob
    /// of version 1 gives a sketch window). Any byte string gives either a valid state or an
    /// error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<WindowState, WindowDecodeError> {
        let mut r = Reader::new(bytes);
        let state = match r.byte()? {
            FORMAT_VERSION => Self::decode_v2(&mut r)?,
            FORMAT_VERSION_1 => Self::decode_v1(&mut r)?,
            version => return Err(WindowDecodeError::UnsupportedVersion(version)),
        };
        r.finish()?;
        Ok(state)
    }

    /// Reads the fields of format version 2 after the version byte.
    fn decode_v2(r: &mut Reader<'_>) -> Result<WindowState, WindowDecodeError> {
        let count = r.varint()?;
        let mut head = [0.0; 4];
        for x in &mut head {
            *x = r.f64()?;
        }
        let [weighted_count, min, max, mean] = head;
        let scale =
            i32::try_from(r.varint()?).map_err(|_| WindowDecodeError::Invalid("scale exponent"))?;
        let (sum, m2) = (r.f64()?, r.f64()?);
        let moments = Moments::from_parts(count, [min, max, mean, sum, m2], scale)
            .ok_or(WindowDecodeError::Invalid("inconsistent aggregates"))?;
        let quantiles = match r.byte()? {
            tag @ (TAG_EXACT_UNIFORM | TAG_EXACT_WEIGHTED) => {
                let exact = Exact::decode(r, count, tag == TAG_EXACT_UNIFORM)?;
                let mut values = exact.values();
                let (first, last) = (values.next(), values.last());
                let ends_match =
                    first.is_none_or(|v| v == min) && last.or(first).is_none_or(|v| v == max);
                if !ends_match {
                    return Err(WindowDecodeError::Invalid(
                        "exact values do not match min and max",
                    ));
                }
                Quantiles::Exact(exact)
            }
            TAG_SKETCH => Quantiles::Sketch(Self::checked_sketch(r, count)?),
            TAG_COUNTER => match r.f64()? {
                sum if sum.is_finite() && (count > 0 || sum == 0.0) => Quantiles::Counter(sum),
                _ => return Err(WindowDecodeError::Invalid("counter sum")),
            },
            TAG_GAUGE if count == 0 => Quantiles::Gauge(None),
            TAG_GAUGE => {
                let ts_ms = unzigzag(r.varint()?);
                match r.f64()? {
                    value if (min..=max).contains(&value) => {
                        Quantiles::Gauge(Some(Last { ts_ms, value }))
                    }
                    _ => return Err(WindowDecodeError::Invalid("gauge's last value")),
                }
            }
            _ => return Err(WindowDecodeError::Invalid("quantiles tag")),
        };
        Self::checked(moments, weighted_count, quantiles)
    }

    /// Reads the fields of format version 1 after the version byte.
    fn decode_v1(r: &mut Reader<'_>) -> Result<WindowState, WindowDecodeError> {
        let count = r.varint()?;
        let mut fields = [0.0; 6];
        for x in &mut fields {
            *x = r.f64()?;
        }
        let [weighted_count, sum, min, max, mean, m2] = fields;
        let sketch = Self::checked_sketch(r, count)?;
        let moments = Moments::from_parts(count, [min, max, mean, sum, m2], 0)
            .ok_or(WindowDecodeError::Invalid("inconsistent aggregates"))?;
        // An empty window is the same whichever format it came in.
        let quantiles = if count == 0 {
            Quantiles::Exact(Exact::new())
        } else {
            Quantiles::Sketch(sketch)
        };
        Self::checked(moments, weighted_count, quantiles)
    }

    /// Reads a sketch and checks it is a window's sketch of `count` values.
    fn checked_sketch(r: &mut Reader<'_>, count: u64) -> Result<Sketch, WindowDecodeError> {
        let sketch = Sketch::decode(r)?;
        if sketch.relative_accuracy() != DEFAULT_RELATIVE_ACCURACY {
            return Err(WindowDecodeError::Invalid("sketch relative accuracy"));
        }
        if sketch.observations() != count {
            return Err(WindowDecodeError::Invalid(
                "count does not match the sketch",
            ));
        }
        Ok(sketch)
    }

    /// The state, if the weighted count agrees with the count.
    fn checked(
        moments: Moments,
        weighted_count: f64,
        quantiles: Quantiles,
    ) -> Result<WindowState, WindowDecodeError> {
        let valid = if moments.count() == 0 {
            weighted_count == 0.0
        } else {
            weighted_count.is_finite() && weighted_count > 0.0
        };
        if !valid {
            return Err(WindowDecodeError::Invalid("weighted count"));
        }
        Ok(WindowState {
            moments,
            weighted_count,
            quantiles,
        })
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::window_bounds;

    #[test]
    fn window_bounds_never_wrap() {
        assert_eq!(window_bounds(61_000, 60_000), Some((60_000, 120_000)));
        assert_eq!(window_bounds(-1, 60_000), Some((-60_000, 0)));
        assert_eq!(window_bounds(i64::MAX, 60_000), None, "the end overflows");
        assert_eq!(window_bounds(i64::MIN, 60_000), None, "the start overflows");
        assert_eq!(window_bounds(i64::MAX, 1), None);
        assert_eq!(
            window_bounds(i64::MAX - 1, 1),
            Some((i64::MAX - 1, i64::MAX))
        );
        assert_eq!(window_bounds(5, 0), None);
        for ts in [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            i64::MAX - 60_000,
            i64::MAX,
        ] {
            if let Some((start, end)) = window_bounds(ts, 60_000) {
                assert!(start <= ts && ts < end, "{ts}: [{start}, {end})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use statrs::statistics::Statistics;

    /// The documented relative error bound of quantiles of large windows.
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

    fn weighted_window(pairs: &[(f64, f64)]) -> WindowState {
        let mut w = WindowState::new();
        for &(v, wt) in pairs {
            w.observe(v, wt);
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

    /// numpy.quantile(x, q) with the default method "linear", transcribed from numpy's
    /// `_quantile`, `_get_indexes` and `_lerp` (numpy 1.22 and later).
    fn numpy_linear(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        let virtual_index = (n - 1) as f64 * q;
        let (previous, next) = if virtual_index >= (n - 1) as f64 {
            (n - 1, n - 1)
        } else {
            let p = virtual_index.floor();
            (p as usize, p as usize + 1)
        };
        let gamma = virtual_index - (previous as f64).min(virtual_index);
        let (a, b) = (sorted[previous], sorted[next]);
        let diff_b_a = b - a;
        if gamma >= 0.5 {
            b - diff_b_a * (1.0 - gamma)
        } else {
            a + diff_b_a * gamma
        }
    }

    /// The weighted definition of `stats::exact`, built the long way: the list of knots
    /// `(t, value)` (two per value, the ends of its held part), then interpolated.
    fn weighted_reference(pairs: &[(f64, f64)], q: f64) -> f64 {
        let mut p = pairs.to_vec();
        p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let n = p.len() as f64;
        let total: f64 = p.iter().map(|x| x.1).sum();
        let mut knots = Vec::new();
        let mut start = 0.0;
        for &(v, w) in &p {
            let u = w / total * n;
            let c = (u / 2.0).min(0.5);
            knots.push((start + c, v));
            knots.push((start + u - c, v));
            start += u;
        }
        let (t0, t1) = (knots[0].0, knots[knots.len() - 1].0);
        let t = t0 + q * (t1 - t0);
        for pair in knots.windows(2) {
            let ((ta, a), (tb, b)) = (pair[0], pair[1]);
            if t <= tb {
                return if tb > ta {
                    a + (b - a) * ((t - ta) / (tb - ta)).clamp(0.0, 1.0)
                } else {
                    b
                };
            }
        }
        knots[knots.len() - 1].1
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

    /// The window statistics as computed before this version (plain running sum, Welford,
    /// Chan), and its format-1 blob: the reference for "ordinary data is unchanged" and for
    /// reading rows written before.
    #[derive(Debug, Clone, Default)]
    struct OldWindow {
        count: u64,
        weighted_count: f64,
        sum: f64,
        min: f64,
        max: f64,
        mean: f64,
        m2: f64,
        sketch: Sketch,
    }

    impl OldWindow {
        fn observe(&mut self, value: f64, weight: f64) {
            if self.count == 0 {
                (self.min, self.max) = (value, value);
            } else {
                (self.min, self.max) = (self.min.min(value), self.max.max(value));
            }
            self.count += 1;
            self.weighted_count += weight;
            self.sum += value;
            let delta = value - self.mean;
            self.mean += delta / self.count as f64;
            self.m2 += delta * (value - self.mean);
            self.sketch.add_weighted(value, weight);
        }

        fn merge(&mut self, other: &OldWindow) {
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
            let _ = self.sketch.merge(&other.sketch);
        }

        fn stddev(&self) -> f64 {
            if self.count < 2 {
                0.0
            } else {
                (self.m2 / (self.count - 1) as f64).max(0.0).sqrt()
            }
        }

        /// The blob the code before version 2 wrote.
        fn v1_bytes(&self) -> Vec<u8> {
            let mut out = vec![FORMAT_VERSION_1];
            put_varint(&mut out, self.count);
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
            out.extend_from_slice(&self.sketch.to_bytes());
            out
        }
    }

    fn old_window_of(pairs: &[(f64, f64)]) -> OldWindow {
        let mut w = OldWindow::default();
        for &(v, wt) in pairs {
            w.observe(v, wt);
        }
        w
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// The summary's floating-point numbers.
    fn floats(s: &WindowSummary) -> [f64; 10] {
        [
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
        ]
    }

    /// Every number a window reports is finite, and the mean lies within [min, max].
    fn assert_finite(w: &WindowState) -> Result<(), String> {
        let s = w.summary();
        let mut all =
            floats(&s)
                .into_iter()
                .chain([w.variance(), w.quantile(0.001), w.quantile(1.0)]);
        if all.any(|x| !x.is_finite()) {
            return Err(format!("non-finite statistic in {s:?}"));
        }
        if !(s.min <= s.mean && s.mean <= s.max) {
            return Err(format!("mean outside [min, max] in {s:?}"));
        }
        Ok(())
    }

    #[test]
    fn empty_window_is_all_zero() {
        let w = WindowState::new();
        let s = w.summary();
        assert_eq!(s.count, 0);
        for x in floats(&s) {
            assert_eq!(x, 0.0);
        }
        assert_eq!(w.quantile(0.5), 0.0);
        assert_eq!(w.heap_bytes(), 0);
        assert_eq!(WindowState::from_bytes(&w.to_bytes()), Ok(w));
    }

    #[test]
    fn single_value_is_exact() {
        let w = window_of(&[123.456], 1.0);
        let s = w.summary();
        assert_eq!(
            (s.count, s.min, s.max, s.mean, s.stddev),
            (1, 123.456, 123.456, 123.456, 0.0)
        );
        assert_eq!((s.p50, s.p99), (123.456, 123.456));
        assert_eq!(w.quantile(f64::NAN), 123.456);
    }

    #[test]
    fn five_samples_give_numpys_p99() {
        let w = window_of(&[100.0, 200.0, 300.0, 400.0, 500.0], 1.0);
        let s = w.summary();
        assert!(w.is_exact());
        assert!(rel_err(s.p99, 496.0) <= 0.01, "p99 = {}", s.p99);
        // numpy.quantile([100, 200, 300, 400, 500], [0.5, 0.9, 0.95, 0.99])
        assert_eq!((s.p50, s.p90, s.p95, s.p99), (300.0, 460.0, 480.0, 496.0));
        // The same with every value sampled at rate 0.25.
        assert_eq!(
            window_of(&[500.0, 100.0, 400.0, 200.0, 300.0], 4.0)
                .summary()
                .p99,
            496.0
        );
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
            assert_eq!(w.quantile(q), numpy_linear(&values, q), "q={q}");
        }
        assert!(near(w.stddev(), values.iter().std_dev(), 1.0));
    }

    #[test]
    fn one_huge_one_tiny_value() {
        let w = window_of(&[1e-150, 1e150], 1.0);
        assert_eq!((w.quantile(0.0), w.quantile(1.0)), (1e-150, 1e150));
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
        w.observe(3.0, f64::INFINITY);
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
        // 1000.0 holds 0.9 of the line: the median is it.
        assert_eq!(w.quantile(0.5), 1000.0);
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
    fn past_the_bound_the_sketch_takes_over() {
        let values = log_uniform(EXACT_LIMIT + 1, 1.0, 1000.0, 7);
        let at_bound = window_of(&values[..EXACT_LIMIT], 1.0);
        assert!(at_bound.is_exact());
        let past = window_of(&values, 1.0);
        assert!(!past.is_exact());
        let mut direct = Sketch::new();
        values.iter().for_each(|&v| direct.add(v));
        assert_eq!(past.sketch().as_ref(), &direct);
        let sorted = sorted(&values);
        for q in QS {
            assert!(rel_err(past.quantile(q), exact_quantile(&sorted, q)) <= BOUND);
        }
        // Merging: within the bound stays exact, past it is the sketch of the whole.
        let (a, b) = (
            window_of(&values[..100], 1.0),
            window_of(&values[100..200], 1.0),
        );
        let mut ab = a.clone();
        ab.merge(&b);
        assert!(ab.is_exact());
        assert_eq!(
            ab.quantile(0.3),
            window_of(&values[..200], 1.0).quantile(0.3)
        );
        let mut over = window_of(&values[..200], 1.0);
        over.merge(&window_of(&values[200..], 1.0));
        assert!(!over.is_exact());
        assert_eq!(over.sketch(), past.sketch());
        let mut into_sketch = past.clone();
        into_sketch.merge(&a);
        assert_eq!(into_sketch.count(), past.count() + 100);
    }

    #[test]
    fn poisoned_values_of_issue_9_give_finite_rows() {
        let cases: [&[f64]; 5] = [
            &[1e308, -1e308, 1e308],
            &[1e200, -1e200],
            &[1e308, 1e308],
            &[f64::MAX, -f64::MAX],
            &[f64::MAX, 1e-300, -f64::MIN_POSITIVE, 0.0, -f64::MAX, 5.0],
        ];
        for values in cases {
            let w = window_of(values, 1.0);
            assert_finite(&w).unwrap_or_else(|e| panic!("{values:?}: {e}"));
            let back = WindowState::from_bytes(&w.to_bytes());
            assert_eq!(back.as_ref(), Ok(&w), "{values:?} reads back");
        }
        let w = window_of(&[1e308, -1e308, 1e308], 1.0);
        assert!(near(w.mean(), 1e308 / 3.0, 0.0), "{}", w.mean());
        assert_eq!(w.sum(), 1e308);
        assert!(
            near(w.stddev(), 2.0 / 3f64.sqrt() * 1e308, 0.0),
            "{}",
            w.stddev()
        );
        let w = window_of(&[1e200, -1e200], 1.0);
        assert!(near(w.stddev(), 2f64.sqrt() * 1e200, 0.0), "{}", w.stddev());
        assert_eq!((w.mean(), w.sum(), w.variance()), (0.0, 0.0, f64::MAX));
        let w = window_of(&[1e308, 1e308], 1.0);
        assert_eq!((w.sum(), w.mean(), w.stddev()), (f64::MAX, 1e308, 0.0));
        let w = window_of(&[f64::MAX, -f64::MAX], 1.0);
        assert_eq!(
            (w.mean(), w.stddev(), w.quantile(0.5)),
            (0.0, f64::MAX, 0.0)
        );
    }

    #[test]
    fn huge_weights_saturate_the_estimated_count() {
        let mut w = WindowState::new();
        for i in 0..(EXACT_LIMIT + 50) {
            w.observe(i as f64, if i % 2 == 0 { f64::MAX } else { 1e300 });
        }
        assert!(!w.is_exact());
        assert_eq!(w.weighted_count(), f64::MAX);
        assert_finite(&w).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(WindowState::from_bytes(&w.to_bytes()).as_ref(), Ok(&w));
        let small = weighted_window(&[(1.0, f64::MAX), (2.0, f64::MAX), (3.0, 1.0)]);
        assert_finite(&small).unwrap_or_else(|e| panic!("{e}"));
        // Normalised weights 1.5, 1.5, ~0: 1.0 held over [0.5, 1], 2.0 over [2, 2.5], 3.0 a
        // point at 3; the median, at t = 1.75, is 3/4 of the way from 1.0 to 2.0.
        assert_eq!(small.quantile(0.5), 1.75);
    }

    #[test]
    fn blobs_of_format_1_still_decode() {
        // Written by the code before format 2 (hex of to_bytes()).
        let golden =
            "01050000000000001440000000000070974000000000000059400000000000407f400000000000c07240\
            00000000006af840013bdf4f8d976e823f0005000000000000f03f0080045b0100000000000000000000\
            000000000000000000000000000000000000000000000000000000000100000000000000000000000000\
            00000000000000000100000000000000000000000000000001000000000000000000000000010000";
        let w = WindowState::from_bytes(&hex(golden));
        let w = w.unwrap_or_else(|e| panic!("{e}"));
        let s = w.summary();
        assert_eq!(
            (s.count, s.estimated_count, s.sum, s.mean),
            (5, 5.0, 1500.0, 300.0)
        );
        assert_eq!((s.min, s.max, s.stddev), (100.0, 500.0, 158.11388300841898));
        // No values in a format-1 blob: the sketch answers, as it did.
        assert!(!w.is_exact());
        assert_eq!((s.p50, s.p99), (298.00591188106097, 397.47065251330844));
        let empty =
            "010000000000000000000000000000000000000000000000000000000000000000000000000000000000\
            0000000000000000013bdf4f8d976e823f0000000000000000f03f0000000000";
        let e = WindowState::from_bytes(&hex(empty));
        assert_eq!(e, Ok(WindowState::new()));
        // A format-1 window merges with a new one (into the sketch).
        let mut merged = w.clone();
        merged.merge(&window_of(&[600.0], 1.0));
        assert_eq!((merged.count(), merged.max()), (6, 600.0));
    }

    #[test]
    fn decode_rejects_truncated_and_garbage_bytes() {
        let blobs = [
            window_of(&[1.0, 20.0, 300.0], 1.0).to_bytes(),
            weighted_window(&[(1.0, 1.0), (20.0, 2.0)]).to_bytes(),
            window_of(&log_uniform(EXACT_LIMIT + 1, 1.0, 10.0, 3), 1.0).to_bytes(),
            old_window_of(&[(1.0, 1.0), (20.0, 1.0)]).v1_bytes(),
        ];
        for bytes in &blobs {
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
            bad[0] = 3;
            assert_eq!(
                WindowState::from_bytes(&bad),
                Err(WindowDecodeError::UnsupportedVersion(3))
            );
        }
        // A count that disagrees with the sketch.
        for bytes in [&blobs[3], &blobs[2]] {
            let mut bad = bytes.clone();
            let at = if bad[0] == FORMAT_VERSION_1 { 1 } else { 2 };
            bad[at] ^= 1;
            assert!(WindowState::from_bytes(&bad).is_err());
        }
        assert!(WindowState::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn decode_rejects_inconsistent_exact_values() {
        let w = window_of(&[1.0, 20.0, 300.0], 1.0);
        let bytes = w.to_bytes();
        let values_at = bytes.len() - 3 * 8;
        let with = |at: usize, x: f64| {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&x.to_le_bytes());
            WindowState::from_bytes(&b)
        };
        assert!(with(values_at + 8, 500.0).is_err(), "out of order");
        assert!(with(values_at, 2.0).is_err(), "not the min");
        assert!(with(values_at + 16, f64::NAN).is_err(), "NaN");
        assert!(with(values_at - 8, 0.0).is_err(), "zero unit weight");
        // More values than the bound cannot be exact.
        let mut long = vec![FORMAT_VERSION];
        put_varint(&mut long, EXACT_LIMIT as u64 + 1);
        long.extend_from_slice(&[0; 4 * 8 + 1 + 16]);
        long.push(TAG_EXACT_UNIFORM);
        long.extend_from_slice(&[0; (EXACT_LIMIT + 2) * 8]);
        assert!(WindowState::from_bytes(&long).is_err());
    }

    #[test]
    fn sketch_of_another_accuracy_is_rejected() {
        let mut other = Sketch::with_relative_accuracy(0.02).unwrap_or_default();
        other.add(1.0);
        let mut v1 = vec![FORMAT_VERSION_1, 1];
        for x in [1.0f64, 1.0, 1.0, 1.0, 1.0, 0.0] {
            v1.extend_from_slice(&x.to_le_bytes());
        }
        v1.extend_from_slice(&other.to_bytes());
        let mut v2 = vec![FORMAT_VERSION, 1];
        for x in [1.0f64, 1.0, 1.0, 1.0] {
            v2.extend_from_slice(&x.to_le_bytes());
        }
        v2.push(0);
        for x in [1.0f64, 0.0] {
            v2.extend_from_slice(&x.to_le_bytes());
        }
        v2.push(TAG_SKETCH);
        v2.extend_from_slice(&other.to_bytes());
        for bytes in [v1, v2] {
            assert_eq!(
                WindowState::from_bytes(&bytes),
                Err(WindowDecodeError::Invalid("sketch relative accuracy"))
            );
        }
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
    fn small_window_memory_is_bounded() {
        let values = log_uniform(EXACT_LIMIT, 1.0, 1000.0, 0x5eed);
        let w = window_of(&values, 1.0);
        assert!(w.is_exact());
        println!(
            "{EXACT_LIMIT} values, one weight: heap_bytes = {}, serialised = {} bytes",
            w.heap_bytes(),
            w.to_bytes().len()
        );
        assert_eq!(w.heap_bytes(), EXACT_LIMIT * 8);
        let mixed: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, 1.0 + (i % 3) as f64))
            .collect();
        let w = weighted_window(&mixed);
        println!(
            "{EXACT_LIMIT} values, mixed weights: heap_bytes = {}, serialised = {} bytes",
            w.heap_bytes(),
            w.to_bytes().len()
        );
        assert!(w.heap_bytes() <= EXACT_LIMIT * 16);
        // Merged parts never hold more than the bound.
        let mut merged = window_of(&values[..150], 1.0);
        merged.merge(&window_of(&values[150..], 1.0));
        assert!(
            merged.heap_bytes() <= EXACT_LIMIT * 8,
            "{}",
            merged.heap_bytes()
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

    /// Values for property tests, with a wide range of `1e-20..1e20`.
    fn value() -> impl Strategy<Value = f64> {
        crate::stats::strategies::value(20.0)
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

    /// Values at the ends of `f64`: near ±f64::MAX, huge, tiny, subnormal, zero, ordinary.
    fn extreme_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            2 => Just(f64::MAX),
            2 => Just(-f64::MAX),
            2 => Just(1e308),
            2 => Just(-1e308),
            3 => (100.0f64..308.0, any::<bool>())
                .prop_map(|(e, neg)| if neg { -(10f64.powf(e)) } else { 10f64.powf(e) }),
            1 => (-308.0f64..-100.0).prop_map(|e| 10f64.powf(e)),
            1 => Just(f64::MIN_POSITIVE / 8.0),
            1 => Just(0.0),
            2 => value(),
        ]
    }

    /// Weights from tiny to `f64::MAX`.
    fn extreme_weight() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => Just(1.0),
            1 => Just(f64::MAX),
            1 => (100.0f64..308.0).prop_map(|e| 10f64.powf(e)),
            1 => (-300.0f64..0.0).prop_map(|e| 10f64.powf(e)),
            1 => weight(),
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
            prop_assert_eq!(merged.is_exact(), whole.is_exact());
            for q in QS {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
            prop_assert_eq!(merged.sketch(), whole.sketch());
        }

        #[test]
        fn small_merge_of_parts_equals_whole_exactly(
            values in prop::collection::vec((value(), weight(), 0usize..4), 1..=EXACT_LIMIT),
            q in 0.0f64..=1.0,
        ) {
            let pairs: Vec<(f64, f64)> = values.iter().map(|(v, w, _)| (*v, *w)).collect();
            let whole = weighted_window(&pairs);
            let mut parts = vec![WindowState::new(); 4];
            for (v, w, part) in &values {
                parts[*part].observe(*v, *w);
            }
            let mut merged = WindowState::new();
            for part in &parts {
                merged.merge(part);
            }
            prop_assert!(merged.is_exact() && whole.is_exact());
            prop_assert_eq!(&merged.quantiles, &whole.quantiles);
            for q in QS.into_iter().chain([q]) {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
        }

        #[test]
        fn small_windows_equal_numpy_linear(
            values in prop::collection::vec(value(), 1..=EXACT_LIMIT),
            weight in weight(),
            q in 0.0f64..=1.0,
        ) {
            let w = window_of(&values, weight);
            prop_assert!(w.is_exact());
            let sorted = sorted(&values);
            for q in QS.into_iter().chain([q]) {
                prop_assert_eq!(w.quantile(q), numpy_linear(&sorted, q), "q={}", q);
            }
        }

        #[test]
        fn small_weighted_windows_follow_the_definition(
            pairs in prop::collection::vec((value(), weight()), 1..=EXACT_LIMIT),
            q in 0.0f64..=1.0,
            factor in prop_oneof![Just(0.125), Just(3.0), Just(1e6)],
        ) {
            let w = weighted_window(&pairs);
            let rescaled = weighted_window(
                &pairs.iter().map(|&(v, wt)| (v, wt * factor)).collect::<Vec<_>>(),
            );
            let range = w.max() - w.min();
            let mut previous = f64::NEG_INFINITY;
            for q in QS.into_iter().chain([q]) {
                let (got, want) = (w.quantile(q), weighted_reference(&pairs, q));
                prop_assert!((got - want).abs() <= 1e-9 * range.max(want.abs()),
                    "q={} got={} want={}", q, got, want);
                prop_assert!(near(rescaled.quantile(q), got, range));
                if q >= 0.0 && QS.contains(&q) {
                    prop_assert!(got >= previous, "not monotone at q={}", q);
                    previous = got;
                }
            }
        }

        #[test]
        fn quantiles_within_one_percent(
            values in prop::collection::vec(value(), EXACT_LIMIT + 1..3000),
        ) {
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
            pairs in prop::collection::vec((value(), weight()), EXACT_LIMIT + 1..800),
        ) {
            let w = weighted_window(&pairs);
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
            let w = weighted_window(&pairs);
            prop_assert_eq!(WindowState::from_bytes(&w.to_bytes()), Ok(w));
        }

        #[test]
        fn format_1_blobs_decode_to_the_same_statistics(
            pairs in prop::collection::vec((value(), weight()), 0..400),
        ) {
            let old = old_window_of(&pairs);
            let w = WindowState::from_bytes(&old.v1_bytes());
            prop_assert!(w.is_ok(), "{:?}", w);
            let w = w.unwrap_or_default();
            prop_assert_eq!(w.count(), old.count);
            prop_assert_eq!(w.weighted_count(), old.weighted_count);
            prop_assert_eq!((w.sum(), w.min(), w.max()), (old.sum, old.min, old.max));
            prop_assert_eq!(w.stddev(), old.stddev());
            prop_assert!(near(w.mean(), old.mean, 0.0));
            for q in QS {
                let want = old.sketch.quantile(q).map_or(0.0, |v| v.clamp(old.min, old.max));
                prop_assert_eq!(w.quantile(q), want);
            }
            // And what it writes back is format 2, read back unchanged.
            let back = WindowState::from_bytes(&w.to_bytes());
            prop_assert_eq!(back.as_ref(), Ok(&w));
        }

        #[test]
        fn ordinary_data_gives_the_results_of_before(
            values in prop::collection::vec((value(), weight(), 0usize..3), 0..600),
        ) {
            let pairs: Vec<(f64, f64)> = values.iter().map(|(v, w, _)| (*v, *w)).collect();
            let (w, old) = (weighted_window(&pairs), old_window_of(&pairs));
            let mut parts = vec![WindowState::new(); 3];
            let mut old_parts = vec![OldWindow::default(); 3];
            for (v, wt, part) in &values {
                parts[*part].observe(*v, *wt);
                old_parts[*part].observe(*v, *wt);
            }
            let (mut merged, mut old_merged) = (WindowState::new(), OldWindow::default());
            for (part, old_part) in parts.iter().zip(&old_parts) {
                merged.merge(part);
                old_merged.merge(old_part);
            }
            for (new, old) in [(&w, &old), (&merged, &old_merged)] {
                let scale = old.min.abs().max(old.max.abs());
                prop_assert_eq!(new.sum(), old.sum);
                prop_assert_eq!(new.weighted_count(), old.weighted_count);
                prop_assert!(near(new.mean(), old.mean, scale), "{} vs {}", new.mean(), old.mean);
                prop_assert!(near(new.stddev(), old.stddev(), scale),
                    "{} vs {}", new.stddev(), old.stddev());
            }
        }

        #[test]
        fn extreme_values_give_finite_results(
            values in prop::collection::vec((extreme_value(), extreme_weight(), 0usize..3), 1..700),
        ) {
            let pairs: Vec<(f64, f64)> = values.iter().map(|(v, w, _)| (*v, *w)).collect();
            let w = weighted_window(&pairs);
            prop_assert!(assert_finite(&w).is_ok(), "{:?}", assert_finite(&w));
            let mut parts = vec![WindowState::new(); 3];
            for (v, wt, part) in &values {
                parts[*part].observe(*v, *wt);
            }
            let mut merged = WindowState::new();
            for part in &parts {
                merged.merge(part);
            }
            prop_assert!(assert_finite(&merged).is_ok(), "{:?}", assert_finite(&merged));
            prop_assert_eq!((merged.count(), merged.min(), merged.max()), (w.count(), w.min(), w.max()));
            for state in [&w, &merged] {
                let back = WindowState::from_bytes(&state.to_bytes());
                prop_assert_eq!(back.as_ref(), Ok(state));
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = WindowState::from_bytes(&bytes);
        }

        #[test]
        fn decode_of_mutated_blob_never_panics(
            values in prop::collection::vec(value(), 1..300),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = window_of(&values, 1.0).to_bytes();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(w) = WindowState::from_bytes(&bytes) {
                prop_assert!(assert_finite(&w).is_ok(), "{:?}", assert_finite(&w));
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

#[cfg(test)]
mod kind_tests {
    use super::*;

    fn counter(increments: &[(f64, f64)]) -> WindowState {
        let mut w = WindowState::of_kind(SeriesKind::Counter);
        for &(v, weight) in increments {
            w.observe(v, weight);
        }
        w
    }

    fn gauge(values: &[(i64, f64)]) -> WindowState {
        let mut w = WindowState::of_kind(SeriesKind::Gauge);
        for &(ts, v) in values {
            w.observe_at(v, 1.0, ts);
        }
        w
    }

    #[test]
    fn kinds_have_stable_names() {
        for kind in SeriesKind::ALL {
            assert_eq!(SeriesKind::parse(kind.as_str()), Some(kind));
            assert_eq!(WindowState::of_kind(kind).kind(), kind);
        }
        assert_eq!(SeriesKind::parse("histogram"), None);
        assert_eq!(WindowState::new().kind(), SeriesKind::Distribution);
        assert_eq!(
            serde_json::to_string(&SeriesKind::Counter).unwrap(),
            "\"counter\""
        );
    }

    #[test]
    fn a_counter_sums_its_increments_corrected_for_sampling_and_keeps_no_values() {
        // kept at rates 1, 0.5 and 0.25: each increment counts 1, 2 and 4 times
        let w = counter(&[(3.0, 1.0), (5.0, 2.0), (1.0, 4.0), (-2.0, 1.0)]);
        assert_eq!(w.corrected_sum(), Some(3.0 + 10.0 + 4.0 - 2.0));
        let s = w.summary();
        assert_eq!((s.count, s.estimated_count, s.sum), (4, 8.0, 15.0));
        assert_eq!((s.min, s.max), (-2.0, 5.0));
        assert_eq!((s.p50, s.p99), (0.0, 0.0), "no quantiles");
        assert_eq!(w.heap_bytes(), 0, "no values, no sketch");
        for _ in 0..10_000 {
            let mut big = w.clone();
            big.observe(1.0, 1.0);
            assert_eq!(big.heap_bytes(), 0);
        }
        assert_eq!(WindowState::new().corrected_sum(), None);
    }

    #[test]
    fn counter_parts_merge_into_the_whole() {
        let all = [(3.0, 1.0), (5.0, 2.0), (1.0, 4.0), (7.0, 1.0), (2.0, 10.0)];
        let whole = counter(&all);
        for cut in 0..=all.len() {
            let (mut a, b) = (counter(&all[..cut]), counter(&all[cut..]));
            a.merge(&b);
            assert_eq!(a.corrected_sum(), whole.corrected_sum(), "cut at {cut}");
            assert_eq!(a.summary().estimated_count, whole.summary().estimated_count);
            assert_eq!(a.count(), whole.count());
        }
    }

    #[test]
    fn a_gauge_keeps_the_value_of_the_latest_time_whatever_the_order() {
        let values = [(1_000, 5.0), (3_000, 2.0), (2_000, 9.0), (3_000, 1.0)];
        let w = gauge(&values);
        assert_eq!(
            w.last(),
            Some(Last {
                ts_ms: 3_000,
                value: 2.0
            }),
            "latest time; at one time the largest value"
        );
        let s = w.summary();
        assert_eq!((s.count, s.min, s.max), (4, 1.0, 9.0));
        assert_eq!(w.heap_bytes(), 0);
        // any split, merged either way round, gives the same last value
        for cut in 0..=values.len() {
            let (a, b) = (gauge(&values[..cut]), gauge(&values[cut..]));
            for (mut x, y) in [(a.clone(), b.clone()), (b, a)] {
                x.merge(&y);
                assert_eq!(x.last(), w.last(), "cut at {cut}");
                assert_eq!((x.min(), x.max()), (1.0, 9.0));
            }
        }
        assert_eq!(WindowState::of_kind(SeriesKind::Gauge).last(), None);
    }

    #[test]
    fn counters_and_gauges_round_trip_through_bytes() {
        for w in [
            counter(&[]),
            counter(&[(3.0, 1.0), (5.0, 2.5)]),
            gauge(&[]),
            gauge(&[(-5, 1.5), (1_764_000_000_000, -3.0)]),
        ] {
            let back = WindowState::from_bytes(&w.to_bytes()).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.kind(), w.kind());
        }
    }

    #[test]
    fn impossible_counter_and_gauge_blobs_are_errors() {
        let mut empty_counter = counter(&[]).to_bytes();
        let at = empty_counter.len() - 8;
        empty_counter[at..].copy_from_slice(&1.0f64.to_le_bytes());
        assert_eq!(
            WindowState::from_bytes(&empty_counter),
            Err(WindowDecodeError::Invalid("counter sum"))
        );
        let mut outside = gauge(&[(1, 2.0), (2, 3.0)]).to_bytes();
        let at = outside.len() - 8;
        outside[at..].copy_from_slice(&7.0f64.to_le_bytes());
        assert_eq!(
            WindowState::from_bytes(&outside),
            Err(WindowDecodeError::Invalid("gauge's last value"))
        );
    }

    #[test]
    fn two_kinds_never_merge() {
        let mut c = counter(&[(3.0, 1.0)]);
        c.merge(&gauge(&[(1, 4.0)]));
        assert_eq!((c.count(), c.corrected_sum()), (1, Some(3.0)));
        let mut d = WindowState::new();
        d.observe(1.0, 1.0);
        d.merge(&counter(&[(3.0, 1.0)]));
        assert_eq!((d.count(), d.kind()), (1, SeriesKind::Distribution));
    }
}
