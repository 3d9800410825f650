//! The one binary encoding helper of the crate's byte formats (the sketch and window blobs of
//! `metric_windows.sketch`, and the journal's entries): unsigned LEB128 varints, zigzag for
//! signed ones, little-endian `f64`s, and a [`Reader`] whose reads fail instead of panicking.

use thiserror::Error;

/// Why a byte string is not a valid serialised [`Sketch`](crate::stats::sketch::Sketch) (or window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SketchDecodeError {
    /// The bytes end before the encoded data does.
    #[error("sketch blob is truncated")]
    Truncated,
    /// The version byte is not one this code reads.
    #[error("unsupported sketch format version {0}")]
    UnsupportedVersion(u8),
    /// A field has an impossible value; the message names it.
    #[error("invalid sketch blob: {0}")]
    Invalid(&'static str),
    /// Bytes are left over after a complete encoding.
    #[error("{0} trailing bytes after the sketch")]
    TrailingBytes(usize),
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low bits first).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Maps signed to unsigned so that small magnitudes give short varints.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a byte slice whose reads fail instead of panicking.
pub(crate) struct Reader<'a> {
    /// The bytes not yet read.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Reads one byte.
    pub(crate) fn byte(&mut self) -> Result<u8, SketchDecodeError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(SketchDecodeError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    /// Reads a little-endian `f64`.
    pub(crate) fn f64(&mut self) -> Result<f64, SketchDecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<8>()
            .ok_or(SketchDecodeError::Truncated)?;
        self.rest = rest;
        Ok(f64::from_le_bytes(*head))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> Result<u64, SketchDecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(SketchDecodeError::Invalid("varint overflows u64"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SketchDecodeError::Invalid("varint longer than 10 bytes"))
    }

    /// Reads the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], SketchDecodeError> {
        if n > self.rest.len() {
            return Err(SketchDecodeError::Truncated);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// Succeeds if every byte was read.
    pub(crate) fn finish(&self) -> Result<(), SketchDecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(SketchDecodeError::TrailingBytes(self.rest.len()))
        }
    }
}
