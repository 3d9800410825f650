//! Distinct users per command: what a [`crate::QueryUsers`] answers ([`UserCount`]) and the
//! pure part of storing and answering it.
//!
//! Each window's sketch (`crate::cores::users`) is merged into four `command_users` rows of its
//! instance: the window's own, and its hour, day and ISO week buckets (the buckets of
//! [`Resolution`], as the metric roll-ups use). Unlike a metric window, whose sums would count
//! twice, a HyperLogLog merges by register maximum: merging a window into its bucket again, or
//! late, or out of order, leaves the bucket equal to the merge of all its windows. So the roll-up
//! rows are kept at write time, in the same transaction, and need none of the metric roll-ups'
//! pending marks. Instances (and a command's contexts, unless one is asked for) merge when
//! queried.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cores::users::UserWindow;
use crate::rollup::{Resolution, LEVELS};
use crate::stats::hll::UserSketch;

/// The distinct users of a command in one window or bucket ([`crate::QueryUsers`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UserCount {
    /// Start of the window or bucket, ms since the epoch.
    pub start_ms: i64,
    /// Its width in ms: the aggregation window's, or the hour's, day's or week's.
    pub width_ms: i64,
    /// The estimated number of distinct users, rounded.
    pub users: u64,
    /// The estimate itself (HyperLogLog, 0.81% standard error).
    pub estimate: f64,
}

/// The rows a window's sketch merges into: `(resolution, start, width)` of the window itself
/// and of its hour, day and week buckets.
pub(crate) fn rows_of(w: &UserWindow) -> [(Resolution, i64, i64); 4] {
    let bucket = |r: Resolution| {
        let width = r.bucket_ms().unwrap_or(w.window_ms);
        (r, r.bucket_start(w.start_ms), width)
    };
    [
        (Resolution::Window, w.start_ms, w.window_ms),
        bucket(LEVELS[0]),
        bucket(LEVELS[1]),
        bucket(LEVELS[2]),
    ]
}

/// A `command_users` row of an instance: command, context, resolution (as stored) and start.
pub(crate) type RowKey<'a> = (&'a str, &'a str, &'static str, i64);

/// The rows the window sketches `users` merge into ([`rows_of`]), each once, with its width and
/// the merge of the sketches that fall in it: the windows of one command in one hour update
/// its hour, day and week rows once, not once per window (a batch holds many windows when the
/// writer catches up, or events come far behind the clock).
pub(crate) fn rows_to_merge(users: &[UserWindow]) -> BTreeMap<RowKey<'_>, (i64, UserSketch)> {
    let mut rows: BTreeMap<RowKey<'_>, (i64, UserSketch)> = BTreeMap::new();
    for w in users {
        for (res, start, width) in rows_of(w) {
            let key = (w.command.as_str(), w.context.as_str(), res.as_str(), start);
            match rows.get_mut(&key) {
                Some((w_ms, merged)) => {
                    *w_ms = (*w_ms).max(width);
                    merged.merge(&w.sketch);
                }
                None => {
                    rows.insert(key, (width, w.sketch.clone()));
                }
            }
        }
    }
    rows
}

/// Sketches merged by start: `parts` are `(start, width, sketch)` (stored rows of every
/// instance, open windows bucketed), the answer one [`UserCount`] per start, in start order.
pub(crate) fn count_by_start(
    parts: impl IntoIterator<Item = (i64, i64, UserSketch)>,
) -> Vec<UserCount> {
    let mut by_start: BTreeMap<i64, (i64, UserSketch)> = BTreeMap::new();
    for (start, width, sketch) in parts {
        match by_start.get_mut(&start) {
            Some((w, merged)) => {
                *w = (*w).max(width);
                merged.merge(&sketch);
            }
            None => {
                by_start.insert(start, (width, sketch));
            }
        }
    }
    by_start
        .into_iter()
        .map(|(start_ms, (width_ms, sketch))| UserCount {
            start_ms,
            width_ms,
            users: sketch.count(),
            estimate: sketch.estimate(),
        })
        .collect()
}

/// The open windows of `open` that answer a query at `resolution` over `[from_ms, to_ms)`,
/// as `(bucket start, width, sketch)`.
pub(crate) fn open_parts(
    open: Vec<UserWindow>,
    resolution: Resolution,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, i64, UserSketch)> {
    open.into_iter()
        .map(|w| {
            let width = resolution.bucket_ms().unwrap_or(w.window_ms);
            (resolution.bucket_start(w.start_ms), width, w.sketch)
        })
        .filter(|(start, _, _)| (from_ms..to_ms).contains(start))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{DAY_MS, HOUR_MS, WEEK_MS};

    fn window(start_ms: i64, users: &[&str]) -> UserWindow {
        let mut sketch = UserSketch::new();
        users.iter().for_each(|u| sketch.insert(u.as_bytes()));
        UserWindow {
            command: "help".into(),
            context: String::new(),
            start_ms,
            window_ms: 60_000,
            sketch,
        }
    }

    #[test]
    fn a_window_merges_into_its_hour_day_and_week() {
        // Tuesday 1970-01-06 01:02:00 UTC.
        let start = 5 * DAY_MS + HOUR_MS + 120_000;
        let rows = rows_of(&window(start, &["a"]));
        assert_eq!(
            rows,
            [
                (Resolution::Window, start, 60_000),
                (Resolution::Hour, 5 * DAY_MS + HOUR_MS, HOUR_MS),
                (Resolution::Day, 5 * DAY_MS, DAY_MS),
                (Resolution::Week, 4 * DAY_MS, WEEK_MS),
            ]
        );
    }

    #[test]
    fn windows_of_one_hour_update_its_buckets_once_with_their_merge() {
        let mut other = window(0, &["z"]);
        other.command = "ban".into();
        let users = [window(0, &["a", "b"]), window(60_000, &["b", "c"]), other];
        let rows = rows_to_merge(&users);
        // help: two windows, one hour, one day, one week; ban: its window and three buckets
        assert_eq!(rows.len(), 5 + 4);
        let (width, hour) = &rows[&("help", "", "hour", 0)];
        assert_eq!((*width, hour.count()), (HOUR_MS, 3));
        assert_eq!(rows[&("help", "", "window", 60_000)].1.count(), 2);
        let week = Resolution::Week.bucket_start(0);
        assert_eq!(rows[&("ban", "", "week", week)].1.count(), 1);
        let mut each = UserSketch::new();
        for w in &users[..2] {
            each.merge(&w.sketch);
        }
        assert_eq!(
            rows[&("help", "", "day", 0)].1,
            each,
            "the merge of the windows"
        );
    }

    #[test]
    fn counts_merge_per_start_and_open_windows_fall_in_their_bucket() {
        let open = vec![
            window(0, &["a", "b"]),
            window(60_000, &["b", "c"]),
            window(HOUR_MS, &["d"]),
        ];
        let parts = open_parts(open, Resolution::Hour, 0, HOUR_MS);
        assert_eq!(parts.len(), 2);
        let mut stored = UserSketch::new();
        stored.insert(b"a");
        stored.insert(b"e");
        let counts = count_by_start(parts.into_iter().chain([(0, HOUR_MS, stored)]));
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].start_ms, counts[0].width_ms, counts[0].users),
            (0, HOUR_MS, 4)
        );
    }
}
