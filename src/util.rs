//! Small helpers with no better home: a stable hash (for error hashes, not secrets), the OS
//! random source, a fast PRNG, a random instance id, owner-only file creation, and which file a
//! path names ([`FileIdentity`]: the store's SQLite file and the journal's are checked with it).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::text::Text;

/// Creates the SQLite file at `path`, empty, readable and writable by its owner only (0600 on
/// Unix, whatever the umask), unless a file is there already (it keeps its mode). SQLite gives
/// the `-wal` and `-shm` files the mode of the main file, so the store's and the journal's are
/// 0600 too.
pub(crate) fn create_owner_only(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Which file a path named when it was opened: device and inode on Unix (a deleted file's
/// open connections keep writing to its unlinked inode, and a new file at the same path is a
/// different inode). Elsewhere only the file's existence is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
}

/// How a path no longer names the file it named ([`FileIdentity::check`]).
#[derive(Debug)]
pub(crate) enum FileChange {
    /// Another file is at the path (a new inode: a restore, a rename over it).
    Replaced,
    /// Nothing is at the path.
    Deleted,
    /// `stat(2)` failed otherwise (no permission on a directory, an I/O error).
    Unknown(std::io::Error),
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub(crate) fn of(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileIdentity { dev: 0, ino: 0 })
        }
    }

    /// `Ok` if `path` still names this file. One `stat(2)`, about a microsecond: cheap enough
    /// before every transaction. (SQLite cannot tell: `PRAGMA data_version` sees only commits,
    /// and an unlinked file still takes them.)
    pub(crate) fn check(self, path: &std::path::Path) -> Result<(), FileChange> {
        match FileIdentity::of(path) {
            Ok(now) if now == self => Ok(()),
            Ok(_) => Err(FileChange::Replaced),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileChange::Deleted),
            Err(e) => Err(FileChange::Unknown(e)),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// FNV-1a, 64 bit: stable across runs, platforms and versions (unlike `DefaultHasher`), so
/// hashes written by one run match those of the next.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // a separator byte that cannot occur in UTF-8, so ("ab","c") != ("a","bc")
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `stable_hash` as 16 hex digits, kept inline (no allocation: an error's hash is computed for
/// every error event that does not bring its own).
pub(crate) fn stable_hash_hex(parts: &[&str]) -> Text {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let h = stable_hash(parts);
    let mut hex = [0u8; 16];
    for (i, d) in hex.iter_mut().enumerate() {
        *d = DIGITS[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    // ASCII hex digits only
    Text::from(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
}

/// SplitMix64: a tiny, fast, statistically good PRNG for sampling decisions (not for secrets).
#[derive(Debug, Clone, Default)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with a fixed seed (tests, for repeatable draws).
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Seeded from the OS random source ([`os_random_u64`]), or, should that fail, from the
    /// clock, the process id and a stack address.
    pub(crate) fn from_entropy() -> Self {
        match getrandom::u64() {
            Ok(seed) => SplitMix64(seed),
            Err(e) => {
                log::warn!("OS random source unavailable ({e}); seeding from the clock");
                Self::from_clock()
            }
        }
    }

    fn from_clock() -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut addr = 0u8;
        let stack = &mut addr as *mut u8 as u64;
        SplitMix64(t ^ (u64::from(std::process::id()) << 32) ^ stack.rotate_left(17))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// 64 bits from the OS random source (`getrandom(2)` on Linux), for ids that must not
/// repeat across runs, hosts or restarts within the same clock tick: writer run ids and
/// instance ids. Falls back to a clock-and-pid seed (logged) if the OS source fails, which
/// it does not on any supported platform once the system has booted.
pub(crate) fn os_random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|e| {
        log::warn!("OS random source unavailable ({e}); using a clock-seeded id");
        SplitMix64::from_clock().next_u64()
    })
}

/// A fresh id for this pipeline run: `eb-` and 16 random hex digits.
pub(crate) fn random_instance_id() -> String {
    format!("eb-{:016x}", os_random_u64())
}

/// Hands memory freed by the allocator back to the OS, after a large drop of state (many idle
/// series at once): glibc's malloc otherwise keeps freed pages in its arenas, and the process
/// looks as large as at its peak. A no-op elsewhere.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers of ours.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable_and_separates_parts() {
        assert_eq!(
            stable_hash_hex(&["timeout", "api"]),
            stable_hash_hex(&["timeout", "api"])
        );
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
        // the hex form is the 16 zero-padded lower-case digits stored in error_counts
        for parts in [&["timeout", "api"][..], &["a"], &[""]] {
            let want = format!("{:016x}", stable_hash(parts));
            assert_eq!(stable_hash_hex(parts).as_str(), want);
        }
        // FNV-1a of "a" is a published test vector.
        assert_eq!(stable_hash(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut r = SplitMix64::new(42);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_ne!(random_instance_id(), random_instance_id());
    }

    #[test]
    fn os_random_ids_do_not_repeat() {
        let ids: std::collections::HashSet<u64> = (0..1000).map(|_| os_random_u64()).collect();
        assert_eq!(ids.len(), 1000);
        // seeds from the OS source differ even when drawn in the same instant
        assert_ne!(
            SplitMix64::from_entropy().next_u64(),
            SplitMix64::from_entropy().next_u64()
        );
    }
}
