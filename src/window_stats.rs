//! [`WindowStats`]: what a `QueryWindows` answers, one window (or roll-up bucket) of one series.

use serde::{Deserialize, Serialize};

use crate::model::SeriesKey;
use crate::stats::window::{SeriesKind, WindowState};

/// One window of one series, merged over every snapshot, run and instance that wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStats {
    /// `metric` or `metric.context`, for display: a series is identified by `metric` and
    /// `context` (the metric `a.b` and the metric `a` in context `b` are both shown as `a.b`).
    pub series: String,
    /// The metric name.
    pub metric: String,
    /// The context (for datastore events the store type); `None` for a series without one.
    #[serde(default)]
    pub context: Option<String>,
    /// The label set of the series (the samples' tags); empty for a series without tags. For a
    /// [`QueryWindows::any_labels`](crate::QueryWindows::any_labels) query, the labels asked
    /// for (the element merges every label set holding them).
    #[serde(default)]
    pub labels: crate::model::Labels,
    /// What the series measures (`distribution` when absent from JSON). A counter's `sum` is
    /// the sum of its increments corrected for sampling and it has a `rate_per_s`; a gauge has
    /// a `last`; neither has quantiles (they read 0).
    #[serde(default)]
    pub kind: SeriesKind,
    /// A gauge's last value in the window (by event time; at one millisecond the largest);
    /// `None` for other kinds.
    #[serde(default)]
    pub last: Option<f64>,
    /// The event time of `last`, ms.
    #[serde(default)]
    pub last_ts_ms: Option<i64>,
    /// A counter's rate: `sum` (corrected for sampling) per second of the window (or
    /// bucket) length; `None` for other kinds.
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    /// Window start, ms since the Unix epoch (inclusive).
    pub window_start_ms: i64,
    /// Window end, ms (exclusive).
    pub window_end_ms: i64,
    /// Events observed.
    pub count: u64,
    /// Events corrected for sampling: each observed event counts `1 / sample_rate`.
    pub estimated_count: f64,
    /// Sum of observed values.
    pub sum: f64,
    /// Smallest observed value.
    pub min: f64,
    /// Largest observed value.
    pub max: f64,
    /// Mean of observed values.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for fewer than two values.
    pub stddev: f64,
    /// Median (weighted by `1 / sample_rate`), within 1% relative error.
    pub p50: f64,
    /// 90th percentile, within 1% relative error.
    pub p90: f64,
    /// 95th percentile, within 1% relative error.
    pub p95: f64,
    /// 99th percentile, within 1% relative error.
    pub p99: f64,
    /// The merged window state, for [`WindowStats::quantile`] at any `q`.
    #[serde(skip)]
    pub(crate) state: Option<WindowState>,
}

impl PartialEq for WindowStats {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.series,
            &self.metric,
            &self.context,
            &self.labels,
            self.kind,
            self.last_ts_ms,
            self.window_start_ms,
            self.window_end_ms,
            self.count,
        ) == (
            &o.series,
            &o.metric,
            &o.context,
            &o.labels,
            o.kind,
            o.last_ts_ms,
            o.window_start_ms,
            o.window_end_ms,
            o.count,
        ) && [self.last, self.rate_per_s] == [o.last, o.rate_per_s]
            && [
                self.estimated_count,
                self.sum,
                self.min,
                self.max,
                self.mean,
                self.stddev,
            ] == [o.estimated_count, o.sum, o.min, o.max, o.mean, o.stddev]
            && [self.p50, self.p90, self.p95, self.p99] == [o.p50, o.p90, o.p95, o.p99]
    }
}

impl WindowStats {
    pub(crate) fn from_state(key: SeriesKey, start: i64, end: i64, state: WindowState) -> Self {
        let s = state.summary();
        let last = state.last();
        // a counter's sum per second of the window (a bucket's whole width)
        let seconds = (end.saturating_sub(start)) as f64 / 1000.0;
        let rate_per_s = state
            .corrected_sum()
            .map(|sum| if seconds > 0.0 { sum / seconds } else { 0.0 });
        WindowStats {
            series: key.name(),
            metric: key.metric,
            context: key.context,
            labels: key.labels,
            kind: state.kind(),
            last: last.map(|l| l.value),
            last_ts_ms: last.map(|l| l.ts_ms),
            rate_per_s,
            window_start_ms: start,
            window_end_ms: end,
            count: s.count,
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
            state: Some(state),
        }
    }

    /// Elements of several series merged per window start (their states merged, in the
    /// order given): one element per start, in start order, shown as `key`. What a
    /// [`QueryWindows::any_labels`](crate::QueryWindows::any_labels) query answers.
    pub(crate) fn merge_by_start(key: SeriesKey, parts: Vec<WindowStats>) -> Vec<WindowStats> {
        let mut by_start: std::collections::BTreeMap<i64, (i64, WindowState)> =
            std::collections::BTreeMap::new();
        for w in parts {
            let state = w.state.unwrap_or_else(|| WindowState::of_kind(key.kind));
            match by_start.entry(w.window_start_ms) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().1.merge(&state),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((w.window_end_ms, state));
                }
            }
        }
        by_start
            .into_iter()
            .map(|(start, (end, state))| WindowStats::from_state(key.clone(), start, end, state))
            .collect()
    }

    /// The `q`-quantile (`q` in `[0, 1]`, clamped), within 1% relative error of the exact
    /// weighted order statistic. Without the merged sketch (a value deserialised from JSON),
    /// interpolates linearly between min, p50, p90, p95, p99 and max.
    pub fn quantile(&self, q: f64) -> f64 {
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        if let Some(state) = &self.state {
            return state.quantile(q);
        }
        let knots = [
            (0.0, self.min),
            (0.5, self.p50),
            (0.9, self.p90),
            (0.95, self.p95),
            (0.99, self.p99),
            (1.0, self.max),
        ];
        for pair in knots.windows(2) {
            let ((q0, v0), (q1, v1)) = (pair[0], pair[1]);
            if q <= q1 {
                return v0 + (v1 - v0) * (q - q0) / (q1 - q0);
            }
        }
        self.max
    }
}
