//! Retention: how long each table keeps its rows ([`Retention`], `Config::retention`), and one
//! pruning round as a plain value ([`PruneRound`]): which tables, below which cut-off, how far
//! along, what was removed.
//!
//! Rows are aged by event time against the pipeline clock: `events` by `ts_ms`; windows, error
//! counts, patterns, roll-ups and distinct-user sketches (`command_users`) by
//! `window_start_ms`; `quarantine` rows (rows the store
//! refused, which hold the events' data) by `quarantined_at_ms`, the wall-clock time they were
//! set aside. A row goes once that time is more than
//! the table's maximum age before now; a maximum age of 0 keeps the table's rows forever (the
//! default for every table: nothing is deleted unless asked for).
//!
//! Roll-ups are computed from the rows below them (hours from windows, days from hours, weeks
//! from days), and a query at hour, day or week resolution merges the windows of a bucket whose
//! roll-up is pending. So, while `Config::rollups` is on, a round holds back the rows that a
//! pending roll-up still needs: windows from the start of the week of the oldest pending mark
//! (of any level), hour roll-ups from the start of the day of the oldest pending hour or day,
//! day roll-ups from the start of the week of the oldest pending mark. With roll-ups running,
//! the oldest pending mark is in the current week, so windows are kept at least until their
//! week has been rolled up (and day roll-ups until theirs).
//!
//! Distinct-user sketches (`command_users`, [`crate::users`]) follow the same ages: the rows of
//! windows go with `windows_max_age_ms`, the hour, day and week rows with the roll-up ages of
//! their level. Nothing holds them back: their hour, day and week rows are merged when each
//! window is written, so no roll-up job reads the window rows, and a query at a coarser
//! resolution reads the rows of that resolution only.
//!
//! The store side (chunked deletes, the lock) is [`crate::db::prune_sql`]; the writer runs the
//! rounds on its thread, between its batches ([`crate::db::writer`]).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::rollup::Resolution;

/// Longest maximum age: 100 years (36,525 days), in ms.
pub const MAX_AGE_MS: u64 = 36_525 * 86_400_000;
/// Longest interval between rounds: a week, in ms.
const MAX_INTERVAL_MS: u64 = 7 * 86_400_000;
/// Most rows one delete transaction removes.
const MAX_BATCH_SIZE: usize = 100_000;

/// Per-table maximum ages and how pruning runs: `Config::retention`.
///
/// Every age is in ms of event time; 0 keeps that table's rows forever (the default). The
/// roll-up ages nest: a coarser level keeps its rows at least as long as the level it is
/// computed from (`hour_rollups_max_age_ms >= windows_max_age_ms`, and so on; 0 counts as
/// forever), so an hour, day or week query never misses a bucket whose sources are still kept.
///
/// ```
/// use eventbatch::{Config, Retention};
/// const DAY: u64 = 86_400_000;
/// let config = Config {
///     retention: Retention {
///         events_max_age_ms: 30 * DAY,
///         windows_max_age_ms: 14 * DAY,
///         hour_rollups_max_age_ms: 90 * DAY,
///         day_rollups_max_age_ms: 730 * DAY,
///         ..Retention::default()
///     },
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// `events` rows, by `ts_ms`.
    pub events_max_age_ms: u64,
    /// `metric_windows` rows, by `window_start_ms` (held back while a roll-up needs them), and
    /// the window rows of `command_users` (distinct users), which nothing holds back.
    pub windows_max_age_ms: u64,
    /// `error_counts` rows, by `window_start_ms`.
    pub error_counts_max_age_ms: u64,
    /// `patterns` rows, by `window_start_ms`.
    pub patterns_max_age_ms: u64,
    /// Hour roll-ups (`metric_rollups` and `command_users`, resolution `hour`), by
    /// `window_start_ms`: 0 or at least `windows_max_age_ms`.
    pub hour_rollups_max_age_ms: u64,
    /// Day roll-ups (both tables), by `window_start_ms`: 0 or at least
    /// `hour_rollups_max_age_ms`.
    pub day_rollups_max_age_ms: u64,
    /// Week roll-ups (both tables), by `window_start_ms`: 0 or at least
    /// `day_rollups_max_age_ms`.
    pub week_rollups_max_age_ms: u64,
    /// `quarantine` rows (rows the store refused, with the data of the events or windows they
    /// held), by `quarantined_at_ms`: set it with `events_max_age_ms` so that refused rows
    /// do not outlive the events kept. 0 (the default, like every table's) keeps them.
    pub quarantine_max_age_ms: u64,
    /// How often (ms, pipeline clock) a pruning round starts, when any age is set. At most a
    /// week.
    pub interval_ms: u64,
    /// Most rows one delete transaction removes (1 to 100,000). Each transaction is short, so
    /// writers, readers and other instances wait at most for one; the writer's own batches go
    /// between them.
    pub batch_size: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_max_age_ms: 0,
            windows_max_age_ms: 0,
            error_counts_max_age_ms: 0,
            patterns_max_age_ms: 0,
            hour_rollups_max_age_ms: 0,
            day_rollups_max_age_ms: 0,
            week_rollups_max_age_ms: 0,
            quarantine_max_age_ms: 0,
            interval_ms: 3_600_000,
            batch_size: 1_000,
        }
    }
}

impl Retention {
    /// Whether any table has a maximum age.
    pub fn is_enabled(&self) -> bool {
        Table::ALL.iter().any(|t| t.max_age_ms(self) > 0)
    }

    /// Checks every field; a [`ConfigError`] names the first bad one (`retention.<field>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for table in Table::ALL {
            let age = table.max_age_ms(self);
            if age > MAX_AGE_MS {
                return Err(ConfigError::new(
                    format!("retention.{}", table.field()),
                    age,
                    format!("must be at most {MAX_AGE_MS} ms (100 years), or 0 to keep forever"),
                ));
            }
        }
        let nested = [
            (Table::HourRollups, Table::Windows),
            (Table::DayRollups, Table::HourRollups),
            (Table::WeekRollups, Table::DayRollups),
        ];
        let forever = |age: u64| if age == 0 { u64::MAX } else { age };
        for (coarse, fine) in nested {
            let (c, f) = (coarse.max_age_ms(self), fine.max_age_ms(self));
            if forever(c) < forever(f) {
                let kept = if f == 0 {
                    "0 (kept forever)".to_string()
                } else {
                    format!("{f} ms")
                };
                return Err(ConfigError::new(
                    format!("retention.{}", coarse.field()),
                    c,
                    format!(
                        "must be 0 (keep forever) or at least retention.{} ({kept}): the \
                         roll-ups of rows still kept answer the queries at that resolution",
                        fine.field()
                    ),
                ));
            }
        }
        if self.interval_ms == 0 || self.interval_ms > MAX_INTERVAL_MS {
            return Err(ConfigError::new(
                "retention.interval_ms",
                self.interval_ms,
                format!("must be 1 to {MAX_INTERVAL_MS} ms"),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(ConfigError::new(
                "retention.batch_size",
                self.batch_size,
                format!("must be 1 to {MAX_BATCH_SIZE}"),
            ));
        }
        Ok(())
    }
}

/// A table retention prunes, in the order a round visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Events,
    ErrorCounts,
    Patterns,
    Windows,
    HourRollups,
    DayRollups,
    WeekRollups,
    /// `command_users` rows of resolution `window`.
    UserWindows,
    /// `command_users` rows of resolution `hour`.
    UserHours,
    /// `command_users` rows of resolution `day`.
    UserDays,
    /// `command_users` rows of resolution `week`.
    UserWeeks,
    Quarantine,
}

impl Table {
    pub(crate) const ALL: [Table; 12] = [
        Table::Events,
        Table::ErrorCounts,
        Table::Patterns,
        Table::Windows,
        Table::HourRollups,
        Table::DayRollups,
        Table::WeekRollups,
        Table::UserWindows,
        Table::UserHours,
        Table::UserDays,
        Table::UserWeeks,
        Table::Quarantine,
    ];

    fn max_age_ms(self, r: &Retention) -> u64 {
        match self {
            Table::Events => r.events_max_age_ms,
            Table::ErrorCounts => r.error_counts_max_age_ms,
            Table::Patterns => r.patterns_max_age_ms,
            Table::Windows | Table::UserWindows => r.windows_max_age_ms,
            Table::HourRollups | Table::UserHours => r.hour_rollups_max_age_ms,
            Table::DayRollups | Table::UserDays => r.day_rollups_max_age_ms,
            Table::WeekRollups | Table::UserWeeks => r.week_rollups_max_age_ms,
            Table::Quarantine => r.quarantine_max_age_ms,
        }
    }

    /// The `Retention` field of this table's maximum age.
    fn field(self) -> &'static str {
        match self {
            Table::Events => "events_max_age_ms",
            Table::ErrorCounts => "error_counts_max_age_ms",
            Table::Patterns => "patterns_max_age_ms",
            Table::Windows | Table::UserWindows => "windows_max_age_ms",
            Table::HourRollups | Table::UserHours => "hour_rollups_max_age_ms",
            Table::DayRollups | Table::UserDays => "day_rollups_max_age_ms",
            Table::WeekRollups | Table::UserWeeks => "week_rollups_max_age_ms",
            Table::Quarantine => "quarantine_max_age_ms",
        }
    }

    /// The table's name in the log line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::ErrorCounts => "error counts",
            Table::Patterns => "patterns",
            Table::Windows => "windows",
            Table::HourRollups => "hour roll-ups",
            Table::DayRollups => "day roll-ups",
            Table::WeekRollups => "week roll-ups",
            Table::UserWindows => "user windows",
            Table::UserHours => "user hours",
            Table::UserDays => "user days",
            Table::UserWeeks => "user weeks",
            Table::Quarantine => "quarantine",
        }
    }

    /// The `resolution` column of the rows this entry prunes, for the tables that have one
    /// (`metric_rollups`, `command_users`).
    pub(crate) fn resolution(self) -> Option<Resolution> {
        match self {
            Table::UserWindows => Some(Resolution::Window),
            Table::HourRollups | Table::UserHours => Some(Resolution::Hour),
            Table::DayRollups | Table::UserDays => Some(Resolution::Day),
            Table::WeekRollups | Table::UserWeeks => Some(Resolution::Week),
            _ => None,
        }
    }

    /// What holds this table's rows back while roll-ups run: the levels whose pending marks
    /// need them, and the level whose bucket start the oldest such mark is floored to (see
    /// the module docs).
    fn guard(self) -> Option<(&'static [Resolution], Resolution)> {
        use Resolution::{Day, Hour, Week};
        match self {
            // the roll-up of an hour reads its windows; a query of a pending hour, day or week
            // merges the windows of the whole bucket
            Table::Windows => Some((&[Hour, Day, Week], Week)),
            // a pending hour or day recomputes the day from all its hours
            Table::HourRollups => Some((&[Hour, Day], Day)),
            // a pending hour, day or week recomputes the week from all its days
            Table::DayRollups => Some((&[Hour, Day, Week], Week)),
            // distinct users: the hour, day and week rows are merged as each window is
            // written, so no roll-up reads the window rows (see the module docs)
            _ => None,
        }
    }
}

/// The oldest pending roll-up mark (`rollup_pending.bucket_start_ms`) of each level, as the
/// store holds them when a round starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OldestPending {
    pub hour: Option<i64>,
    pub day: Option<i64>,
    pub week: Option<i64>,
}

impl OldestPending {
    fn of(&self, res: Resolution) -> Option<i64> {
        match res {
            Resolution::Hour => self.hour,
            Resolution::Day => self.day,
            Resolution::Week => self.week,
            _ => None,
        }
    }
}

/// One pruning round: the tables with a maximum age, each with its cut-off (rows whose time is
/// below it go), visited in order, a chunk (one short transaction) at a time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PruneRound {
    /// `(table, cut-off)`, in [`Table::ALL`] order.
    cutoffs: Vec<(Table, i64)>,
    /// Index in `cutoffs` of the table being pruned.
    next: usize,
    /// Rows removed, per entry of `cutoffs`.
    removed: Vec<u64>,
    /// Delete transactions committed.
    pub chunks: u64,
}

impl PruneRound {
    /// The round that `retention` asks for at `now_ms`. With roll-ups on, `pending` (the
    /// oldest pending marks) holds back the rows a roll-up still needs.
    pub(crate) fn plan(
        retention: &Retention,
        now_ms: i64,
        rollups: bool,
        pending: OldestPending,
    ) -> PruneRound {
        let cutoffs: Vec<(Table, i64)> = Table::ALL
            .into_iter()
            .filter_map(|table| {
                let age = table.max_age_ms(retention);
                if age == 0 {
                    return None;
                }
                let mut cutoff = now_ms.saturating_sub(age.min(i64::MAX as u64) as i64);
                if let (true, Some((levels, floor_to))) = (rollups, table.guard()) {
                    let oldest = levels.iter().filter_map(|&l| pending.of(l)).min();
                    if let (Some(oldest), Some(grid)) = (oldest, floor_to.grid()) {
                        cutoff = cutoff.min(grid.floor(oldest));
                    }
                }
                Some((table, cutoff))
            })
            .collect();
        PruneRound {
            removed: vec![0; cutoffs.len()],
            cutoffs,
            next: 0,
            chunks: 0,
        }
    }

    /// The table to prune next and its cut-off; `None` once the round is done.
    pub(crate) fn current(&self) -> Option<(Table, i64)> {
        self.cutoffs.get(self.next).copied()
    }

    /// Counts a committed chunk of the current table that removed `removed` rows of at most
    /// `batch_size`: fewer means the table has nothing older left, and the round moves on.
    pub(crate) fn record(&mut self, removed: u64, batch_size: usize) {
        if let Some(n) = self.removed.get_mut(self.next) {
            *n += removed;
            self.chunks += 1;
            if removed < batch_size as u64 {
                self.next += 1;
            }
        }
    }

    /// Rows removed in all.
    pub(crate) fn total(&self) -> u64 {
        self.removed.iter().sum()
    }

    /// `events 120, windows 3` for the tables that lost rows.
    pub(crate) fn summary(&self) -> String {
        self.cutoffs
            .iter()
            .zip(&self.removed)
            .filter(|(_, &n)| n > 0)
            .map(|((t, _), n)| format!("{} {n}", t.label()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{DAY_MS, HOUR_MS, WEEK_MS};

    /// Monday 2025-11-24 00:00 UTC.
    const MONDAY: i64 = 1_763_942_400_000;
    const NOW: i64 = MONDAY + 3 * DAY_MS + 5 * HOUR_MS; // Thursday 05:00

    fn ages(events: u64, windows: u64, hours: u64, days: u64, weeks: u64) -> Retention {
        Retention {
            events_max_age_ms: events,
            windows_max_age_ms: windows,
            hour_rollups_max_age_ms: hours,
            day_rollups_max_age_ms: days,
            week_rollups_max_age_ms: weeks,
            ..Retention::default()
        }
    }

    #[test]
    fn nothing_is_pruned_by_default() {
        let r = Retention::default();
        assert!(!r.is_enabled());
        r.validate().unwrap();
        let round = PruneRound::plan(&r, NOW, true, OldestPending::default());
        assert_eq!(round.current(), None);
        assert_eq!(round.total(), 0);
    }

    #[test]
    fn bad_values_name_their_field() {
        let d = Retention::default;
        let cases = [
            (
                Retention {
                    events_max_age_ms: MAX_AGE_MS + 1,
                    ..d()
                },
                "retention.events_max_age_ms",
                (MAX_AGE_MS + 1).to_string(),
            ),
            (
                Retention {
                    patterns_max_age_ms: u64::MAX,
                    ..d()
                },
                "retention.patterns_max_age_ms",
                u64::MAX.to_string(),
            ),
            (
                ages(0, 10, 5, 0, 0),
                "retention.hour_rollups_max_age_ms",
                "5".into(),
            ),
            (
                ages(0, 10, 0, 20, 0),
                "retention.day_rollups_max_age_ms",
                "20".into(),
            ),
            (
                ages(0, 10, 20, 30, 25),
                "retention.week_rollups_max_age_ms",
                "25".into(),
            ),
            (
                Retention {
                    interval_ms: 0,
                    ..d()
                },
                "retention.interval_ms",
                "0".into(),
            ),
            (
                Retention {
                    interval_ms: MAX_INTERVAL_MS + 1,
                    ..d()
                },
                "retention.interval_ms",
                (MAX_INTERVAL_MS + 1).to_string(),
            ),
            (
                Retention {
                    batch_size: 0,
                    ..d()
                },
                "retention.batch_size",
                "0".into(),
            ),
            (
                Retention {
                    batch_size: MAX_BATCH_SIZE + 1,
                    ..d()
                },
                "retention.batch_size",
                (MAX_BATCH_SIZE + 1).to_string(),
            ),
        ];
        for (r, field, value) in cases {
            let e = r.validate().unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                (field, value.as_str())
            );
        }
        // the bounds and the nesting's edges are accepted
        ages(MAX_AGE_MS, 10, 10, 10, 0).validate().unwrap();
        ages(0, 10, 0, 0, 0).validate().unwrap();
        ages(0, 0, 0, 0, 0).validate().unwrap();
        Retention {
            interval_ms: MAX_INTERVAL_MS,
            batch_size: MAX_BATCH_SIZE,
            ..d()
        }
        .validate()
        .unwrap();
        // keeping hours forever while windows go is fine; the reverse is refused
        let e = ages(0, 0, 10, 10, 10).validate().unwrap_err();
        assert_eq!(e.field, "retention.hour_rollups_max_age_ms");
        assert!(e.reason.contains("kept forever"), "{e}");
    }

    #[test]
    fn cutoffs_are_now_minus_the_age() {
        let r = Retention {
            error_counts_max_age_ms: 7,
            ..ages(3 * DAY_MS as u64, 0, 0, 0, 0)
        };
        let round = PruneRound::plan(&r, NOW, true, OldestPending::default());
        assert_eq!(
            round.cutoffs,
            vec![
                (Table::Events, NOW - 3 * DAY_MS),
                (Table::ErrorCounts, NOW - 7)
            ]
        );
        // an age beyond the clock saturates instead of wrapping
        let round = PruneRound::plan(
            &ages(MAX_AGE_MS, 0, 0, 0, 0),
            i64::MIN + 5,
            true,
            OldestPending::default(),
        );
        assert_eq!(round.current(), Some((Table::Events, i64::MIN)));
    }

    #[test]
    fn distinct_users_follow_the_ages_of_windows_and_rollups() {
        let round = PruneRound::plan(
            &ages(0, 10, 20, 30, 40),
            NOW,
            true,
            OldestPending::default(),
        );
        let users: Vec<_> = round
            .cutoffs
            .iter()
            .filter_map(|&(t, cut)| Some((t.resolution()?, t.label(), NOW - cut)))
            .filter(|(_, label, _)| label.starts_with("user"))
            .collect();
        assert_eq!(
            users,
            vec![
                (Resolution::Window, "user windows", 10),
                (Resolution::Hour, "user hours", 20),
                (Resolution::Day, "user days", 30),
                (Resolution::Week, "user weeks", 40),
            ]
        );
    }

    #[test]
    fn pending_rollups_hold_their_sources_back() {
        let hour = HOUR_MS as u64;
        let r = ages(hour, hour, hour, hour, hour);
        // Nothing pending: everything older than an hour goes.
        let free = PruneRound::plan(&r, NOW, true, OldestPending::default());
        assert!(free.cutoffs.iter().all(|&(_, c)| c == NOW - HOUR_MS));
        // The current hour, day and week pending, as while roll-ups keep up.
        let pending = OldestPending {
            hour: Some(NOW - HOUR_MS),
            day: Some(MONDAY + 2 * DAY_MS),
            week: Some(MONDAY),
        };
        let round = PruneRound::plan(&r, NOW, true, pending);
        let cut = |t| round.cutoffs.iter().find(|(x, _)| *x == t).unwrap().1;
        assert_eq!(cut(Table::Events), NOW - HOUR_MS);
        assert_eq!(
            cut(Table::Windows),
            MONDAY,
            "the week's windows wait for the week"
        );
        assert_eq!(
            cut(Table::HourRollups),
            MONDAY + 2 * DAY_MS,
            "Wednesday's day"
        );
        assert_eq!(cut(Table::DayRollups), MONDAY, "the week's days");
        assert_eq!(
            cut(Table::WeekRollups),
            NOW - HOUR_MS,
            "nothing reads weeks"
        );
        // Distinct users' buckets are merged at write: no pending mark holds their rows.
        for t in [
            Table::UserWindows,
            Table::UserHours,
            Table::UserDays,
            Table::UserWeeks,
        ] {
            assert_eq!(cut(t), NOW - HOUR_MS, "{t:?}");
        }
        // A late event re-marked an hour of last week's Friday: its whole week waits.
        let late = OldestPending {
            hour: Some(MONDAY - 3 * DAY_MS + 7 * HOUR_MS),
            ..pending
        };
        let round = PruneRound::plan(&r, NOW, true, late);
        let cut = |t| round.cutoffs.iter().find(|(x, _)| *x == t).unwrap().1;
        assert_eq!(cut(Table::Windows), MONDAY - WEEK_MS);
        assert_eq!(cut(Table::HourRollups), MONDAY - 3 * DAY_MS);
        // Roll-ups off: the marks are nobody's business.
        let off = PruneRound::plan(&r, NOW, false, late);
        assert!(off.cutoffs.iter().all(|&(_, c)| c == NOW - HOUR_MS));
    }

    #[test]
    fn a_round_moves_on_when_a_chunk_comes_back_short() {
        let r = Retention {
            patterns_max_age_ms: 1,
            ..ages(1, 0, 0, 0, 0)
        };
        let mut round = PruneRound::plan(&r, NOW, true, OldestPending::default());
        assert_eq!(round.current().map(|c| c.0), Some(Table::Events));
        round.record(10, 10);
        round.record(10, 10);
        assert_eq!(round.current().map(|c| c.0), Some(Table::Events));
        round.record(3, 10);
        assert_eq!(round.current().map(|c| c.0), Some(Table::Patterns));
        round.record(0, 10);
        assert_eq!(round.current(), None);
        round.record(5, 10); // nothing current: ignored
        assert_eq!((round.total(), round.chunks), (23, 4));
        assert_eq!(round.summary(), "events 23");
    }
}
