//! Scores the pattern detector on the NAB files (or scores existing result CSVs).
//!
//! ```text
//! # our detector on every file in the labels, via the `detect` code path:
//! cargo run --release --example nab_eval
//! # the same with settings changed (JSON fields of DetectorSettings):
//! cargo run --release --example nab_eval -- --set baseline_window=400 --set cooldown=50
//! # check the scorer on NAB's shipped windowedGaussian output:
//! cargo run --release --example nab_eval -- \
//!     --score-dir ../shared/data/nab/reference/windowedGaussian --prefix windowedGaussian_
//! ```
//!
//! Options: `--nab DIR` (default `$NAB_DIR`, else `../shared/data/nab` beside the crate),
//! `--out DIR` (where our result CSVs go; default a directory under the system temp dir),
//! `--per-file` (a line per file at each profile's optimal threshold).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use eventbatch::csv_detect::detect_csv;
use eventbatch::nab::{self, Profile, ScoredFile};
use eventbatch::stats::detect::DetectorSettings;

struct Args {
    nab: PathBuf,
    out: PathBuf,
    score_dir: Option<PathBuf>,
    prefix: String,
    per_file: bool,
    sets: Vec<(String, String)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let default_nab = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab"));
    let mut args = Args {
        nab: default_nab,
        out: std::env::temp_dir().join("eventbatch-nab-results"),
        score_dir: None,
        prefix: String::new(),
        per_file: false,
        sets: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--nab" => args.nab = value("--nab")?.into(),
            "--out" => args.out = value("--out")?.into(),
            "--score-dir" => args.score_dir = Some(value("--score-dir")?.into()),
            "--prefix" => args.prefix = value("--prefix")?,
            "--per-file" => args.per_file = true,
            "--set" => {
                let kv = value("--set")?;
                let (k, v) = kv.split_once('=').context("--set takes name=value")?;
                args.sets.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => {
                println!(
                    "nab_eval [--nab DIR] [--out DIR] [--per-file] [--set field=value ...]\n\
                     nab_eval --score-dir DIR [--prefix PREFIX] [--nab DIR] [--per-file]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// Default settings with `--set` overrides applied through their JSON form.
fn settings(sets: &[(String, String)]) -> anyhow::Result<DetectorSettings> {
    let mut json = serde_json::to_value(DetectorSettings::default())?;
    for (k, v) in sets {
        let obj = json.as_object_mut().context("settings are a JSON object")?;
        if !obj.contains_key(k) {
            bail!(
                "no setting named {k:?}; known: {:?}",
                obj.keys().collect::<Vec<_>>()
            );
        }
        let parsed: serde_json::Value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
        obj.insert(k.clone(), parsed);
    }
    let s: DetectorSettings = serde_json::from_value(json)?;
    if let Err((field, value)) = s.validate() {
        bail!("invalid setting {field} = {value}");
    }
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let labels_path = args.nab.join("combined_windows.json");
    let labels = nab::load_windows(&labels_path)
        .with_context(|| format!("loading labels (is --nab {} right?)", args.nab.display()))?;

    let files: Vec<ScoredFile> = match &args.score_dir {
        Some(dir) => {
            println!("scoring result files in {}", dir.display());
            nab::load_results(dir, &args.prefix, &labels)?
        }
        None => {
            let settings = settings(&args.sets)?;
            println!("detector settings: {}", serde_json::to_string(&settings)?);
            let started = std::time::Instant::now();
            let prefix = "eventbatch_";
            for name in labels.keys() {
                let (category, file) = name.split_once('/').context("labels name category/file")?;
                let dir = args.out.join(category);
                std::fs::create_dir_all(&dir)?;
                let input = args.nab.join("data").join(name);
                let output = dir.join(format!("{prefix}{file}"));
                detect_csv(&input, &output, &settings)
                    .with_context(|| format!("detecting on {}", input.display()))?;
            }
            println!(
                "ran the detector on {} files in {:.2?}; results in {}",
                labels.len(),
                started.elapsed(),
                args.out.display()
            );
            nab::load_results(&args.out, prefix, &labels)?
        }
    };

    println!(
        "{:<20} {:>10} {:>10} {:>16} {:>8} {:>8}",
        "profile", "normalised", "raw", "threshold", "hit", "fp rows"
    );
    for profile in Profile::ALL {
        let o = nab::optimise(&profile, &files);
        println!(
            "{:<20} {:>10.2} {:>10.3} {:>16.12} {:>5}/{:<2} {:>8}",
            o.profile, o.normalised, o.raw, o.threshold, o.windows_hit, o.windows, o.fp_rows
        );
        if args.per_file {
            for f in &files {
                let one = nab::score_at(&profile, std::slice::from_ref(f), o.threshold);
                println!(
                    "    {:<58} raw {:>8.3} hit {}/{} fp rows {}",
                    f.name, one.raw, one.windows_hit, one.windows, one.fp_rows
                );
            }
        }
    }
    Ok(())
}
