//! Retention: rows older than each table's maximum age are deleted, younger ones kept, and the
//! rows removed are counted in `Stats::rows_pruned`, on SQLite and on PostgreSQL, where two
//! instances on one database prune one at a time under an advisory lock. Time is a manual
//! clock: the data is written at event times weeks apart, and rounds run on `Flush`.

mod common;
use common::pg;

use std::sync::Arc;

use common::TempDb;
use eventbatch::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Monday 2025-11-24 00:00 UTC.
const MONDAY: i64 = 1_763_942_400_000;
/// Wednesday 2025-11-26 12:00 UTC: the clock while the data is written.
const NOW: i64 = MONDAY + 2 * DAY + 12 * HOUR;
/// The clock when the data is in and rolled up, and retention is switched on.
const LATER: i64 = NOW + 61_000;
/// Three stretches of data, a series each: Monday 2025-10-20 (five weeks back), Wednesday
/// 2025-11-12 (two weeks back, a closed week) and this morning.
const PERIODS: [(&str, i64); 3] = [
    ("lat_old", MONDAY - 35 * DAY + 10 * HOUR),
    ("lat_mid", MONDAY - 12 * DAY + 10 * HOUR),
    ("lat_new", NOW - 3 * HOUR),
];

/// Events five days, weeks 30 days, everything else 20 days: the old stretch goes from every
/// table, the middle one from `events` only, this morning's stays.
fn retention() -> Retention {
    Retention {
        events_max_age_ms: 5 * DAY as u64,
        windows_max_age_ms: 20 * DAY as u64,
        error_counts_max_age_ms: 20 * DAY as u64,
        patterns_max_age_ms: 20 * DAY as u64,
        hour_rollups_max_age_ms: 20 * DAY as u64,
        day_rollups_max_age_ms: 20 * DAY as u64,
        week_rollups_max_age_ms: 30 * DAY as u64,
        interval_ms: 10 * MINUTE as u64,
        batch_size: 7,
        ..Retention::default()
    }
}

/// Each table (as a `FROM` clause) with the time column retention ages it by and its maximum
/// age in `retention()`.
const TABLES: [(&str, &str, i64); 11] = [
    ("events", "ts_ms", 5 * DAY),
    ("error_counts", "window_start_ms", 20 * DAY),
    ("patterns", "window_start_ms", 20 * DAY),
    ("metric_windows", "window_start_ms", 20 * DAY),
    (
        "metric_rollups WHERE resolution = 'hour' AND",
        "window_start_ms",
        20 * DAY,
    ),
    (
        "metric_rollups WHERE resolution = 'day' AND",
        "window_start_ms",
        20 * DAY,
    ),
    (
        "metric_rollups WHERE resolution = 'week' AND",
        "window_start_ms",
        30 * DAY,
    ),
    // distinct users: window rows with the windows' age, buckets with their roll-ups'
    (
        "command_users WHERE resolution = 'window' AND",
        "window_start_ms",
        20 * DAY,
    ),
    (
        "command_users WHERE resolution = 'hour' AND",
        "window_start_ms",
        20 * DAY,
    ),
    (
        "command_users WHERE resolution = 'day' AND",
        "window_start_ms",
        20 * DAY,
    ),
    (
        "command_users WHERE resolution = 'week' AND",
        "window_start_ms",
        30 * DAY,
    ),
];

/// For each table, `(rows older than its cut-off at now_ms, rows not older)`, counted with
/// `count` (a `FROM ...` clause to a row count).
fn census(count: &dyn Fn(&str) -> i64, now_ms: i64) -> Vec<(i64, i64)> {
    TABLES
        .iter()
        .map(|(from, column, age)| {
            let clause = |op| {
                let cut = now_ms - age;
                if from.ends_with("AND") {
                    format!("{from} {column} {op} {cut}")
                } else {
                    format!("{from} WHERE {column} {op} {cut}")
                }
            };
            (count(&clause("<")), count(&clause(">=")))
        })
        .collect()
}

/// A steady value around 100, deterministic.
fn steady(w: i64, i: i64) -> f64 {
    100.0 + ((w * 31 + i * 17) % 11) as f64 - 5.0
}

/// One stretch of traffic from `start`: 13 one-minute windows of `metric` (20 samples each,
/// the last five times the others: a spike), ten commands of two users (distinct-user rows)
/// and two kinds of error, three of each. Then a `Tick`, so that the windows close (the clock
/// is past them).
async fn stretch(t: &actix::Addr<Tracker>, metric: &str, start: i64) {
    let mut batch = Vec::new();
    for w in 0..13 {
        let factor = if w == 12 { 5.0 } else { 1.0 };
        batch.extend((0..20).map(|i| {
            TrackEvent::performance(metric, steady(w, i) * factor)
                .at(start + w * MINUTE + i * 3_000)
        }));
    }
    batch.extend((0..10).map(|i| {
        TrackEvent::command("help")
            .user(format!("user-{}", i % 2))
            .at(start + i * MINUTE + 1)
    }));
    for kind in ["timeout", "refused"] {
        batch.extend((0..3).map(|i| TrackEvent::error(kind, "api").at(start + i * 1_000 + 2)));
    }
    let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
    assert_eq!(ack.rejected, 0);
    t.send(Tick).await.unwrap();
}

/// Every stretch into the pipeline, then a roll-up run over all of it at `LATER`.
async fn write_all(t: &actix::Addr<Tracker>, clock: &ManualClock) {
    for (metric, start) in PERIODS {
        stretch(t, metric, start).await;
    }
    // everything is through the pipeline (a Tick's answer means only that the supervisor sent
    // it on) before the clock moves, so the writer ran the Ticks' roll-ups at NOW
    t.send(Flush).await.unwrap().unwrap();
    clock.set(LATER);
    t.send(Flush).await.unwrap().unwrap();
}

fn config(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        ..Config::default()
    }
}

async fn switch_on(t: &actix::Addr<Tracker>, retention: Retention) {
    let patch = ConfigPatch {
        retention: Some(retention),
        ..ConfigPatch::default()
    };
    t.send(Configure(patch)).await.unwrap().unwrap();
}

/// Before: every table has rows on both sides of its cut-off (so the test can fail).
fn assert_both_sides(before: &[(i64, i64)]) {
    for ((from, ..), (old, young)) in TABLES.iter().zip(before) {
        assert!(
            *old > 0 && *young > 0,
            "{from}: {old} old, {young} young rows"
        );
    }
}

/// After: nothing older than a cut-off left, every younger row still there, and the rows that
/// went are the rows counted.
fn assert_pruned(before: &[(i64, i64)], after: &[(i64, i64)], rows_pruned: u64) {
    for ((from, ..), ((_, young), (old_after, young_after))) in
        TABLES.iter().zip(before.iter().zip(after))
    {
        assert_eq!(*old_after, 0, "{from}: old rows left");
        assert_eq!(young_after, young, "{from}: young rows removed");
    }
    let removed: i64 = before.iter().map(|(old, _)| old).sum();
    assert_eq!(rows_pruned, removed as u64);
}

#[actix_rt::test]
async fn sqlite_retention_removes_the_old_rows_of_every_table_and_keeps_the_young() {
    let db = TempDb::new();
    let clock = ManualClock::new(NOW);
    let t = start_with_clock(config("a"), db.store(), Arc::new(clock.clone())).unwrap();
    write_all(&t, &clock).await;
    let count = |from: &str| db.count(from);
    let before = census(&count, LATER);
    assert_both_sides(&before);
    assert_eq!(
        t.send(GetStats).await.unwrap().rows_pruned,
        0,
        "off by default"
    );

    // A config that would drop hours before the windows they answer for is refused by name.
    let bad = Retention {
        hour_rollups_max_age_ms: DAY as u64,
        ..retention()
    };
    let e = t
        .send(Configure(ConfigPatch {
            retention: Some(bad),
            ..ConfigPatch::default()
        }))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.field, "retention.hour_rollups_max_age_ms");

    // Switched on at run time, the round runs (in chunks of 7 rows) on the next Flush.
    switch_on(&t, retention()).await;
    let s = t.send(Flush).await.unwrap().unwrap();
    let after = census(&count, LATER);
    assert_pruned(&before, &after, s.rows_pruned);
    common::conservation(&s);
    assert_eq!(
        db.count("events WHERE name = 'help'"),
        10,
        "this morning's commands"
    );

    // What is kept still answers: the middle stretch's windows, hours and its week; the old
    // stretch is gone at every resolution.
    let windows = |metric: &str, res| {
        let t = t.clone();
        let metric = metric.to_string();
        async move {
            t.send(QueryWindows::metric(metric).resolution(res))
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(windows("lat_mid", Resolution::Window).await.len(), 13);
    let week = windows("lat_mid", Resolution::Week).await;
    assert_eq!((week.len(), week[0].count), (1, 13 * 20));
    for res in [Resolution::Window, Resolution::Hour, Resolution::Week] {
        assert!(windows("lat_old", res).await.is_empty(), "{res:?}");
    }
    // Distinct users likewise: the middle and this morning's windows (one user each) and
    // weeks (two users each) answer, the old stretch's are gone.
    let users = |res| {
        let t = t.clone();
        async move {
            let q = QueryUsers::command("help").resolution(res);
            let counts = t.send(q).await.unwrap().unwrap();
            counts
                .iter()
                .map(|c| (c.start_ms, c.users))
                .collect::<Vec<_>>()
        }
    };
    let kept = users(Resolution::Window).await;
    assert_eq!(kept.len(), 20, "{kept:?}");
    assert!(kept
        .iter()
        .all(|&(start, n)| start >= PERIODS[1].1 && n == 1));
    assert_eq!(
        users(Resolution::Week).await,
        [(MONDAY - 14 * DAY, 2), (MONDAY, 2)]
    );

    // The next round, an interval later, finds nothing more to remove.
    clock.advance(10 * MINUTE);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(
        s.rows_pruned,
        before.iter().map(|(o, _)| *o as u64).sum::<u64>()
    );
    common::conservation(&t.send(Shutdown).await.unwrap());
}

/// Two instances on one PostgreSQL database. While another session holds the retention lock
/// (as an instance in the middle of a chunk does, or an operator pausing retention), neither
/// prunes; released, both run a round at once, and between them every old row is removed once:
/// the sum of their `rows_pruned` is the number of rows that went.
#[actix_rt::test]
async fn postgres_instances_prune_one_at_a_time_under_the_advisory_lock() {
    use diesel::connection::SimpleConnection;
    let db = pg::TestDb::create("retention");
    let (clock_a, clock_b) = (ManualClock::new(NOW), ManualClock::new(NOW));
    let start = |instance, clock: &ManualClock| {
        start_with_clock(
            config(instance),
            Store::postgres(db.url()),
            Arc::new(clock.clone()),
        )
        .unwrap()
    };
    let (a, b) = (start("a", &clock_a), start("b", &clock_b));
    write_all(&a, &clock_a).await;
    write_all(&b, &clock_b).await;
    let count = |from: &str| db.count(from);
    let before = census(&count, LATER);
    assert_both_sides(&before);

    let mut holder = db.conn();
    holder
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({})",
            eventbatch::db::RETENTION_LOCK_KEY
        ))
        .unwrap();
    for t in [&a, &b] {
        switch_on(t, retention()).await;
        let s = t.send(Flush).await.unwrap().unwrap();
        assert_eq!(s.rows_pruned, 0, "the lock is held elsewhere: hold off");
    }
    assert_eq!(census(&count, LATER), before, "nothing removed");
    holder
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            eventbatch::db::RETENTION_LOCK_KEY
        ))
        .unwrap();

    // The next rounds are due an interval later; both start at once.
    clock_a.advance(10 * MINUTE);
    clock_b.advance(10 * MINUTE);
    let (sa, sb) = common::join_both(a.send(Flush), b.send(Flush)).await;
    let (sa, sb) = (sa.unwrap().unwrap(), sb.unwrap().unwrap());
    let after = census(&count, LATER);
    assert_pruned(&before, &after, sa.rows_pruned + sb.rows_pruned);
    common::conservation(&sa);
    common::conservation(&sb);
    for t in [&a, &b] {
        common::conservation(&t.send(Shutdown).await.unwrap());
    }
}

/// A clock a year ahead (a bad NTP step), then set back: the round that started at the wrong
/// time does not hold the next one for a year.
#[actix_rt::test]
async fn retention_resumes_at_once_when_the_clock_is_set_back() {
    let db = TempDb::new();
    let clock = ManualClock::new(NOW + 365 * DAY);
    let config = Config {
        retention: retention(),
        ..config("a")
    };
    let t = start_with_clock(config, db.store(), Arc::new(clock.clone())).unwrap();
    t.send(Flush).await.unwrap().unwrap(); // a round at the wrong time, on an empty store
    clock.set(NOW);
    let old: Vec<TrackEvent> = (0..10)
        .map(|i| TrackEvent::command("old").at(NOW - 10 * DAY + i))
        .collect();
    t.send(TrackBatch(old)).await.unwrap().unwrap();
    t.send(Flush).await.unwrap().unwrap();
    clock.set(NOW + 2 * HOUR);
    let s = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("events WHERE name = 'old'"), 0, "{s:?}");
    assert_eq!(s.rows_pruned, 10);
    t.send(Shutdown).await.unwrap();
}
