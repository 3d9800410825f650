//! NAB checks, fast enough for CI in a debug build.
//!
//! 1. The scorer reproduces NAB's official scores for the shipped windowedGaussian output
//!    on all 34 DEV files (`reference/scores.md`: standard 35.02, reward_low_FP_rate 16.66,
//!    reward_low_FN_rate 43.35, with the same thresholds).
//! 2. Our detector, run through the `detect` CSV code path on all 34 files, scores above a
//!    floor on each profile (threshold optimised over the files), and half B of the fixed
//!    split scores above a floor at the threshold chosen on half A. The floors sit about
//!    three points under what the current detector scores, to catch regressions without
//!    pinning the exact numbers. The numbers themselves: `cargo run --release --example
//!    nab_eval`.
//! 3. Leave-one-category-out cross-validation: for each of the four categories the threshold
//!    is chosen on the other three and the category left out is scored with it; every fold
//!    is printed and has a floor, and so do the mean of the folds and the pooled score. Not
//!    nested: only the defaults are candidates, and they were tuned on all 34 files.
//! 4. Nested: each fold also chooses `event_gap` among 2, 4, 6, 12 and 100 on the other three
//!    categories (one run of all 34 files per setting); every fold is printed and has a
//!    floor, and so do the mean and the pooled score.
//!
//! 5. The same nested cross-validation with the conformal k-NN model among the candidates
//!    (`knn_weight` 0, 0.2, 0.35, 0.5 with `event_gap` 6 and 100): every fold has a floor.
//! 6. And with the adaptive resonance model among them (`art_weight` 0, 0.2, 0.35, 0.5,
//!    `art_step` 2 and 4, with `event_gap` 6 and 100): every fold has a floor.
//!
//! The NAB data lives at the repository root, `tests/data/nab` (its README says what it holds and
//! where it comes from); set `NAB_DIR` to use another copy with the same layout.

use std::path::PathBuf;

use eventbatch::stats::detect::DetectorSettings;
use eventbatch_cli::csv_detect::detect_csv;
use eventbatch_cli::nab::{self, Labels, Profile, ScoredFile};

fn nab_dir() -> PathBuf {
    let dir = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nab"));
    assert!(
        dir.join("combined_windows.json").is_file(),
        "NAB data not found at {} (set NAB_DIR)",
        dir.display()
    );
    dir
}

fn labels() -> Labels {
    nab::load_windows(&nab_dir().join("combined_windows.json")).expect("labels load")
}

#[test]
fn scorer_reproduces_windowed_gaussian_reference() {
    let labels = labels();
    assert_eq!(labels.len(), 34);
    assert_eq!(labels.values().map(Vec::len).sum::<usize>(), 50);
    let dir = nab_dir().join("reference/windowedGaussian");
    let files =
        nab::load_score_columns(&nab_dir().join("data"), &dir, "windowedGaussian_", &labels)
            .expect("results load");
    let rows: usize = files.iter().map(|f| f.scores.len()).sum();
    assert_eq!(rows, 121_702);

    // (profile, normalised, raw, threshold, windows hit) from reference/scores.md.
    let expected = [
        (Profile::STANDARD, 35.02, -14.976, 0.999999999999, 30),
        (Profile::REWARD_LOW_FP, 16.66, -33.338, 1.0, 29),
        (Profile::REWARD_LOW_FN, 43.35, -34.976, 0.999999999999, 30),
    ];
    for (profile, normalised, raw, threshold, hit) in expected {
        let o = nab::optimise(&profile, &files);
        assert_eq!(
            format!("{:.2}", o.normalised),
            format!("{normalised:.2}"),
            "{o:?}"
        );
        assert!((o.raw - raw).abs() < 5e-4, "{o:?}");
        assert!((o.threshold - threshold).abs() < 1e-12, "{o:?}");
        assert_eq!(o.windows, 50);
        if profile == Profile::STANDARD {
            assert_eq!(o.windows_hit, hit, "{o:?}");
        }
        // Scoring at the chosen threshold gives the same answer as the sweep.
        let at = nab::score_at(&profile, &files, o.threshold);
        assert!((at.raw - o.raw).abs() < 1e-9);
    }
}

/// FNV-1a 64 of the NAB file name, even: half A of the split `examples/nab_eval.rs` uses.
fn in_half_a(name: &str) -> bool {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
        .is_multiple_of(2)
}

/// Our detector's scored files, through the `detect` CSV code path.
fn detector_files(labels: &Labels) -> Vec<ScoredFile> {
    detector_files_with(labels, &DetectorSettings::default())
}

/// The same with these settings.
fn detector_files_with(labels: &Labels, settings: &DetectorSettings) -> Vec<ScoredFile> {
    let out = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<ScoredFile> = Vec::new();
    for (name, windows) in labels {
        let input = nab_dir().join("data").join(name);
        let output = out.path().join(name.replace('/', "_"));
        let report = detect_csv(&input, &output, settings).expect("detect runs");
        assert!(report.max_score <= 1.0);
        let (ts, scores) = nab::read_csv_column(&output, "anomaly_score").expect("output reads");
        let (input_ts, _) = nab::read_csv_column(&input, "value").expect("input reads");
        assert_eq!(ts, input_ts, "{name}: rows and order kept");
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        files.push(ScoredFile::new(name, &ts, scores, windows).expect("windows line up"));
    }
    files
}

#[test]
fn detector_scores_above_floor_on_all_files() {
    let labels = labels();
    let files = detector_files(&labels);
    // Floors for (standard, reward_low_FP_rate, reward_low_FN_rate) on all 34 files, about
    // three points under what the detector scores (`cargo run --release --example
    // nab_eval`: 69.40, 66.65, 72.27, 39/50 windows at threshold 0.386).
    let floors = [
        (Profile::STANDARD, 66.5),
        (Profile::REWARD_LOW_FP, 63.5),
        (Profile::REWARD_LOW_FN, 69.0),
    ];
    for (profile, floor) in floors {
        let o = nab::optimise(&profile, &files);
        println!(
            "{}: {:.2} (threshold {}, {}/{} windows)",
            o.profile, o.normalised, o.threshold, o.windows_hit, o.windows
        );
        assert!(o.normalised >= floor, "{o:?} below floor {floor}");
    }
    // Half B at the threshold chosen on half A (currently 68.48 standard).
    let (a, b): (Vec<ScoredFile>, Vec<ScoredFile>) =
        files.into_iter().partition(|f| in_half_a(&f.name));
    assert_eq!((a.len(), b.len()), (20, 14));
    let on_a = nab::optimise(&Profile::STANDARD, &a);
    let b_at_a = nab::score_at(&Profile::STANDARD, &b, on_a.threshold);
    println!("half B at half A's threshold: {:.2}", b_at_a.normalised);
    assert!(b_at_a.normalised >= 65.5, "{b_at_a:?}");
}

/// The settings the nested cross-validation chooses among: one per `event_gap`.
const EVENT_GAPS: [usize; 5] = [2, 4, 6, 12, 100];

/// One candidate per setting, each run on all 34 files (in parallel: the runs are
/// independent).
fn candidates(labels: &Labels, settings: &[DetectorSettings]) -> Vec<Vec<ScoredFile>> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = settings
            .iter()
            .map(|s| scope.spawn(move || detector_files_with(labels, s)))
            .collect();
        runs.into_iter().map(|r| r.join().expect("a run")).collect()
    })
}

/// The defaults with `event_gap` and `knn_weight` changed.
fn with_gap_and_knn(event_gap: usize, knn_weight: f64) -> DetectorSettings {
    DetectorSettings {
        event_gap,
        knn_weight,
        ..DetectorSettings::default()
    }
}

#[test]
fn nested_leave_one_category_out_scores_above_floors() {
    let labels = labels();
    // each fold chooses the setting and the threshold on the other three categories only,
    // so nothing is chosen on the score of the category it is scored on
    let grid: Vec<_> = EVENT_GAPS.map(|g| with_gap_and_knn(g, 0.0)).to_vec();
    let cv = nab::leave_one_category_out(&Profile::STANDARD, &candidates(&labels, &grid));
    print_folds(&cv);
    for f in &cv.folds {
        println!(
            "  {} chose event_gap {}",
            f.held_out, grid[f.chosen].event_gap
        );
    }
    // Floors just below what this measures (printed above; docs/detection.md has them).
    assert_fold_floors(
        &cv,
        [
            ("artificialNoAnomaly", -0.5),
            ("artificialWithAnomaly", 91.0),
            ("realAWSCloudwatch", 59.0),
            ("realAdExchange", 68.5),
        ],
    );
    assert!(cv.mean >= NESTED_MEAN_FLOOR, "{cv:?}");
    assert!(cv.pooled >= NESTED_POOLED_FLOOR, "{cv:?}");
}

/// The weighing of the conformal k-NN model (`knn_weight`, off by default): each fold may
/// also choose to blend it in, among these weights.
const KNN_WEIGHTS: [f64; 4] = [0.0, 0.2, 0.35, 0.5];

#[test]
fn nested_with_the_knn_model_scores_above_floors() {
    let labels = labels();
    let grid: Vec<_> = [6, 100]
        .into_iter()
        .flat_map(|g| KNN_WEIGHTS.map(|w| with_gap_and_knn(g, w)))
        .collect();
    let cv = nab::leave_one_category_out(&Profile::STANDARD, &candidates(&labels, &grid));
    print_folds(&cv);
    for f in &cv.folds {
        let s = &grid[f.chosen];
        println!(
            "  {} chose event_gap {} knn_weight {}",
            f.held_out, s.event_gap, s.knn_weight
        );
    }
    // Floors just below what this measures (`cargo run --release --example nab_eval -- --cv
    // --grid event_gap=6,100 --grid knn_weight=0,0.2,0.35,0.5 --cv-compare knn_weight=0`:
    // artificialWithAnomaly 60.93, realAWSCloudwatch 60.58, realAdExchange 69.82, mean 63.78,
    // pooled 63.21; the model is chosen in three folds of four, and the held-out mean is 11
    // points below the same run's choice with the model off, 74.91). Not the defaults.
    assert_fold_floors(
        &cv,
        [
            ("artificialNoAnomaly", -0.5),
            ("artificialWithAnomaly", 58.0),
            ("realAWSCloudwatch", 58.5),
            ("realAdExchange", 61.0),
        ],
    );
    assert!(cv.mean >= 59.5, "{cv:?}");
    assert!(cv.pooled >= 59.5, "{cv:?}");
}

/// The weighing of the adaptive resonance model (`art_weight`, off by default): each fold
/// may also choose to blend it in, among these weights and block sizes (`art_step`).
const ART_WEIGHTS: [f64; 3] = [0.2, 0.35, 0.5];
/// See [`ART_WEIGHTS`].
const ART_STEPS: [usize; 2] = [2, 4];

#[test]
fn nested_with_the_art_model_scores_above_floors() {
    let labels = labels();
    // the model off once per event_gap, then every weight and block size
    let grid: Vec<_> = [6, 100]
        .into_iter()
        .flat_map(|event_gap| {
            let off = DetectorSettings {
                event_gap,
                ..DetectorSettings::default()
            };
            let on = ART_WEIGHTS.into_iter().flat_map(move |art_weight| {
                ART_STEPS.map(|art_step| DetectorSettings {
                    event_gap,
                    art_weight,
                    art_step,
                    ..DetectorSettings::default()
                })
            });
            std::iter::once(off).chain(on)
        })
        .collect();
    let cv = nab::leave_one_category_out(&Profile::STANDARD, &candidates(&labels, &grid));
    print_folds(&cv);
    for f in &cv.folds {
        let s = &grid[f.chosen];
        println!(
            "  {} chose event_gap {} art_weight {} art_step {}",
            f.held_out, s.event_gap, s.art_weight, s.art_step
        );
    }
    // Floors a couple of points below what this measures (`cargo run --release --example
    // nab_eval -- --cv --grid art_weight=0,0.2,0.35,0.5 --grid art_step=2,4 --grid
    // event_gap=6,100 --cv-compare art_weight=0`: artificialNoAnomaly raw -0.330,
    // artificialWithAnomaly 85.51, realAWSCloudwatch 57.92, realAdExchange 67.81, mean 70.41,
    // pooled 63.67; the model is chosen in every fold, and the held-out mean is 4.5 points
    // below the same run's choice with the model off, 74.91). Not the defaults
    // (docs/detection.md).
    assert_fold_floors(
        &cv,
        [
            ("artificialNoAnomaly", -0.6),
            ("artificialWithAnomaly", 83.5),
            ("realAWSCloudwatch", 56.0),
            ("realAdExchange", 65.5),
        ],
    );
    assert!(cv.mean >= 68.5, "{cv:?}");
    assert!(cv.pooled >= 62.0, "{cv:?}");
}

/// Prints every fold of a cross-validation, its mean and its pooled score.
fn print_folds(cv: &nab::CrossValidation) {
    for f in &cv.folds {
        println!(
            "held out {:<22} standard {:>7.2} raw {:>8.3} threshold {:.6} hit {}/{} fp rows {}",
            f.held_out,
            f.outcome.normalised,
            f.outcome.raw,
            f.outcome.threshold,
            f.outcome.windows_hit,
            f.outcome.windows,
            f.outcome.fp_rows
        );
    }
    println!("mean of folds {:.2}, pooled {:.2}", cv.mean, cv.pooled);
}

/// Just below what the nested cross-validation measures (`cargo test -p eventbatch-cli --test
/// nab nested -- --nocapture`: mean of the three folds with windows 74.91, pooled 67.21;
/// artificialWithAnomaly 93.70, realAWSCloudwatch 60.58 with event_gap 100 chosen on the
/// others, realAdExchange 70.46, artificialNoAnomaly one false positive, raw -0.110).
const NESTED_MEAN_FLOOR: f64 = 74.0;
/// See [`NESTED_MEAN_FLOOR`].
const NESTED_POOLED_FLOOR: f64 = 66.5;

#[test]
fn leave_one_category_out_scores_above_floors() {
    let files = detector_files(&labels());
    let cv = nab::leave_one_category_out(&Profile::STANDARD, &[files]);
    print_folds(&cv);
    // Floors about two points under what the detector scores (`cargo run --release
    // --example nab_eval`: artificialNoAnomaly raw -0.110 (one false positive),
    // artificialWithAnomaly 93.70, realAWSCloudwatch 64.23, realAdExchange 70.46; mean of the
    // three folds with windows 76.13, pooled 69.40).
    assert_fold_floors(
        &cv,
        [
            ("artificialNoAnomaly", -0.5),
            ("artificialWithAnomaly", 91.0),
            ("realAWSCloudwatch", 62.0),
            ("realAdExchange", 68.0),
        ],
    );
    assert!(cv.mean >= 74.0, "{cv:?}");
    assert!(cv.pooled >= 67.0, "{cv:?}");
}

/// Asserts one floor per fold, in category order. A category without anomalies has no
/// normalised score: its raw score (false positives only) has the floor.
fn assert_fold_floors(cv: &nab::CrossValidation, floors: [(&str, f64); 4]) {
    assert_eq!(cv.folds.len(), floors.len());
    for (fold, (category, floor)) in cv.folds.iter().zip(floors) {
        assert_eq!(fold.held_out, category);
        let got = if fold.outcome.windows == 0 {
            fold.outcome.raw
        } else {
            fold.outcome.normalised
        };
        assert!(got >= floor, "{fold:?} below floor {floor}");
    }
}
