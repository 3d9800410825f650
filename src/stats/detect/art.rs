//! An adaptive resonance (ART) anomaly model, streaming and bounded: the ideas of ARTime
//! (Mark Hampton's NAB detector, `markNZed/ARTimeNAB.jl`, the best published NAB score), with
//! what needs a whole file replaced by what a stream can know.
//!
//! # Features
//!
//! Values are taken in blocks of `step` ("downsampling"). A block is summarised by its
//! extreme on the side away from a moving average of the block means (its mean when the
//! extreme is within 10% of it), normalised into `[0, 1]` by the smallest and largest value
//! seen so far (ARTime uses the file's, which a stream cannot know), quantised to 80 levels
//! and snapped to the median level when within 0.075 of it (the median of every level so far,
//! from a histogram of 81 counts: quiet noise around the usual level is one feature). The
//! last [`WINDOW`] block levels make a window; its features are the window itself and the
//! full Haar transform of the window rescaled to `[0, 1]`, also rescaled: where the series
//! is, and what shape it has. Complement coding doubles them to `4 WINDOW` inputs in `[0, 1]`.
//!
//! # Dual-vigilance fuzzy ART
//!
//! A category is a box of feature space, stored as its complement-coded lower corner `w`.
//! The match of input `x` to category `w` is `(|x ∧ w| / |w|)^3 e^2`, `∧` the element-wise
//! minimum and `|.|` the sum, `e` the same ratio over the newest level and its complement
//! only (the "energy": where the series is now). Against the best match `A`:
//!
//! - `A >= rho_ub`: the input resonates; every category matched at least that well learns
//!   it (`w <- x ∧ w`, the box grows to hold it);
//! - `rho_lb <= A < rho_ub`: a new category for the input, near a known one: no anomaly;
//! - `A < rho_lb`: a new category far from all: the input is of a kind never seen, and
//!   unless masked (below) it is an anomaly with confidence `0.35 u + 0.65 l + 1.5 (1 -
//!   e)`, capped at 1, `u` and `l` how far `1 - A` lies beyond `1 - rho_ub` and `1 - rho_lb`
//!   relative to `1 - A` (ARTime's).
//!
//! # Adaptive vigilance
//!
//! The first [`PROBATION`] windows only learn, at vigilance 0.8 (ARTime's initial value);
//! both bounds then start at the mean best match over the second half of the probation
//! (ARTime trains a second model on the probation re-ordered by similarity for this). From
//! then on, every `PROBATION / 2` windows and [`MASK`] windows after an anomaly: `rho_ub`
//! is the mean of every best match so far (at most 0.97); `rho_lb` rises by 19% of the way
//! to the smallest best match of the last `PROBATION / 2` windows when it is below it, and
//! otherwise falls by half the mean shortfall below `rho_ub` of the last `PROBATION` windows
//! (each capped at 0.37, those above 0.05 only; at least 0.01), but not below the mean
//! match of the anomalies so far. After a vigilance change, and within [`MASK`] windows of
//! an anomaly, a new category is an anomaly only if it matches much worse than the last
//! anomaly (below 0.7 or 0.9 of its match); the masking after a change lasts until
//! [`MASK`] windows in a row were known.
//!
//! # Bounded
//!
//! ARTime keeps every category. Here at most `categories` are kept: a new category beyond
//! that replaces the one least recently matched best or learned. State: `categories` boxes of
//! `4 WINDOW` `f32`s and a `u32` each (`132 categories` bytes, 16,896 with 128), `PROBATION +
//! 1` shortfalls and `PROBATION / 2 + 1` best matches (1,264 bytes), reserved at the first
//! full window, and 680 bytes of fields (the 81 level counts among them). Cost per value:
//! one block update; per block (every `step` values), `categories * 4 WINDOW`
//! minimum-and-adds.

use std::collections::VecDeque;

/// Block levels per window, as in ARTime (a power of two: the Haar transform halves it).
pub const WINDOW: usize = 8;
/// Features per window: the levels and their Haar transform.
const FEATURES: usize = 2 * WINDOW;
/// Inputs per window once complement coded.
const CODED: usize = 2 * FEATURES;
/// Windows that only learn before the first judgement: ARTime's `windows_per_pb * window`.
pub const PROBATION: usize = 13 * WINDOW;
/// Windows masked after an anomaly: ARTime's `1.5 window`.
pub const MASK: usize = WINDOW * 3 / 2;
/// Quantisation levels of a normalised block value.
const LEVELS: usize = 80;
/// Distance (normalised) within which a block value snaps to the median level.
const CHOMP: f64 = 0.075;
/// Vigilance during the probation.
const INITIAL_RHO: f64 = 0.8;
/// Highest upper vigilance.
const MAX_RHO_UB: f64 = 0.97;

/// The sizes of an [`ArtModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtShape {
    /// Values per block (at least 1).
    pub step: usize,
    /// Most categories kept (at least 1).
    pub categories: usize,
}

/// The running summary of the block being filled.
#[derive(Debug, Clone, Copy)]
struct Block {
    n: usize,
    sum: f64,
    min: f64,
    max: f64,
}

impl Block {
    const EMPTY: Block = Block {
        n: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };
}

/// The categories: lower corners of boxes in complement-coded feature space.
#[derive(Debug, Clone, Default)]
struct Categories {
    /// `CODED` weights per category, category after category.
    weights: Vec<f32>,
    /// For each category, the window it last matched best, learned or was made.
    last_used: Vec<u32>,
}

/// The outcome of presenting one window to the categories.
struct Presented {
    /// Best match `A` (0 with no category yet).
    best: f64,
    /// Energy similarity of the best-matching category.
    energy: f64,
    /// Whether a new category far from every known one was made (`A < rho_lb`).
    novel: bool,
}

impl Categories {
    fn len(&self) -> usize {
        self.last_used.len()
    }

    /// Match and energy similarity of `x` to category `j`.
    fn matching(&self, j: usize, x: &[f64; CODED]) -> (f64, f64) {
        let w = &self.weights[j * CODED..(j + 1) * CODED];
        let (mut common, mut size) = (0.0, 0.0);
        for (&wi, &xi) in w.iter().zip(x) {
            let wi = f64::from(wi);
            common += wi.min(xi);
            size += wi;
        }
        let features = if size > 0.0 { common / size } else { 1.0 };
        let energy_of = |i: usize| (f64::from(w[i]).min(x[i]), f64::from(w[i]));
        let (a, b) = energy_of(FEATURES - 1);
        let (c, d) = energy_of(CODED - 1);
        let energy = if b + d > 0.0 { (a + c) / (b + d) } else { 1.0 };
        (features.powi(3) * energy.powi(2), energy)
    }

    /// Adds `x` as a category, replacing the least recently used one when `cap` are kept.
    fn add(&mut self, x: &[f64; CODED], now: u32, cap: usize) {
        let as_f32 = x.map(|v| v as f32);
        if self.len() < cap {
            self.weights.extend_from_slice(&as_f32);
            self.last_used.push(now);
        } else if let Some(j) = (0..self.len()).min_by_key(|&j| self.last_used[j]) {
            self.weights[j * CODED..(j + 1) * CODED].copy_from_slice(&as_f32);
            self.last_used[j] = now;
        }
    }

    /// Fuzzy ART with two vigilances (see the module docs).
    fn present(
        &mut self,
        x: &[f64; CODED],
        (rho_lb, rho_ub): (f64, f64),
        now: u32,
        cap: usize,
    ) -> Presented {
        let mut best = (0.0, 1.0, None);
        let mut resonant = false;
        for j in 0..self.len() {
            let (m, e) = self.matching(j, x);
            if best.2.is_none() || m > best.0 {
                best = (m, e, Some(j));
            }
            if m >= rho_ub {
                // fast learning: the box grows just enough to hold the input
                let w = &mut self.weights[j * CODED..(j + 1) * CODED];
                for (wi, &xi) in w.iter_mut().zip(x) {
                    *wi = wi.min(xi as f32);
                }
                self.last_used[j] = now;
                resonant = true;
            }
        }
        let (best, energy, at) = best;
        if let Some(j) = at {
            self.last_used[j] = now;
        }
        let novel = !resonant && best < rho_lb;
        if !resonant {
            self.add(x, now, cap);
        }
        Presented {
            best,
            energy,
            novel,
        }
    }
}

/// One series' ART state; see the module docs.
#[derive(Debug, Clone)]
pub struct ArtModel {
    shape: ArtShape,
    block: Block,
    /// Moving average of the block means (each new mean weighs one half).
    moving_average: Option<f64>,
    /// Smallest and largest value seen so far: the normalisation.
    range: (f64, f64),
    /// Blocks per quantised level, for the median level.
    levels: [u32; LEVELS + 1],
    /// The last `WINDOW` block levels, oldest first (normalised).
    window: [f64; WINDOW],
    /// Blocks seen.
    blocks: usize,
    categories: Categories,
    /// Windows presented (ARTime's `i`).
    presented: usize,
    /// Sum of best matches in the second half of the probation.
    probation_sum: f64,
    /// Lower and upper vigilance.
    rho: (f64, f64),
    /// Sum of every best match so far (the upper vigilance is their mean).
    best_sum: f64,
    /// The last `PROBATION / 2 + 1` best matches.
    recent_best: VecDeque<f64>,
    /// The last `PROBATION + 1` shortfalls `rho_ub - A`.
    shortfalls: VecDeque<f64>,
    /// Sum and count of the anomalies' matches (the lowest in each masking window).
    anomaly_sum: f64,
    anomalies: usize,
    /// Match of the last anomaly (lowered to the lowest in its masking window).
    last_anomaly_match: f64,
    /// Window of the last anomaly and of the last vigilance change.
    last_anomaly: usize,
    last_change: usize,
    /// Masking after a vigilance change, until `MASK` known windows in a row.
    masked_after_change: bool,
    /// Windows in a row that were not novel.
    known_in_a_row: usize,
}

impl ArtModel {
    /// A model with no history. The shape must satisfy the bounds in [`ArtShape`]
    /// (`DetectorSettings::validate` checks them).
    pub fn new(shape: ArtShape) -> Self {
        ArtModel {
            shape,
            block: Block::EMPTY,
            moving_average: None,
            range: (f64::INFINITY, f64::NEG_INFINITY),
            levels: [0; LEVELS + 1],
            window: [0.0; WINDOW],
            blocks: 0,
            categories: Categories::default(),
            presented: 0,
            probation_sum: 0.0,
            rho: (INITIAL_RHO, INITIAL_RHO),
            best_sum: 0.0,
            recent_best: VecDeque::new(),
            shortfalls: VecDeque::new(),
            anomaly_sum: 0.0,
            anomalies: 0,
            last_anomaly_match: 0.0,
            last_anomaly: 0,
            last_change: 0,
            masked_after_change: false,
            known_in_a_row: 0,
        }
    }

    /// The same with the normalisation's range known in advance (NAB passes each file's
    /// minimum and maximum to its detectors; a stream cannot know them): for evaluation.
    pub fn with_range(shape: ArtShape, lo: f64, hi: f64) -> Self {
        ArtModel {
            range: (lo, hi),
            ..Self::new(shape)
        }
    }

    /// Feeds the next finite value. Answers `None` until the probation is over, then the
    /// anomaly confidence in `[0, 1]`: positive only for a value that closes a block whose
    /// window is an anomaly, 0 for every other value.
    pub fn observe(&mut self, value: f64) -> Option<f64> {
        self.range = (self.range.0.min(value), self.range.1.max(value));
        let b = &mut self.block;
        b.n += 1;
        b.sum += value;
        b.min = b.min.min(value);
        b.max = b.max.max(value);
        let judging = self.presented > PROBATION;
        if b.n < self.shape.step {
            return judging.then_some(0.0);
        }
        let block = std::mem::replace(&mut self.block, Block::EMPTY);
        let level = self.block_level(block);
        self.window.rotate_left(1);
        self.window[WINDOW - 1] = level;
        self.blocks += 1;
        if self.blocks < WINDOW {
            return None;
        }
        let anomaly = self.detect(&self.features());
        (self.presented > PROBATION).then_some(anomaly)
    }

    /// The block's value, normalised, quantised and snapped to the median level.
    fn block_level(&mut self, b: Block) -> f64 {
        let mean = b.sum / b.n as f64;
        let average = match self.moving_average {
            None => mean,
            Some(a) => (a + mean) / 2.0,
        };
        self.moving_average = Some(average);
        let mut v = if (b.max - average).abs() < (b.min - average).abs() {
            b.min
        } else {
            b.max
        };
        if (v - mean).abs() < 0.1 * mean.abs() {
            v = mean;
        }
        let (lo, hi) = self.range;
        let normalised = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
        // in [0, LEVELS]: the range holds every value of the block
        let level = (normalised * LEVELS as f64)
            .round()
            .clamp(0.0, LEVELS as f64) as usize;
        self.levels[level] = self.levels[level].saturating_add(1);
        let median = self.median_level() as f64 / LEVELS as f64;
        let v = level as f64 / LEVELS as f64;
        if (v - median).abs() < CHOMP {
            median
        } else {
            v
        }
    }

    /// The lowest level with at least half of the blocks at or below it.
    fn median_level(&self) -> usize {
        let total: u64 = self.levels.iter().map(|&c| u64::from(c)).sum();
        let mut below = 0u64;
        for (level, &c) in self.levels.iter().enumerate() {
            below += u64::from(c);
            if 2 * below >= total {
                return level;
            }
        }
        LEVELS
    }

    /// The window's shape (Haar transform, rescaled) and the window, complement coded.
    fn features(&self) -> [f64; CODED] {
        let mut shape = self.window;
        rescale(&mut shape);
        haar(&mut shape);
        rescale(&mut shape);
        let mut x = [0.0; CODED];
        x[..WINDOW].copy_from_slice(&shape);
        x[WINDOW..FEATURES].copy_from_slice(&self.window);
        for i in 0..FEATURES {
            x[FEATURES + i] = 1.0 - x[i];
        }
        x
    }

    /// Presents one window; its anomaly confidence (0 when it is not an anomaly).
    fn detect(&mut self, x: &[f64; CODED]) -> f64 {
        if self.categories.weights.capacity() == 0 {
            // the whole bound at once, exactly: the memory per series is known
            let cap = self.shape.categories;
            self.categories.weights.reserve_exact(cap * CODED);
            self.categories.last_used.reserve_exact(cap);
            self.recent_best.reserve_exact(PROBATION / 2 + 1);
            self.shortfalls.reserve_exact(PROBATION + 1);
        }
        self.presented += 1;
        let i = self.presented;
        let since_anomaly = i - self.last_anomaly;
        let change_after_anomaly = self.anomalies > 0 && since_anomaly == MASK;
        let change_for_trend = i - self.last_change >= PROBATION / 2;
        let masked_after_anomaly = self.anomalies > 0 && since_anomaly <= MASK;
        if i > PROBATION + MASK && self.masked_after_change && self.known_in_a_row >= MASK {
            self.masked_after_change = false;
        }
        let now = u32::try_from(i).unwrap_or(u32::MAX);
        let p = self
            .categories
            .present(x, self.rho, now, self.shape.categories);
        self.known_in_a_row = if p.novel { 0 } else { self.known_in_a_row + 1 };
        self.best_sum += p.best;
        push_bounded(&mut self.recent_best, p.best, PROBATION / 2 + 1);
        push_bounded(&mut self.shortfalls, self.rho.1 - p.best, PROBATION + 1);
        if i <= PROBATION {
            if i > PROBATION / 2 {
                self.probation_sum += p.best;
            }
            if i == PROBATION {
                let rho = self.probation_sum / (PROBATION - PROBATION / 2) as f64;
                self.rho = (rho, rho);
                self.last_change = i;
            }
            self.masked_after_change |= p.novel;
            return 0.0;
        }
        if since_anomaly < MASK && self.anomalies > 0 && p.best < self.last_anomaly_match {
            // the anomaly's match is the lowest in its masking window
            self.anomaly_sum += p.best - self.last_anomaly_match;
            self.last_anomaly_match = p.best;
        }
        let masked = self.masked_after_change || masked_after_anomaly;
        let much_worse =
            p.best < self.last_anomaly_match * if masked_after_anomaly { 0.9 } else { 0.7 };
        let mut anomaly = 0.0;
        if p.novel && (!masked || much_worse) {
            anomaly = self.confidence(p.best, p.energy);
            self.anomaly_sum += p.best;
            self.anomalies += 1;
            self.last_anomaly_match = p.best;
            self.last_anomaly = i;
        }
        self.masked_after_change |= p.novel;
        if change_after_anomaly || change_for_trend {
            self.adapt_vigilance(i);
            self.last_change = i;
            self.masked_after_change = true;
        }
        anomaly
    }

    /// ARTime's confidence of an anomaly with best match `best` and energy `energy`.
    fn confidence(&self, best: f64, energy: f64) -> f64 {
        let (lb, ub) = self.rho;
        let gap = 1.0 - best.min(0.999);
        let beyond = |rho: f64| (gap - (1.0 - rho)) / gap;
        let s = 0.35 * beyond(ub) + 0.65 * beyond(lb) + 1.5 * (1.0 - energy);
        s.clamp(0.0, 1.0)
    }

    /// The vigilance update (see the module docs).
    fn adapt_vigilance(&mut self, i: usize) {
        let (lb, _) = self.rho;
        let ub = (self.best_sum / i as f64).min(MAX_RHO_UB);
        let least = self
            .recent_best
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let mut new_lb = if lb <= least {
            lb + 0.19 * (least - lb)
        } else {
            let mut decrease = 0.0;
            if i > 2 * PROBATION {
                let (sum, n) = self
                    .shortfalls
                    .iter()
                    .filter(|&&d| d > 0.05)
                    .fold((0.0, 0usize), |(s, n), &d| (s + d.min(0.37), n + 1));
                if n > 0 {
                    decrease = sum / n as f64;
                }
            }
            let lowered = lb - decrease.max(0.01) / 2.0;
            if self.anomalies > 0 {
                lowered.max(self.anomaly_sum / self.anomalies as f64)
            } else {
                lowered
            }
        };
        new_lb = new_lb.min(ub);
        self.rho = (new_lb, ub);
    }

    /// Categories kept now.
    pub fn categories(&self) -> usize {
        self.categories.len()
    }

    /// Bytes held by the buffers (their capacity), for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.categories.weights.capacity() + self.categories.last_used.capacity())
            + 8 * (self.recent_best.capacity() + self.shortfalls.capacity())
    }
}

/// Appends `v`, dropping the oldest beyond `cap`.
fn push_bounded(buf: &mut VecDeque<f64>, v: f64, cap: usize) {
    if buf.len() == cap {
        buf.pop_front();
    }
    buf.push_back(v);
}

/// Shifts and scales to `[0, 1]` (a constant becomes zeros).
fn rescale(v: &mut [f64]) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    for x in v.iter_mut() {
        *x -= lo;
    }
    let hi = v.iter().copied().fold(0.0, f64::max);
    if hi > 0.0 {
        for x in v.iter_mut() {
            *x /= hi;
        }
    }
}

/// The full orthonormal Haar transform in place (length a power of two): the overall
/// average first, then the details from the coarsest to the finest.
fn haar(v: &mut [f64; WINDOW]) {
    let mut tmp = [0.0; WINDOW];
    let mut n = WINDOW;
    while n > 1 {
        let half = n / 2;
        for k in 0..half {
            let (a, b) = (v[2 * k], v[2 * k + 1]);
            tmp[k] = (a + b) * std::f64::consts::FRAC_1_SQRT_2;
            tmp[half + k] = (a - b) * std::f64::consts::FRAC_1_SQRT_2;
        }
        v[..n].copy_from_slice(&tmp[..n]);
        n = half;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ArtShape = ArtShape {
        step: 2,
        categories: 64,
    };

    /// Deterministic noise in [-1, 1].
    fn wiggle(i: usize) -> f64 {
        let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn run(shape: ArtShape, values: &[f64]) -> (ArtModel, Vec<Option<f64>>) {
        let mut art = ArtModel::new(shape);
        let out = values.iter().map(|&v| art.observe(v)).collect();
        (art, out)
    }

    #[test]
    fn haar_of_a_constant_is_its_average_only() {
        let mut v = [3.0; WINDOW];
        haar(&mut v);
        assert!((v[0] - 3.0 * (WINDOW as f64).sqrt()).abs() < 1e-12);
        assert!(v[1..].iter().all(|d| d.abs() < 1e-12));
        // orthonormal: the energy is kept
        let mut w: [f64; WINDOW] = std::array::from_fn(wiggle);
        let energy: f64 = w.iter().map(|x| x * x).sum();
        haar(&mut w);
        assert!((w.iter().map(|x| x * x).sum::<f64>() - energy).abs() < 1e-12);
    }

    #[test]
    fn nothing_during_the_probation_then_confidences_in_unit_interval() {
        let values: Vec<f64> = (0..3000).map(|i| 10.0 + wiggle(i)).collect();
        let (_, out) = run(SHAPE, &values);
        // WINDOW - 1 blocks fill the first window, then PROBATION windows only learn
        let first = SHAPE.step * (WINDOW - 1 + PROBATION + 1) - 1;
        assert!(out[..first].iter().all(Option::is_none));
        assert!(out[first..].iter().all(Option::is_some));
        assert!(out.iter().flatten().all(|m| (0.0..=1.0).contains(m)));
    }

    #[test]
    fn a_shape_never_seen_is_an_anomaly_and_the_usual_cycle_is_not() {
        // a cycle of 40 values repeated, then a flat stretch inside the usual range
        let cycle: Vec<f64> = (0..40)
            .map(|i| 50.0 + 20.0 * (i as f64 * std::f64::consts::TAU / 40.0).sin())
            .collect();
        let mut values: Vec<f64> = (0..2400).map(|i| cycle[i % 40]).collect();
        for v in &mut values[2000..2040] {
            *v = 50.0;
        }
        let (_, out) = run(SHAPE, &values);
        let fired = |range: std::ops::Range<usize>| {
            out[range].iter().flatten().filter(|&&m| m > 0.0).count()
        };
        assert_eq!(fired(1000..2000), 0, "{:?}", &out[1000..2000]);
        assert!(fired(2000..2060) >= 1, "{:?}", &out[2000..2060]);
    }

    #[test]
    fn categories_and_state_are_bounded() {
        let small = ArtShape {
            step: 1,
            categories: 8,
        };
        // white noise makes a new category often
        let values: Vec<f64> = (0..20_000).map(|i| 1000.0 * wiggle(i * 7)).collect();
        let (art, out) = run(small, &values);
        assert_eq!(art.categories(), 8);
        assert!(out.iter().flatten().all(|m| (0.0..=1.0).contains(m)));
        let bytes = 4 * 8 * (CODED + 1) + 8 * (PROBATION / 2 + 1 + PROBATION + 1);
        assert!(art.heap_bytes() >= bytes, "{}", art.heap_bytes());
        assert!(art.heap_bytes() < 2 * bytes, "{}", art.heap_bytes());
        // and the fields: a few hundred bytes (the docs' figure)
        let fields = std::mem::size_of::<ArtModel>();
        println!(
            "ArtModel: {fields} bytes of fields, {} on the heap",
            art.heap_bytes()
        );
        assert!(fields < 1024, "{fields}");
        let (lb, ub) = art.rho;
        assert!(
            (0.0..=MAX_RHO_UB).contains(&ub) && lb <= ub,
            "{:?}",
            art.rho
        );
    }

    #[test]
    fn a_constant_series_is_never_an_anomaly() {
        let (art, out) = run(SHAPE, &[7.0; 5000]);
        assert!(out.iter().flatten().all(|&m| m == 0.0));
        assert_eq!(art.categories(), 1);
    }
}
