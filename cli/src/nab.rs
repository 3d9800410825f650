//! Scoring against the Numenta Anomaly Benchmark (NAB v1.1).
//!
//! This module reimplements NAB's scorer (`nab/sweeper.py` at commit `ea702d7`) so that the
//! pattern detector can be measured on NAB data without Python. The rules, as applied here:
//!
//! 1. Rows are used in file order, unsorted, duplicates kept. The first
//!    `min(floor(0.15 N), 750)` rows of a file of `N` rows are *probation*: never scored.
//! 2. A row is a *detection* when `anomaly_score >= threshold`. With
//!    `S(x) = 2 / (1 + e^(5x)) - 1` (and `S(x) = -1` for `x >= 3`):
//! 3. a labelled window `[start, end]` covers the rows `L..=R`, where `L` is the row stamped
//!    `start` and `R` the first row stamped `end`; its width is `W = R - L + 1`;
//! 4. a window with a detection earns `tp * S(-(R - i + 1) / W) / S(-1)` for its **earliest**
//!    detected row `i`; a window without one costs `-fn`;
//! 5. every detected row outside the windows costs `fp * S((i - R') / (W' - 1))`, where `R'`
//!    and `W'` belong to the last window that closed before row `i` (exactly `-fp` when
//!    there is none);
//! 6. the weights `(tp, fn, fp)` are given by a [`Profile`];
//! 7. the raw score is the sum over every file; one threshold per profile is chosen for the
//!    whole corpus: every distinct score of a scored row is tried, plus 1.1 ("no
//!    detections"), the highest raw score wins and ties go to the higher threshold;
//! 8. the normalised score is `100 (raw - null) / (perfect - null)` with
//!    `perfect = tp * windows` and `null = -fn * windows`.
//!
//! As in NAB, a window whose rows all lie inside the probation period is not part of the
//! raw score (it can be neither hit nor missed), but it still counts in the normalisation.
//!
//! The work is split so that the expensive part happens once: [`ScoredFile::new`] classifies
//! each row (probation, inside window `k` with its reward, outside with its penalty), which
//! does not depend on the profile; [`optimise`] then sorts every scored row by score once and
//! sweeps the thresholds from high to low in `O(n log n)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::csv_detect::{csv_reader, is_blank, parse_timestamp_us, record_line};

/// Everything that can go wrong while loading NAB labels or result files.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file in question.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The labels file is not the expected JSON shape.
    #[error("bad labels file {path}: {reason}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A result or data CSV has a malformed row.
    #[error("{path}:{line}: {reason}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A labelled window does not line up with the rows of its file.
    #[error("file {file}: window {start} .. {end}: {reason}")]
    Window {
        /// The NAB file name (`category/file.csv`).
        file: String,
        /// The window's start timestamp as written in the labels.
        start: String,
        /// The window's end timestamp as written in the labels.
        end: String,
        /// What does not line up.
        reason: String,
    },
    /// Timestamps and scores of a file differ in length.
    #[error("file {file}: {timestamps} timestamps but {scores} scores")]
    Length {
        /// The NAB file name.
        file: String,
        /// Number of timestamps.
        timestamps: usize,
        /// Number of scores.
        scores: usize,
    },
}

/// A NAB scoring profile: how much a hit window, a missed window and a false-positive row
/// weigh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// The name NAB uses for the profile (`standard`, `reward_low_FP_rate`, ...).
    pub name: &'static str,
    /// Reward for a window detected at its left edge (scaled down later in the window).
    pub tp_weight: f64,
    /// Cost of a window with no detection.
    pub fn_weight: f64,
    /// Cost of a detected row well away from any window.
    pub fp_weight: f64,
}

impl Profile {
    /// NAB's `standard` profile: (tp, fn, fp) = (1, 1, 0.11).
    pub const STANDARD: Profile = Profile {
        name: "standard",
        tp_weight: 1.0,
        fn_weight: 1.0,
        fp_weight: 0.11,
    };
    /// NAB's `reward_low_FP_rate` profile: (1, 1, 0.22).
    pub const REWARD_LOW_FP: Profile = Profile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fn_weight: 1.0,
        fp_weight: 0.22,
    };
    /// NAB's `reward_low_FN_rate` profile: (1, 2, 0.11).
    pub const REWARD_LOW_FN: Profile = Profile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fn_weight: 2.0,
        fp_weight: 0.11,
    };
    /// The three NAB profiles in the order NAB reports them.
    pub const ALL: [Profile; 3] = [Self::STANDARD, Self::REWARD_LOW_FP, Self::REWARD_LOW_FN];
}

/// NAB's scaled sigmoid `S(x) = 2 / (1 + e^(5x)) - 1`, with `S(x) = -1` for `x >= 3`.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Number of probation rows at the start of a file of `rows` rows:
/// `min(floor(0.15 rows), 750)`.
pub fn probation_rows(rows: usize) -> usize {
    ((rows as f64 * 0.15).floor() as usize).min(750)
}

/// One labelled anomaly window, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start as written in the labels file (for messages).
    pub start: String,
    /// End as written in the labels file.
    pub end: String,
    /// Start in microseconds since the Unix epoch (compared exactly with row timestamps).
    pub start_us: i64,
    /// End in microseconds since the Unix epoch.
    pub end_us: i64,
}

/// The labels of a corpus: NAB file name (`category/file.csv`) to its windows, in order.
pub type Labels = BTreeMap<String, Vec<Window>>;

/// Reads a NAB labels file such as `combined_windows.json`.
pub fn load_windows(path: &Path) -> Result<Labels, NabError> {
    let text = std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_windows(&text).map_err(|reason| NabError::Labels {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses the JSON text of a NAB labels file (`{"file": [[start, end], ...], ...}`).
pub fn parse_windows(json: &str) -> Result<Labels, String> {
    let raw: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut labels = Labels::new();
    for (file, pairs) in raw {
        let mut windows = Vec::with_capacity(pairs.len());
        for (start, end) in pairs {
            let start_us = parse_timestamp_us(&start)
                .map_err(|e| format!("{file}: window start {start:?}: {e}"))?;
            let end_us =
                parse_timestamp_us(&end).map_err(|e| format!("{file}: window end {end:?}: {e}"))?;
            windows.push(Window {
                start,
                end,
                start_us,
                end_us,
            });
        }
        labels.insert(file, windows);
    }
    Ok(labels)
}

/// The role of one row in the scoring; independent of the profile and the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowRole {
    /// In the probation period: never scored.
    Probation,
    /// Inside labelled window `window` (index within the file).
    Window {
        /// Index of the window within its file.
        window: usize,
        /// `S(-(R - i + 1) / W) / S(-1)`: the reward if this is the earliest detection,
        /// before multiplying by the profile's `tp_weight`.
        reward: f64,
    },
    /// Outside every window.
    Outside {
        /// `S(...)` in `[-1, 0)`: the cost of a detection here, before multiplying by the
        /// profile's `fp_weight`.
        penalty: f64,
    },
}

/// One file's anomaly scores together with the role of each row.
#[derive(Debug, Clone)]
pub struct ScoredFile {
    /// The NAB file name (`category/file.csv`).
    pub name: String,
    /// The role of each row, in file order.
    pub roles: Vec<RowRole>,
    /// The anomaly score of each row, in file order.
    pub scores: Vec<f64>,
    /// Number of labelled windows of the file (including any inside probation), used for
    /// the normalisation.
    pub labelled_windows: usize,
}

impl ScoredFile {
    /// Classifies the rows of one file given its timestamps (microseconds, file order), its
    /// anomaly scores and its labelled windows, following NAB's sweeper exactly.
    pub fn new(
        name: &str,
        timestamps_us: &[i64],
        scores: Vec<f64>,
        windows: &[Window],
    ) -> Result<Self, NabError> {
        if timestamps_us.len() != scores.len() {
            return Err(NabError::Length {
                file: name.to_string(),
                timestamps: timestamps_us.len(),
                scores: scores.len(),
            });
        }
        let window_error = |w: &Window, reason: &str| NabError::Window {
            file: name.to_string(),
            start: w.start.clone(),
            end: w.end.clone(),
            reason: reason.to_string(),
        };
        let first_index = |t: i64| timestamps_us.iter().position(|&x| x == t);
        // Resolve each window's first start row, first end row and width up front, as NAB
        // does with `timestamps.index(...)`.
        let mut spans = Vec::with_capacity(windows.len());
        for w in windows {
            let l = first_index(w.start_us)
                .ok_or_else(|| window_error(w, "no row has the start timestamp"))?;
            let r = first_index(w.end_us)
                .ok_or_else(|| window_error(w, "no row has the end timestamp"))?;
            if r < l {
                return Err(window_error(w, "the end row precedes the start row"));
            }
            spans.push((r, (r - l + 1) as f64));
        }
        let probation = probation_rows(timestamps_us.len());
        let max_tp = scaled_sigmoid(-1.0);
        let mut roles = Vec::with_capacity(timestamps_us.len());
        let mut next_window = 0usize;
        let mut current: Option<usize> = None;
        let mut previous: Option<(usize, f64)> = None;
        for (i, &t) in timestamps_us.iter().enumerate() {
            if next_window < windows.len() && t == windows[next_window].start_us {
                current = Some(next_window);
                next_window += 1;
            }
            let role = match current {
                Some(k) => {
                    let (r, width) = spans[k];
                    let position = -((r as f64) - (i as f64) + 1.0) / width;
                    RowRole::Window {
                        window: k,
                        reward: scaled_sigmoid(position) / max_tp,
                    }
                }
                None => {
                    let position = match previous {
                        None => 3.0,
                        Some((r, width)) => (r as f64 - i as f64).abs() / (width - 1.0),
                    };
                    RowRole::Outside {
                        penalty: scaled_sigmoid(position),
                    }
                }
            };
            roles.push(if i < probation {
                RowRole::Probation
            } else {
                role
            });
            if let Some(k) = current {
                if t == windows[k].end_us {
                    previous = Some((i, spans[k].1));
                    current = None;
                }
            }
        }
        Ok(ScoredFile {
            name: name.to_string(),
            roles,
            scores,
            labelled_windows: windows.len(),
        })
    }
}

/// The result of scoring a corpus at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The profile's name.
    pub profile: &'static str,
    /// The threshold (1.1 means "no detections").
    pub threshold: f64,
    /// Raw NAB score: window rewards and costs plus false-positive costs.
    pub raw: f64,
    /// Normalised score: 100 is perfect, 0 is the null detector.
    pub normalised: f64,
    /// Windows with at least one detection.
    pub windows_hit: usize,
    /// Labelled windows in the corpus (the normalisation's denominator).
    pub windows: usize,
    /// Detected rows outside every window (scored rows only).
    pub fp_rows: usize,
}

/// The NAB category of a file name (`realAWSCloudwatch` for
/// `realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv`).
pub fn category(name: &str) -> &str {
    name.split_once('/').map_or(name, |(c, _)| c)
}

/// One fold of a leave-one-category-out cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The category left out: chosen on the others, scored on this one.
    pub held_out: String,
    /// Which candidate was chosen on the other categories (an index into the candidates).
    pub chosen: usize,
    /// The held-out category scored at the threshold chosen on the others.
    pub outcome: Outcome,
}

/// A leave-one-category-out cross-validation of one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// One fold per category, in name order.
    pub folds: Vec<Fold>,
    /// Mean of the folds' normalised scores, over the folds with labelled windows (a
    /// category without anomalies has no normalised score: its false positives show in
    /// the pooled score).
    pub mean: f64,
    /// Every held-out category's raw score summed and normalised over all windows: the
    /// score of the whole corpus as the held-out folds saw it.
    pub pooled: f64,
}

/// Leave-one-category-out cross-validation: for each category, the candidate (a run of the
/// detector with some settings over every file) and the threshold with the best raw score on
/// the other categories are chosen, and the held-out category is scored with them. Nothing
/// is chosen on the files it is scored on. `candidates[k]` must hold the same files for
/// every `k`.
pub fn leave_one_category_out(
    profile: &Profile,
    candidates: &[Vec<ScoredFile>],
) -> CrossValidation {
    let mut categories: Vec<&str> = candidates
        .first()
        .map(|files| files.iter().map(|f| category(&f.name)).collect())
        .unwrap_or_default();
    categories.sort_unstable();
    categories.dedup();
    let split = |files: &[ScoredFile], c: &str| -> (Vec<ScoredFile>, Vec<ScoredFile>) {
        files.iter().cloned().partition(|f| category(&f.name) != c)
    };
    let mut folds = Vec::new();
    let (mut raw, mut windows) = (0.0, 0);
    for c in categories {
        let mut best: Option<(f64, usize, f64)> = None;
        for (k, files) in candidates.iter().enumerate() {
            let (train, _) = split(files, c);
            let o = optimise(profile, &train);
            if best.is_none_or(|(r, _, _)| o.raw > r) {
                best = Some((o.raw, k, o.threshold));
            }
        }
        let Some((_, chosen, threshold)) = best else {
            continue;
        };
        let (_, test) = split(&candidates[chosen], c);
        let outcome = score_at(profile, &test, threshold);
        raw += outcome.raw;
        windows += outcome.windows;
        folds.push(Fold {
            held_out: c.to_string(),
            chosen,
            outcome,
        });
    }
    let scored: Vec<f64> = folds
        .iter()
        .filter(|f| f.outcome.windows > 0)
        .map(|f| f.outcome.normalised)
        .collect();
    CrossValidation {
        mean: scored.iter().sum::<f64>() / scored.len().max(1) as f64,
        pooled: normalise(profile, raw, windows),
        folds,
    }
}

/// One scored row, flattened for the sweep.
struct SweepRow {
    score: f64,
    /// Global window index, or `usize::MAX` when outside.
    window: usize,
    /// Reward (inside a window) or penalty (outside), unweighted.
    value: f64,
}

/// Collects the scored (non-probation) rows of all files; NaN scores never detect and are
/// left out.
fn sweep_rows(files: &[ScoredFile]) -> (Vec<SweepRow>, usize, usize) {
    let mut rows = Vec::new();
    let mut window_base = 0usize;
    let mut labelled = 0usize;
    for f in files {
        for (role, &score) in f.roles.iter().zip(&f.scores) {
            if score.is_nan() {
                continue;
            }
            match *role {
                RowRole::Probation => {}
                RowRole::Window { window, reward } => rows.push(SweepRow {
                    score,
                    window: window_base + window,
                    value: reward,
                }),
                RowRole::Outside { penalty } => rows.push(SweepRow {
                    score,
                    window: usize::MAX,
                    value: penalty,
                }),
            }
        }
        window_base += f.labelled_windows;
        labelled += f.labelled_windows;
    }
    (rows, window_base, labelled)
}

/// Windows that have at least one scored row: only those enter the raw score (NAB).
fn scorable_windows(files: &[ScoredFile]) -> Vec<bool> {
    let mut scorable = Vec::new();
    for f in files {
        let base = scorable.len();
        scorable.resize(base + f.labelled_windows, false);
        for role in &f.roles {
            if let RowRole::Window { window, .. } = *role {
                scorable[base + window] = true;
            }
        }
    }
    scorable
}

fn normalise(profile: &Profile, raw: f64, windows: usize) -> f64 {
    let perfect = profile.tp_weight * windows as f64;
    let null = -profile.fn_weight * windows as f64;
    if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    }
}

/// Scores the corpus at a fixed threshold (a row detects when `score >= threshold`).
pub fn score_at(profile: &Profile, files: &[ScoredFile], threshold: f64) -> Outcome {
    let (rows, n_windows, labelled) = sweep_rows(files);
    let scorable = scorable_windows(files);
    let mut best = vec![f64::NEG_INFINITY; n_windows];
    let mut fp = 0.0;
    let mut fp_rows = 0;
    for row in rows.iter().filter(|r| r.score >= threshold) {
        if row.window == usize::MAX {
            fp += profile.fp_weight * row.value;
            fp_rows += 1;
        } else {
            best[row.window] = best[row.window].max(profile.tp_weight * row.value);
        }
    }
    let mut raw = fp;
    let mut hit = 0;
    for (b, &s) in best.iter().zip(&scorable) {
        if !s {
            continue;
        }
        if b.is_finite() {
            hit += 1;
            raw += b.max(-profile.fn_weight);
        } else {
            raw -= profile.fn_weight;
        }
    }
    Outcome {
        profile: profile.name,
        threshold,
        raw,
        normalised: normalise(profile, raw, labelled),
        windows_hit: hit,
        windows: labelled,
        fp_rows,
    }
}

/// Finds the corpus-wide threshold that maximises the raw score for `profile`.
///
/// Sorts the scored rows by score once and sweeps from the highest score down, keeping a
/// running total, so the cost is `O(n log n)` for `n` scored rows. Candidates are 1.1 (no
/// detections) and every distinct score; ties go to the higher threshold.
pub fn optimise(profile: &Profile, files: &[ScoredFile]) -> Outcome {
    let (mut rows, n_windows, _) = sweep_rows(files);
    let scorable = scorable_windows(files);
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let fn_w = profile.fn_weight;
    // Current contribution of each window: -fn until hit, then its best reward.
    let mut part = vec![-fn_w; n_windows];
    let mut windows_total: f64 = scorable.iter().filter(|&&s| s).count() as f64 * -fn_w;
    let mut fp_total = 0.0;
    let mut fp_rows = 0usize;
    let mut hit = 0usize;
    let mut best = (1.1, windows_total, 0usize, 0usize);
    let mut i = 0;
    while i < rows.len() {
        let threshold = rows[i].score;
        while i < rows.len() && rows[i].score == threshold {
            let row = &rows[i];
            if row.window == usize::MAX {
                fp_total += profile.fp_weight * row.value;
                fp_rows += 1;
            } else if scorable[row.window] {
                let reward = profile.tp_weight * row.value;
                if reward > part[row.window] {
                    if part[row.window] == -fn_w {
                        hit += 1;
                    }
                    windows_total += reward - part[row.window];
                    part[row.window] = reward;
                }
            }
            i += 1;
        }
        let total = windows_total + fp_total;
        if total > best.1 {
            best = (threshold, total, hit, fp_rows);
        }
    }
    let (threshold, _, windows_hit, fp_rows) = best;
    // Recompute at the chosen threshold so the reported raw score is summed in file order,
    // free of the sweep's accumulated rounding.
    let exact = score_at(profile, files, threshold);
    debug_assert_eq!(exact.windows_hit, windows_hit);
    debug_assert_eq!(exact.fp_rows, fp_rows);
    exact
}

/// The header and data rows of a CSV file: `(line number, fields)` per non-blank row
/// (1-based numbers, fields trimmed), and for each name in `columns` its index in the header
/// (case-insensitive).
struct CsvTable {
    path: PathBuf,
    columns: Vec<usize>,
    rows: Vec<(usize, csv::StringRecord)>,
}

impl CsvTable {
    fn read(path: &Path, columns: &[&str]) -> Result<Self, NabError> {
        let io_err = |source| NabError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = csv_reader(std::fs::File::open(path).map_err(io_err)?);
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
                let reason = e.to_string();
                match e.into_kind() {
                    csv::ErrorKind::Io(source) => io_err(source),
                    _ => NabError::Csv {
                        path: path.to_path_buf(),
                        line,
                        reason,
                    },
                }
            })?;
            if !is_blank(&record) {
                records.push((record_line(&record), record));
            }
        }
        let mut lines = records.into_iter();
        let (header_line, names) = lines.next().ok_or_else(|| NabError::Csv {
            path: path.to_path_buf(),
            line: 1,
            reason: "empty file: no header".into(),
        })?;
        let columns = columns
            .iter()
            .map(|c| {
                names
                    .iter()
                    .position(|n| n.trim_start_matches('\u{feff}').eq_ignore_ascii_case(c))
                    .ok_or_else(|| NabError::Csv {
                        path: path.to_path_buf(),
                        line: header_line,
                        reason: format!("header has no `{c}` column"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(CsvTable {
            path: path.to_path_buf(),
            columns,
            rows: lines.collect(),
        })
    }

    fn error(&self, line: usize, reason: String) -> NabError {
        NabError::Csv {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    /// Field `k` (index into the requested columns) of one row.
    fn field<'a>(
        &self,
        row: &'a (usize, csv::StringRecord),
        k: usize,
    ) -> Result<&'a str, NabError> {
        let c = self.columns[k];
        row.1
            .get(c)
            .ok_or_else(|| self.error(row.0, format!("missing field {}", c + 1)))
    }

    fn number(
        &self,
        row: &(usize, csv::StringRecord),
        k: usize,
        name: &str,
    ) -> Result<f64, NabError> {
        let raw = self.field(row, k)?;
        raw.parse()
            .map_err(|_| self.error(row.0, format!("`{name}` is not a number: {raw:?}")))
    }
}

/// Reads a CSV with a header naming at least `timestamp` and `column`; returns the
/// timestamps (microseconds) and the column's values, in file order.
pub fn read_csv_column(path: &Path, column: &str) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let table = CsvTable::read(path, &["timestamp", column])?;
    let mut ts = Vec::with_capacity(table.rows.len());
    let mut vs = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let t = parse_timestamp_us(table.field(row, 0)?)
            .map_err(|e| table.error(row.0, e.to_string()))?;
        ts.push(t);
        vs.push(table.number(row, 1, column)?);
    }
    Ok((ts, vs))
}

/// Reads one numeric column of a CSV whose header names it (no timestamp needed), in file
/// order.
pub fn read_number_column(path: &Path, column: &str) -> Result<Vec<f64>, NabError> {
    let table = CsvTable::read(path, &[column])?;
    table
        .rows
        .iter()
        .map(|row| table.number(row, 0, column))
        .collect()
}

/// Loads the result CSVs of one detector laid out as NAB's `results/<detector>/` directory
/// (`<dir>/<category>/<prefix><file>.csv`), for every file in `labels`.
pub fn load_results(
    dir: &Path,
    prefix: &str,
    labels: &Labels,
) -> Result<Vec<ScoredFile>, NabError> {
    let mut files = Vec::with_capacity(labels.len());
    for (name, windows) in labels {
        let (ts, scores) = read_csv_column(&result_path(dir, prefix, name), "anomaly_score")?;
        files.push(ScoredFile::new(name, &ts, scores, windows)?);
    }
    Ok(files)
}

/// Like [`load_results`] for result files that hold only an `anomaly_score` column, one
/// line per row of the data file: the timestamps come from `<data_dir>/<category>/<file>.csv`.
/// This is how the repository stores NAB's reference output (`tests/data/nab/reference`),
/// a third of the size of the full result files.
pub fn load_score_columns(
    data_dir: &Path,
    dir: &Path,
    prefix: &str,
    labels: &Labels,
) -> Result<Vec<ScoredFile>, NabError> {
    let mut files = Vec::with_capacity(labels.len());
    for (name, windows) in labels {
        let (ts, _) = read_csv_column(&data_dir.join(name), "value")?;
        let scores = read_number_column(&result_path(dir, prefix, name), "anomaly_score")?;
        files.push(ScoredFile::new(name, &ts, scores, windows)?);
    }
    Ok(files)
}

/// `<dir>/<category>/<prefix><file>` for the NAB file name `category/file`.
fn result_path(dir: &Path, prefix: &str, name: &str) -> PathBuf {
    let (category, file) = name.split_once('/').unwrap_or(("", name));
    dir.join(category).join(format!("{prefix}{file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * 300_000_000).collect()
    }

    fn window(start: i64, end: i64) -> Window {
        Window {
            start: start.to_string(),
            end: end.to_string(),
            start_us: start,
            end_us: end,
        }
    }

    #[test]
    fn sigmoid_values() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_5).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(10_000), 750);
    }

    #[test]
    fn single_window_early_detection_is_near_one() {
        let t = ts(100);
        // Window rows 50..=59.
        let w = [window(t[50], t[59])];
        let mut scores = vec![0.0; 100];
        scores[50] = 1.0;
        let f = ScoredFile::new("a/b.csv", &t, scores, &w).unwrap();
        let out = optimise(&Profile::STANDARD, &[f]);
        assert_eq!(out.threshold, 1.0);
        assert_eq!(out.windows_hit, 1);
        assert!((out.raw - 1.0).abs() < 1e-12, "{out:?}");
        assert!((out.normalised - 100.0).abs() < 1e-9);
    }

    #[test]
    fn false_positive_costs_and_ties_go_high() {
        let t = ts(100);
        let f = ScoredFile::new("a/b.csv", &t, vec![0.5; 100], &[]).unwrap();
        let out = optimise(&Profile::STANDARD, &[f]);
        assert_eq!(out.threshold, 1.1);
        assert_eq!(out.raw, 0.0);
        let at = score_at(&Profile::STANDARD, &[out_file()], 0.5);
        assert_eq!(at.fp_rows, 85);
        assert!((at.raw + 85.0 * 0.11).abs() < 1e-9);
    }

    fn out_file() -> ScoredFile {
        let t = ts(100);
        ScoredFile::new("a/b.csv", &t, vec![0.5; 100], &[]).unwrap()
    }

    #[test]
    fn missing_window_timestamp_is_an_error() {
        let t = ts(10);
        let err = ScoredFile::new("a/b.csv", &t, vec![0.0; 10], &[window(1, t[3])]);
        assert!(matches!(err, Err(NabError::Window { .. })));
    }
}
