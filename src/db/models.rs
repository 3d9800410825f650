//! Row types: `New*Row<'a>` borrow from the pipeline's data for inserts; `*Row` are read back.
//!
//! Every insert struct sets `treat_none_as_default_value = false`: with the default, diesel
//! runs a SQLite batch as one INSERT per row.

use diesel::prelude::*;

use super::schema::{error_counts, events, metric_rollups, metric_windows, patterns, quarantine};
use crate::messages::Pattern;
use crate::model::SeriesKey;
use crate::stats::window::WindowState;
use crate::window_stats::WindowStats;

/// An `events` row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub(crate) struct NewEventRow<'a> {
    pub instance_id: &'a str,
    pub ts_ms: i64,
    pub kind: &'static str,
    pub name: &'a str,
    pub priority: &'static str,
    pub user_hash: Option<&'a str>,
    pub server_hash: Option<&'a str>,
    pub success: Option<bool>,
    pub duration_ms: Option<f64>,
    pub value: Option<f64>,
    pub error_type: Option<&'a str>,
    pub error_category: Option<&'a str>,
    pub sample_rate: f64,
    pub tags: Option<&'a str>,
    pub payload: Option<&'a str>,
}

/// A stored series as read: `(series, metric, context, labels)` (see `Conn::stored_series`).
pub(crate) type StoredSeriesRow = (String, String, Option<String>, String);

/// A `metric_windows` row to insert or replace.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = metric_windows, treat_none_as_default_value = false)]
pub(crate) struct NewWindowRow<'a> {
    pub instance_id: &'a str,
    pub series: &'a str,
    pub metric: &'a str,
    pub context: Option<&'a str>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub count: i64,
    pub estimated_count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub sketch: Option<&'a [u8]>,
    pub is_final: bool,
    /// The label set, canonical JSON ([`crate::model::labels_text`]).
    pub labels: &'a str,
    /// Its hash ([`crate::model::labels_key`]), in the uniqueness key.
    pub labels_key: i64,
}

/// A `metric_windows` row read back for a query.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = metric_windows)]
pub(crate) struct WindowRow {
    pub instance_id: String,
    pub metric: String,
    pub context: Option<String>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub sketch: Option<Vec<u8>>,
    pub labels: String,
}

impl WindowRow {
    /// The series of this row.
    pub(crate) fn key(&self) -> SeriesKey {
        SeriesKey::new(self.metric.as_str(), self.context.as_deref())
            .with_labels(crate::model::parse_labels(&self.labels))
    }
}

/// A `metric_rollups` row to insert or replace.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = metric_rollups, treat_none_as_default_value = false)]
pub(crate) struct NewRollupRow<'a> {
    pub resolution: &'a str,
    pub series: &'a str,
    pub metric: &'a str,
    pub context: Option<&'a str>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub count: i64,
    pub estimated_count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub sketch: Option<&'a [u8]>,
    pub source_rows: i64,
    pub computed_at_ms: i64,
    /// The label set, canonical JSON.
    pub labels: &'a str,
    /// Its hash, in the uniqueness key.
    pub labels_key: i64,
}

/// A `metric_rollups` row read back: as a source of a coarser roll-up, or for a query.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = metric_rollups)]
pub(crate) struct RollupRow {
    pub metric: String,
    pub context: Option<String>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub sketch: Option<Vec<u8>>,
    pub labels: String,
}

impl RollupRow {
    /// The series of this row.
    pub(crate) fn key(&self) -> SeriesKey {
        SeriesKey::new(self.metric.as_str(), self.context.as_deref())
            .with_labels(crate::model::parse_labels(&self.labels))
    }
}

/// An `error_counts` row to insert or replace.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = error_counts, treat_none_as_default_value = false)]
pub(crate) struct NewErrorCountRow<'a> {
    pub instance_id: &'a str,
    pub error_hash: &'a str,
    pub error_type: &'a str,
    pub error_category: Option<&'a str>,
    pub window_start_ms: i64,
    pub count: i64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
}

/// A `patterns` row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = patterns, treat_none_as_default_value = false)]
pub(crate) struct NewPatternRow<'a> {
    pub instance_id: &'a str,
    pub series: &'a str,
    pub metric: &'a str,
    pub context: Option<&'a str>,
    pub kind: &'a str,
    pub confidence: f64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub observed: f64,
    pub baseline: f64,
    pub description: &'a str,
    pub detected_at_ms: i64,
    /// The statistics that moved, JSON.
    pub statistics: Option<String>,
    /// The label set of the series, canonical JSON.
    pub labels: String,
}

/// A `patterns` row read back.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = patterns)]
pub(crate) struct PatternRow {
    pub series: String,
    pub metric: String,
    pub context: Option<String>,
    pub kind: String,
    pub confidence: f64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub observed: f64,
    pub baseline: f64,
    pub description: String,
    pub statistics: Option<String>,
    pub labels: String,
}

/// A `quarantine` row: one row the store refused, as JSON, with the error.
#[derive(Debug, Insertable)]
#[diesel(table_name = quarantine, treat_none_as_default_value = false)]
pub(crate) struct NewQuarantineRow<'a> {
    pub instance_id: &'a str,
    pub kind: &'a str,
    pub payload: &'a str,
    pub error: &'a str,
    pub quarantined_at_ms: i64,
}

/// A stored window state, or an empty one when the blob is missing or unreadable (logged).
pub(crate) fn decode_state(blob: Option<&[u8]>) -> WindowState {
    match blob.map(WindowState::from_bytes) {
        Some(Ok(state)) => state,
        Some(Err(e)) => {
            log::warn!("unreadable window state in the store ({e}); treating it as empty");
            WindowState::new()
        }
        None => WindowState::new(),
    }
}

/// Rows of one series, ordered by window start, merged per start (over instances and runs).
pub(crate) fn merge_rows(rows: Vec<crate::db::models::WindowRow>) -> Vec<WindowStats> {
    let mut out: Vec<WindowStats> = Vec::new();
    let mut current: Option<(crate::db::models::WindowRow, WindowState)> = None;
    for row in rows {
        let state = decode_state(row.sketch.as_deref());
        match &mut current {
            Some((first, merged)) if first.window_start_ms == row.window_start_ms => {
                merged.merge(&state)
            }
            _ => {
                if let Some((first, merged)) = current.take() {
                    out.push(WindowStats::from_state(
                        first.key(),
                        first.window_start_ms,
                        first.window_end_ms,
                        merged,
                    ));
                }
                current = Some((row, state));
            }
        }
    }
    if let Some((first, merged)) = current {
        out.push(WindowStats::from_state(
            first.key(),
            first.window_start_ms,
            first.window_end_ms,
            merged,
        ));
    }
    out
}

/// A stored pattern whose `statistics` column is not the JSON this code writes: the query
/// that read it fails with this (named by the row's series, kind and window), rather than
/// answering the pattern without the numbers behind it.
#[derive(Debug, thiserror::Error)]
#[error(
    "pattern row of series {series:?}, kind {kind:?}, window starting {window_start_ms}: \
     unreadable statistics JSON ({source})"
)]
pub(crate) struct UnreadableStatistics {
    series: String,
    kind: String,
    window_start_ms: i64,
    #[source]
    source: serde_json::Error,
}

/// The patterns of `rows` (rows of a kind this code does not know are skipped); an error
/// naming the first row whose statistics do not parse. A row without statistics (written
/// before the column existed) has none.
pub(crate) fn to_patterns(
    rows: Vec<crate::db::models::PatternRow>,
) -> Result<Vec<Pattern>, UnreadableStatistics> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(kind) = crate::stats::detect::PatternKind::parse(&r.kind) else {
            continue;
        };
        let statistics = match r.statistics.as_deref().map(serde_json::from_str) {
            None => Vec::new(),
            Some(Ok(statistics)) => statistics,
            Some(Err(source)) => {
                return Err(UnreadableStatistics {
                    series: r.series,
                    kind: r.kind,
                    window_start_ms: r.window_start_ms,
                    source,
                })
            }
        };
        out.push(Pattern {
            series: r.series,
            metric: r.metric,
            context: r.context,
            labels: crate::model::parse_labels(&r.labels),
            kind,
            confidence: r.confidence,
            window_start_ms: r.window_start_ms,
            window_end_ms: r.window_end_ms,
            observed: r.observed,
            baseline: r.baseline,
            description: r.description,
            statistics,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(statistics: Option<&str>) -> PatternRow {
        PatternRow {
            series: "api.rt".into(),
            metric: "api".into(),
            context: Some("rt".into()),
            kind: "spike".into(),
            confidence: 0.9,
            window_start_ms: 1_764_000_000_000,
            window_end_ms: 1_764_000_060_000,
            observed: 5.0,
            baseline: 1.0,
            description: "api.rt spiked".into(),
            statistics: statistics.map(str::to_string),
            labels: "{}".into(),
        }
    }

    #[test]
    fn unreadable_statistics_are_an_error_naming_the_row() {
        assert!(to_patterns(vec![row(None)]).unwrap()[0]
            .statistics
            .is_empty());
        assert!(to_patterns(vec![row(Some("[]"))]).unwrap()[0]
            .statistics
            .is_empty());
        let err = to_patterns(vec![row(Some("[]")), row(Some("[{\"stat"))]).unwrap_err();
        let text = err.to_string();
        for part in [
            "\"api.rt\"",
            "\"spike\"",
            "1764000000000",
            "statistics JSON",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps serde's error"
        );
    }
}
