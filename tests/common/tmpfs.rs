//! A small, real file system that a test can fill: a tmpfs of a given size mounted on a
//! temporary directory, unmounted (lazily, so an open file does not keep it) when the guard
//! goes. The disk-full tests put a store or a journal on it, then [`Tmpfs::fill`] takes the
//! last free byte, so the next write the store makes fails with `ENOSPC` (SQLITE_FULL), as on
//! a real full disk.
//!
//! Needs root (`CAP_SYS_ADMIN`, as CI and the developers' machines have). Elsewhere
//! [`Tmpfs::new`] panics saying why: a disk-full test that quietly passed without a full disk
//! would prove nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    dir: tempfile::TempDir,
    /// The file [`Tmpfs::fill`] grows; [`Tmpfs::free`] deletes it.
    ballast: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `bytes` (rounded up to whole pages by the kernel), mounted mode 0700.
    pub fn new(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir for the tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a {bytes}-byte tmpfs on {} (the disk-full tests need root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ballast = dir.path().join("ballast");
        Tmpfs { dir, ballast }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system refuses with `ENOSPC`: afterwards every write that
    /// needs a new page fails.
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ballast)
            .expect("open the ballast file");
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.flush();
        // what a short write left: single bytes until none fits
        while let Ok(1) = f.write(&[0u8]) {}
    }

    /// Gives the space [`Tmpfs::fill`] took back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(&self.ballast);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
