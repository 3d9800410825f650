//! `eventbatch report`: the windows and patterns of a store as one self-contained HTML page.
//!
//! [`load`] reads what the page shows through the library's [`StoreReader`] (series, windows or
//! hour and day buckets, patterns); [`page::render`] turns it into HTML with an SVG chart per
//! series ([`chart`]): the mean over the p50-p99 band, a numbered marker at each pattern, and
//! the patterns listed in a table. The page needs nothing at view time: no network (its
//! Content-Security-Policy forbids every fetch), styles and the small hover script inline.

pub mod chart;
pub mod escape;
pub mod page;
pub mod scale;
pub mod users;

use eventbatch::{
    Pattern, PipelineError, QueryPatterns, Resolution, StoreReader, StoredSeries, WindowStats,
};

/// What to put in the report.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Only the series of this metric (with and without context).
    pub metric: Option<String>,
    /// Only windows (buckets) and patterns from this time on, ms; at hour, day or week resolution
    /// from the start of the bucket holding it.
    pub since_ms: Option<i64>,
    /// Only windows (buckets) and patterns starting before this time, ms.
    pub until_ms: Option<i64>,
    /// Windows, or hour, day or week buckets.
    pub resolution: Resolution,
    /// Units by metric name (`("response_time", "ms")`), over [`guess_unit`].
    pub units: Vec<(String, String)>,
}

/// One charted series.
#[derive(Debug, Clone)]
pub struct SeriesData {
    /// Which series.
    pub series: StoredSeries,
    /// Unit of its values, if known.
    pub unit: Option<String>,
    /// Its windows (or buckets) in the range, by start.
    pub windows: Vec<WindowStats>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The store, as [`eventbatch::Store::describe`] prints it (no password).
    pub source: String,
    /// When the report was made, ms.
    pub generated_ms: i64,
    /// What was asked for.
    pub options: ReportOptions,
    /// The series with at least one window in the range, by name.
    pub series: Vec<SeriesData>,
    /// Series of the store (of the metric asked for) with no window in the range.
    pub series_without_windows: Vec<String>,
    /// The patterns in the range, by window start.
    pub patterns: Vec<Pattern>,
    /// Each command's distinct users in the range (commands that named a user).
    pub users: Vec<users::CommandUsers>,
}

/// The unit of a metric by its name, when the name says it: latencies, durations and times
/// (`*latency*`, `*duration*`, `*_time`, `*_ms`) and datastore operations are milliseconds.
pub fn guess_unit(metric: &str) -> Option<&'static str> {
    let m = metric.to_ascii_lowercase();
    let ms = m.starts_with("datastore.")
        || m.contains("latency")
        || m.contains("duration")
        || m.ends_with("_time")
        || m.ends_with("_ms");
    ms.then_some("ms")
}

/// What `--since` and `--until` accept, for error messages and help.
pub const TIME_FORMATS: &str = "`YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (UTC), RFC 3339 \
(`2026-01-05T10:00:00+01:00`), integer milliseconds since the epoch, or a time ago \
(`90s`, `30m`, `6h`, `7d`, `2w`)";

/// A point in time given on the command line, as ms since the Unix epoch; see
/// [`TIME_FORMATS`]. A time ago counts back from `now_ms`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let s = text.trim();
    let bad = || format!("cannot read {text:?} as a time: expected {TIME_FORMATS}");
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    if let Some(split) = s.find(|c: char| !c.is_ascii_digit()).filter(|&i| i > 0) {
        let unit_ms = match &s[split..] {
            "s" => Some(1_000),
            "m" | "min" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            "w" => Some(7 * 86_400_000),
            _ => None,
        };
        if let Some(unit_ms) = unit_ms {
            let n: i64 = s[..split].parse().map_err(|_| bad())?;
            return n
                .checked_mul(unit_ms)
                .and_then(|ago| now_ms.checked_sub(ago))
                .ok_or_else(bad);
        }
    }
    let ms = |nanos: i128| i64::try_from(nanos.div_euclid(1_000_000)).map_err(|_| bad());
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return ms(t.unix_timestamp_nanos());
    }
    let date_time = format_description!(
        "[year]-[month]-[day][first [ ][T]][hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    if let Ok(t) = time::PrimitiveDateTime::parse(s, date_time) {
        return ms(t.assume_utc().unix_timestamp_nanos());
    }
    if let Ok(d) = time::Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return ms(d.midnight().assume_utc().unix_timestamp_nanos());
    }
    Err(bad())
}

/// The time range's start for a query at `resolution`: the start of its bucket.
fn bucket_floor(ms: i64, resolution: Resolution) -> i64 {
    resolution.bucket_start(ms)
}

/// Reads the report's data from `reader`.
pub fn load(
    reader: &StoreReader,
    source: String,
    options: ReportOptions,
    now_ms: i64,
) -> Result<Report, PipelineError> {
    let stored: Vec<StoredSeries> = reader
        .series()?
        .into_iter()
        .filter(|s| options.metric.as_ref().is_none_or(|m| &s.metric == m))
        .collect();
    let from = options
        .since_ms
        .map_or(i64::MIN, |t| bucket_floor(t, options.resolution));
    let to = options.until_ms.unwrap_or(i64::MAX);
    let mut series = Vec::new();
    let mut series_without_windows = Vec::new();
    for s in stored.iter() {
        let windows =
            reader.windows(&s.query().between(from, to).resolution(options.resolution))?;
        if windows.is_empty() {
            series_without_windows.push(s.labelled_name());
            continue;
        }
        let unit = options
            .units
            .iter()
            .find(|(m, _)| m == &s.metric)
            .map(|(_, u)| u.clone())
            .or_else(|| guess_unit(&s.metric).map(str::to_string));
        series.push(SeriesData {
            series: s.clone(),
            unit,
            windows,
        });
    }
    let mut query = QueryPatterns::all();
    if let Some(metric) = &options.metric {
        query = query.metric(metric);
    }
    if let Some(since) = options.since_ms {
        query = query.since(since);
    }
    let patterns = reader
        .patterns(&query)?
        .into_iter()
        .filter(|p| p.window_start_ms < to)
        .collect();
    let users = users::load(reader, from, to, options.resolution)?;
    Ok(Report {
        source,
        generated_ms: now_ms,
        options,
        series,
        series_without_windows,
        patterns,
        users,
    })
}

/// Whether `pattern` was found in `series`: same metric, same context, same label set (two
/// series can share a display name: the metric `a.b`, and the metric `a` in context `b`).
pub fn belongs_to(pattern: &Pattern, series: &StoredSeries) -> bool {
    pattern.metric == series.metric
        && pattern.context == series.context
        && pattern.labels == series.labels
}

impl Report {
    /// The shared time axis: from the earliest window (or pattern) start to the latest end.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let windows = self.series.iter().flat_map(|s| {
            s.windows
                .iter()
                .map(|w| (w.window_start_ms, w.window_end_ms))
        });
        let patterns = self
            .patterns
            .iter()
            .map(|p| (p.window_start_ms, p.window_end_ms));
        windows.chain(patterns).fold(None, |acc, (s, e)| match acc {
            None => Some((s, e)),
            Some((lo, hi)) => Some((s.min(lo), e.max(hi))),
        })
    }

    /// Windows (or buckets) on the page.
    pub fn window_count(&self) -> usize {
        self.series.iter().map(|s| s.windows.len()).sum()
    }

    /// What [`Report::window_count`] counts: `windows`, `hour buckets`, `day buckets` or
    /// `week buckets`.
    pub fn window_noun(&self) -> &'static str {
        match self.options.resolution {
            Resolution::Hour => "hour buckets",
            Resolution::Day => "day buckets",
            Resolution::Week => "week buckets",
            _ => "windows",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_the_metric_name() {
        assert_eq!(guess_unit("api_latency"), Some("ms"));
        assert_eq!(guess_unit("response_time"), Some("ms"));
        assert_eq!(guess_unit("datastore.load"), Some("ms"));
        assert_eq!(guess_unit("job_duration"), Some("ms"));
        assert_eq!(guess_unit("cache_hit_rate"), None);
        assert_eq!(guess_unit("memory_usage"), None);
    }

    #[test]
    fn times_in_every_accepted_form() {
        let now = 1_764_000_000_000; // 2025-11-24 16:00 UTC
        assert_eq!(parse_time("2025-11-24", now), Ok(now - 16 * 3_600_000));
        assert_eq!(parse_time("2025-11-24 16:00", now), Ok(now));
        assert_eq!(parse_time("2025-11-24T16:00:30", now), Ok(now + 30_000));
        assert_eq!(parse_time("2025-11-24 16:00:00.250", now), Ok(now + 250));
        assert_eq!(parse_time("2025-11-24T17:00:00+01:00", now), Ok(now));
        assert_eq!(parse_time("2025-11-24T16:00:00Z", now), Ok(now));
        assert_eq!(parse_time("1764000000000", now), Ok(now));
        assert_eq!(parse_time("6h", now), Ok(now - 6 * 3_600_000));
        assert_eq!(parse_time("30m", now), Ok(now - 30 * 60_000));
        assert_eq!(parse_time("2w", now), Ok(now - 14 * 86_400_000));
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "5y",
            "2025-11-24 25:00",
            "99999999999999999999d",
        ] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(
                e.contains("expected") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn ranges_start_at_their_bucket() {
        let t = 1_764_000_000_000 + 17 * 60_000 + 5;
        assert_eq!(bucket_floor(t, Resolution::Window), t);
        assert_eq!(bucket_floor(t, Resolution::Hour), 1_764_000_000_000);
        assert_eq!(bucket_floor(t, Resolution::Day) % 86_400_000, 0);
        // ISO weeks: t is a Monday afternoon, its week began that midnight (UTC)
        assert_eq!(bucket_floor(t, Resolution::Week), 1_763_942_400_000);
        assert_eq!(
            bucket_floor(1_763_942_400_000 - 1, Resolution::Week),
            1_763_942_400_000 - 7 * 86_400_000
        );
    }
}
