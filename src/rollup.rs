//! Roll-ups, the guide's multi-level aggregation: closed aggregation windows (a minute by
//! default) merge into hour windows, and hour windows into day windows, from the stored
//! sketches, never from raw events. Because a window's whole state (counts, Welford moments,
//! DDSketch) merges exactly, a roll-up equals the window it would be had all its events fallen
//! into one window: count, sum, min and max exactly, mean and stddev up to float rounding,
//! quantiles within the sketch's 1%.
//!
//! How it stays right with late events and several instances (the store side is in
//! [`crate::db::store`]):
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

use crate::messages::WindowStats;
use crate::model::SeriesKey;
use crate::stats::window::WindowState;

/// One hour, in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day (UTC), in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;

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
}

impl Resolution {
    /// The bucket width in ms; `None` for [`Resolution::Window`].
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            Resolution::Window => None,
            Resolution::Hour => Some(HOUR_MS),
            Resolution::Day => Some(DAY_MS),
        }
    }

    /// The name stored in `metric_rollups.resolution` and `rollup_pending.resolution`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resolution::Window => "window",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }
}

/// The roll-up levels, finest first: each is computed from the one before.
pub(crate) const LEVELS: [Resolution; 2] = [Resolution::Hour, Resolution::Day];

/// Start of the bucket of width `width` holding `ts` (saturating at `i64::MIN`).
pub(crate) fn floor(ts: i64, width: i64) -> i64 {
    ts.saturating_sub(ts.rem_euclid(width))
}

/// Start of the first bucket of width `width` starting at or after `ts` (saturating).
pub(crate) fn ceil(ts: i64, width: i64) -> i64 {
    let f = floor(ts, width);
    if f == ts {
        ts
    } else {
        f.saturating_add(width)
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

/// Merges `parts` (any order, all of one series) into buckets of `width` ms, one
/// [`WindowStats`] per bucket that holds a part, ordered by start.
pub(crate) fn merge_into_buckets(parts: Vec<Part>, width: i64) -> Vec<WindowStats> {
    let mut buckets: std::collections::BTreeMap<i64, (SeriesKey, WindowState)> =
        std::collections::BTreeMap::new();
    for p in parts {
        let start = floor(p.start_ms, width);
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
        assert_eq!(T0 % HOUR_MS, 0);
        assert_eq!(floor(T0 + 59 * 60_000, HOUR_MS), T0);
        assert_eq!(floor(T0 - 1, HOUR_MS), T0 - HOUR_MS);
        assert_eq!(floor(-1, HOUR_MS), -HOUR_MS);
        assert_eq!(ceil(T0, HOUR_MS), T0);
        assert_eq!(ceil(T0 + 1, HOUR_MS), T0 + HOUR_MS);
        assert_eq!(ceil(i64::MAX, DAY_MS), i64::MAX);
        assert_eq!(floor(i64::MIN, DAY_MS), i64::MIN);
        assert_eq!(ceil(i64::MIN, DAY_MS), i64::MIN);
        // The hour [T0, T0+1h) with 5 s lateness is due from T0 + 1h + 5 s.
        assert!(T0 > due_cutoff(HOUR_MS, 5_000, T0 + HOUR_MS + 4_999));
        assert!(T0 <= due_cutoff(HOUR_MS, 5_000, T0 + HOUR_MS + 5_000));
        assert_eq!(due_cutoff(DAY_MS, 0, i64::MIN), i64::MIN);
        assert_eq!(Resolution::default(), Resolution::Window);
        assert_eq!(Resolution::Day.bucket_ms(), Some(DAY_MS));
    }

    #[test]
    fn buckets_merge_their_windows_exactly() {
        let parts = vec![
            part(T0 + HOUR_MS + 60_000, &[7.0]),
            part(T0, &[1.0, 2.0]),
            part(T0 + 30 * 60_000, &[3.0, 4.0, 5.0]),
            part(T0 + 59 * 60_000, &[6.0]),
        ];
        let hours = merge_into_buckets(parts.clone(), HOUR_MS);
        assert_eq!(hours.len(), 2);
        let h = &hours[0];
        assert_eq!((h.window_start_ms, h.window_end_ms), (T0, T0 + HOUR_MS));
        assert_eq!((h.count, h.sum, h.min, h.max), (6, 21.0, 1.0, 6.0));
        assert!((h.mean - 3.5).abs() < 1e-12);
        // sample stddev of 1..=6
        assert!((h.stddev - 1.8708286933869707).abs() < 1e-12);
        assert_eq!(hours[1].count, 1);
        let days = merge_into_buckets(parts, DAY_MS);
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].count, days[0].sum), (7, 28.0));
        assert!(merge_into_buckets(Vec::new(), HOUR_MS).is_empty());
    }
}
