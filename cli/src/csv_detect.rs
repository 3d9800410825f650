//! The `eventbatch detect INPUT.csv --output OUT.csv` subcommand: run the pattern detector
//! over a `timestamp,value` CSV.
//!
//! Contract: the input has a header row naming a `timestamp` and a `value`
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
//! may be quoted as RFC 4180 says (embedded commas and quotes included: the [`csv`] crate
//! reads the file). A value spelled `NaN` or
//! `inf` is accepted and scored 0, as the detector ignores non-finite values.

use std::fs::File;
use std::path::{Path, PathBuf};

use eventbatch::stats::detect::{DetectorSettings, PatternKind, SeriesDetector};

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
    pub reason: String,
}

/// `YYYY-MM-DD HH:MM:SS[.f...]`, a `T` allowed for the space; the fraction's length is
/// checked separately (at most six digits).
const CALENDAR: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day][first [ ][T]][hour]:[minute]:[second][optional [.[subsecond digits:1+]]]"
);

const EXPECTED: &str = "expected `YYYY-MM-DD HH:MM:SS[.ffffff]` or integer milliseconds";

/// Parses a timestamp as microseconds since the Unix epoch (UTC).
///
/// Accepts `YYYY-MM-DD HH:MM:SS` with an optional fraction of up to six digits (a `T` may
/// stand for the space), or an integer number of milliseconds (optionally negative).
pub fn parse_timestamp_us(text: &str) -> Result<i64, TimestampError> {
    let err = |reason: String| TimestampError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty".into()));
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let out_of_range = || err("integer milliseconds out of range".into());
        let ms: i64 = s.parse().map_err(|_| out_of_range())?;
        return ms.checked_mul(1000).ok_or_else(out_of_range);
    }
    if let Some((_, fraction)) = s.split_once('.') {
        if fraction.is_empty() || fraction.len() > 6 {
            return Err(err(
                "fraction of a second must be `.` and 1 to 6 digits".into()
            ));
        }
    }
    let parsed = time::PrimitiveDateTime::parse(s, CALENDAR).map_err(|e| {
        use time::error::{Parse, ParseFromDescription, TryFromParsed};
        err(match e {
            Parse::ParseFromDescription(ParseFromDescription::InvalidComponent(name)) => {
                format!("invalid {name}: {EXPECTED}")
            }
            Parse::TryFromParsed(TryFromParsed::ComponentRange(range)) => {
                format!("{} out of range", range.name())
            }
            _ => EXPECTED.to_string(),
        })
    })?;
    let us = parsed.assume_utc().unix_timestamp_nanos() / 1000;
    i64::try_from(us).map_err(|_| err("out of range".into()))
}
/// A CSV reader as both file formats here want it: no header handling (the caller reads the
/// header row itself, to name the missing column), rows of any length (the caller names the
/// line of a short or long one), and fields trimmed of surrounding spaces.
pub(crate) fn csv_reader<R: std::io::Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input)
}

/// The 1-based line on which `record` starts.
pub(crate) fn record_line(record: &csv::StringRecord) -> usize {
    record
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX))
}

/// A line holding nothing but spaces (the reader already skips empty ones).
pub(crate) fn is_blank(record: &csv::StringRecord) -> bool {
    record.len() == 1 && record[0].is_empty()
}

fn csv_error(path: &Path, e: csv::Error) -> DetectCsvError {
    let line = e
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    let reason = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DetectCsvError::Read {
            path: path.to_path_buf(),
            source,
        },
        _ => DetectCsvError::Row {
            path: path.to_path_buf(),
            line,
            reason,
        },
    }
}

/// Runs the detector over the `timestamp,value` CSV at `input` and writes
/// `timestamp,value,anomaly_score,pattern` to `output` (see the module docs).
///
/// The output file is written through a temporary file in its directory (created exclusively,
/// 0600: [`crate::output`]) and renamed into place only when every row has been read, so a
/// malformed input leaves no partial output behind.
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
    let mut reader = csv_reader(File::open(input).map_err(read_err)?);
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    let mut columns: Option<(usize, usize, usize)> = None;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(input, e)),
        }
        let line_no = record_line(&record);
        if is_blank(&record) {
            continue;
        }
        let Some((t_col, v_col, width)) = columns else {
            let find = |name: &str| {
                record
                    .iter()
                    .position(|f| f.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
            };
            let header_err = |reason: &str| DetectCsvError::Header {
                path: input.to_path_buf(),
                reason: reason.to_string(),
            };
            let t = find("timestamp").ok_or_else(|| header_err("no `timestamp` column"))?;
            let v = find("value").ok_or_else(|| header_err("no `value` column"))?;
            columns = Some((t, v, record.len()));
            continue;
        };
        let row_err = |reason: String| DetectCsvError::Row {
            path: input.to_path_buf(),
            line: line_no,
            reason,
        };
        if record.len() != width {
            return Err(row_err(format!(
                "expected {width} fields, found {}",
                record.len()
            )));
        }
        let (t, v) = (&record[t_col], &record[v_col]);
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
    crate::output::write_file(output, |file| {
        let mut w = csv::Writer::from_writer(file);
        w.write_record(["timestamp", "value", "anomaly_score", "pattern"])?;
        for (t, v, score, kinds) in &out_rows {
            w.write_record([t.as_str(), v.as_str(), &score.to_string(), kinds.as_str()])?;
        }
        w.flush()
    })
    .map_err(write_err)?;
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
        assert_eq!(
            parse_timestamp_us("2014-04-10T07:15:00"),
            Ok(1_397_114_100_000_000)
        );
        assert_eq!(parse_timestamp_us("-1000"), Ok(-1_000_000));
        assert!(parse_timestamp_us("2001-02-29 00:00:00").is_err());
        assert!(parse_timestamp_us("2014-04-10 07:15:00.").is_err());
        assert!(parse_timestamp_us("2014-04-10 07:15:00 junk").is_err());
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
    fn quoted_fields_may_hold_commas() {
        let (r, out) = run("note,timestamp,value\n\"a, b\",2014-01-01 00:00:00,\"1.5\"\n");
        assert_eq!(r.unwrap().rows, 1);
        assert_eq!(
            out.unwrap().lines().nth(1),
            Some("2014-01-01 00:00:00,1.5,0,")
        );
    }

    #[test]
    fn header_only_gives_header_only() {
        let (r, out) = run("timestamp,value\n");
        assert_eq!(r.unwrap().rows, 0);
        assert_eq!(out.unwrap(), "timestamp,value,anomaly_score,pattern\n");
    }
}
