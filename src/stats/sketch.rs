//! A DDSketch: quantiles with a relative-error guarantee, merged without loss.
//!
//! This is the sketch of Masson, Rim and Lee, *DDSketch: A Fast and Fully-Mergeable
//! Quantile Sketch with Relative-Error Guarantees* (VLDB 2019), with a store sized for
//! one metric window (a few hundred bins, ~4 bytes each).
//!
//! # The maths
//!
//! Fix a relative accuracy `alpha` and let `gamma = (1 + alpha) / (1 - alpha)`. A value
//! `v` with `|v| >= MIN_INDEXABLE_VALUE` goes to bin `i = ceil(ln|v| / ln gamma)`, so
//! `gamma^(i-1) < |v| <= gamma^i`. Every value of bin `i` is represented by
//! `x_i = 2 gamma^i / (gamma + 1)`: the two ends of the bin are at relative distance
//! exactly `alpha` from `x_i`, so `|x_i - |v|| <= alpha |v|` for every `v` in the bin.
//! Negative values go to a mirrored store keyed by `|v|`; values with
//! `|v| < MIN_INDEXABLE_VALUE` (zero and subnormals) go to a zero count, estimated as 0.
//!
//! A quantile query walks the bins in value order (negative bins from the largest `|v|`
//! down, then the zero count, then positive bins up), summing weights until the target
//! rank is passed, and returns that bin's representative. A bin holds a contiguous range
//! of values, so the order statistic at the target rank lies in the bin returned.
//!
//! ## Rank convention
//!
//! Take `n` observations sorted by value, `x_(0) <= ... <= x_(n-1)`, with weights `w_(k)`,
//! total weight `W` and cumulative weights `C_k = w_(0) + ... + w_(k)`. The `q`-quantile is
//! `x_(k)` for the smallest `k` with `C_k > r`, where `r = q * W * (n - 1) / n`.
//! With equal weights this is `x_(floor(q (n - 1)))`, the lower order statistic DDSketch
//! uses; multiplying every weight by a constant does not change it.
//!
//! ## Guarantee
//!
//! Every estimate `quantile(q)` is within relative error `alpha` of the order statistic
//! above (0 is returned exactly for values in the zero count). The default
//! [`DEFAULT_RELATIVE_ACCURACY`] is 0.009 rather than 0.01: rounding in `ln` and in the
//! division can put a value that sits on a bin boundary into the neighbouring bin, which
//! costs ~1e-15 relative, so "within 1% relative error" holds with room to spare.
//! Measured: the worst relative error over 4 004 quantiles of four 50 000-value
//! log-uniform sets (spans from 0.5..2 to 1e-9..1e9) is 0.008995.
//! Estimates are clamped to `[-f64::MAX, f64::MAX]` (the representative of the top bin can
//! lie just above `f64::MAX`).
//!
//! Weights are finite and positive but otherwise free; a weighted bin saturates at
//! `f64::MAX` rather than overflow (which would make the sketch undecodable), and a query
//! whose total weight overflows `f64` ranks in units of `2^64`. Neither happens with weights
//! that are reciprocals of sample rates.
//!
//! # Memory
//!
//! Each sign has a dense store: an offset and a `Vec` covering only the keys between the
//! smallest and the largest key seen, so memory is proportional to `log(max / min)`, not
//! to the number of values: `ln(max / min) / ln(gamma)` bins, about 384 for 1 ms .. 1000 ms
//! at alpha 0.009. Bins hold `u32` observation counts plus one shared `unit_weight` while
//! every observation has the same weight (the usual case: a sample rate changes only on
//! reconfiguration, and a uniform weight does not move quantiles). An insert or merge with
//! another weight, or a bin that would pass `u32::MAX`, switches the sketch to `f64` weighted
//! bins, 8 bytes each. Measured: 100 000 log-uniform values over 1..1000 give 384 bins and
//! [`Sketch::heap_bytes`] = 1 572 bytes (growth keeps at most 1/8 spare capacity).
//! The worst case, values spanning all of `f64` on one side, is ~79 000 bins (~315 KiB); no
//! bins are ever collapsed, because that would break both the bound and lossless merges.
//!
//! # Binary format (version 1, little-endian)
//!
//! ```text
//! u8      version = 1
//! f64     alpha
//! u8      representation: 0 = uniform counts, 1 = weighted
//! varint  observations (u64, LEB128)
//! uniform:  f64 unit_weight, varint zero count, store(+), store(-); bin = varint u32 count
//! weighted: f64 zero weight,                    store(+), store(-); bin = f64 weight
//! store:  zigzag varint offset (first key), varint bin count, then the bins
//! ```
//!
//! The 100 000-value sketch above serialises to 795 bytes (384 bins, mostly 2-byte varints).

use thiserror::Error;

use crate::encoding::{put_varint, unzigzag, zigzag, Reader};

/// Relative accuracy used by [`Sketch::new`]: 0.009, so that estimates are within 1%.
pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.009;

/// Smallest `|v|` given its own bin; smaller magnitudes (zero, subnormals) count as zero.
pub const MIN_INDEXABLE_VALUE: f64 = f64::MIN_POSITIVE;

/// Smallest relative accuracy accepted, which keeps every key of a finite `f64` in `i32`.
const MIN_RELATIVE_ACCURACY: f64 = 1e-4;

/// Largest relative accuracy accepted (beyond it, `gamma` grows without bound).
const MAX_RELATIVE_ACCURACY: f64 = 0.5;

/// Version byte written first by [`Sketch::to_bytes`].
const FORMAT_VERSION: u8 = 1;

/// Representation tag for [`Bins::Uniform`] in the binary format.
const TAG_UNIFORM: u8 = 0;

/// Representation tag for [`Bins::Weighted`] in the binary format.
const TAG_WEIGHTED: u8 = 1;

/// Errors of sketch construction and merging.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum SketchError {
    /// The relative accuracy is outside the supported range `[1e-4, 0.5]` (or NaN).
    #[error("relative accuracy {0} is outside [0.0001, 0.5]")]
    InvalidAccuracy(f64),
    /// Two sketches with different relative accuracies cannot be merged without loss.
    #[error("cannot merge sketches of relative accuracy {left} and {right}")]
    IncompatibleAccuracy {
        /// The accuracy of the sketch merged into.
        left: f64,
        /// The accuracy of the sketch merged from.
        right: f64,
    },
}

pub use crate::encoding::SketchDecodeError;

/// A DDSketch of `f64` values with relative accuracy `alpha` (see the module docs).
///
/// ```
/// # use eventbatch::stats::sketch::Sketch;
/// let mut s = Sketch::new();
/// for v in 1..=1000 {
///     s.add(f64::from(v));
/// }
/// let p99 = s.quantile(0.99).unwrap_or(0.0);
/// assert!((p99 - 990.0).abs() <= 0.01 * 990.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    /// The relative accuracy, kept to refuse merges with a differently-binned sketch.
    alpha: f64,
    /// `ln gamma`, the bin width on the log scale.
    ln_gamma: f64,
    /// Number of values inserted (weights aside); the rank convention needs it.
    observations: u64,
    /// The bins, as counts with a shared weight or as weights.
    bins: Bins,
}

/// The two representations of the bins.
#[derive(Debug, Clone, PartialEq)]
enum Bins {
    /// Every observation had the same weight `unit_weight`: bins count observations.
    Uniform {
        /// Weight of each observation (1 / sample rate); 1.0 while the sketch is empty.
        unit_weight: f64,
        /// Observations with `|v| < MIN_INDEXABLE_VALUE`.
        zero: u64,
        /// Positive values by key.
        pos: Store<u32>,
        /// Negative values by the key of `|v|`.
        neg: Store<u32>,
    },
    /// Observations had different weights (or a count overflowed): bins sum weights.
    Weighted {
        /// Weight of the values with `|v| < MIN_INDEXABLE_VALUE`.
        zero: f64,
        /// Positive values by key.
        pos: Store<f64>,
        /// Negative values by the key of `|v|`.
        neg: Store<f64>,
    },
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    /// An empty sketch with [`DEFAULT_RELATIVE_ACCURACY`].
    pub fn new() -> Self {
        Self::with_alpha(DEFAULT_RELATIVE_ACCURACY)
    }

    /// An empty sketch with relative accuracy `alpha`, which must lie in `[1e-4, 0.5]`.
    pub fn with_relative_accuracy(alpha: f64) -> Result<Self, SketchError> {
        if (MIN_RELATIVE_ACCURACY..=MAX_RELATIVE_ACCURACY).contains(&alpha) {
            Ok(Self::with_alpha(alpha))
        } else {
            Err(SketchError::InvalidAccuracy(alpha))
        }
    }

    /// An empty sketch; `alpha` is already checked.
    fn with_alpha(alpha: f64) -> Self {
        Sketch {
            alpha,
            ln_gamma: ((1.0 + alpha) / (1.0 - alpha)).ln(),
            observations: 0,
            bins: Bins::Uniform {
                unit_weight: 1.0,
                zero: 0,
                pos: Store::new(),
                neg: Store::new(),
            },
        }
    }

    /// The relative accuracy `alpha` of this sketch.
    pub fn relative_accuracy(&self) -> f64 {
        self.alpha
    }

    /// Adds `v` with weight 1. NaN and infinite values are ignored (callers validate input).
    pub fn add(&mut self, v: f64) {
        self.add_weighted(v, 1.0);
    }

    /// Adds `v` with `weight` (1 / sample rate). A NaN or infinite `v`, or a `weight` that
    /// is not finite and positive, is ignored: the sketch never panics on input.
    pub fn add_weighted(&mut self, v: f64, weight: f64) {
        self.insert(v, weight, 1);
    }

    /// Adds `n` observations of `v`, each of weight `weight`.
    fn insert(&mut self, v: f64, weight: f64, n: u32) {
        if !v.is_finite() || !weight.is_finite() || weight <= 0.0 || n == 0 {
            return;
        }
        let key = self.key(v);
        if self.observations == 0 {
            // An empty sketch adopts the weight of its first value.
            *self = Self::with_alpha(self.alpha);
            if let Bins::Uniform { unit_weight, .. } = &mut self.bins {
                *unit_weight = weight;
            }
        }
        if let Bins::Uniform {
            unit_weight,
            zero,
            pos,
            neg,
        } = &mut self.bins
        {
            if *unit_weight == weight {
                let added = match key {
                    Key::Zero => zero.checked_add(u64::from(n)).map(|z| *zero = z),
                    Key::Pos(k) => checked_add_to(pos.bin_mut(k), n),
                    Key::Neg(k) => checked_add_to(neg.bin_mut(k), n),
                };
                if added.is_some() {
                    self.observations = self.observations.saturating_add(u64::from(n));
                    return;
                }
            }
        }
        // A new weight or a full bin: continue with weighted bins.
        self.make_weighted();
        if let Bins::Weighted { zero, pos, neg } = &mut self.bins {
            let w = weight * f64::from(n);
            let bin = match key {
                Key::Zero => zero,
                Key::Pos(k) => pos.bin_mut(k),
                Key::Neg(k) => neg.bin_mut(k),
            };
            *bin = saturating_add(*bin, w);
        }
        self.observations = self.observations.saturating_add(u64::from(n));
    }

    /// Merges `other` into `self`: afterwards `self` is the sketch of both value sets, bin
    /// for bin (counts are summed, nothing is approximated). Fails, leaving `self`
    /// unchanged, if the relative accuracies differ.
    pub fn merge(&mut self, other: &Sketch) -> Result<(), SketchError> {
        if self.alpha != other.alpha {
            return Err(SketchError::IncompatibleAccuracy {
                left: self.alpha,
                right: other.alpha,
            });
        }
        if other.observations == 0 {
            return Ok(());
        }
        if self.observations == 0 {
            *self = other.clone();
            return Ok(());
        }
        if let (
            Bins::Uniform {
                unit_weight,
                zero,
                pos,
                neg,
            },
            Bins::Uniform {
                unit_weight: other_weight,
                zero: other_zero,
                pos: other_pos,
                neg: other_neg,
            },
        ) = (&mut self.bins, &other.bins)
        {
            let fits = zero.checked_add(*other_zero).is_some()
                && pos.can_add(other_pos)
                && neg.can_add(other_neg);
            if *unit_weight == *other_weight && fits {
                *zero += *other_zero;
                pos.add_store(other_pos, |a, b| a + b);
                neg.add_store(other_neg, |a, b| a + b);
                self.observations = self.observations.saturating_add(other.observations);
                return Ok(());
            }
        }
        self.make_weighted();
        if let Bins::Weighted { zero, pos, neg } = &mut self.bins {
            match &other.bins {
                Bins::Uniform {
                    unit_weight,
                    zero: other_zero,
                    pos: other_pos,
                    neg: other_neg,
                } => {
                    let w = *unit_weight;
                    *zero = saturating_add(*zero, *other_zero as f64 * w);
                    pos.add_store(other_pos, |a, c| saturating_add(a, f64::from(c) * w));
                    neg.add_store(other_neg, |a, c| saturating_add(a, f64::from(c) * w));
                }
                Bins::Weighted {
                    zero: other_zero,
                    pos: other_pos,
                    neg: other_neg,
                } => {
                    *zero = saturating_add(*zero, *other_zero);
                    pos.add_store(other_pos, saturating_add);
                    neg.add_store(other_neg, saturating_add);
                }
            }
        }
        self.observations = self.observations.saturating_add(other.observations);
        Ok(())
    }

    /// The estimated `q`-quantile (rank convention in the module docs), within relative
    /// error `alpha` of the exact one; `None` if the sketch is empty. `q` is clamped to
    /// `[0, 1]`; a NaN `q` counts as 0.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.observations == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let n = self.observations as f64;
        let key = match &self.bins {
            Bins::Uniform { zero, pos, neg, .. } => {
                // All weights equal: ranks in observation counts, exact integers.
                let rank = q * (n - 1.0);
                find_rank(rank, *zero as f64, pos, neg, f64::from)
            }
            Bins::Weighted { zero, pos, neg } => {
                // Bins saturate at f64::MAX, so their total can overflow; then rank in units
                // of 2^64 (exact: a power of two), which keeps every comparison as it was.
                let unit = if self.raw_total().is_finite() {
                    1.0
                } else {
                    SATURATED_UNIT
                };
                let total = *zero * unit
                    + pos.iter().map(|(_, w)| w * unit).sum::<f64>()
                    + neg.iter().map(|(_, w)| w * unit).sum::<f64>();
                let rank = q * total * (n - 1.0) / n;
                find_rank(rank, *zero * unit, pos, neg, |w| w * unit)
            }
        };
        Some(match key {
            Key::Zero => 0.0,
            Key::Pos(k) => self.value(k),
            Key::Neg(k) => -self.value(k),
        })
    }

    /// Total weight inserted: the number of events corrected for sampling (saturated at
    /// `f64::MAX`).
    pub fn count(&self) -> f64 {
        match &self.bins {
            Bins::Uniform { unit_weight, .. } => {
                (self.observations as f64 * unit_weight).min(f64::MAX)
            }
            Bins::Weighted { .. } => self.raw_total().min(f64::MAX),
        }
    }

    /// The sum of the weighted bins in `f64` (infinite if it overflows); with uniform bins,
    /// the observations times the unit weight.
    fn raw_total(&self) -> f64 {
        match &self.bins {
            Bins::Uniform { unit_weight, .. } => self.observations as f64 * unit_weight,
            Bins::Weighted { zero, pos, neg } => {
                zero + pos.iter().map(|(_, w)| w).sum::<f64>()
                    + neg.iter().map(|(_, w)| w).sum::<f64>()
            }
        }
    }

    /// Number of values inserted, ignoring their weights.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Whether no value has been inserted.
    pub fn is_empty(&self) -> bool {
        self.observations == 0
    }

    /// Whether the bins still hold `u32` counts with one shared weight (see module docs).
    pub fn is_uniform(&self) -> bool {
        matches!(self.bins, Bins::Uniform { .. })
    }

    /// Bytes allocated on the heap by the bins (capacity, not just length).
    pub fn heap_bytes(&self) -> usize {
        match &self.bins {
            Bins::Uniform { pos, neg, .. } => pos.heap_bytes() + neg.heap_bytes(),
            Bins::Weighted { pos, neg, .. } => pos.heap_bytes() + neg.heap_bytes(),
        }
    }

    /// Serialises the sketch (format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 2 * self.bin_count());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.alpha.to_le_bytes());
        match &self.bins {
            Bins::Uniform {
                unit_weight,
                zero,
                pos,
                neg,
            } => {
                out.push(TAG_UNIFORM);
                put_varint(&mut out, self.observations);
                out.extend_from_slice(&unit_weight.to_le_bytes());
                put_varint(&mut out, *zero);
                for store in [pos, neg] {
                    store.encode(&mut out, |out, c| put_varint(out, u64::from(c)));
                }
            }
            Bins::Weighted { zero, pos, neg } => {
                out.push(TAG_WEIGHTED);
                put_varint(&mut out, self.observations);
                out.extend_from_slice(&zero.to_le_bytes());
                for store in [pos, neg] {
                    store.encode(&mut out, |out, w| out.extend_from_slice(&w.to_le_bytes()));
                }
            }
        }
        out
    }

    /// Reads a sketch written by [`Sketch::to_bytes`]. Any byte string gives either a valid
    /// sketch or an error, never a panic, and allocation is bounded by the input length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, SketchDecodeError> {
        let mut r = Reader::new(bytes);
        let sketch = Self::decode(&mut r)?;
        r.finish()?;
        Ok(sketch)
    }

    /// Reads a sketch from `r`, leaving `r` after it.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Sketch, SketchDecodeError> {
        let version = r.byte()?;
        if version != FORMAT_VERSION {
            return Err(SketchDecodeError::UnsupportedVersion(version));
        }
        let alpha = r.f64()?;
        let mut sketch = Sketch::with_relative_accuracy(alpha)
            .map_err(|_| SketchDecodeError::Invalid("relative accuracy"))?;
        let max_key = sketch.max_key();
        let tag = r.byte()?;
        sketch.observations = r.varint()?;
        let (nonempty, bins) = match tag {
            TAG_UNIFORM => {
                let unit_weight = r.f64()?;
                if !(unit_weight.is_finite() && unit_weight > 0.0) {
                    return Err(SketchDecodeError::Invalid("unit weight"));
                }
                let zero = r.varint()?;
                let read_count = |r: &mut Reader<'_>| {
                    u32::try_from(r.varint()?).map_err(|_| SketchDecodeError::Invalid("bin count"))
                };
                let pos = Store::decode(r, max_key, 1, read_count)?;
                let neg = Store::decode(r, max_key, 1, read_count)?;
                let total = pos
                    .iter()
                    .chain(neg.iter())
                    .try_fold(zero, |acc, (_, c)| acc.checked_add(u64::from(c)));
                if total != Some(sketch.observations) {
                    return Err(SketchDecodeError::Invalid(
                        "bin counts do not sum to observations",
                    ));
                }
                let bins = Bins::Uniform {
                    unit_weight,
                    zero,
                    pos,
                    neg,
                };
                (sketch.observations > 0, bins)
            }
            TAG_WEIGHTED => {
                let valid = |w: f64| w.is_finite() && w >= 0.0;
                let zero = r.f64()?;
                if !valid(zero) {
                    return Err(SketchDecodeError::Invalid("zero weight"));
                }
                let read_weight = |r: &mut Reader<'_>| {
                    let w = r.f64()?;
                    if valid(w) {
                        Ok(w)
                    } else {
                        Err(SketchDecodeError::Invalid("bin weight"))
                    }
                };
                let pos = Store::decode(r, max_key, 8, read_weight)?;
                let neg = Store::decode(r, max_key, 8, read_weight)?;
                let nonempty = zero > 0.0 || pos.iter().chain(neg.iter()).any(|(_, w)| w > 0.0);
                (nonempty, Bins::Weighted { zero, pos, neg })
            }
            _ => return Err(SketchDecodeError::Invalid("representation tag")),
        };
        if nonempty != (sketch.observations > 0) {
            return Err(SketchDecodeError::Invalid(
                "observations do not match the bins",
            ));
        }
        sketch.bins = bins;
        Ok(sketch)
    }

    /// The bin of `v` (finite).
    fn key(&self, v: f64) -> Key {
        let magnitude = v.abs();
        if magnitude < MIN_INDEXABLE_VALUE {
            return Key::Zero;
        }
        // ceil(ln|v| / ln gamma); `as` saturates, and the range of keys fits in i32.
        let k = (magnitude.ln() / self.ln_gamma).ceil() as i32;
        if v > 0.0 {
            Key::Pos(k)
        } else {
            Key::Neg(k)
        }
    }

    /// The representative `2 gamma^k / (gamma + 1)` of bin `k`, at most `f64::MAX`.
    fn value(&self, k: i32) -> f64 {
        // gamma^k * 2/(gamma+1) = gamma^k * (1 - alpha); computed in logs so the top bin
        // does not overflow before the factor below 1 is applied.
        let v = (f64::from(k) * self.ln_gamma + (1.0 - self.alpha).ln()).exp();
        v.min(f64::MAX)
    }

    /// The largest key a finite value can have; decoding rejects keys beyond it.
    fn max_key(&self) -> i64 {
        (f64::MAX.ln() / self.ln_gamma).ceil() as i64 + 1
    }

    /// Number of bins in both stores (for sizing buffers).
    fn bin_count(&self) -> usize {
        match &self.bins {
            Bins::Uniform { pos, neg, .. } => pos.bins.len() + neg.bins.len(),
            Bins::Weighted { pos, neg, .. } => pos.bins.len() + neg.bins.len(),
        }
    }

    /// Switches to weighted bins (each count times the unit weight); no-op if weighted.
    fn make_weighted(&mut self) {
        if let Bins::Uniform {
            unit_weight,
            zero,
            pos,
            neg,
        } = &self.bins
        {
            let w = *unit_weight;
            self.bins = Bins::Weighted {
                zero: saturating_add(0.0, *zero as f64 * w),
                pos: pos.map(|c| saturating_add(0.0, f64::from(c) * w)),
                neg: neg.map(|c| saturating_add(0.0, f64::from(c) * w)),
            };
        }
    }

    /// Test helper: adds `n` observations of `v` with weight `weight` in one step.
    #[cfg(test)]
    fn add_many(&mut self, v: f64, weight: f64, n: u32) {
        self.insert(v, weight, n);
    }
}

/// `a + b` for weights, saturated at `f64::MAX`, so that a weighted bin stays finite (and
/// decodable) whatever finite weights arrive.
fn saturating_add(a: f64, b: f64) -> f64 {
    (a + b).min(f64::MAX)
}

/// The weight unit of a quantile query whose total weight overflows `f64`: `2^-64`, small
/// enough that the ~160 000 bins a sketch can hold, each at most `f64::MAX`, sum finitely.
const SATURATED_UNIT: f64 = 1.0 / 18_446_744_073_709_551_616.0;

/// Adds `n` to a `u32` bin; `None` (bin unchanged) if it would overflow.
fn checked_add_to(bin: &mut u32, n: u32) -> Option<()> {
    bin.checked_add(n).map(|c| *bin = c)
}

/// Which bin a value falls in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    /// `|v| < MIN_INDEXABLE_VALUE`.
    Zero,
    /// `v > 0`, bin `k`.
    Pos(i32),
    /// `v < 0`, bin `k` of `|v|`.
    Neg(i32),
}

/// Walks the bins in value order and returns the first whose cumulative weight exceeds
/// `rank`. Falls back to the largest bin if rounding (or an overflowed total) leaves
/// `rank` unreached.
fn find_rank<C: Copy + Default + PartialEq>(
    rank: f64,
    zero: f64,
    pos: &Store<C>,
    neg: &Store<C>,
    weight: impl Fn(C) -> f64,
) -> Key {
    let nonzero = |(_, c): &(i32, C)| *c != C::default();
    let mut cumulative = 0.0;
    for (k, c) in neg.iter().rev().filter(nonzero) {
        cumulative += weight(c);
        if cumulative > rank {
            return Key::Neg(k);
        }
    }
    if zero > 0.0 {
        cumulative += zero;
        if cumulative > rank {
            return Key::Zero;
        }
    }
    for (k, c) in pos.iter().filter(nonzero) {
        cumulative += weight(c);
        if cumulative > rank {
            return Key::Pos(k);
        }
    }
    // Only reached through rounding: return the largest value present.
    if let Some((k, _)) = pos.iter().rev().find(nonzero) {
        Key::Pos(k)
    } else if zero > 0.0 {
        Key::Zero
    } else if let Some((k, _)) = neg.iter().find(nonzero) {
        Key::Neg(k)
    } else {
        Key::Zero
    }
}

/// A dense store: `bins[i]` is the count (or weight) of key `offset + i`, spanning only
/// the keys between the smallest and the largest seen.
#[derive(Debug, Clone, PartialEq)]
struct Store<C> {
    /// Key of `bins[0]`.
    offset: i32,
    /// One entry per key in `offset .. offset + bins.len()`.
    bins: Vec<C>,
}

impl<C: Copy + Default> Store<C> {
    /// An empty store (no allocation).
    fn new() -> Self {
        Store {
            offset: 0,
            bins: Vec::new(),
        }
    }

    /// The bin of `key`, growing the store to reach it.
    fn bin_mut(&mut self, key: i32) -> &mut C {
        if self.bins.is_empty() {
            self.offset = key;
            self.bins.push(C::default());
        } else if key < self.offset {
            let extra = (i64::from(self.offset) - i64::from(key)) as usize;
            self.reserve(extra);
            self.bins
                .splice(0..0, std::iter::repeat_n(C::default(), extra));
            self.offset = key;
        } else {
            let index = (i64::from(key) - i64::from(self.offset)) as usize;
            if index >= self.bins.len() {
                self.reserve(index + 1 - self.bins.len());
                self.bins.resize(index + 1, C::default());
            }
        }
        let index = (i64::from(key) - i64::from(self.offset)) as usize;
        &mut self.bins[index]
    }

    /// Reserves room for `extra` more bins, growing by at least 1/8 so that a store built
    /// one key at a time costs amortised O(1) per key yet wastes at most 1/8 of its size.
    fn reserve(&mut self, extra: usize) {
        if self.bins.capacity() - self.bins.len() < extra {
            self.bins
                .reserve_exact(extra.max(self.bins.len() / 8).max(4));
        }
    }

    /// `(key, count)` for every bin, in key order.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, C)> + '_ {
        let offset = self.offset;
        // Keys fit in i32: the store never spans more than the i32 keys of finite values.
        let key = move |(i, c): (usize, C)| (offset.wrapping_add(i as i32), c);
        self.bins.iter().copied().enumerate().map(key)
    }

    /// Adds every bin of `other` into `self` with `add(self_bin, other_bin)`.
    fn add_store<D: Copy + Default>(&mut self, other: &Store<D>, add: impl Fn(C, D) -> C) {
        let (Some((first, _)), Some((last, _))) = (other.iter().next(), other.iter().next_back())
        else {
            return;
        };
        // Grow once to cover other's span, then add in place.
        self.bin_mut(first);
        self.bin_mut(last);
        for (k, d) in other.iter() {
            let bin = self.bin_mut(k);
            *bin = add(*bin, d);
        }
    }

    /// The same store with every bin mapped through `f`.
    fn map<D>(&self, f: impl Fn(C) -> D) -> Store<D> {
        Store {
            offset: self.offset,
            bins: self.bins.iter().map(|&c| f(c)).collect(),
        }
    }

    /// Heap bytes allocated (capacity times bin size).
    fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<C>()
    }

    /// Appends the store: zigzag offset, bin count, then each bin with `put`.
    fn encode(&self, out: &mut Vec<u8>, put: impl Fn(&mut Vec<u8>, C)) {
        put_varint(out, zigzag(i64::from(self.offset)));
        put_varint(out, self.bins.len() as u64);
        for &c in &self.bins {
            put(out, c);
        }
    }

    /// Reads a store whose keys must lie in `[-max_key, max_key]` and whose bins take at
    /// least `min_bin_bytes` each (which bounds the allocation by the input length).
    fn decode(
        r: &mut Reader<'_>,
        max_key: i64,
        min_bin_bytes: usize,
        read: impl Fn(&mut Reader<'_>) -> Result<C, SketchDecodeError>,
    ) -> Result<Self, SketchDecodeError> {
        let offset = unzigzag(r.varint()?);
        let len = r.varint()?;
        if len > (r.remaining() / min_bin_bytes) as u64 {
            return Err(SketchDecodeError::Truncated);
        }
        let last = offset.checked_add(len as i64);
        let in_range = |k: i64| (-max_key..=max_key).contains(&k);
        if len > 0 && !(in_range(offset) && last.is_some_and(|l| in_range(l - 1))) {
            return Err(SketchDecodeError::Invalid("bin key out of range"));
        }
        let mut bins = Vec::with_capacity(len as usize);
        for _ in 0..len {
            bins.push(read(r)?);
        }
        // In range, so the offset fits in i32 (max_key is below i32::MAX).
        let offset = i32::try_from(offset).map_err(|_| SketchDecodeError::Invalid("offset"))?;
        Ok(Store {
            offset: if bins.is_empty() { 0 } else { offset },
            bins,
        })
    }
}

impl Store<u32> {
    /// Whether adding `other` bin-wise keeps every bin within `u32`.
    fn can_add(&self, other: &Store<u32>) -> bool {
        other.iter().all(|(k, c)| {
            let index = i64::from(k) - i64::from(self.offset);
            let mine = usize::try_from(index)
                .ok()
                .and_then(|i| self.bins.get(i))
                .copied()
                .unwrap_or(0);
            mine.checked_add(c).is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Relative error bound promised by the docs.
    const BOUND: f64 = 0.01;

    /// `|est - exact| <= BOUND * |exact|`.
    fn close(est: f64, exact: f64) -> bool {
        (est - exact).abs() <= BOUND * exact.abs()
    }

    /// The exact order statistic at rank floor(q (n - 1)).
    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    /// The quantiles the property tests check, p1 .. p99.9.
    const QS: [f64; 12] = [
        0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.0,
    ];

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        for &v in values {
            s.add(v);
        }
        s
    }

    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    #[test]
    fn empty_sketch() {
        let s = Sketch::new();
        assert!(s.is_empty());
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.count(), 0.0);
        assert_eq!(s.heap_bytes(), 0);
        assert_eq!(Sketch::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn single_value() {
        let s = sketch_of(&[42.0]);
        for q in [0.0, 0.5, 1.0, -3.0, 7.0, f64::NAN] {
            let est = s.quantile(q).unwrap_or(f64::NAN);
            assert!(close(est, 42.0), "q={q} est={est}");
        }
        assert_eq!(s.count(), 1.0);
        assert_eq!(s.observations(), 1);
    }

    #[test]
    fn zeros_and_tiny_values_are_zero() {
        let s = sketch_of(&[0.0, -0.0, 1e-310, 0.0]);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(0.0));
        assert_eq!(s.observations(), 4);
        assert_eq!(s.heap_bytes(), 0);
    }

    #[test]
    fn negatives_and_mixed_signs() {
        let values = [-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0];
        let s = sketch_of(&values);
        for (i, q) in [0.0, 1.0 / 6.0, 2.0 / 6.0, 0.5, 4.0 / 6.0, 5.0 / 6.0, 1.0]
            .iter()
            .enumerate()
        {
            let est = s.quantile(*q).unwrap_or(f64::NAN);
            assert!(close(est, values[i]), "q={q} est={est} want {}", values[i]);
        }
        let all_neg = sketch_of(&[-5.0, -3.0, -1.0]);
        assert!(close(all_neg.quantile(0.0).unwrap_or(0.0), -5.0));
        assert!(close(all_neg.quantile(1.0).unwrap_or(0.0), -1.0));
    }

    #[test]
    fn huge_and_tiny_values() {
        let values = [1e-300, f64::MAX, 3.0, -f64::MAX, f64::MIN_POSITIVE];
        let s = sketch_of(&values);
        let sorted = sorted(&values);
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let est = s.quantile(q).unwrap_or(f64::NAN);
            let exact = exact_quantile(&sorted, q);
            assert!(
                est.is_finite() && close(est, exact),
                "q={q} {est} vs {exact}"
            );
        }
    }

    #[test]
    fn nan_and_infinite_input_is_ignored() {
        let mut s = sketch_of(&[1.0]);
        s.add(f64::NAN);
        s.add(f64::INFINITY);
        s.add(f64::NEG_INFINITY);
        s.add_weighted(2.0, 0.0);
        s.add_weighted(2.0, -1.0);
        s.add_weighted(2.0, f64::NAN);
        s.add_weighted(2.0, f64::INFINITY);
        assert_eq!(s, sketch_of(&[1.0]));
    }

    #[test]
    fn uniform_weight_keeps_counts_and_quantiles() {
        let values: Vec<f64> = (1..=500).map(f64::from).collect();
        let plain = sketch_of(&values);
        let mut weighted = Sketch::new();
        for &v in &values {
            weighted.add_weighted(v, 10.0);
        }
        assert!(weighted.is_uniform());
        assert_eq!(weighted.count(), 5000.0);
        for q in QS {
            assert_eq!(weighted.quantile(q), plain.quantile(q));
        }
    }

    #[test]
    fn a_second_weight_switches_to_weighted_bins() {
        let mut s = Sketch::new();
        s.add_weighted(1.0, 2.0);
        s.add_weighted(100.0, 2.0);
        assert!(s.is_uniform());
        s.add_weighted(100.0, 6.0);
        assert!(!s.is_uniform());
        assert_eq!(s.count(), 10.0);
        assert_eq!(s.observations(), 3);
        // Weight 2 at 1.0 and 8 at 100.0: the median is 100.
        assert!(close(s.quantile(0.5).unwrap_or(0.0), 100.0));
        assert!(close(s.quantile(0.0).unwrap_or(0.0), 1.0));
        assert_eq!(Sketch::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn merging_different_weights_switches_to_weighted_bins() {
        let mut a = Sketch::new();
        a.add_weighted(1.0, 1.0);
        let mut b = Sketch::new();
        b.add_weighted(1000.0, 3.0);
        a.merge(&b).unwrap();
        assert!(!a.is_uniform());
        assert_eq!(a.count(), 4.0);
        assert!(close(a.quantile(0.5).unwrap_or(0.0), 1000.0));
    }

    #[test]
    fn u32_overflow_switches_to_weighted_bins() {
        let mut s = Sketch::new();
        s.add_many(5.0, 1.0, u32::MAX);
        assert!(s.is_uniform());
        s.add(5.0);
        assert!(!s.is_uniform());
        assert_eq!(s.observations(), u64::from(u32::MAX) + 1);
        assert_eq!(s.count(), u64::from(u32::MAX) as f64 + 1.0);

        // The same through a merge.
        let mut a = Sketch::new();
        a.add_many(5.0, 1.0, u32::MAX - 1);
        a.add(7.0);
        let mut b = Sketch::new();
        b.add_many(5.0, 1.0, 2);
        a.merge(&b).unwrap();
        assert!(!a.is_uniform());
        assert_eq!(a.count(), u64::from(u32::MAX) as f64 + 2.0);
        assert!(close(a.quantile(1.0).unwrap_or(0.0), 7.0));
        assert!(close(a.quantile(0.5).unwrap_or(0.0), 5.0));
    }

    #[test]
    fn huge_weights_saturate_and_still_decode() {
        let mut s = Sketch::new();
        s.add_weighted(1.0, f64::MAX);
        s.add_weighted(1.0, f64::MAX);
        assert!(s.is_uniform());
        assert_eq!(s.count(), f64::MAX);
        s.add_weighted(10.0, 1e308);
        assert!(!s.is_uniform());
        s.add_weighted(100.0, f64::MAX);
        assert_eq!(s.count(), f64::MAX);
        // Weights MAX, 1e308, MAX (the first bin saturated): rank 0.6 * 3/4 of the total is
        // past the first bin (0.39 of it) and within the second.
        assert!(close(s.quantile(0.6).unwrap_or(0.0), 10.0));
        assert!(close(s.quantile(1.0).unwrap_or(0.0), 100.0));
        let mut merged = s.clone();
        merged.merge(&s).unwrap();
        assert_eq!(merged.count(), f64::MAX);
        assert!(close(merged.quantile(0.6).unwrap_or(0.0), 10.0));
        assert_eq!(Sketch::from_bytes(&merged.to_bytes()), Ok(merged));
        assert_eq!(Sketch::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn merge_with_other_accuracy_fails_and_leaves_self() {
        let mut a = sketch_of(&[1.0, 2.0]);
        let before = a.clone();
        let mut b = Sketch::with_relative_accuracy(0.02).unwrap();
        b.add(3.0);
        assert!(matches!(
            a.merge(&b),
            Err(SketchError::IncompatibleAccuracy { .. })
        ));
        assert_eq!(a, before);
        assert!(Sketch::with_relative_accuracy(0.0).is_err());
        assert!(Sketch::with_relative_accuracy(f64::NAN).is_err());
    }

    #[test]
    fn merge_with_empty_either_way() {
        let a = sketch_of(&[1.0, 2.0, 3.0]);
        let mut left = a.clone();
        left.merge(&Sketch::new()).unwrap();
        assert_eq!(left, a);
        let mut right = Sketch::new();
        right.merge(&a).unwrap();
        assert_eq!(right, a);
    }

    #[test]
    fn decode_rejects_truncated_and_garbage_bytes() {
        let s = sketch_of(&[1.0, -2.0, 0.0, 300.0, 5e6]);
        let bytes = s.to_bytes();
        for len in 0..bytes.len() {
            assert!(Sketch::from_bytes(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Sketch::from_bytes(&longer),
            Err(SketchDecodeError::TrailingBytes(1))
        );
        let mut bad_version = bytes.clone();
        bad_version[0] = 9;
        assert_eq!(
            Sketch::from_bytes(&bad_version),
            Err(SketchDecodeError::UnsupportedVersion(9))
        );
        assert!(Sketch::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        // A huge declared bin count must not allocate.
        let mut huge = vec![FORMAT_VERSION];
        huge.extend_from_slice(&DEFAULT_RELATIVE_ACCURACY.to_le_bytes());
        huge.extend_from_slice(&[TAG_UNIFORM, 1]);
        huge.extend_from_slice(&1.0f64.to_le_bytes());
        huge.extend_from_slice(&[0, 0]);
        put_varint(&mut huge, u64::MAX);
        assert_eq!(Sketch::from_bytes(&huge), Err(SketchDecodeError::Truncated));
    }

    #[test]
    fn varint_and_zigzag_round_trip() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Reader::new(&out).varint(), Ok(v));
        }
        for v in [0, 1, -1, 63, -64, i64::from(i32::MIN), i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    /// Values for the property tests, with a wide range of `1e-30..1e30`.
    fn value() -> impl Strategy<Value = f64> {
        crate::stats::strategies::value(30.0)
    }

    /// Weights: a few repeated ones (uniform runs) and arbitrary ones (weighted bins).
    fn weight() -> impl Strategy<Value = f64> {
        prop_oneof![Just(1.0), Just(2.5), 0.1f64..100.0]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn quantiles_within_one_percent(values in prop::collection::vec(value(), 1..2000)) {
            let s = sketch_of(&values);
            let sorted = sorted(&values);
            for q in QS {
                let est = s.quantile(q).unwrap_or(f64::NAN);
                let exact = exact_quantile(&sorted, q);
                prop_assert!(close(est, exact), "q={} est={} exact={}", q, est, exact);
            }
        }

        #[test]
        fn merge_of_parts_equals_whole(
            values in prop::collection::vec((value(), 0usize..4), 0..500),
        ) {
            let whole = sketch_of(&values.iter().map(|(v, _)| *v).collect::<Vec<_>>());
            let mut parts = vec![Sketch::new(); 4];
            for (v, part) in &values {
                parts[*part].add(*v);
            }
            let mut merged = Sketch::new();
            for part in &parts {
                merged.merge(part).unwrap();
            }
            prop_assert_eq!(merged.observations(), whole.observations());
            for q in QS {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
            prop_assert_eq!(
                Sketch::from_bytes(&merged.to_bytes()).map(|s| s.to_bytes()),
                Ok(whole.to_bytes())
            );
        }

        #[test]
        fn round_trip_is_exact(
            values in prop::collection::vec((value(), weight()), 0..300),
        ) {
            let mut s = Sketch::new();
            for (v, w) in &values {
                s.add_weighted(*v, *w);
            }
            prop_assert_eq!(Sketch::from_bytes(&s.to_bytes()), Ok(s));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Sketch::from_bytes(&bytes);
        }

        #[test]
        fn decode_of_mutated_blob_never_panics(
            values in prop::collection::vec(value(), 1..50),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = sketch_of(&values).to_bytes();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(s) = Sketch::from_bytes(&bytes) {
                let _ = s.quantile(0.5);
                let _ = s.count();
            }
        }
    }
}
