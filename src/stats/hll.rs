//! A HyperLogLog sketch of distinct ids (Flajolet et al. 2007), the distinct-users count of a
//! command per window (`command_users`, [`crate::QueryUsers`]).
//!
//! - **Registers**: 2^14 = 16,384 (`P = 14`); an id is hashed with XXH3-64 (the hash of
//!   consistent sampling): the top 14 bits pick a register, the rank of the other 50 (leading
//!   zeros + 1, at most 51) raises it. Merging two sketches takes the register-wise maximum, so
//!   a merge equals the sketch of the union exactly, in any order, and adding an id twice (a
//!   journal replay, a window written twice) changes nothing.
//! - **Estimator**: Ertl's improved estimator ("New cardinality estimation algorithms for
//!   HyperLogLog sketches", 2017, algorithm 6): no bias tables, no switch to linear counting,
//!   unbiased from one id to far beyond 10^9. Standard error 1.04 / sqrt(16,384) = 0.81%:
//!   within 2% (2.5 standard errors) in about 99% of sketches; the unit test below measures
//!   0.84%, 0.15% and 0.13% at 1,000,000 ids over three sets of ids, and small counts are near
//!   exact (a sketch of 1 to 100 ids is off by at most 1).
//! - **Size**: a window with few users keeps a sparse list of its raised registers (about 2
//!   bytes an id stored: a varint of the index gap and the rank); past 3,072 registers (about
//!   3,400 ids) it turns dense, 6 bits a register: 12,288 bytes + 2, whatever the count.
//!   Measured (the `sizes_*` test below, `--nocapture`): 1 id 6 bytes, 5 ids 17, 100 ids 248,
//!   1,000 ids 1,955, 3,000 ids 5,530; 4,000 or 1,000,000 ids 12,290.
//!
//! Written here (some 200 lines) rather than taken from a crate: the stored bytes must read back
//! for as long as a store keeps its rows, so their format is this crate's to keep, and the
//! estimator is the one without bias tables.

use xxhash_rust::xxh3::xxh3_64;

use crate::encoding::{put_varint, Reader, SketchDecodeError};

/// Index bits.
const P: u32 = 14;
/// Registers.
const M: usize = 1 << P;
/// The largest rank: the 50 bits after the index all zero.
const MAX_RANK: u8 = (64 - P + 1) as u8;
/// Raised registers a sparse sketch holds before it turns dense.
const SPARSE_MAX: usize = 3_072;
/// Bytes of the dense encoding's registers, 6 bits each.
const DENSE_BYTES: usize = M * 6 / 8;
/// Format bytes: sparse, dense.
const SPARSE: u8 = 1;
const DENSE: u8 = 2;

/// The registers: a sorted list of the raised ones, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Registers {
    /// `(index << 8) | rank` of each raised register, sorted by index.
    Sparse(Vec<u32>),
    /// Every register's rank.
    Dense(Box<[u8]>),
}

/// A HyperLogLog sketch of distinct ids: 0.81% standard error, at most 12,290 bytes stored
/// (see the module docs), merged by register maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSketch {
    registers: Registers,
}

impl Default for UserSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl UserSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        UserSketch {
            registers: Registers::Sparse(Vec::new()),
        }
    }

    /// Adds an id (a user name, or its pseudonym).
    pub fn insert(&mut self, id: &[u8]) {
        self.insert_hash(xxh3_64(id));
    }

    /// Adds an id by its 64-bit hash.
    pub(crate) fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - P)) as usize;
        let rest = hash << P;
        let rank = (rest.leading_zeros() + 1).min(MAX_RANK as u32) as u8;
        self.raise(index, rank);
    }

    /// Raises register `index` to `rank` if it is lower.
    fn raise(&mut self, index: usize, rank: u8) {
        match &mut self.registers {
            Registers::Dense(r) => r[index] = r[index].max(rank),
            Registers::Sparse(list) => {
                let entry = ((index as u32) << 8) | rank as u32;
                match list.binary_search_by_key(&(index as u32), |e| e >> 8) {
                    Ok(i) => list[i] = list[i].max(entry),
                    Err(i) => {
                        list.insert(i, entry);
                        if list.len() > SPARSE_MAX {
                            self.densify();
                        }
                    }
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Registers::Sparse(list) = &self.registers {
            let mut dense = vec![0u8; M].into_boxed_slice();
            for e in list {
                dense[(e >> 8) as usize] = (e & 0xff) as u8;
            }
            self.registers = Registers::Dense(dense);
        }
    }

    /// Merges `other` in: register-wise maximum, so the result is the sketch of the union.
    pub fn merge(&mut self, other: &UserSketch) {
        match &other.registers {
            Registers::Sparse(list) => {
                for e in list {
                    self.raise((e >> 8) as usize, (e & 0xff) as u8);
                }
            }
            Registers::Dense(theirs) => {
                self.densify();
                if let Registers::Dense(mine) = &mut self.registers {
                    for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Whether the sketch holds its registers sparse (few ids).
    #[cfg(test)]
    fn is_sparse(&self) -> bool {
        matches!(self.registers, Registers::Sparse(_))
    }

    /// The estimated number of distinct ids (Ertl's improved estimator).
    pub fn estimate(&self) -> f64 {
        // counts[k]: registers of rank k.
        let mut counts = [0u32; MAX_RANK as usize + 1];
        match &self.registers {
            Registers::Sparse(list) => {
                counts[0] = (M - list.len()) as u32;
                for e in list {
                    counts[(e & 0xff) as usize] += 1;
                }
            }
            Registers::Dense(r) => {
                for &x in r.iter() {
                    counts[x as usize] += 1;
                }
            }
        }
        let m = M as f64;
        let q = MAX_RANK as usize - 1;
        let mut z = m * tau(1.0 - counts[q + 1] as f64 / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + counts[k] as f64);
        }
        z += m * sigma(counts[0] as f64 / m);
        let alpha_inf = 0.5 / std::f64::consts::LN_2;
        alpha_inf * m * m / z
    }

    /// The estimate rounded to a whole number of ids.
    pub fn count(&self) -> u64 {
        self.estimate().round() as u64
    }

    /// The stored form: sparse (a varint count, then per raised register the varint gap from
    /// the previous index and its rank) while that is smaller, else dense (6 bits a register).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.registers {
            Registers::Sparse(list) => {
                let mut out = Vec::with_capacity(2 + list.len() * 3);
                out.extend_from_slice(&[SPARSE, P as u8]);
                put_varint(&mut out, list.len() as u64);
                let mut last = 0u32;
                for e in list {
                    put_varint(&mut out, u64::from((e >> 8) - last));
                    out.push((e & 0xff) as u8);
                    last = e >> 8;
                }
                if out.len() < DENSE_BYTES + 2 {
                    return out;
                }
                let mut dense = self.clone();
                dense.densify();
                dense.to_bytes()
            }
            Registers::Dense(r) => {
                let mut out = Vec::with_capacity(DENSE_BYTES + 2);
                out.extend_from_slice(&[DENSE, P as u8]);
                for four in r.chunks_exact(4) {
                    let v = u32::from(four[0])
                        | u32::from(four[1]) << 6
                        | u32::from(four[2]) << 12
                        | u32::from(four[3]) << 18;
                    out.extend_from_slice(&v.to_le_bytes()[..3]);
                }
                out
            }
        }
    }

    /// Reads what [`UserSketch::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<UserSketch, SketchDecodeError> {
        let mut r = Reader::new(bytes);
        let format = r.byte()?;
        if r.byte()? != P as u8 {
            return Err(SketchDecodeError::Invalid(
                "HyperLogLog precision is not 14",
            ));
        }
        let registers = match format {
            SPARSE => {
                let n = r.varint()?;
                if n > M as u64 {
                    return Err(SketchDecodeError::Invalid(
                        "more sparse registers than 16,384",
                    ));
                }
                let mut list = Vec::with_capacity(n as usize);
                let mut index = 0u64;
                for i in 0..n {
                    let gap = r.varint()?;
                    if i > 0 && gap == 0 {
                        return Err(SketchDecodeError::Invalid("sparse registers out of order"));
                    }
                    index = index.saturating_add(gap);
                    let rank = r.byte()?;
                    if index >= M as u64 || rank == 0 || rank > MAX_RANK {
                        return Err(SketchDecodeError::Invalid("sparse register out of range"));
                    }
                    list.push(((index as u32) << 8) | u32::from(rank));
                }
                Registers::Sparse(list)
            }
            DENSE => {
                let packed = r.bytes(DENSE_BYTES)?;
                let mut dense = vec![0u8; M].into_boxed_slice();
                for (three, four) in packed.chunks_exact(3).zip(dense.chunks_exact_mut(4)) {
                    let v = u32::from_le_bytes([three[0], three[1], three[2], 0]);
                    for (k, reg) in four.iter_mut().enumerate() {
                        *reg = ((v >> (6 * k)) & 0x3f) as u8;
                        if *reg > MAX_RANK {
                            return Err(SketchDecodeError::Invalid("dense register out of range"));
                        }
                    }
                }
                Registers::Dense(dense)
            }
            v => return Err(SketchDecodeError::UnsupportedVersion(v)),
        };
        r.finish()?;
        Ok(UserSketch { registers })
    }
}

/// Ertl's sigma(x) = x + sum_k x^(2^k) 2^(k-1).
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// Ertl's tau(x) = (1 - x - sum_k (1 - x^(2^-k))^2 2^-k) / 3.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(ids: std::ops::Range<u64>, salt: u64) -> UserSketch {
        let mut s = UserSketch::new();
        for i in ids {
            s.insert(format!("user-{salt}-{i}").as_bytes());
        }
        s
    }

    fn relative_error(s: &UserSketch, truth: u64) -> f64 {
        (s.estimate() - truth as f64).abs() / truth as f64
    }

    #[test]
    fn a_million_distinct_ids_are_counted_within_two_percent() {
        for salt in 0..3 {
            let s = sketch_of(0..1_000_000, salt);
            let e = relative_error(&s, 1_000_000);
            eprintln!(
                "1,000,000 ids, salt {salt}: estimate {:.0}, error {e:.4}",
                s.estimate()
            );
            assert!(e < 0.02, "salt {salt}: estimate {} ({e})", s.estimate());
            assert!(!s.is_sparse());
        }
    }

    #[test]
    fn small_counts_are_near_exact_and_repeats_change_nothing() {
        for n in [1u64, 2, 5, 17, 100] {
            let mut s = sketch_of(0..n, 9);
            let once = s.clone();
            for i in 0..n {
                s.insert(format!("user-9-{i}").as_bytes());
            }
            assert_eq!(s, once, "re-adding ids changed the sketch");
            assert!(
                (s.estimate() - n as f64).abs() <= 1.0,
                "{n}: {}",
                s.estimate()
            );
        }
        assert_eq!(UserSketch::new().count(), 0);
    }

    #[test]
    fn counts_across_the_range_stay_within_two_percent() {
        for n in [1_000u64, 3_000, 10_000, 30_000, 100_000] {
            let s = sketch_of(0..n, 4);
            assert!(relative_error(&s, n) < 0.02, "{n}: {}", s.estimate());
        }
    }

    #[test]
    fn merge_equals_the_sketch_of_the_union_in_every_form() {
        // Overlapping halves: sparse + sparse, sparse + dense, dense + dense.
        for (a, b) in [
            (0..500, 300..900),
            (0..200, 100..50_000),
            (0..40_000, 20_000..90_000),
        ] {
            let union = sketch_of(a.start.min(b.start)..a.end.max(b.end), 1);
            let (x, y) = (sketch_of(a, 1), sketch_of(b, 1));
            let mut xy = x.clone();
            xy.merge(&y);
            let mut yx = y.clone();
            yx.merge(&x);
            // Equal registers (one may still be sparse where the other turned dense).
            assert_eq!(xy.to_bytes(), union.to_bytes());
            assert_eq!(yx.to_bytes(), union.to_bytes());
            assert_eq!(xy.estimate(), union.estimate());
        }
    }

    #[test]
    fn bytes_round_trip_sparse_and_dense() {
        for n in [0u64, 1, 40, 3_000, 3_100, 200_000] {
            let s = sketch_of(0..n, 2);
            let back = UserSketch::from_bytes(&s.to_bytes()).unwrap();
            assert_eq!(back.estimate(), s.estimate(), "{n}");
            assert_eq!(back.to_bytes(), s.to_bytes());
        }
    }

    #[test]
    fn sizes_sparse_and_dense_as_the_module_docs_state() {
        let size = |n| sketch_of(0..n, 0).to_bytes().len();
        for n in [1, 5, 100, 1_000, 3_000, 4_000, 1_000_000] {
            eprintln!("{n} ids: {} bytes", size(n));
        }
        // Sparse: about 2 bytes an id (a 1- or 2-byte gap, a rank), 3 bytes of header.
        assert!(size(1) <= 6 && size(5) <= 20, "{} {}", size(1), size(5));
        assert!((200..=300).contains(&size(100)), "{}", size(100));
        assert!((1_500..=2_500).contains(&size(1_000)), "{}", size(1_000));
        assert!(size(3_000) < 6_000, "{}", size(3_000));
        // Past 3,072 registers, dense whatever the count.
        assert_eq!(size(4_000), DENSE_BYTES + 2);
        assert_eq!(size(1_000_000), 12_290);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let good = sketch_of(0..10, 0).to_bytes();
        for cut in 0..good.len() {
            assert!(
                UserSketch::from_bytes(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(UserSketch::from_bytes(&[9, 14]).is_err());
        assert!(UserSketch::from_bytes(&[SPARSE, 12, 0]).is_err());
        assert!(UserSketch::from_bytes(&[SPARSE, 14, 1, 0, 0]).is_err()); // rank 0
        assert!(UserSketch::from_bytes(&[SPARSE, 14, 1, 0x80, 0x80, 0x01, 5]).is_err()); // index
        let mut dense = vec![DENSE, 14];
        dense.extend(std::iter::repeat_n(0xff, DENSE_BYTES));
        assert!(UserSketch::from_bytes(&dense).is_err()); // 63 > 51
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(UserSketch::from_bytes(&trailing).is_err());
    }
}
