//! Roll-ups, the guide's multi-level aggregation: closed aggregation windows (a minute by
//! default) merge into hour windows, hour windows into day windows, and day windows into week
//! windows (ISO weeks: Monday 00:00 UTC to the next Monday), from the stored sketches, never
//! from raw events. Because a window's whole state (counts, Welford moments,
//! DDSketch) merges exactly, a roll-up equals the window it would be had all its events fallen
//! into one window: count, sum, min and max exactly, mean and stddev up to float rounding,
//! quantiles within the sketch's 1%.
//!
//! How it stays right with late events and several instances (the store side is in
//! [`crate::db::write_sql`]):
//! - Every write of a window also bumps a row `(hour, series, bucket)` in `rollup_pending`.
//! - A bucket is *due* once its end plus `allowed_lateness_ms` has passed on the writer's
//!   clock. The roll-up job (one transaction, under a PostgreSQL advisory lock, or SQLite's
//!   write lock) recomputes every due pending bucket, replaces its `metric_rollups` row, deletes
//!   the pending row only if its `gen` did not change meanwhile, and marks the enclosing day.
//! - A query at hour or day resolution uses a roll-up row only while its bucket is clean (no
//!   pending row), and merges the bucket's windows on the fly otherwise, so it is never stale.
//!
//! This module is the pure part: bucket arithmetic and merging.

use serde::{Deserialize, Serialize};

use crate::model::SeriesKey;
use crate::stats::window::WindowState;
use crate::window_stats::WindowStats;

/// One hour, in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day (UTC), in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// One week, in ms.
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-05T00:00:00Z, the first Monday after the Unix epoch (a Thursday): week buckets are
/// `[FIRST_MONDAY_MS + k * WEEK_MS, ...)`, ISO weeks.
pub(crate) const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// The time resolution of a [`crate::QueryWindows`] answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Resolution {
    /// The aggregation windows themselves (`Config::aggregation_window_ms`, a minute by
    /// default).
    #[default]
    Window,
    /// Hour buckets `[k*3600000, (k+1)*3600000)` (UTC): every window starting in the hour.
    /// A window is never split: with an `aggregation_window_ms` that does not divide an hour,
    /// a window crossing the hour's end counts wholly in the hour where it starts.
    Hour,
    /// Day buckets (UTC midnight to midnight): every window starting in the day.
    Day,
    /// ISO week buckets, Monday 00:00 UTC to the next Monday 00:00 UTC: every window starting
    /// in the week (computed from its days).
    Week,
}

impl Resolution {
    /// The bucket width in ms; `None` for [`Resolution::Window`].
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            Resolution::Window => None,
            Resolution::Hour => Some(HOUR_MS),
            Resolution::Day => Some(DAY_MS),
            Resolution::Week => Some(WEEK_MS),
        }
    }

    /// Start of the bucket holding `ts_ms` (the hour, the UTC day, the ISO week from Monday
    /// 00:00 UTC); `ts_ms` itself at [`Resolution::Window`], whose width is the pipeline's.
    ///
    /// ```
    /// use eventbatch::Resolution;
    /// let t = 1_764_000_000_000; // Monday 2025-11-24 16:00 UTC
    /// assert_eq!(Resolution::Day.bucket_start(t), 1_763_942_400_000);
    /// assert_eq!(Resolution::Week.bucket_start(t + 86_400_000), 1_763_942_400_000);
    /// ```
    pub fn bucket_start(self, ts_ms: i64) -> i64 {
        self.grid().map_or(ts_ms, |g| g.floor(ts_ms))
    }

    /// Where the buckets lie; `None` for [`Resolution::Window`].
    pub(crate) fn grid(self) -> Option<Grid> {
        let width = self.bucket_ms()?;
        let origin = match self {
            Resolution::Week => FIRST_MONDAY_MS,
            _ => 0,
        };
        Some(Grid { width, origin })
    }

    /// The name stored in `metric_rollups.resolution` and `rollup_pending.resolution`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resolution::Window => "window",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
            Resolution::Week => "week",
        }
    }
}

/// The roll-up levels, finest first: each is computed from the one before.
pub(crate) const LEVELS: [Resolution; 3] = [Resolution::Hour, Resolution::Day, Resolution::Week];

/// Buckets `[origin + k * width, origin + (k + 1) * width)` for every integer `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    /// Bucket width in ms (> 0).
    pub width: i64,
    /// A bucket start: the Unix epoch, or [`FIRST_MONDAY_MS`] for weeks.
    origin: i64,
}

impl Grid {
    /// Buckets of `width` ms aligned to the Unix epoch, as the aggregation windows are.
    pub(crate) fn epoch(width: i64) -> Grid {
        Grid { width, origin: 0 }
    }

    /// Start of the bucket holding `ts` (saturating at `i64::MIN`).
    pub(crate) fn floor(self, ts: i64) -> i64 {
        // (ts - origin) mod width, without overflowing near i64::MIN
        let offset =
            (ts.rem_euclid(self.width) - self.origin.rem_euclid(self.width)).rem_euclid(self.width);
        ts.saturating_sub(offset)
    }

    /// Start of the first bucket starting at or after `ts` (saturating).
    pub(crate) fn ceil(self, ts: i64) -> i64 {
        let f = self.floor(ts);
        if f == ts {
            ts
        } else {
            f.saturating_add(self.width)
        }
    }
}

/// The latest bucket start that is due at `now_ms`: a bucket `[s, s + width)` is due once
/// `s + width + lateness_ms <= now_ms`.
pub(crate) fn due_cutoff(width: i64, lateness_ms: i64, now_ms: i64) -> i64 {
    now_ms.saturating_sub(lateness_ms).saturating_sub(width)
}

/// A window to merge into a bucket: where it starts, its series and its state.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub key: SeriesKey,
    pub start_ms: i64,
    pub state: WindowState,
}

/// Merges `parts` (any order, all of one series) into the buckets of `grid`, one
/// [`WindowStats`] per bucket that holds a part, ordered by start.
pub(crate) fn merge_into_buckets(parts: Vec<Part>, grid: Grid) -> Vec<WindowStats> {
    let width = grid.width;
    let mut buckets: std::collections::BTreeMap<i64, (SeriesKey, WindowState)> =
        std::collections::BTreeMap::new();
    for p in parts {
        let start = grid.floor(p.start_ms);
        match buckets.get_mut(&start) {
            Some((_, merged)) => merged.merge(&p.state),
            None => {
                buckets.insert(start, (p.key, p.state));
            }
        }
    }
    buckets
        .into_iter()
        .map(|(start, (key, state))| WindowStats::from_state(key, start, start + width, state))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z, an hour boundary

    fn part(start_ms: i64, values: &[f64]) -> Part {
        let mut state = WindowState::new();
        for &v in values {
            state.observe(v, 1.0);
        }
        Part {
            key: SeriesKey::new("rt", None),
            start_ms,
            state,
        }
    }

    #[test]
    fn bucket_arithmetic() {
        let (hour, day) = (Grid::epoch(HOUR_MS), Grid::epoch(DAY_MS));
        assert_eq!(T0 % HOUR_MS, 0);
        assert_eq!(hour.floor(T0 + 59 * 60_000), T0);
        assert_eq!(hour.floor(T0 - 1), T0 - HOUR_MS);
        assert_eq!(hour.floor(-1), -HOUR_MS);
        assert_eq!(hour.ceil(T0), T0);
        assert_eq!(hour.ceil(T0 + 1), T0 + HOUR_MS);
        assert_eq!(day.ceil(i64::MAX), i64::MAX);
        assert_eq!(day.floor(i64::MIN), i64::MIN);
        assert_eq!(day.ceil(i64::MIN), i64::MIN);
        assert_eq!(Resolution::Hour.grid(), Some(hour));
        assert_eq!(Resolution::Day.grid(), Some(day));
        assert_eq!(Resolution::Window.grid(), None);
        // The hour [T0, T0+1h) with 5 s lateness is due from T0 + 1h + 5 s.
        assert!(T0 > due_cutoff(HOUR_MS, 5_000, T0 + HOUR_MS + 4_999));
        assert!(T0 <= due_cutoff(HOUR_MS, 5_000, T0 + HOUR_MS + 5_000));
        assert_eq!(due_cutoff(DAY_MS, 0, i64::MIN), i64::MIN);
        assert_eq!(Resolution::default(), Resolution::Window);
        assert_eq!(Resolution::Day.bucket_ms(), Some(DAY_MS));
        assert_eq!(Resolution::Week.bucket_ms(), Some(WEEK_MS));
    }

    #[test]
    fn weeks_start_on_monday_midnight_utc() {
        let week = Resolution::Week.grid().unwrap();
        // T0 is Monday 2025-11-24 16:00 UTC; its week began that day at 00:00 UTC.
        let monday = 1_763_942_400_000;
        assert_eq!(week.floor(T0), monday);
        assert_eq!(week.floor(monday), monday);
        assert_eq!(
            week.floor(monday - 1),
            monday - WEEK_MS,
            "Sunday 23:59:59.999"
        );
        assert_eq!(week.floor(monday + WEEK_MS - 1), monday);
        assert_eq!(week.ceil(T0), monday + WEEK_MS);
        assert_eq!(week.ceil(monday), monday);
        // the Unix epoch was a Thursday: its week began on Monday 1969-12-29
        assert_eq!(week.floor(0), -3 * DAY_MS);
        assert_eq!(week.floor(FIRST_MONDAY_MS), FIRST_MONDAY_MS);
        assert_eq!(week.floor(i64::MIN), i64::MIN);
        assert_eq!(week.ceil(i64::MAX), i64::MAX);
        // 2000-01-03 and 2024-01-01 were Mondays
        for m in [946_857_600_000, 1_704_067_200_000] {
            assert_eq!(week.floor(m + 3 * DAY_MS + 5), m);
            assert_eq!((m - FIRST_MONDAY_MS) % WEEK_MS, 0);
        }
        // the day of the week moves; an epoch-aligned week would start on Thursdays
        assert_ne!(week.floor(T0), Grid::epoch(WEEK_MS).floor(T0));
    }

    #[test]
    fn buckets_merge_their_windows_exactly() {
        let parts = vec![
            part(T0 + HOUR_MS + 60_000, &[7.0]),
            part(T0, &[1.0, 2.0]),
            part(T0 + 30 * 60_000, &[3.0, 4.0, 5.0]),
            part(T0 + 59 * 60_000, &[6.0]),
        ];
        let hours = merge_into_buckets(parts.clone(), Grid::epoch(HOUR_MS));
        assert_eq!(hours.len(), 2);
        let h = &hours[0];
        assert_eq!((h.window_start_ms, h.window_end_ms), (T0, T0 + HOUR_MS));
        assert_eq!((h.count, h.sum, h.min, h.max), (6, 21.0, 1.0, 6.0));
        assert!((h.mean - 3.5).abs() < 1e-12);
        // sample stddev of 1..=6
        assert!((h.stddev - 1.8708286933869707).abs() < 1e-12);
        assert_eq!(hours[1].count, 1);
        let days = merge_into_buckets(parts.clone(), Grid::epoch(DAY_MS));
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].count, days[0].sum), (7, 28.0));
        let weeks = merge_into_buckets(parts, Resolution::Week.grid().unwrap());
        assert_eq!(weeks.len(), 1);
        assert_eq!((weeks[0].count, weeks[0].sum), (7, 28.0));
        assert_eq!(weeks[0].window_end_ms - weeks[0].window_start_ms, WEEK_MS);
        assert!(merge_into_buckets(Vec::new(), Grid::epoch(HOUR_MS)).is_empty());
    }
}
