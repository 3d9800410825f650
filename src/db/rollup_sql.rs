//! The store side of roll-ups (see [`crate::rollup`] for the scheme): marking buckets pending
//! when windows are written, the roll-up job, and queries at hour, day or week resolution. One body
//! of diesel code, compiled for each backend like [`crate::db::write_sql`]; the only
//! backend-specific part, the roll-up lock, is [`crate::db::backend::RollupLock`].

use diesel::prelude::*;
use diesel::Column;

use crate::db::backend::{RollupLock, WriteTxn};
use crate::db::cached::Upsert;
use crate::db::models::decode_state;
use crate::messages::QueryWindows;
use crate::model::{SeriesKey, WriteBatch};
use crate::rollup::{due_cutoff, merge_into_buckets, Part, Resolution, LEVELS};
use crate::stats::window::WindowState;
use crate::window_stats::WindowStats;

/// Pending marks one roll-up run takes per level at most; the rest wait for the next run. Runs
/// happen on the writer's thread, between batches: this bounds how long one can delay writes
/// (a backlog, say after upgrading a database with months of windows, is worked off a slice
/// per `rollup_interval_ms`).
const MAX_MARKS_PER_RUN: i64 = 2_000;

/// The marker of pending marks the roll-up job itself sets (a day whose hours changed).
const ROLLUP_MARKER: &str = "";

/// The next coarser level that `res` feeds, if any.
fn coarser(res: Resolution) -> Option<Resolution> {
    match res {
        Resolution::Window => Some(Resolution::Hour),
        Resolution::Hour => Some(Resolution::Day),
        Resolution::Day => Some(Resolution::Week),
        Resolution::Week => None,
    }
}

/// The roll-up level that `res` is computed from; `None` for hours (computed from windows).
fn finer(res: Resolution) -> Option<Resolution> {
    match res {
        Resolution::Day => Some(Resolution::Hour),
        Resolution::Week => Some(Resolution::Day),
        Resolution::Window | Resolution::Hour => None,
    }
}

/// The dirty buckets (starts, ascending) as runs of adjacent buckets `[from, to)`.
fn runs(dirty: &std::collections::BTreeSet<i64>, width: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &start in dirty {
        let end = start.saturating_add(width);
        match out.last_mut() {
            Some((_, to)) if *to == start => *to = end,
            _ => out.push((start, end)),
        }
    }
    out
}

/// What one roll-up run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollupRun {
    /// Another instance held the roll-up lock: nothing was done.
    pub skipped: bool,
    /// Roll-up rows written (inserted or replaced).
    pub rows: u64,
}

macro_rules! rollup_backend {
    ($module:ident, $Conn:ty) => {
        pub(crate) mod $module {
            use super::*;
            use crate::db::models::{NewRollupRow, RollupColumns, RollupRow, WindowRow};
            use crate::db::schema::{metric_rollups, metric_windows, rollup_pending};

            /// Marks `(res, series, bucket)` pending on behalf of `marker` (an instance id, or
            /// [`ROLLUP_MARKER`]), or bumps the generation of that mark. Each instance has its
            /// own marks, so writers of different instances never wait for each other's rows.
            pub(super) fn bump(
                c: &mut $Conn,
                res: Resolution,
                key: &SeriesKey,
                bucket: i64,
                marker: &str,
            ) -> QueryResult<()> {
                Upsert::new(
                    diesel::insert_into(rollup_pending::table).values((
                        rollup_pending::resolution.eq(res.as_str()),
                        rollup_pending::metric.eq(&key.metric),
                        rollup_pending::context_key.eq(key.context_key()),
                        rollup_pending::labels_key.eq(key.labels_key()),
                        rollup_pending::labels.eq(key.labels_text()),
                        rollup_pending::kind.eq(key.kind.as_str()),
                        rollup_pending::bucket_start_ms.eq(bucket),
                        rollup_pending::instance_id.eq(marker),
                        rollup_pending::gen.eq(1i64),
                    )),
                    &[
                        rollup_pending::resolution::NAME,
                        rollup_pending::metric::NAME,
                        rollup_pending::context_key::NAME,
                        rollup_pending::labels_key::NAME,
                        rollup_pending::kind::NAME,
                        rollup_pending::bucket_start_ms::NAME,
                        rollup_pending::instance_id::NAME,
                    ],
                    rollup_pending::gen.eq(rollup_pending::gen + 1i64),
                )
                .execute(c)?;
                Ok(())
            }

            /// In the transaction writing `batch` for `instance`: marks the hour of every window
            /// it writes pending, once per (series, hour).
            pub(crate) fn mark_pending(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
            ) -> QueryResult<()> {
                let hour = Resolution::Hour.grid().expect("hours have a width");
                let mut touched: Vec<(i64, &SeriesKey)> = batch
                    .windows
                    .iter()
                    .map(|w| (hour.floor(w.start_ms), &w.key))
                    .collect();
                touched.sort_unstable();
                touched.dedup();
                for (bucket, key) in touched {
                    bump(c, Resolution::Hour, key, bucket, instance)?;
                }
                Ok(())
            }

            /// The sources of one bucket: the windows of an hour, the hour roll-ups of a day, or
            /// the day roll-ups of a week.
            fn sources(
                c: &mut $Conn,
                res: Resolution,
                key: &SeriesKey,
                start: i64,
                end: i64,
            ) -> QueryResult<Vec<Option<Vec<u8>>>> {
                match finer(res) {
                    Some(from) => metric_rollups::table
                        .filter(metric_rollups::resolution.eq(from.as_str()))
                        .filter(of_series!(metric_rollups, key))
                        .filter(metric_rollups::window_start_ms.ge(start))
                        .filter(metric_rollups::window_start_ms.lt(end))
                        .select(metric_rollups::sketch)
                        .load(c),
                    None => metric_windows::table
                        .filter(of_series!(metric_windows, key))
                        .filter(metric_windows::window_start_ms.ge(start))
                        .filter(metric_windows::window_start_ms.lt(end))
                        .select(metric_windows::sketch)
                        .load(c),
                }
            }

            /// Recomputes one pending bucket in its own transaction: replaces its roll-up row,
            /// clears each of its `marks` (marker, generation) unless a writer bumped it
            /// meanwhile, and marks the enclosing coarser bucket. Returns the roll-up rows
            /// written (0 or 1).
            pub(super) fn roll_up_bucket(
                c: &mut $Conn,
                res: Resolution,
                key: &SeriesKey,
                start: i64,
                marks: &[(String, i64)],
                now_ms: i64,
            ) -> QueryResult<u64> {
                let width = res.bucket_ms().expect("roll-up levels have a width");
                c.write_txn(|c| {
                    // Another instance (on SQLite, where there is no advisory lock) may have
                    // rolled the bucket up since the marks were read: then there is nothing to do.
                    let mut still_marked = 0;
                    for (marker, gen) in marks {
                        still_marked += rollup_pending::table
                            .filter(rollup_pending::resolution.eq(res.as_str()))
                            .filter(of_series!(rollup_pending, key))
                            .filter(rollup_pending::bucket_start_ms.eq(start))
                            .filter(rollup_pending::instance_id.eq(marker))
                            .filter(rollup_pending::gen.eq(gen))
                            .count()
                            .get_result::<i64>(c)?;
                    }
                    if still_marked == 0 {
                        return Ok(0);
                    }
                    let rows = sources(c, res, key, start, start + width)?;
                    let mut written = 0;
                    if !rows.is_empty() {
                        let mut merged = WindowState::of_kind(key.kind);
                        for blob in &rows {
                            merged.merge(&decode_state(blob.as_deref()));
                        }
                        let row = NewRollupRow {
                            resolution: res.as_str(),
                            columns: RollupColumns::new(key, start, start + width, &merged),
                            source_rows: rows.len() as i64,
                            computed_at_ms: now_ms,
                        };
                        diesel::insert_into(metric_rollups::table)
                            .values(&row)
                            .on_conflict((
                                metric_rollups::resolution,
                                metric_rollups::metric,
                                metric_rollups::context_key,
                                metric_rollups::labels_key,
                                metric_rollups::kind,
                                metric_rollups::window_start_ms,
                            ))
                            .do_update()
                            .set(&row)
                            .execute(c)?;
                        written = 1;
                    }
                    for (marker, gen) in marks {
                        diesel::delete(
                            rollup_pending::table
                                .filter(rollup_pending::resolution.eq(res.as_str()))
                                .filter(of_series!(rollup_pending, key))
                                .filter(rollup_pending::bucket_start_ms.eq(start))
                                .filter(rollup_pending::instance_id.eq(marker))
                                .filter(rollup_pending::gen.eq(gen)),
                        )
                        .execute(c)?;
                    }
                    if let Some(next) = coarser(res) {
                        let next_grid = next.grid().expect("roll-up levels have a width");
                        bump(c, next, key, next_grid.floor(start), ROLLUP_MARKER)?;
                    }
                    Ok(written)
                })
            }

            /// Rolls up every pending bucket that closed by `now_ms`, hours before days before
            /// weeks, if no other instance is doing it (the roll-up lock). Each bucket is its
            /// own small transaction, so writers are never blocked for long and a failure loses
            /// nothing (the bucket stays pending). `run.rows` counts the rows committed, also when a
            /// later bucket fails.
            pub(crate) fn roll_up(
                c: &mut $Conn,
                now_ms: i64,
                lateness_ms: i64,
                run: &mut RollupRun,
            ) -> QueryResult<()> {
                if !c.try_rollup_lock()? {
                    run.skipped = true;
                    return Ok(());
                }
                let result = (|| -> QueryResult<()> {
                    for res in LEVELS {
                        let width = res.bucket_ms().expect("roll-up levels have a width");
                        #[allow(clippy::type_complexity)]
                        let due: Vec<(
                            String,
                            String,
                            i64,
                            String,
                            i64,
                            String,
                            i64,
                            String,
                        )> = rollup_pending::table
                            .filter(rollup_pending::resolution.eq(res.as_str()))
                            .filter(rollup_pending::bucket_start_ms.le(due_cutoff(
                                width,
                                lateness_ms,
                                now_ms,
                            )))
                            .order((
                                rollup_pending::bucket_start_ms,
                                rollup_pending::metric,
                                rollup_pending::context_key,
                                rollup_pending::labels_key,
                                rollup_pending::kind,
                            ))
                            .limit(MAX_MARKS_PER_RUN)
                            .select((
                                rollup_pending::metric,
                                rollup_pending::context_key,
                                rollup_pending::bucket_start_ms,
                                rollup_pending::instance_id,
                                rollup_pending::gen,
                                rollup_pending::labels,
                                rollup_pending::labels_key,
                                rollup_pending::kind,
                            ))
                            .load(c)?;
                        let mut due = due.into_iter().peekable();
                        while let Some((
                            metric,
                            context_key,
                            start,
                            marker,
                            gen,
                            labels,
                            lk,
                            kind,
                        )) = due.next()
                        {
                            let mut marks = vec![(marker, gen)];
                            while let Some((_, _, _, marker, gen, _, _, _)) =
                                due.next_if(|(m, k, b, _, _, _, l, kd)| {
                                    (m, k, *b, *l, kd) == (&metric, &context_key, start, lk, &kind)
                                })
                            {
                                marks.push((marker, gen));
                            }
                            let key = SeriesKey::from_columns(metric, context_key, &labels, &kind);
                            run.rows += roll_up_bucket(c, res, &key, start, &marks, now_ms)?;
                        }
                    }
                    Ok(())
                })();
                let unlocked = c.rollup_unlock();
                result?;
                unlocked
            }

            /// The buckets of `res` starting in the query's range: a clean stored roll-up as
            /// is, a bucket with pending changes merged from its windows now.
            pub(crate) fn query_buckets(
                c: &mut $Conn,
                q: &QueryWindows,
                res: Resolution,
            ) -> QueryResult<Vec<WindowStats>> {
                let grid = res.grid().expect("roll-up levels have a width");
                let width = grid.width;
                let key = q.key();
                let first = grid.ceil(q.from_ms);
                if first >= q.to_ms {
                    return Ok(Vec::new());
                }
                // windows starting before this belong to buckets starting before `to_ms`
                let sources_end = grid.ceil(q.to_ms);
                // Finer marks before the bucket's own marks, hours first: the roll-up job
                // clears an hour's marks and marks its day in one transaction (a day's, and
                // marks its week), so in this order a change in between is seen in one read or
                // the other.
                let mut dirty = std::collections::BTreeSet::new();
                for finer in LEVELS.into_iter().take_while(|l| *l != res) {
                    // a day is also stale while one of its hours is, a week while one of its
                    // days or hours is
                    let marks: Vec<i64> = rollup_pending::table
                        .filter(rollup_pending::resolution.eq(finer.as_str()))
                        .filter(of_series!(rollup_pending, key))
                        .filter(rollup_pending::bucket_start_ms.ge(first))
                        .filter(rollup_pending::bucket_start_ms.lt(sources_end))
                        .select(rollup_pending::bucket_start_ms)
                        .load(c)?;
                    dirty.extend(marks.into_iter().map(|s| grid.floor(s)));
                }
                let own: Vec<i64> = rollup_pending::table
                    .filter(rollup_pending::resolution.eq(res.as_str()))
                    .filter(of_series!(rollup_pending, key))
                    .filter(rollup_pending::bucket_start_ms.ge(first))
                    .filter(rollup_pending::bucket_start_ms.lt(q.to_ms))
                    .select(rollup_pending::bucket_start_ms)
                    .load(c)?;
                dirty.extend(own);
                // the windows of the dirty buckets, one read per run of adjacent buckets
                let mut parts = Vec::new();
                for (from, to) in runs(&dirty, width) {
                    let rows: Vec<WindowRow> = metric_windows::table
                        .filter(of_series!(metric_windows, key))
                        .filter(metric_windows::window_start_ms.ge(from))
                        .filter(metric_windows::window_start_ms.lt(to))
                        .select(WindowRow::as_select())
                        .load(c)?;
                    parts.extend(rows.into_iter().map(|r| Part {
                        state: decode_state(r.sketch.as_deref()),
                        key: key.clone(),
                        start_ms: r.window_start_ms,
                    }));
                }
                let mut out = merge_into_buckets(parts, grid);
                let stored: Vec<RollupRow> = metric_rollups::table
                    .filter(metric_rollups::resolution.eq(res.as_str()))
                    .filter(of_series!(metric_rollups, key))
                    .filter(metric_rollups::window_start_ms.ge(first))
                    .filter(metric_rollups::window_start_ms.lt(q.to_ms))
                    .select(RollupRow::as_select())
                    .load(c)?;
                out.extend(
                    stored
                        .into_iter()
                        .filter(|r| !dirty.contains(&r.window_start_ms))
                        .map(|r| {
                            WindowStats::from_state(
                                r.key(),
                                r.window_start_ms,
                                r.window_end_ms,
                                decode_state(r.sketch.as_deref()),
                            )
                        }),
                );
                out.sort_by_key(|w| w.window_start_ms);
                Ok(out)
            }
        }
    };
}

rollup_backend!(sqlite, diesel::sqlite::SqliteConnection);
rollup_backend!(pg, diesel::pg::PgConnection);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open::open;
    use crate::db::pool::Pool;
    use crate::db::schema::rollup_pending;
    use crate::db::Store;
    use crate::rollup::{DAY_MS, WEEK_MS};
    use std::time::Duration;

    const T0: i64 = 1_764_000_000_000;

    fn marks(c: &mut diesel::SqliteConnection) -> Vec<(String, i64, String, i64)> {
        rollup_pending::table
            .select((
                rollup_pending::resolution,
                rollup_pending::bucket_start_ms,
                rollup_pending::instance_id,
                rollup_pending::gen,
            ))
            .order((rollup_pending::resolution, rollup_pending::instance_id))
            .load(c)
            .unwrap()
    }

    #[test]
    fn dirty_buckets_are_read_in_runs() {
        let dirty: std::collections::BTreeSet<i64> = [0, 10, 20, 50, 70, 80].into();
        assert_eq!(runs(&dirty, 10), vec![(0, 30), (50, 60), (70, 90)]);
        assert!(runs(&Default::default(), 10).is_empty());
    }

    #[test]
    fn a_mark_bumped_during_a_roll_up_stays_pending() {
        let dir = tempfile::tempdir().unwrap();
        let Pool::Sqlite(pool) =
            open(&Store::sqlite(dir.path().join("r.db")), Duration::ZERO).unwrap()
        else {
            unreachable!("an SQLite store opens an SQLite pool")
        };
        let c = &mut *pool.get().unwrap();
        let rt = &SeriesKey::new("rt", None);
        sqlite::bump(c, Resolution::Hour, rt, T0, "a").unwrap();
        sqlite::bump(c, Resolution::Hour, rt, T0, "b").unwrap();
        // "a" writes again after the roll-up read its mark at generation 1
        sqlite::bump(c, Resolution::Hour, rt, T0, "a").unwrap();
        let seen = [("a".to_string(), 1), ("b".to_string(), 1)];
        sqlite::roll_up_bucket(c, Resolution::Hour, rt, T0, &seen, T0 + DAY_MS).unwrap();
        let day = T0 - T0.rem_euclid(DAY_MS);
        assert_eq!(
            marks(c),
            vec![
                ("day".into(), day, "".into(), 1),
                ("hour".into(), T0, "a".into(), 2),
            ],
            "b's mark is cleared, a's bumped one stays, the day is marked"
        );
        sqlite::roll_up_bucket(c, Resolution::Hour, rt, T0, &[("a".into(), 2)], T0 + DAY_MS)
            .unwrap();
        assert_eq!(marks(c), vec![("day".into(), day, "".into(), 2)]);
        // a run takes due marks only: the day is not due until it ends plus the lateness
        let mut run = RollupRun::default();
        sqlite::roll_up(c, day + DAY_MS + 4_999, 5_000, &mut run).unwrap();
        assert_eq!(run.rows, 0);
        assert_eq!(marks(c).len(), 1);
        sqlite::roll_up(c, day + DAY_MS + 5_000, 5_000, &mut run).unwrap();
        assert!(!run.skipped);
        // the day is rolled up and marks its week (ISO: T0 is a Monday, so it starts that day)
        assert_eq!(marks(c), vec![("week".into(), day, "".into(), 1)]);
        sqlite::roll_up(c, day + WEEK_MS + 4_999, 5_000, &mut run).unwrap();
        assert_eq!(
            marks(c).len(),
            1,
            "the week is not due before its end plus the lateness"
        );
        sqlite::roll_up(c, day + WEEK_MS + 5_000, 5_000, &mut run).unwrap();
        assert!(marks(c).is_empty());
        // marks read before another instance cleared them: nothing is rewritten
        let stale = [("a".to_string(), 2)];
        assert_eq!(
            sqlite::roll_up_bucket(c, Resolution::Hour, rt, T0, &stale, T0 + DAY_MS).unwrap(),
            0
        );
        assert!(marks(c).is_empty());
    }

    /// Upgrading a database with day roll-ups: the migration marks their (ISO) weeks pending,
    /// so the next roll-up run computes them.
    #[test]
    fn the_week_migration_marks_the_weeks_of_stored_days() {
        use crate::db::open::SQLITE_MIGRATIONS;
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let c = &mut SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        loop {
            let pending = c.pending_migrations(SQLITE_MIGRATIONS).unwrap();
            let next = pending.first().expect("the week migration exists");
            if next.name().to_string().ends_with("_week_rollups") {
                break;
            }
            c.run_migration(next).unwrap();
        }
        // Sunday 2025-11-23 and Monday 2025-11-24 (two ISO weeks); on the Monday also the
        // series of the same metric in a context
        let (sunday, monday) = (
            T0 - T0.rem_euclid(DAY_MS) - DAY_MS,
            T0 - T0.rem_euclid(DAY_MS),
        );
        let mut rows = String::new();
        for (context, start) in [("NULL", sunday), ("NULL", monday), ("'api'", monday)] {
            rows.push_str(&format!(
                "INSERT INTO metric_rollups (resolution, series, metric, context, \
                 window_start_ms, window_end_ms, count, estimated_count, sum, min, max, mean, \
                 stddev, p50, p90, p95, p99, source_rows, computed_at_ms) VALUES ('day', 'rt', \
                 'rt', {context}, {start}, {}, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0);",
                start + DAY_MS
            ));
        }
        c.batch_execute(&rows).unwrap();
        c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        let mut weeks: Vec<(String, String, i64, String, i64)> = rollup_pending::table
            .filter(rollup_pending::resolution.eq("week"))
            .select((
                rollup_pending::metric,
                rollup_pending::context_key,
                rollup_pending::bucket_start_ms,
                rollup_pending::instance_id,
                rollup_pending::gen,
            ))
            .load(c)
            .unwrap();
        weeks.sort();
        assert_eq!(
            weeks,
            vec![
                ("rt".into(), "".into(), monday - WEEK_MS, "".into(), 1),
                ("rt".into(), "".into(), monday, "".into(), 1),
                ("rt".into(), "api".into(), monday, "".into(), 1),
            ]
        );
    }
}
