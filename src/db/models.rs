//! Row types: `New*Row<'a>` borrow from the pipeline's data for inserts; `*Row` are read back.
//!
//! Every insert struct sets `treat_none_as_default_value = false`: with the default, diesel
//! runs a SQLite batch as one INSERT per row.

use diesel::prelude::*;

use super::schema::{error_counts, events, metric_rollups, metric_windows, patterns, quarantine};
use crate::messages::Pattern;
use crate::model::{ErrorCountSnapshot, SeriesKey, WindowSnapshot};
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

/// A stored series as read: `(series, metric, context, labels, kind)` (see
/// `Conn::stored_series`).
pub(crate) type StoredSeriesRow = (String, String, Option<String>, String, String);

/// Declares, once, the columns `metric_windows` and `metric_rollups` share (the series, the
/// window and its summary), as a struct for each table: diesel's `AsChangeset` names one
/// table, so one struct cannot be the upsert's update for both. Each is embedded
/// (`#[diesel(embed)]`) in its table's row and built by one constructor.
macro_rules! window_columns {
    ($($(#[$doc:meta])* $name:ident for $table:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Insertable, AsChangeset)]
        #[diesel(table_name = $table, treat_none_as_default_value = false)]
        pub(crate) struct $name<'a> {
            series: String,
            metric: &'a str,
            context: Option<&'a str>,
            /// The label set, canonical JSON ([`crate::model::labels_text`]).
            labels: String,
            /// Its hash ([`crate::model::labels_key`]), in the uniqueness key.
            labels_key: i64,
            /// What the series measures ([`crate::stats::window::SeriesKind::as_str`]), in
            /// the uniqueness key.
            kind: &'a str,
            /// A gauge's last value (by event time); `None` for other kinds.
            last_value: Option<f64>,
            /// The event time of `last_value`, ms.
            last_ts_ms: Option<i64>,
            window_start_ms: i64,
            window_end_ms: i64,
            count: i64,
            estimated_count: f64,
            sum: f64,
            min: f64,
            max: f64,
            mean: f64,
            stddev: f64,
            p50: f64,
            p90: f64,
            p95: f64,
            p99: f64,
            /// The window state ([`WindowState::to_bytes`]), which merges.
            sketch: Option<Vec<u8>>,
        }

        impl<'a> $name<'a> {
            /// The columns of series `key`'s window (or bucket) `[start, end)` holding `state`.
            pub(crate) fn new(key: &'a SeriesKey, start: i64, end: i64, state: &WindowState) -> Self {
                let s = state.summary();
                let last = state.last();
                $name {
                    series: key.name(),
                    metric: &key.metric,
                    context: key.context.as_deref(),
                    labels: key.labels_text(),
                    labels_key: key.labels_key(),
                    kind: key.kind.as_str(),
                    last_value: last.map(|l| l.value),
                    last_ts_ms: last.map(|l| l.ts_ms),
                    window_start_ms: start,
                    window_end_ms: end,
                    count: i64::try_from(s.count).unwrap_or(i64::MAX),
                    estimated_count: s.estimated_count,
                    sum: s.sum,
                    min: s.min,
                    max: s.max,
                    mean: s.mean,
                    stddev: s.stddev,
                    p50: s.p50,
                    p90: s.p90,
                    p95: s.p95,
                    p99: s.p99,
                    sketch: Some(state.to_bytes()),
                }
            }
        }
    )*};
}

window_columns! {
    /// The shared columns of a `metric_windows` row.
    WindowColumns for metric_windows;
    /// The shared columns of a `metric_rollups` row.
    RollupColumns for metric_rollups;
}

/// A `metric_windows` row to insert or replace.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = metric_windows)]
pub(crate) struct NewWindowRow<'a> {
    pub instance_id: &'a str,
    #[diesel(embed)]
    pub columns: WindowColumns<'a>,
    pub is_final: bool,
}

/// A `metric_rollups` row to insert or replace.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = metric_rollups)]
pub(crate) struct NewRollupRow<'a> {
    pub resolution: &'a str,
    #[diesel(embed)]
    pub columns: RollupColumns<'a>,
    pub source_rows: i64,
    pub computed_at_ms: i64,
}

impl<'a> NewWindowRow<'a> {
    /// The row of `w` under `instance`, holding `state` (`w`'s own, or merged onto what the
    /// store held).
    pub(crate) fn new(instance: &'a str, w: &'a WindowSnapshot, state: &WindowState) -> Self {
        NewWindowRow {
            instance_id: instance,
            columns: WindowColumns::new(&w.key, w.start_ms, w.end_ms, state),
            is_final: w.is_final,
        }
    }
}

/// Declares, once, the rows read back from `metric_windows` and `metric_rollups`: what a
/// table holds of a series' window beyond `extra` columns (one struct per table, as diesel's
/// `Selectable` names one).
macro_rules! stored_rows {
    ($($(#[$doc:meta])* $name:ident for $table:ident { $($extra:ident: $ty:ty),* };)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Queryable, Selectable)]
        #[diesel(table_name = $table)]
        pub(crate) struct $name {
            $(pub $extra: $ty,)*
            pub metric: String,
            pub context: Option<String>,
            pub window_start_ms: i64,
            pub window_end_ms: i64,
            pub sketch: Option<Vec<u8>>,
            pub labels: String,
            pub kind: String,
        }

        impl $name {
            /// The series of this row (a kind this version does not know reads as a
            /// distribution, with a warning).
            pub(crate) fn key(&self) -> SeriesKey {
                SeriesKey::new(self.metric.as_str(), self.context.as_deref())
                    .with_labels(crate::model::parse_labels(&self.labels))
                    .with_kind(crate::model::parse_kind(&self.kind))
            }
        }
    )*};
}

stored_rows! {
    /// A `metric_windows` row read back for a query.
    WindowRow for metric_windows { instance_id: String };
    /// A `metric_rollups` row read back: as a source of a coarser roll-up, or for a query.
    RollupRow for metric_rollups {};
}

/// An error count as stored: count, first and last time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorBase {
    pub(crate) count: i64,
    pub(crate) first_ts_ms: i64,
    pub(crate) last_ts_ms: i64,
}

impl ErrorBase {
    /// Nothing stored: adding a count to it gives that count.
    pub(crate) const EMPTY: ErrorBase = ErrorBase {
        count: 0,
        first_ts_ms: i64::MAX,
        last_ts_ms: i64::MIN,
    };
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

impl<'a> NewErrorCountRow<'a> {
    /// The row of `e` under `instance`: its count added to `base`, what the store held
    /// ([`ErrorBase::EMPTY`] for nothing).
    pub(crate) fn new(instance: &'a str, e: &'a ErrorCountSnapshot, base: ErrorBase) -> Self {
        NewErrorCountRow {
            instance_id: instance,
            error_hash: &e.error_hash,
            error_type: &e.error_type,
            error_category: e.error_category.as_deref(),
            window_start_ms: e.start_ms,
            count: base
                .count
                .saturating_add(i64::try_from(e.count).unwrap_or(i64::MAX)),
            first_ts_ms: base.first_ts_ms.min(e.first_ts_ms),
            last_ts_ms: base.last_ts_ms.max(e.last_ts_ms),
        }
    }
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
