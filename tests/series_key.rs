//! A series is its metric and its context (issue 9): `performance("a.b")` and
//! `performance("a").context("b")` used to become one series `a.b` (count 20, mean 50.5 for
//! ten samples each). Here they stay two, through the real pipeline on SQLite and on
//! PostgreSQL: in the open windows, the stored rows, late events after a restart on the same
//! store, the detectors, the patterns, the hour and day roll-ups; and a database written before
//! the change is migrated. Both are still shown as `a.b` (the `series` display name).

mod common;
use common::pg;

use common::{conservation, start_on, Db, TempDb, T0};
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use eventbatch::db::schema::{metric_rollups, metric_windows, patterns};
use eventbatch::stats::window::WindowState;
use eventbatch::*;
use pg::TestDb;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The migration that keys series by metric and context; the ones before it are the old
/// schema.
const SERIES_KEY_MIGRATION: &str = "2026-12-06-000000_series_key";

fn start_at(db: &Db, instance: &str, now: i64) -> (actix::Addr<Tracker>, ManualClock) {
    start_on(db, instance, now, Config::default())
}

/// The metric `a.b` without context, and the metric `a` in context `b`: both shown as `a.b`.
fn dotted(v: f64) -> TrackEvent {
    TrackEvent::performance("a.b", v)
}
fn in_context(v: f64) -> TrackEvent {
    TrackEvent::performance("a", v).context("b")
}

fn q_dotted() -> QueryWindows {
    QueryWindows::metric("a.b")
}
fn q_in_context() -> QueryWindows {
    QueryWindows::metric("a").context("b")
}

async fn windows(t: &actix::Addr<Tracker>, q: QueryWindows) -> Vec<WindowStats> {
    t.send(q).await.unwrap().unwrap()
}

/// Exactly one window in `got`, of `want` values, with their count and mean, of the series
/// `(metric, context)`, shown as `a.b`.
fn assert_one(got: &[WindowStats], metric: &str, context: Option<&str>, want: &[f64]) {
    assert_eq!(got.len(), 1, "{got:#?}");
    let w = &got[0];
    let mean = want.iter().sum::<f64>() / want.len() as f64;
    assert_eq!(
        (w.metric.as_str(), w.context.as_deref(), w.series.as_str()),
        (metric, context, "a.b")
    );
    assert_eq!(w.count, want.len() as u64, "{w:?}");
    assert!(
        (w.mean - mean).abs() < 1e-9,
        "mean {} vs {mean}: {w:?}",
        w.mean
    );
}

fn range(from: i64, to: i64) -> Vec<f64> {
    (from..=to).map(|v| v as f64).collect()
}

/// A steady value around `level` (+-5%, deterministic), for the windows the detector watches.
fn steady(level: f64, w: i64, i: i64) -> f64 {
    level * (1.0 + (((w * 31 + i * 17) % 11) as f64 - 5.0) / 100.0)
}

/// The case and what follows it: ten samples of each series in window 0 (1..=10 and
/// 91..=100: one series of count 20 and mean 50.5 before), then windows 1..=10 of both, steady,
/// with a spike in `a` context `b` only in window 10; late events for window 0 after a
/// restart; hour and day roll-ups.
async fn two_series_stay_apart(db: Db) {
    let (t, clock) = start_at(&db, "sk", T0);
    let mut batch: Vec<TrackEvent> = Vec::new();
    for v in 1..=10 {
        batch.push(dotted(v as f64).at(T0 + v));
        batch.push(in_context(90.0 + v as f64).at(T0 + v));
    }
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.events_aggregated, 20);
    let window0 = |q: QueryWindows| q.between(T0, T0 + MINUTE);
    assert_one(
        &windows(&t, window0(q_dotted())).await,
        "a.b",
        None,
        &range(1, 10),
    );
    assert_one(
        &windows(&t, window0(q_in_context())).await,
        "a",
        Some("b"),
        &range(91, 100),
    );
    assert_eq!(db.count("metric_windows WHERE series = 'a.b'"), 2);
    assert!(windows(&t, QueryWindows::metric("a")).await.is_empty());

    // windows 1..=10, closed one by one on the clock
    for w in 1..=10 {
        let spike = if w == 10 { 4.0 } else { 1.0 };
        let batch: Vec<TrackEvent> = (0..20)
            .flat_map(|i| {
                let ts = T0 + w * MINUTE + i * 1000;
                [
                    dotted(steady(10.0, w, i)).at(ts),
                    in_context(steady(100.0, w, i) * spike).at(ts),
                ]
            })
            .collect();
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        clock.set(T0 + (w + 1) * MINUTE + 10_000);
        t.send(Tick).await.unwrap();
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.events_aggregated, 20 + 10 * 40);
    for q in [q_dotted(), q_in_context()] {
        let all = windows(&t, q).await;
        assert_eq!(all.len(), 11);
        assert_eq!(all.iter().map(|w| w.count).sum::<u64>(), 10 + 10 * 20);
    }
    // the spike is the metric `a` in context `b`'s, and only its
    let spikes = t
        .send(QueryPatterns::all().metric("a").context("b"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        spikes.iter().any(|p| p.kind == PatternKind::Spike
            && p.window_start_ms == T0 + 10 * MINUTE
            && (p.metric.as_str(), p.context.as_deref(), p.series.as_str())
                == ("a", Some("b"), "a.b")),
        "{spikes:#?}"
    );
    let of_dotted = t
        .send(QueryPatterns::all().metric("a.b"))
        .await
        .unwrap()
        .unwrap();
    assert!(of_dotted.is_empty(), "{of_dotted:#?}");
    let all = t.send(QueryPatterns::all()).await.unwrap().unwrap();
    assert_eq!(all.len(), spikes.len(), "{all:#?}");
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);

    // A restart on the same store: late events for window 0 merge into each series' own row.
    let (t, clock) = start_at(&db, "sk", T0 + 20 * MINUTE);
    let late: Vec<TrackEvent> = (11..=15)
        .flat_map(|v| {
            [
                dotted(v as f64).at(T0 + v),
                in_context(90.0 + v as f64).at(T0 + v),
            ]
        })
        .collect();
    t.send(TrackBatch(late)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_one(
        &windows(&t, window0(q_dotted())).await,
        "a.b",
        None,
        &range(1, 15),
    );
    assert_one(
        &windows(&t, window0(q_in_context())).await,
        "a",
        Some("b"),
        &range(91, 105),
    );
    assert_eq!(
        db.count(&format!("metric_windows WHERE window_start_ms = {T0}")),
        2,
        "one row per series and window"
    );

    // Hour and day roll-ups keep them apart: merged from the windows while pending, then
    // stored once the buckets close.
    let per_series = 15 + 10 * 20;
    for stage in ["pending", "rolled up"] {
        if stage == "rolled up" {
            clock.set(T0 + DAY);
            t.send(Tick).await.unwrap();
            t.send(Flush).await.unwrap().unwrap();
        }
        for (q, metric, context) in [(q_dotted(), "a.b", None), (q_in_context(), "a", Some("b"))] {
            for res in [Resolution::Hour, Resolution::Day] {
                let got = windows(&t, q.clone().resolution(res)).await;
                assert_eq!(got.len(), 1, "{stage} {res:?}: {got:#?}");
                assert_eq!(
                    (got[0].metric.as_str(), got[0].context.as_deref()),
                    (metric, context)
                );
                assert_eq!(got[0].count, per_series, "{stage} {res:?} {metric}");
            }
        }
    }
    for res in ["hour", "day"] {
        assert_eq!(
            db.count(&format!(
                "metric_rollups WHERE resolution = '{res}' AND series = 'a.b' AND count = {per_series}"
            )),
            2,
            "{res}"
        );
    }
    // hours and days are done; each series' week is still open, so it alone waits
    assert_eq!(db.count("rollup_pending WHERE resolution <> 'week'"), 0);
    assert_eq!(db.count("rollup_pending WHERE resolution = 'week'"), 2);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.events_aggregated, 10);
}

#[actix_rt::test]
async fn a_dotted_metric_and_a_metric_in_a_context_stay_two_series_sqlite() {
    two_series_stay_apart(Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn a_dotted_metric_and_a_metric_in_a_context_stay_two_series_postgres() {
    two_series_stay_apart(Db::Pg(TestDb::create("series_key"))).await;
}

/// The schema before the series key: every migration before [`SERIES_KEY_MIGRATION`].
macro_rules! migrate_to_old_schema {
    ($conn:expr, $backend:ty, $dir:literal) => {{
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir);
        let source = FileBasedMigrations::from_path(dir).expect("migrations");
        let mut all = MigrationSource::<$backend>::migrations(&source).expect("migrations");
        all.sort_by_key(|m| m.name().to_string());
        // creates diesel's table of applied migrations
        $conn.applied_migrations().expect("the migrations table");
        let mut ran = 0;
        for m in all.iter() {
            if m.name().to_string().as_str() < SERIES_KEY_MIGRATION {
                $conn.run_migration(m.as_ref()).expect("an old migration");
                ran += 1;
            }
        }
        assert!(ran >= 4, "the old migrations ran");
    }};
}

/// What a database written before the change can hold: two instances that wrote the two
/// series into one window under one name, the hour roll-up that merged them (count 20), and a
/// pattern filed under the name.
macro_rules! old_rows {
    ($conn:expr) => {{
        let conn = $conn;
        for (instance, metric, context, values) in [
            ("old-a", "a.b", None, range(1, 10)),
            ("old-b", "a", Some("b"), range(91, 100)),
        ] {
            let mut state = WindowState::new();
            for v in &values {
                state.observe(*v, 1.0);
            }
            let s = state.summary();
            diesel::insert_into(metric_windows::table)
                .values((
                    metric_windows::instance_id.eq(instance),
                    metric_windows::series.eq("a.b"),
                    metric_windows::metric.eq(metric),
                    metric_windows::context.eq(context),
                    metric_windows::window_start_ms.eq(T0),
                    metric_windows::window_end_ms.eq(T0 + MINUTE),
                    metric_windows::count.eq(s.count as i64),
                    metric_windows::estimated_count.eq(s.estimated_count),
                    metric_windows::sum.eq(s.sum),
                    metric_windows::min.eq(s.min),
                    metric_windows::max.eq(s.max),
                    metric_windows::mean.eq(s.mean),
                    metric_windows::stddev.eq(s.stddev),
                    (
                        metric_windows::p50.eq(s.p50),
                        metric_windows::p90.eq(s.p90),
                        metric_windows::p95.eq(s.p95),
                        metric_windows::p99.eq(s.p99),
                        metric_windows::sketch.eq(Some(state.to_bytes())),
                        metric_windows::is_final.eq(true),
                    ),
                ))
                .execute(conn)
                .expect("an old window row");
        }
        let mut merged = WindowState::new();
        for v in range(1, 10).into_iter().chain(range(91, 100)) {
            merged.observe(v, 1.0);
        }
        let s = merged.summary();
        assert_eq!((s.count, s.mean), (20, 50.5), "the issue's numbers");
        diesel::insert_into(metric_rollups::table)
            .values((
                metric_rollups::resolution.eq("hour"),
                metric_rollups::series.eq("a.b"),
                metric_rollups::metric.eq("a.b"),
                metric_rollups::context.eq(None::<String>),
                metric_rollups::window_start_ms.eq(T0),
                metric_rollups::window_end_ms.eq(T0 + HOUR),
                metric_rollups::count.eq(20),
                metric_rollups::estimated_count.eq(20.0),
                metric_rollups::sum.eq(s.sum),
                metric_rollups::min.eq(s.min),
                metric_rollups::max.eq(s.max),
                metric_rollups::mean.eq(s.mean),
                metric_rollups::stddev.eq(s.stddev),
                (
                    metric_rollups::p50.eq(s.p50),
                    metric_rollups::p90.eq(s.p90),
                    metric_rollups::p95.eq(s.p95),
                    metric_rollups::p99.eq(s.p99),
                    metric_rollups::sketch.eq(Some(merged.to_bytes())),
                    metric_rollups::source_rows.eq(2),
                    metric_rollups::computed_at_ms.eq(T0 + HOUR),
                ),
            ))
            .execute(conn)
            .expect("an old roll-up row");
        diesel::insert_into(patterns::table)
            .values((
                patterns::instance_id.eq("old-a"),
                patterns::series.eq("a.b"),
                patterns::kind.eq("spike"),
                patterns::confidence.eq(0.9),
                patterns::window_start_ms.eq(T0),
                patterns::window_end_ms.eq(T0 + MINUTE),
                patterns::observed.eq(5.5),
                patterns::baseline.eq(1.0),
                patterns::description.eq("old"),
                patterns::detected_at_ms.eq(T0 + MINUTE),
            ))
            .execute(conn)
            .expect("an old pattern row");
    }};
}

/// A database of the old schema with [`old_rows`] migrates at start: each series reads its own
/// window; the merged hour roll-up is rolled up again per series (read from the windows until
/// it is); the old pattern is filed under the metric of its name's first window.
async fn an_old_database_migrates(db: Db) {
    let (t, clock) = start_at(&db, "new", T0 + 2 * HOUR);
    assert_eq!(db.count("metric_windows"), 2, "rows kept");
    assert_one(&windows(&t, q_dotted()).await, "a.b", None, &range(1, 10));
    assert_one(
        &windows(&t, q_in_context()).await,
        "a",
        Some("b"),
        &range(91, 100),
    );
    assert_eq!(
        db.count("rollup_pending WHERE resolution = 'hour'"),
        2,
        "the merged hour is due again, once per series"
    );
    for stage in ["pending", "rolled up"] {
        if stage == "rolled up" {
            clock.set(T0 + DAY);
            t.send(Tick).await.unwrap();
            t.send(Flush).await.unwrap().unwrap();
        }
        let hour = |q: QueryWindows| q.resolution(Resolution::Hour);
        assert_one(
            &windows(&t, hour(q_dotted())).await,
            "a.b",
            None,
            &range(1, 10),
        );
        assert_one(
            &windows(&t, hour(q_in_context())).await,
            "a",
            Some("b"),
            &range(91, 100),
        );
    }
    assert_eq!(
        db.count("metric_rollups WHERE resolution = 'hour' AND count = 10"),
        2
    );
    assert_eq!(db.count("metric_rollups WHERE count = 20"), 0);
    let old = t
        .send(QueryPatterns::all().metric("a.b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.len(), 1, "{old:#?}");
    assert_eq!(
        (old[0].series.as_str(), old[0].context.as_deref()),
        ("a.b", None)
    );
    assert_eq!(
        db.count("(SELECT DISTINCT metric, context_key FROM metric_windows) k"),
        2
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
}

#[actix_rt::test]
async fn an_old_sqlite_database_migrates_to_series_keys() {
    let db = TempDb::new();
    {
        let mut c = db.conn();
        migrate_to_old_schema!(c, diesel::sqlite::Sqlite, "sqlite");
        old_rows!(&mut c);
    }
    an_old_database_migrates(Db::Sqlite(db)).await;
}

#[actix_rt::test]
async fn an_old_postgres_database_migrates_to_series_keys() {
    let db = TestDb::create("series_key_migration");
    {
        let mut c = db.conn();
        migrate_to_old_schema!(c, diesel::pg::Pg, "postgres");
        old_rows!(&mut c);
    }
    an_old_database_migrates(Db::Pg(db)).await;
}
