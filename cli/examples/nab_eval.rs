//! Scores the pattern detector on the NAB files (or scores existing result CSVs).
//!
//! ```text
//! # our detector on every file in the labels, via the `detect` code path:
//! cargo run --release --example nab_eval
//! # the same with settings changed (JSON fields of DetectorSettings):
//! cargo run --release --example nab_eval -- --set baseline_window=400 --set cooldown=50
//! # choose settings on half A only (every combination of the listed values), score on B:
//! cargo run --release --example nab_eval -- --grid context_length=4,8,16 --grid cooldown=50,100
//! # leave-one-category-out cross-validation over a grid (settings and threshold chosen on
//! # the other categories, every fold printed):
//! cargo run --release --example nab_eval -- --cv --grid event_gap=3,6,12 --grid cooldown=50,100
//! # the same, and side by side the nested choice among the candidates with art_weight=0 only:
//! cargo run --release --example nab_eval -- --cv --grid event_gap=6,100 \
//!     --grid art_weight=0,0.5 --cv-compare art_weight=0
//! # cost per value of the defaults and of other settings, side by side:
//! cargo run --release --example nab_eval -- --cost --set knn_weight=0.2
//! # check the scorer on NAB's shipped windowedGaussian output:
//! cargo run --release --example nab_eval -- \
//!     --score-dir tests/data/nab/reference/windowedGaussian --prefix windowedGaussian_
//! ```
//!
//! Options: `--nab DIR` (default `$NAB_DIR`, else the copy in the repository root's `tests/data/nab`),
//! `--out DIR` (where our result CSVs go; default a directory under the system temp dir),
//! `--per-file` (a line per file at each profile's optimal threshold).
//!
//! # Half-and-half
//!
//! The files are split into two fixed halves by a hash of their NAB name (FNV-1a 64 of
//! `category/file.csv`: even is half A, odd is half B; 20 files and 31 windows in A, 14 files
//! and 19 windows in B). Besides the full score, every run prints each half on its own and
//! "B at A's threshold": half B scored with the threshold optimised on half A, so nothing
//! about B is chosen by looking at B. With `--grid`, the settings too are chosen on half A
//! (best standard score on A among all combinations) and then scored on B and on all files.
//!
//! # Leave one category out
//!
//! Every run also prints a leave-one-category-out cross-validation: for each of the four
//! categories, the threshold (and with `--cv --grid`, the settings among the grid's) with the
//! best raw score on the other three is chosen, and the category left out is scored with
//! it. Each fold, the mean of the folds with anomaly windows, and the pooled score (every
//! held-out raw score summed, normalised over all 50 windows) are printed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use eventbatch::stats::detect::{DetectorSettings, SeriesDetector};
use eventbatch_cli::csv_detect::detect_csv;
use eventbatch_cli::nab::{self, Labels, Profile, ScoredFile};

struct Args {
    nab: PathBuf,
    out: PathBuf,
    score_dir: Option<PathBuf>,
    prefix: String,
    per_file: bool,
    sets: Vec<(String, String)>,
    grid: Vec<(String, Vec<String>)>,
    cv: bool,
    cost: bool,
    /// `--cv-compare field=value`: also the nested choice among only the candidates with
    /// this value (e.g. the model off), printed after the full one.
    compare: Option<(String, String)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let default_nab = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nab"));
    let mut args = Args {
        nab: default_nab,
        out: std::env::temp_dir().join("eventbatch-nab-results"),
        score_dir: None,
        prefix: String::new(),
        per_file: false,
        sets: Vec::new(),
        grid: Vec::new(),
        cv: false,
        cost: false,
        compare: None,
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
            "--cv" => args.cv = true,
            "--cost" => args.cost = true,
            "--cv-compare" => {
                let kv = value("--cv-compare")?;
                let (k, v) = kv
                    .split_once('=')
                    .context("--cv-compare takes name=value")?;
                args.compare = Some((k.to_string(), v.to_string()));
            }
            "--set" => {
                let kv = value("--set")?;
                let (k, v) = kv.split_once('=').context("--set takes name=value")?;
                args.sets.push((k.to_string(), v.to_string()));
            }
            "--grid" => {
                let kv = value("--grid")?;
                let (k, vs) = kv.split_once('=').context("--grid takes name=v1,v2,...")?;
                let vs = vs.split(',').map(str::to_string).collect();
                args.grid.push((k.to_string(), vs));
            }
            "-h" | "--help" => {
                println!(
                    "nab_eval [--nab DIR] [--out DIR] [--per-file] [--set field=value ...] \
                     [--cv] [--grid field=v1,v2,... ...] [--cv-compare field=value]\n\
                     nab_eval --cost [--set field=value ...] [--nab DIR]\n\
                     nab_eval --score-dir DIR [--prefix PREFIX] [--nab DIR] [--per-file]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// Default settings with `name=value` overrides applied through their JSON form.
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

/// FNV-1a, 64 bits: a fixed, documented hash so the split never depends on the platform.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Half A of the fixed split (see the module docs).
fn in_half_a(name: &str) -> bool {
    fnv1a(name).is_multiple_of(2)
}

/// Runs the detector in memory over the files of `labels` (the same `SeriesDetector` the
/// `detect` command runs; used for grids, where writing CSVs would only cost time).
fn run_in_memory(
    nab_dir: &Path,
    labels: &Labels,
    settings: &DetectorSettings,
) -> anyhow::Result<Vec<ScoredFile>> {
    let mut files = Vec::with_capacity(labels.len());
    let (mut spent, mut values_seen) = (std::time::Duration::ZERO, 0usize);
    for (name, windows) in labels {
        let (ts, values) = nab::read_csv_column(&nab_dir.join("data").join(name), "value")?;
        let mut detector = SeriesDetector::new(settings.clone());
        let started = std::time::Instant::now();
        let scores = values.iter().map(|&v| detector.observe(v).score).collect();
        spent += started.elapsed();
        values_seen += values.len();
        files.push(ScoredFile::new(name, &ts, scores, windows)?);
    }
    println!(
        "  detector alone: {values_seen} values in {spent:.2?}, {:.1} us per value",
        spent.as_secs_f64() * 1e6 / values_seen.max(1) as f64
    );
    Ok(files)
}

/// Runs the detector through `detect_csv` (the `eventbatch detect` code path) and reads the
/// result CSVs back.
fn run_via_csv(
    args: &Args,
    labels: &Labels,
    s: &DetectorSettings,
) -> anyhow::Result<Vec<ScoredFile>> {
    let started = std::time::Instant::now();
    let prefix = "eventbatch_";
    for name in labels.keys() {
        let (category, file) = name.split_once('/').context("labels name category/file")?;
        let dir = args.out.join(category);
        std::fs::create_dir_all(&dir)?;
        let input = args.nab.join("data").join(name);
        let output = dir.join(format!("{prefix}{file}"));
        detect_csv(&input, &output, s)
            .with_context(|| format!("detecting on {}", input.display()))?;
    }
    println!(
        "ran the detector on {} files in {:.2?}; results in {}",
        labels.len(),
        started.elapsed(),
        args.out.display()
    );
    Ok(nab::load_results(&args.out, prefix, labels)?)
}

/// Every combination of the grid's values, as `--set` lists on top of `base`.
fn combinations(
    base: &[(String, String)],
    grid: &[(String, Vec<String>)],
) -> Vec<Vec<(String, String)>> {
    let mut out = vec![base.to_vec()];
    for (k, vs) in grid {
        out = out
            .into_iter()
            .flat_map(|c| {
                vs.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// Chooses the settings with the best standard score on half A among the grid's
/// combinations.
fn choose_on_a(args: &Args, labels_a: &Labels) -> anyhow::Result<DetectorSettings> {
    let mut best: Option<(f64, DetectorSettings, String)> = None;
    for combo in combinations(&args.sets, &args.grid) {
        let s = settings(&combo)?;
        let files = run_in_memory(&args.nab, labels_a, &s)?;
        let o = nab::optimise(&Profile::STANDARD, &files);
        let text = combo
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!("  half A standard {:>6.2}  {text}", o.normalised);
        if best.as_ref().is_none_or(|b| o.normalised > b.0) {
            best = Some((o.normalised, s, text));
        }
    }
    let (score, s, text) = best.context("the grid is empty")?;
    println!("chosen on half A ({score:.2} standard): {text}");
    Ok(s)
}

fn print_outcome(label: &str, o: &nab::Outcome) {
    println!(
        "{:<20} {:<14} {:>10.2} {:>10.3} {:>16.12} {:>5}/{:<2} {:>8}",
        o.profile, label, o.normalised, o.raw, o.threshold, o.windows_hit, o.windows, o.fp_rows
    );
}

/// The full table: all files, each half with its own threshold, and B at A's threshold.
fn report(files: &[ScoredFile], per_file: bool) {
    let (a, b): (Vec<ScoredFile>, Vec<ScoredFile>) =
        files.iter().cloned().partition(|f| in_half_a(&f.name));
    println!(
        "{:<20} {:<14} {:>10} {:>10} {:>16} {:>8} {:>8}",
        "profile", "files", "normalised", "raw", "threshold", "hit", "fp rows"
    );
    for profile in Profile::ALL {
        let all = nab::optimise(&profile, files);
        print_outcome(&format!("all {}", files.len()), &all);
        let on_a = nab::optimise(&profile, &a);
        print_outcome("half A", &on_a);
        print_outcome("half B", &nab::optimise(&profile, &b));
        print_outcome(
            "B at A's thr.",
            &nab::score_at(&profile, &b, on_a.threshold),
        );
        if per_file {
            for f in files {
                let one = nab::score_at(&profile, std::slice::from_ref(f), all.threshold);
                println!(
                    "    {} {:<58} raw {:>8.3} hit {}/{} fp rows {}",
                    if in_half_a(&f.name) { 'A' } else { 'B' },
                    f.name,
                    one.raw,
                    one.windows_hit,
                    one.windows,
                    one.fp_rows
                );
            }
        }
    }
}

/// Prints a leave-one-category-out cross-validation per profile; `names[k]` describes
/// candidate `k`.
fn report_cv(candidates: &[Vec<ScoredFile>], names: &[String]) {
    println!(
        "\nleave one category out (chosen on the other categories, scored on the one left out):"
    );
    for profile in Profile::ALL {
        let cv = nab::leave_one_category_out(&profile, candidates);
        for f in &cv.folds {
            let o = &f.outcome;
            println!(
                "{:<20} {:<22} {:>10.2} {:>10.3} {:>16.12} {:>5}/{:<2} {:>8}  {}",
                o.profile,
                f.held_out,
                o.normalised,
                o.raw,
                o.threshold,
                o.windows_hit,
                o.windows,
                o.fp_rows,
                names[f.chosen]
            );
        }
        println!(
            "{:<20} mean of folds {:>8.2}, pooled {:.2}",
            profile.name, cv.mean, cv.pooled
        );
    }
}

/// One line per candidate (standard profile): its score on all the files and its own
/// leave-one-category-out folds (only the threshold chosen on the other categories), to see
/// what each setting does before the nested choice.
fn report_candidates(candidates: &[Vec<ScoredFile>], names: &[String]) {
    println!(
        "\neach candidate alone, standard (all files at its best threshold; LOCO folds, mean, pooled):"
    );
    for (files, name) in candidates.iter().zip(names) {
        let all = nab::optimise(&Profile::STANDARD, files);
        let cv = nab::leave_one_category_out(&Profile::STANDARD, std::slice::from_ref(files));
        let folds = cv
            .folds
            .iter()
            .map(|f| {
                if f.outcome.windows == 0 {
                    format!("raw {:>7.3}", f.outcome.raw)
                } else {
                    format!("{:>6.2}", f.outcome.normalised)
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  all {:>6.2}  folds {folds}  mean {:>6.2} pooled {:>6.2}  {name}",
            all.normalised, cv.mean, cv.pooled
        );
    }
}

/// Cost per value of the default detector and of the `--set` settings, side by side: both
/// run over every file's values, alternating, five rounds each; prints each round and the
/// ratio of the medians.
fn cost(args: &Args, labels: &Labels) -> anyhow::Result<()> {
    let mut series = Vec::with_capacity(labels.len());
    for name in labels.keys() {
        series.push(nab::read_csv_column(&args.nab.join("data").join(name), "value")?.1);
    }
    let values: usize = series.iter().map(Vec::len).sum();
    let candidates = [DetectorSettings::default(), settings(&args.sets)?];
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..5 {
        for (k, s) in candidates.iter().enumerate() {
            let started = std::time::Instant::now();
            let mut checksum = 0.0;
            for values in &series {
                let mut detector = SeriesDetector::new(s.clone());
                checksum += values
                    .iter()
                    .map(|&v| detector.observe(v).score)
                    .sum::<f64>();
            }
            let us = started.elapsed().as_secs_f64() * 1e6 / values as f64;
            println!("round {round} candidate {k}: {us:.1} us per value (checksum {checksum:.3})");
            times[k].push(us);
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let (base, with) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "{values} values; median us per value: defaults {base:.1}, with --set {with:.1}, ratio {:.2}",
        with / base
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let labels_path = args.nab.join("combined_windows.json");
    let labels = nab::load_windows(&labels_path)
        .with_context(|| format!("loading labels (is --nab {} right?)", args.nab.display()))?;
    if args.cost {
        return cost(&args, &labels);
    }

    let files: Vec<ScoredFile> = match &args.score_dir {
        Some(dir) => {
            println!("scoring result files in {}", dir.display());
            nab::load_score_columns(&args.nab.join("data"), dir, &args.prefix, &labels)?
        }
        None => {
            let settings = if args.grid.is_empty() || args.cv {
                settings(&args.sets)?
            } else {
                let labels_a: Labels = labels
                    .iter()
                    .filter(|(name, _)| in_half_a(name))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                choose_on_a(&args, &labels_a)?
            };
            println!("detector settings: {}", serde_json::to_string(&settings)?);
            run_via_csv(&args, &labels, &settings)?
        }
    };
    report(&files, args.per_file);
    if args.cv && !args.grid.is_empty() {
        let mut candidates = Vec::new();
        let mut names = Vec::new();
        for combo in combinations(&args.sets, &args.grid) {
            candidates.push(run_in_memory(&args.nab, &labels, &settings(&combo)?)?);
            names.push(
                combo
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        report_candidates(&candidates, &names);
        report_cv(&candidates, &names);
        if let Some((k, v)) = &args.compare {
            let wanted = format!("{k}={v}");
            let (subset, subset_names): (Vec<_>, Vec<_>) = candidates
                .iter()
                .zip(&names)
                .filter(|(_, n)| n.split(' ').any(|kv| kv == wanted))
                .map(|(c, n)| (c.clone(), n.clone()))
                .unzip();
            println!(
                "\nside by side: the same nested choice among the candidates with {wanted} only:"
            );
            report_cv(&subset, &subset_names);
        }
    } else {
        report_cv(
            std::slice::from_ref(&files),
            &["(these settings)".to_string()],
        );
    }
    Ok(())
}
