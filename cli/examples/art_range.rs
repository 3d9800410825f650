//! How much of the adaptive resonance model's gap to ARTime is its normalisation: the model
//! alone (`ArtModel`, no statistical detector around it) on the NAB files, normalised by the
//! range seen so far (what a stream can do) and by each file's minimum and maximum (what NAB
//! passes to its detectors, ARTime among them), for block sizes 2, 4 and 5, side by side.
//!
//! ```text
//! cargo run --release --example art_range
//! ```
//!
//! Each line: the standard profile on all files at the best threshold, and the
//! leave-one-category-out mean of folds and pooled score (threshold chosen on the other
//! categories). `--nab DIR` (default `$NAB_DIR`, else the repository's `tests/data/nab`).

use std::path::{Path, PathBuf};

use eventbatch::stats::detect::{ArtModel, ArtShape};
use eventbatch_cli::nab::{self, Profile, ScoredFile};

fn main() -> anyhow::Result<()> {
    let mut nab_dir = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nab"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nab" => nab_dir = args.next().map(PathBuf::from).unwrap_or(nab_dir),
            other => anyhow::bail!("unknown argument {other} (only --nab DIR)"),
        }
    }
    let labels = nab::load_windows(&nab_dir.join("combined_windows.json"))?;
    let mut series = Vec::with_capacity(labels.len());
    for (name, windows) in &labels {
        let (ts, values) = nab::read_csv_column(&nab_dir.join("data").join(name), "value")?;
        series.push((name, windows, ts, values));
    }
    println!(
        "{:<6} {:<22} {:>8} {:>14} {:>8}",
        "step", "normalised by", "all", "mean of folds", "pooled"
    );
    for step in [2, 4, 5] {
        for file_range in [false, true] {
            let mut files = Vec::with_capacity(series.len());
            for (name, windows, ts, values) in &series {
                let shape = ArtShape {
                    step,
                    categories: 128,
                };
                let mut model = if file_range {
                    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    ArtModel::with_range(shape, lo, hi)
                } else {
                    ArtModel::new(shape)
                };
                let scores = values
                    .iter()
                    .map(|&v| model.observe(v).unwrap_or(0.0))
                    .collect();
                files.push(ScoredFile::new(name, ts, scores, windows)?);
            }
            let all = nab::optimise(&Profile::STANDARD, &files);
            let cv = nab::leave_one_category_out(&Profile::STANDARD, std::slice::from_ref(&files));
            let by = if file_range {
                "each file's range"
            } else {
                "the range so far"
            };
            println!(
                "{step:<6} {by:<22} {:>8.2} {:>14.2} {:>8.2}",
                all.normalised, cv.mean, cv.pooled
            );
        }
    }
    Ok(())
}
