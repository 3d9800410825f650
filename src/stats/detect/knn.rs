//! A conformal k-nearest-neighbour anomaly detector, streaming and bounded: the model of
//! KNN-CAD (Burnaev and Ishimtsev, "Conformalized density- and distance-based anomaly
//! detection in time-series data", 2016, as run in NAB) with a plain Euclidean metric.
//!
//! Each value closes a *window*, the last `dim` values. Its non-conformity is the sum of
//! the distances to its `k` nearest neighbours among the `training` windows before it; its
//! conformal p-value is the share of the last `calibration` non-conformities (each window's
//! own, computed when it arrived) at least as large, `p = (1 + #{c >= ncm}) / (1 + n)`. A
//! shape the series has never taken is far from every remembered window and gets a small p.
//! The p-value depends only on ranks, so the scale of the series does not matter.
//!
//! After a window at least as far out as every calibrated one (the smallest p possible),
//! the next `dim` values answer `None`: they contain the same values, and KNN-CAD rests too.
//!
//! State: `training + dim` values and `calibration` non-conformities, `8 (training + dim +
//! calibration)` bytes (4,880 with `DetectorSettings`' sizes: 10, 300, 300), reserved at the
//! first value, plus 104 bytes of fields (boxed in `SeriesDetector`: 8 bytes when off). Cost per value:
//! `training * dim` multiply-adds and a selection among `training` distances, in a
//! per-thread scratch buffer.

use std::collections::VecDeque;

use super::math::with_scratch;

/// The sizes of a [`ConformalKnn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnnShape {
    /// Values per window (at least 1).
    pub dim: usize,
    /// Neighbours summed into the non-conformity (at least 1, at most `training`).
    pub k: usize,
    /// Windows remembered as neighbours.
    pub training: usize,
    /// Non-conformities the p-value is ranked against (at least 1).
    pub calibration: usize,
}

/// One series' conformal k-NN state; see the module docs.
#[derive(Debug, Clone)]
pub struct ConformalKnn {
    shape: KnnShape,
    /// The last `training + dim` values, oldest first.
    values: VecDeque<f64>,
    /// The last `calibration` non-conformities, oldest first.
    ncms: VecDeque<f64>,
    /// Values still to rest after a window at the smallest p-value.
    resting: usize,
}

impl ConformalKnn {
    /// A detector with no history. The shape must satisfy the bounds in [`KnnShape`]
    /// (`DetectorSettings::validate` checks them).
    pub fn new(shape: KnnShape) -> Self {
        ConformalKnn {
            shape,
            values: VecDeque::new(),
            ncms: VecDeque::new(),
            resting: 0,
        }
    }

    /// Feeds the next finite value; answers the conformal p-value of the window it closes,
    /// in `(0, 1]`, or `None` while there is not enough history (`k` neighbours and
    /// `calibration / 2` non-conformities) or while resting after a window at the smallest
    /// p-value.
    pub fn observe(&mut self, value: f64) -> Option<f64> {
        let KnnShape {
            dim,
            k,
            training,
            calibration,
        } = self.shape;
        if self.values.capacity() == 0 {
            // the buffers' full size at once, exactly: the memory per series is known
            self.values.reserve_exact(training + dim);
            self.ncms.reserve_exact(calibration);
        }
        // make room first: the buffers never grow past their reserved size
        if self.values.len() == training + dim {
            self.values.pop_front();
        }
        self.values.push_back(value);
        let n = self.values.len();
        // windows end at positions dim-1 ..= n-1; the newest ends at n-1
        if n < dim + k {
            return None;
        }
        let newest = n - dim;
        let ncm = with_scratch(|distances| {
            distances.extend((0..newest).map(|start| {
                (0..dim)
                    .map(|j| {
                        let d = self.values[start + j] - self.values[newest + j];
                        d * d
                    })
                    .sum::<f64>()
                    .sqrt()
            }));
            distances.select_nth_unstable_by(k - 1, f64::total_cmp);
            distances[..k].iter().sum::<f64>()
        });
        let ranked = (self.ncms.len() >= calibration.div_ceil(2)).then(|| {
            let above = self.ncms.iter().filter(|&&c| c >= ncm).count();
            (
                (1 + above) as f64 / (1 + self.ncms.len()) as f64,
                above == 0,
            )
        });
        if self.ncms.len() == calibration {
            self.ncms.pop_front();
        }
        self.ncms.push_back(ncm);
        if self.resting > 0 {
            self.resting -= 1;
            return None;
        }
        let (p, smallest) = ranked?;
        if smallest {
            self.resting = dim;
        }
        Some(p)
    }

    /// Bytes held by the buffers (their capacity), for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        8 * (self.values.capacity() + self.ncms.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: KnnShape = KnnShape {
        dim: 8,
        k: 5,
        training: 200,
        calibration: 200,
    };

    /// Deterministic noise in [-1, 1].
    fn wiggle(i: usize) -> f64 {
        let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn run(values: &[f64]) -> Vec<Option<f64>> {
        let mut knn = ConformalKnn::new(SHAPE);
        values.iter().map(|&v| knn.observe(v)).collect()
    }

    #[test]
    fn nothing_before_enough_history_then_p_values_in_unit_interval() {
        let values: Vec<f64> = (0..1000).map(|i| 10.0 + wiggle(i)).collect();
        let ps = run(&values);
        // k neighbours need dim + k values; the p-value needs half the calibration
        assert!(ps[..SHAPE.dim + SHAPE.k + SHAPE.calibration / 2 - 1]
            .iter()
            .all(Option::is_none));
        assert!(ps.iter().flatten().all(|p| *p > 0.0 && *p <= 1.0));
        assert!(ps[400..].iter().filter(|p| p.is_some()).count() > 500);
    }

    #[test]
    fn a_new_shape_gets_the_smallest_p_value_and_a_rest() {
        // one cycle of 50 values repeated exactly: every window has exact copies
        let cycle: Vec<f64> = (0..50)
            .map(|i| 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 50.0).sin())
            .collect();
        let mut values: Vec<f64> = (0..1000).map(|i| cycle[i % 50]).collect();
        // a flat stretch where the sine moves: no value leaves the usual range
        for v in &mut values[700..712] {
            *v = 50.0;
        }
        let ps = run(&values);
        let first = ps[690..]
            .iter()
            .position(|p| p.is_some_and(|p| p <= 1.0 / SHAPE.calibration as f64))
            .map(|i| i + 690);
        let first = first.expect("the flat stretch is news");
        assert!((700..712).contains(&first), "{first}");
        // it rests for dim values
        assert!(ps[first + 1..=first + SHAPE.dim]
            .iter()
            .all(Option::is_none));
        // the steady sine before it was never news
        assert!(ps[400..700].iter().flatten().all(|&p| p > 0.01), "{ps:?}");
    }

    #[test]
    fn constant_series_is_never_news_and_state_is_bounded() {
        let mut knn = ConformalKnn::new(SHAPE);
        for _ in 0..5000 {
            assert!(knn.observe(7.0).is_none_or(|p| p == 1.0));
        }
        assert!(knn.values.len() == SHAPE.training + SHAPE.dim);
        assert!(knn.ncms.len() == SHAPE.calibration);
        // reserved once, at the first value (VecDeque may round up a little)
        assert!(knn.heap_bytes() >= 8 * (SHAPE.training + SHAPE.dim + SHAPE.calibration));
        assert!(knn.heap_bytes() < 8 * 2 * (SHAPE.training + SHAPE.dim + SHAPE.calibration));
    }
}
