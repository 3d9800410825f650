//! Hour, day and week roll-ups: stored once, equal to the merge of their windows (and to the
//! ground truth of the raw values), kept right by late events and restarts, on SQLite and
//! across instances on PostgreSQL. Time is a manual clock: buckets close when the test moves it.

mod common;
use common::pg;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{TempDb, T0};
use eventbatch::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
/// Monday 2025-11-24 00:00 UTC: the ISO week holding `T0` begins here.
const MONDAY: i64 = 1_763_942_400_000;

/// Start of the bucket of `width` holding `ts`: weeks begin on Mondays 00:00 UTC (the epoch
/// was a Thursday, 1970-01-05 the first Monday), hours and days at multiples of their width.
fn bucket_start(ts: i64, width: i64) -> i64 {
    let origin = if width == WEEK { 4 * DAY } else { 0 };
    ts - (ts - origin).rem_euclid(width)
}

/// Every value tracked, by event time, to check any bucket width against.
#[derive(Debug, Default, Clone)]
struct Truth(Vec<(i64, f64)>);

impl Truth {
    fn buckets(&self, width: i64) -> BTreeMap<i64, Vec<f64>> {
        let mut out: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &(ts, v) in &self.0 {
            out.entry(bucket_start(ts, width)).or_default().push(v);
        }
        for values in out.values_mut() {
            values.sort_by(f64::total_cmp);
        }
        out
    }

    /// `got` has one element per bucket of `width` holding values: exact count, min and max,
    /// sum and mean to rounding, quantiles within the sketch's 1%.
    fn check(&self, got: &[WindowStats], width: i64) {
        let want = self.buckets(width);
        assert_eq!(got.len(), want.len(), "one element per bucket");
        for (w, (start, values)) in got.iter().zip(&want) {
            let n = values.len();
            assert_eq!(
                (w.window_start_ms, w.window_end_ms),
                (*start, start + width)
            );
            assert_eq!(w.count, n as u64, "count of {start}");
            assert_eq!((w.min, w.max), (values[0], values[n - 1]), "{start}");
            let sum: f64 = values.iter().sum();
            assert!((w.sum - sum).abs() <= 1e-9 * sum.abs(), "sum of {start}");
            assert!((w.mean - sum / n as f64).abs() <= 1e-9 * w.mean.abs());
            for (q, est) in [(0.5, w.p50), (0.9, w.p90), (0.95, w.p95), (0.99, w.p99)] {
                let h = q * (n - 1) as f64;
                let lower = values[h.floor() as usize];
                if n <= eventbatch::stats::window::EXACT_LIMIT {
                    // A small window is exact: numpy's linear interpolation.
                    let upper = values[(h.floor() as usize + 1).min(n - 1)];
                    let exact = lower + (h - h.floor()) * (upper - lower);
                    assert!(
                        (est - exact).abs() <= 1e-9 * exact.abs(),
                        "p{q} of {start}: {est} vs {exact}"
                    );
                } else {
                    // Past it, the sketch: within 1% of the lower order statistic.
                    assert!(
                        (est - lower).abs() <= 0.01 * lower.abs(),
                        "p{q} of {start}: {est} vs {lower}"
                    );
                }
            }
        }
    }
}

/// `windows` merged into buckets of `width` from their public summaries only (count, sum,
/// min, max, mean and stddev by Chan's parallel formula): what a reader would compute.
fn merge_summaries(
    windows: &[WindowStats],
    width: i64,
) -> BTreeMap<i64, (u64, f64, f64, f64, f64)> {
    let mut out: BTreeMap<i64, (u64, f64, f64, f64, f64, f64)> = BTreeMap::new();
    for w in windows {
        let start = bucket_start(w.window_start_ms, width);
        let m2 = w.stddev * w.stddev * (w.count as f64 - 1.0).max(0.0);
        let e = out
            .entry(start)
            .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0));
        let (n_a, n_b) = (e.0 as f64, w.count as f64);
        let n = n_a + n_b;
        let delta = w.mean - e.4;
        e.4 += delta * n_b / n;
        e.5 += m2 + delta * delta * n_a * n_b / n;
        e.0 += w.count;
        e.1 += w.sum;
        e.2 = e.2.min(w.min);
        e.3 = e.3.max(w.max);
    }
    out.into_iter()
        .map(|(s, (n, sum, min, max, _mean, m2))| {
            let sd = if n > 1 {
                (m2 / (n as f64 - 1.0)).sqrt()
            } else {
                0.0
            };
            (s, (n, sum, min, max, sd))
        })
        .collect()
}

fn assert_equals_merge(rolled: &[WindowStats], windows: &[WindowStats], width: i64) {
    let merged = merge_summaries(windows, width);
    assert_eq!(rolled.len(), merged.len());
    for (r, (start, (n, sum, min, max, sd))) in rolled.iter().zip(merged) {
        assert_eq!(r.window_start_ms, start);
        assert_eq!((r.count, r.min, r.max), (n, min, max), "bucket {start}");
        assert!((r.sum - sum).abs() <= 1e-9 * sum.abs(), "sum of {start}");
        assert!(
            (r.stddev - sd).abs() <= 1e-9 * sd.max(1.0),
            "stddev of {start}"
        );
    }
}

/// A latency-like value for event `i`.
fn value(i: i64) -> f64 {
    1.0 + ((i * 7919) % 1000) as f64 * (1.0 + (i % 3) as f64)
}

/// `n` events of `rt` every `step` ms from `from`, recorded in `truth`.
fn events(from: i64, step: i64, n: i64, salt: i64, truth: &mut Truth) -> Vec<TrackEvent> {
    (0..n)
        .map(|i| {
            let (ts, v) = (from + i * step, value(i + salt));
            truth.0.push((ts, v));
            TrackEvent::performance("rt", v).at(ts)
        })
        .collect()
}

async fn send(t: &actix::Addr<Tracker>, events: Vec<TrackEvent>) {
    for chunk in events.chunks(1000) {
        let ack = t.send(TrackBatch(chunk.to_vec())).await.unwrap().unwrap();
        assert_eq!(ack.rejected, 0);
    }
}

async fn query(t: &actix::Addr<Tracker>, res: Resolution) -> Vec<WindowStats> {
    t.send(QueryWindows::metric("rt").resolution(res))
        .await
        .unwrap()
        .unwrap()
}

fn config(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        max_batch_size: 1000,
        ..Config::default()
    }
}

#[actix_rt::test]
async fn sqlite_rollups_equal_their_windows_and_follow_late_events() {
    let db = TempDb::new();
    let clock = ManualClock::new(T0);
    let t = start_with_clock(config("a"), db.store(), Arc::new(clock.clone())).unwrap();
    let mut truth = Truth::default();
    // three hours of event time from T0 (an hour boundary), one event every 7 s
    send(&t, events(T0, 7_000, 3 * 3600 / 7, 0, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap();

    // Nothing has closed on the clock: hours are merged on the fly, already exact.
    assert_eq!(db.count("metric_rollups"), 0);
    let windows = query(&t, Resolution::Window).await;
    truth.check(&windows, MINUTE);
    let hours = query(&t, Resolution::Hour).await;
    truth.check(&hours, HOUR);
    assert_equals_merge(&hours, &windows, HOUR);

    // The three hours close (end + 5 s lateness): one roll-up row each; the day stays pending.
    clock.set(T0 + 3 * HOUR + 10_000);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 3);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'hour'"), 3);
    assert_eq!(db.count("rollup_pending WHERE resolution = 'hour'"), 0);
    assert_eq!(db.count("rollup_pending WHERE resolution = 'day'"), 1);
    assert_eq!(
        db.scalar("SELECT sum(source_rows) AS n FROM metric_rollups"),
        180
    );
    let stored = query(&t, Resolution::Hour).await;
    truth.check(&stored, HOUR);
    assert_eq!(stored, hours, "stored roll-ups equal the on-the-fly merge");

    let first_hour = truth.buckets(HOUR)[&T0].len() as i64;
    // A late event for the first hour: the query sees it at once (the hour is pending again),
    // and the next roll-up run rewrites the stored hour.
    send(&t, events(T0 + 10 * MINUTE + 1, 1, 1, 5_000, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("rollup_pending WHERE resolution = 'hour'"), 1);
    truth.check(&query(&t, Resolution::Hour).await, HOUR);
    let stale = db.scalar(&format!(
        "SELECT count AS n FROM metric_rollups WHERE resolution = 'hour' AND window_start_ms = {T0}"
    ));
    assert_eq!(stale, first_hour);
    clock.advance(61_000);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 4);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count AS n FROM metric_rollups WHERE resolution = 'hour' AND window_start_ms = {T0}"
        )),
        stale + 1
    );

    // The day closes: one day row, equal to the merge of its hours.
    let day_start = T0 - T0.rem_euclid(DAY);
    clock.set(day_start + DAY + 10_000);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 5);
    common::conservation(&s);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'day'"), 1);
    assert_eq!(db.count("rollup_pending WHERE resolution <> 'week'"), 0);
    let days = query(&t, Resolution::Day).await;
    truth.check(&days, DAY);
    assert_equals_merge(&days, &query(&t, Resolution::Window).await, DAY);

    // The day marked its week (T0's Monday at midnight UTC), which closes a week later.
    assert_eq!(
        db.count(&format!(
            "rollup_pending WHERE resolution = 'week' AND bucket_start_ms = {MONDAY}"
        )),
        1
    );
    clock.set(MONDAY + WEEK + 10_000);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 6);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'week'"), 1);
    assert_eq!(db.count("rollup_pending"), 0);
    let weeks = query(&t, Resolution::Week).await;
    assert_eq!(
        (weeks[0].window_start_ms, weeks[0].window_end_ms),
        (MONDAY, MONDAY + WEEK)
    );
    truth.check(&weeks, WEEK);
    assert_equals_merge(&weeks, &query(&t, Resolution::Window).await, WEEK);

    // Ranges select buckets by start.
    let second = t
        .send(
            QueryWindows::metric("rt")
                .resolution(Resolution::Hour)
                .between(T0 + 1, T0 + 2 * HOUR),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].window_start_ms, T0 + HOUR);
    t.send(Shutdown).await.unwrap();
}

/// Weeks are ISO weeks, from Monday 00:00 UTC: events from a Sunday noon to the Tuesday noon
/// after fall in two weeks. A second run of the pipeline on the same file adds to both weeks
/// (and to a window the first run wrote); the week roll-ups, computed from the days, merge
/// both runs, and a late event reopens a closed week until the next roll-up run.
#[actix_rt::test]
async fn sqlite_week_rollups_start_on_mondays_and_merge_across_a_restart() {
    let db = TempDb::new();
    let mut truth = Truth::default();
    let sunday_noon = MONDAY - 12 * HOUR;
    let clock = ManualClock::new(MONDAY + 36 * HOUR);
    let t = start_with_clock(config("a"), db.store(), Arc::new(clock.clone())).unwrap();
    send(
        &t,
        events(sunday_noon, 10 * MINUTE, 2 * 24 * 6, 0, &mut truth),
    )
    .await;
    t.send(Flush).await.unwrap().unwrap();
    let weeks = query(&t, Resolution::Week).await;
    assert_eq!(
        weeks
            .iter()
            .map(|w| (w.window_start_ms, w.window_end_ms))
            .collect::<Vec<_>>(),
        vec![(MONDAY - WEEK, MONDAY), (MONDAY, MONDAY + WEEK)],
        "Sunday's events in the week before, Monday's and Tuesday's in T0's"
    );
    truth.check(&weeks, WEEK);
    let s = t.send(Shutdown).await.unwrap();
    common::conservation(&s);

    // The restart: the same instance on the same file, later. It adds a Saturday to the first
    // week, a Wednesday to the second, and a sample to the window of Monday 00:00 that the
    // first run wrote.
    let clock = ManualClock::new(MONDAY + 3 * DAY);
    let t = start_with_clock(config("a"), db.store(), Arc::new(clock.clone())).unwrap();
    send(
        &t,
        events(MONDAY - 2 * DAY, 15 * MINUTE, 96, 1_000, &mut truth),
    )
    .await;
    send(
        &t,
        events(MONDAY + 2 * DAY, 15 * MINUTE, 96, 2_000, &mut truth),
    )
    .await;
    send(&t, events(MONDAY + 30_000, 1, 1, 3_000, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap();
    let on_the_fly = query(&t, Resolution::Week).await;
    truth.check(&on_the_fly, WEEK);

    // Both weeks close: every hour, day and week is rolled up; each week from its days.
    clock.set(MONDAY + WEEK + 10_000);
    let s = t.send(Flush).await.unwrap().unwrap();
    common::conservation(&s);
    assert_eq!(db.count("rollup_pending"), 0);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'week'"), 2);
    assert_eq!(
        db.count("metric_rollups WHERE resolution = 'day'"),
        5,
        "Saturday, Sunday, Monday, Tuesday, Wednesday"
    );
    assert_eq!(
        db.scalar("SELECT sum(source_rows) AS n FROM metric_rollups WHERE resolution = 'week'"),
        5,
        "two days in the first week, three in the second"
    );
    let stored = query(&t, Resolution::Week).await;
    truth.check(&stored, WEEK);
    let windows = query(&t, Resolution::Window).await;
    truth.check(&windows, MINUTE);
    assert_equals_merge(&stored, &windows, WEEK);
    assert_equals_merge(&query(&t, Resolution::Day).await, &windows, DAY);

    // A late event on the Saturday: the first week is stale at once (its hour is pending), so
    // the query merges it from the windows; the next run rewrites the hour, day and week.
    let before = stored[0].count;
    send(&t, events(MONDAY - 2 * DAY + 1, 1, 1, 4_000, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap();
    truth.check(&query(&t, Resolution::Week).await, WEEK);
    clock.advance(61_000);
    let written = s.rollups_written;
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, written + 3, "an hour, a day and a week");
    assert_eq!(
        db.scalar(&format!(
            "SELECT count AS n FROM metric_rollups WHERE resolution = 'week' AND window_start_ms = {}",
            MONDAY - WEEK
        )),
        before as i64 + 1
    );
    truth.check(&query(&t, Resolution::Week).await, WEEK);
    common::conservation(&t.send(Shutdown).await.unwrap());
}

/// With no events arriving, the timer still wakes the writer for a due roll-up run (no
/// `Tick` here: the real timer, reading the manual clock).
#[actix_rt::test]
async fn an_idle_pipeline_rolls_up_on_the_timer() {
    let db = TempDb::new();
    let clock = ManualClock::new(T0);
    let config = Config {
        rollup_interval_ms: 2 * HOUR as u64,
        batch_interval_ms: 20, // the real timer, ticking every 5 ms of wall time
        ..config("a")
    };
    let t = start_with_clock(config, db.store(), Arc::new(clock.clone())).unwrap();
    let mut truth = Truth::default();
    send(&t, events(T0, 10_000, 360, 0, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap(); // the first run: nothing due; the next at T0 + 2 h
    clock.set(T0 + HOUR + 10_000);
    let s = t.send(Flush).await.unwrap().unwrap(); // every window closes and is written final
    assert_eq!((s.rollups_written, s.windows_open), (0, 0));
    // Nothing more arrives; when the run is due, the timer alone wakes the writer.
    clock.set(T0 + 2 * HOUR);
    for _ in 0..1000 {
        if t.send(GetStats).await.unwrap().rollups_written == 1 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(t.send(GetStats).await.unwrap().rollups_written, 1);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'hour'"), 1);
    truth.check(&query(&t, Resolution::Hour).await, HOUR);
    t.send(Shutdown).await.unwrap();
}

/// A clock a year ahead (a bad NTP step), then set back: the roll-up that ran at the wrong
/// time does not hold the next one for a year.
#[actix_rt::test]
async fn rollups_resume_at_once_when_the_clock_is_set_back() {
    let db = TempDb::new();
    let clock = ManualClock::new(T0 + 365 * 24 * HOUR);
    let t = start_with_clock(config("a"), db.store(), Arc::new(clock.clone())).unwrap();
    t.send(Flush).await.unwrap().unwrap(); // a run at the wrong time
    clock.set(T0);
    let mut truth = Truth::default();
    send(&t, events(T0, 10_000, 360, 0, &mut truth)).await;
    t.send(Flush).await.unwrap().unwrap();
    clock.set(T0 + HOUR + 10_000);
    t.send(Flush).await.unwrap().unwrap(); // the hour closes
    clock.set(T0 + 3 * HOUR);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 1, "{s:?}");
    truth.check(&query(&t, Resolution::Hour).await, HOUR);
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn rollups_off_still_answer_hours_from_the_windows() {
    let db = TempDb::new();
    let clock = ManualClock::new(T0);
    let config = Config {
        rollups: false,
        ..config("a")
    };
    let t = start_with_clock(config, db.store(), Arc::new(clock.clone())).unwrap();
    let mut truth = Truth::default();
    send(&t, events(T0, 30_000, 240, 0, &mut truth)).await;
    clock.set(T0 + 3 * DAY);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(s.rollups_written, 0);
    assert_eq!(db.count("metric_rollups"), 0);
    truth.check(&query(&t, Resolution::Hour).await, HOUR);
    truth.check(&query(&t, Resolution::Day).await, DAY);
    truth.check(&query(&t, Resolution::Week).await, WEEK);
    t.send(Shutdown).await.unwrap();
}

/// Two instances on one PostgreSQL database write the same series over the same hours; each
/// rolls up when its clock passes the buckets. The advisory lock and the pending marks make
/// the roll-up rows exist once, written once in all, and equal to the merge over both.
#[actix_rt::test]
async fn postgres_rollups_merge_every_instance_once() {
    let db = pg::TestDb::create("rollups");
    let (clock_a, clock_b) = (ManualClock::new(T0), ManualClock::new(T0));
    let a = start_with_clock(
        config("a"),
        Store::postgres(db.url()),
        Arc::new(clock_a.clone()),
    )
    .unwrap();
    let b = start_with_clock(
        config("b"),
        Store::postgres(db.url()),
        Arc::new(clock_b.clone()),
    )
    .unwrap();
    let mut truth = Truth::default();
    send(&a, events(T0, 5_000, 2 * 720, 0, &mut truth)).await;
    send(&b, events(T0 + 1, 9_000, 2 * 400, 77, &mut truth)).await;

    // Both clocks pass both hours, the day and the week, with roll-ups off: every window
    // closes and is written final.
    let off = ConfigPatch {
        rollups: Some(false),
        ..ConfigPatch::default()
    };
    let on = ConfigPatch {
        rollups: Some(true),
        ..ConfigPatch::default()
    };
    let later = MONDAY + WEEK + 10_000;
    for (t, clock) in [(&a, &clock_a), (&b, &clock_b)] {
        t.send(Configure(off.clone())).await.unwrap().unwrap();
        clock.set(later);
        t.send(Flush).await.unwrap().unwrap();
    }
    assert_eq!(db.count("metric_rollups"), 0);
    // one mark per instance and hour: writers of different instances never share a row
    assert_eq!(db.count("rollup_pending WHERE resolution = 'hour'"), 4);

    // Both roll up at once: one holds the lock, the other skips or finds nothing left; a
    // minute later neither finds anything due.
    a.send(Configure(on.clone())).await.unwrap().unwrap();
    b.send(Configure(on)).await.unwrap().unwrap();
    let (sa, sb) = common::join_both(a.send(Flush), b.send(Flush)).await;
    sa.unwrap().unwrap();
    sb.unwrap().unwrap();
    clock_a.advance(61_000);
    clock_b.advance(61_000);
    let sa = a.send(Flush).await.unwrap().unwrap();
    let sb = b.send(Flush).await.unwrap().unwrap();
    assert_eq!(
        sa.rollups_written + sb.rollups_written,
        4,
        "two hours, one day and one week, each written once by one of the instances"
    );
    assert_eq!(db.count("metric_rollups WHERE resolution = 'hour'"), 2);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'day'"), 1);
    assert_eq!(db.count("metric_rollups WHERE resolution = 'week'"), 1);
    assert_eq!(db.count("rollup_pending"), 0);
    assert_eq!(
        db.scalar(
            "SELECT sum(source_rows)::bigint AS n FROM metric_rollups WHERE resolution = 'hour'"
        ),
        2 * 120,
        "each hour merges 60 windows of each instance"
    );
    for t in [&a, &b] {
        let windows = query(t, Resolution::Window).await;
        truth.check(&windows, MINUTE);
        let hours = query(t, Resolution::Hour).await;
        truth.check(&hours, HOUR);
        assert_equals_merge(&hours, &windows, HOUR);
        let days = query(t, Resolution::Day).await;
        truth.check(&days, DAY);
        assert_equals_merge(&days, &windows, DAY);
        let weeks = query(t, Resolution::Week).await;
        truth.check(&weeks, WEEK);
        assert_equals_merge(&weeks, &windows, WEEK);
    }
    a.send(Shutdown).await.unwrap();
    b.send(Shutdown).await.unwrap();
}

#[test]
fn query_windows_json_without_a_resolution_means_windows() {
    let json = r#"{"metric":"rt","context":null,"from_ms":0,"to_ms":10}"#;
    let q: QueryWindows = serde_json::from_str(json).unwrap();
    assert_eq!(q.resolution, Resolution::Window);
}
