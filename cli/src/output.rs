//! Writing an output file of the command (`detect`'s CSV, `report`'s page) so that it appears
//! whole or not at all, readable by its owner only, and never through a planted link: the
//! content goes to a temporary file created exclusively (`O_EXCL`, a random name, mode 0600)
//! in the output's directory, which is then renamed over the output.

use std::fs::File;
use std::io;
use std::path::Path;

/// Writes `path` through `write` as the module docs say; the file is 0600 on Unix (an
/// existing file at `path` is replaced, mode included). On an error nothing is left behind.
pub fn write_file(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".eventbatch-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_appears_whole_and_a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        write_file(&out, |f| io::Write::write_all(f, b"hello")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello");
        let failed = write_file(&dir.path().join("other.txt"), |_| {
            Err(io::Error::other("no"))
        });
        assert!(failed.is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
