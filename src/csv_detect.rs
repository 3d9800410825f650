//! The `eventbatch detect INPUT.csv --output OUT.csv` subcommand: run the pattern detector
//! over a `timestamp,value` CSV.
//!
//! Contract (see `API.md`): the input has a header row naming a `timestamp` and a `value`
//! column (other columns are ignored); timestamps are `YYYY-MM-DD HH:MM:SS[.ffffff]` or
//! integer milliseconds since the Unix epoch; the values are fed to one
//! [`SeriesDetector`] in file order (never sorted, duplicates kept), which is the same
//! detector the pipeline runs on closed windows. The output is
//! `timestamp,value,anomaly_score,pattern`: the same rows in the same order, `timestamp` and
//! `value` copied verbatim, `anomaly_score` in `[0, 1]`, and `pattern` the kinds found on the
//! row joined by `;` (empty when none).
//!
//! A malformed row (wrong number of fields, bad timestamp, value that is not a number) is a
//! [`DetectCsvError::Row`] naming the 1-based line number; blank lines are skipped. Fields
//! may be wrapped in double quotes (without embedded commas). A value spelled `NaN` or
//! `inf` is accepted and scored 0, as the detector ignores non-finite values.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::stats::detect::{DetectorSettings, PatternKind, SeriesDetector};

/// Why `detect` failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectCsvError {
    /// The detector settings are invalid.
    #[error("invalid detector setting `{field}`: {value}")]
    Settings {
        /// The offending field.
        field: &'static str,
        /// Its value, as text.
        value: String,
    },
    /// The input could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The output could not be created or written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The header row is missing or lacks a required column.
    #[error("{path}: line 1: {reason}")]
    Header {
        /// The input file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// A data row is malformed.
    #[error("{path}: line {line}: {reason}")]
    Row {
        /// The input file.
        path: PathBuf,
        /// 1-based line number in the input (the header is line 1).
        line: usize,
        /// What is wrong with the row.
        reason: String,
    },
}

/// What a `detect` run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetectReport {
    /// Data rows read and written.
    pub rows: usize,
    /// Rows whose value was NaN or infinite (scored 0, not fed to the baseline).
    pub non_finite: usize,
    /// Number of findings per kind, in the order spike, drop, anomaly, trend_up, trend_down.
    pub findings: [usize; 5],
    /// Highest anomaly score written.
    pub max_score: f64,
}

impl DetectReport {
    /// Number of findings of one kind.
    pub fn count(&self, kind: PatternKind) -> usize {
        self.findings[kind_index(kind)]
    }
}

fn kind_index(kind: PatternKind) -> usize {
    match kind {
        PatternKind::Spike => 0,
        PatternKind::Drop => 1,
        PatternKind::Anomaly => 2,
        PatternKind::TrendUp => 3,
        PatternKind::TrendDown => 4,
    }
}

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad timestamp {text:?}: {reason}")]
pub struct TimestampError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses a timestamp as microseconds since the Unix epoch (UTC).
///
/// Accepts `YYYY-MM-DD HH:MM:SS` with an optional fraction of up to six digits (a `T` may
/// stand for the space), or an integer number of milliseconds (optionally negative).
pub fn parse_timestamp_us(text: &str) -> Result<i64, TimestampError> {
    let err = |reason| TimestampError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = s
            .parse()
            .map_err(|_| err("integer milliseconds out of range"))?;
        return ms
            .checked_mul(1000)
            .ok_or_else(|| err("integer milliseconds out of range"));
    }
    let b = s.as_bytes();
    if b.len() < 19 {
        return Err(err(
            "expected `YYYY-MM-DD HH:MM:SS[.ffffff]` or integer milliseconds",
        ));
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
        let part = &b[range];
        if part.iter().all(|c| c.is_ascii_digit()) {
            Ok(part
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0')))
        } else {
            Err(err(
                "expected `YYYY-MM-DD HH:MM:SS[.ffffff]` or integer milliseconds",
            ))
        }
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err(
            "expected `YYYY-MM-DD HH:MM:SS[.ffffff]` or integer milliseconds",
        ));
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) {
        return Err(err("month out of range"));
    }
    if d < 1 || d > days_in_month(y, mo) {
        return Err(err("day out of range"));
    }
    if h > 23 || mi > 59 || sec > 59 {
        return Err(err("time of day out of range"));
    }
    let mut micros = 0i64;
    if b.len() > 19 {
        let frac = &b[19..];
        if frac[0] != b'.' || frac.len() < 2 || frac.len() > 7 {
            return Err(err("fraction of a second must be `.` and 1 to 6 digits"));
        }
        let digits = num(20..b.len())?;
        micros = digits * 10i64.pow(7 - frac.len() as u32);
    }
    let days = days_from_civil(y, mo, d);
    Ok(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + micros)
}

/// Splits one CSV line into fields, trimming spaces and one pair of surrounding quotes.
fn split_fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            let f = f.trim();
            f.strip_prefix('"')
                .and_then(|g| g.strip_suffix('"'))
                .unwrap_or(f)
        })
        .collect()
}

/// Runs the detector over the `timestamp,value` CSV at `input` and writes
/// `timestamp,value,anomaly_score,pattern` to `output` (see the module docs).
///
/// The output file is written through a temporary sibling and renamed into place only when
/// every row has been read, so a malformed input leaves no partial output behind.
pub fn detect_csv(
    input: &Path,
    output: &Path,
    settings: &DetectorSettings,
) -> Result<DetectReport, DetectCsvError> {
    settings
        .validate()
        .map_err(|(field, value)| DetectCsvError::Settings { field, value })?;
    let read_err = |source| DetectCsvError::Read {
        path: input.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(input).map_err(read_err)?);
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    let mut columns: Option<(usize, usize, usize)> = None;
    for (n, line) in reader.lines().enumerate() {
        let line_no = n + 1;
        let line = line.map_err(read_err)?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        let Some((t_col, v_col, width)) = columns else {
            let find = |name: &str| fields.iter().position(|f| f.eq_ignore_ascii_case(name));
            let header_err = |reason: &str| DetectCsvError::Header {
                path: input.to_path_buf(),
                reason: reason.to_string(),
            };
            let t = find("timestamp").ok_or_else(|| header_err("no `timestamp` column"))?;
            let v = find("value").ok_or_else(|| header_err("no `value` column"))?;
            columns = Some((t, v, fields.len()));
            continue;
        };
        let row_err = |reason: String| DetectCsvError::Row {
            path: input.to_path_buf(),
            line: line_no,
            reason,
        };
        if fields.len() != width {
            return Err(row_err(format!(
                "expected {width} fields, found {}",
                fields.len()
            )));
        }
        let (t, v) = (fields[t_col], fields[v_col]);
        parse_timestamp_us(t).map_err(|e| row_err(e.to_string()))?;
        let value: f64 = v
            .parse()
            .map_err(|_| row_err(format!("value is not a number: {v:?}")))?;
        rows.push((t.to_string(), v.to_string(), value));
    }
    if columns.is_none() {
        return Err(DetectCsvError::Header {
            path: input.to_path_buf(),
            reason: "empty file: no header row".to_string(),
        });
    }

    let mut detector = SeriesDetector::new(settings.clone());
    let mut report = DetectReport::default();
    let mut out_rows = Vec::with_capacity(rows.len());
    for (t, v, value) in rows {
        let detection = detector.observe(value);
        report.rows += 1;
        if !value.is_finite() {
            report.non_finite += 1;
        }
        report.max_score = report.max_score.max(detection.score);
        let mut kinds = Vec::new();
        for f in &detection.findings {
            report.findings[kind_index(f.kind)] += 1;
            log::info!(
                "{}: {} (confidence {:.3}): {}",
                t,
                f.kind.as_str(),
                f.confidence,
                f.description
            );
            kinds.push(f.kind.as_str());
        }
        out_rows.push((t, v, detection.score, kinds.join(";")));
    }

    let write_err = |source| DetectCsvError::Write {
        path: output.to_path_buf(),
        source,
    };
    let mut tmp_name = output.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = output.with_file_name(tmp_name);
    {
        let mut w = BufWriter::new(File::create(&tmp).map_err(write_err)?);
        writeln!(w, "timestamp,value,anomaly_score,pattern").map_err(write_err)?;
        for (t, v, score, kinds) in &out_rows {
            writeln!(w, "{t},{v},{score},{kinds}").map_err(write_err)?;
        }
        w.flush().map_err(write_err)?;
    }
    std::fs::rename(&tmp, output).map_err(write_err)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_timestamp_us("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(
            parse_timestamp_us("2014-04-10 07:15:00.000000"),
            parse_timestamp_us("2014-04-10 07:15:00")
        );
        assert_eq!(
            parse_timestamp_us("2014-04-10 07:15:00"),
            Ok(1_397_114_100_000_000)
        );
        assert_eq!(
            parse_timestamp_us("2000-02-29 00:00:00.5"),
            Ok(951_782_400_500_000)
        );
        assert_eq!(
            parse_timestamp_us("1397114100000"),
            Ok(1_397_114_100_000_000)
        );
        assert!(parse_timestamp_us("2001-02-29 00:00:00").is_err());
        assert!(parse_timestamp_us("2014-04-10").is_err());
        assert!(parse_timestamp_us("2014-04-10 25:00:00").is_err());
        assert!(parse_timestamp_us("").is_err());
        assert!(parse_timestamp_us("2014-04-10 07:15:00.1234567").is_err());
        assert!(parse_timestamp_us("99999999999999999999").is_err());
    }

    fn run(input: &str) -> (Result<DetectReport, DetectCsvError>, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let inp = dir.path().join("in.csv");
        let out = dir.path().join("out.csv");
        std::fs::write(&inp, input).unwrap();
        let r = detect_csv(&inp, &out, &DetectorSettings::default());
        (r, std::fs::read_to_string(&out).ok())
    }

    #[test]
    fn copies_rows_verbatim_in_order() {
        let mut input = String::from("timestamp,value\n");
        for i in 0..300 {
            // Out of order and duplicated timestamps are kept as they are.
            let t = 1_000_000 - (i % 7) * 1000;
            let v = if i == 250 {
                "1e3".to_string()
            } else {
                format!("{}.50", 10 + i % 3)
            };
            input.push_str(&format!("{t},{v}\n"));
        }
        input.push_str("2014-04-10 07:15:00.000000,NaN\n");
        let (r, out) = run(&input);
        let report = r.unwrap();
        assert_eq!(report.rows, 301);
        assert_eq!(report.non_finite, 1);
        let out = out.unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,pattern"));
        for (inp, outp) in input.lines().skip(1).zip(lines.by_ref()) {
            let f: Vec<&str> = outp.split(',').collect();
            assert_eq!(f.len(), 4);
            assert_eq!(format!("{},{}", f[0], f[1]), inp);
            let s: f64 = f[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&s), "{outp}");
        }
        assert_eq!(lines.next(), None);
        let spike_row = out.lines().nth(251).unwrap();
        assert!(spike_row.ends_with("spike"), "{spike_row}");
        assert_eq!(report.count(PatternKind::Spike), 1);
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let (r, out) = run("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,x\n");
        let e = r.unwrap_err();
        assert!(matches!(e, DetectCsvError::Row { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("line 3"));
        assert!(out.is_none());
        let (r, _) = run("timestamp,value\n2014-01-01 00:00:00,1\nyesterday,2\n");
        assert!(matches!(r, Err(DetectCsvError::Row { line: 3, .. })));
        let (r, _) = run("timestamp,value\n2014-01-01 00:00:00\n");
        assert!(matches!(r, Err(DetectCsvError::Row { line: 2, .. })));
        let (r, _) = run("time,val\n1,2\n");
        assert!(matches!(r, Err(DetectCsvError::Header { .. })));
        let (r, _) = run("");
        assert!(matches!(r, Err(DetectCsvError::Header { .. })));
    }

    #[test]
    fn header_only_gives_header_only() {
        let (r, out) = run("timestamp,value\n");
        assert_eq!(r.unwrap().rows, 0);
        assert_eq!(out.unwrap(), "timestamp,value,anomaly_score,pattern\n");
    }
}
