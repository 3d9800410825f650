//! Labels (issue 18): the tags of a metric sample are part of its series, `lat{region="eu"}`
//! and `lat{region="us"}` two series, through the real pipeline on SQLite and on PostgreSQL:
//! stored and queried apart, a subset query (`region=eu`, any other label) equal to the merge
//! of its parts, a restart's and another instance's late events merged into each label set's
//! own row, roll-ups that keep the labels, detectors per label set; and the cardinality guard
//! (`max_series_per_metric`): 10,000 label sets against a limit of 1,000 give 1,000 series and
//! one overflow series, every sample counted.

mod common;
use common::pg;

use common::{conservation, start_on, Db, TempDb, T0};
use eventbatch::stats::window::WindowState;
use eventbatch::*;
use pg::TestDb;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// A latency sample of `lat` with the labels `region` and `host` (given in either order: the
/// label set is sorted by key).
fn lat(region: &str, host: &str, v: f64, ts: i64) -> TrackEvent {
    if v as i64 % 2 == 0 {
        TrackEvent::performance("lat", v)
            .tag("region", region)
            .tag("host", host)
            .at(ts)
    } else {
        TrackEvent::performance("lat", v)
            .tag("host", host)
            .tag("region", region)
            .at(ts)
    }
}

fn exact(region: &str, host: &str) -> QueryWindows {
    QueryWindows::metric("lat")
        .label("region", region)
        .label("host", host)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn windows(t: &actix::Addr<Tracker>, q: QueryWindows) -> Vec<WindowStats> {
    t.send(q).await.unwrap().unwrap()
}

/// One element, holding exactly `values` (count, mean, min, max exact; the quantiles within
/// the sketch's 1% of the exact ones, and those of one window state of the same values).
fn assert_holds(got: &[WindowStats], want_labels: &Labels, values: &[f64]) {
    assert_eq!(got.len(), 1, "{got:#?}");
    let w = &got[0];
    assert_eq!(&w.labels, want_labels, "{w:?}");
    assert_eq!((w.metric.as_str(), w.series.as_str()), ("lat", "lat"));
    assert_eq!(w.count, values.len() as u64, "{w:?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((w.mean - mean).abs() < 1e-9, "mean {} vs {mean}", w.mean);
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    assert_eq!((w.min, w.max), (sorted[0], sorted[sorted.len() - 1]));
    let mut state = WindowState::new();
    for v in values {
        state.observe(*v, 1.0);
    }
    for q in [0.5, 0.9, 0.99] {
        // numpy's linear interpolation (what a window of up to 256 values answers exactly)
        let pos = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let exact = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64);
        let got = w.quantile(q);
        assert!(
            (got - exact).abs() <= 0.011 * exact.abs() + 1e-9,
            "p{q}: {got} vs exact {exact}"
        );
        assert!(
            (got - state.quantile(q)).abs() <= 0.011 * got.abs() + 1e-9,
            "p{q}: {got} vs one sketch of the same values {}",
            state.quantile(q)
        );
    }
}

fn span(from: i64, to: i64) -> Vec<f64> {
    (from..=to).map(|v| v as f64).collect()
}

/// A steady value around `level` (+-5%, deterministic), for the windows the detector watches.
fn steady(level: f64, w: i64, i: i64) -> f64 {
    level * (1.0 + (((w * 31 + i * 17) % 11) as f64 - 5.0) / 100.0)
}

async fn label_sets_stay_apart(db: Db) {
    let (t, clock) = start_on(&db, "lb", T0, Config::default());
    let eu_a = labels(&[("host", "a"), ("region", "eu")]);
    let eu_b = labels(&[("host", "b"), ("region", "eu")]);
    let us_a = labels(&[("host", "a"), ("region", "us")]);
    let mut batch = Vec::new();
    for v in 1..=10 {
        batch.push(lat("eu", "a", v as f64, T0 + v));
        batch.push(lat("eu", "b", 100.0 + v as f64, T0 + v));
        batch.push(lat("us", "a", 90.0 + v as f64, T0 + v));
    }
    // the series without labels, as before
    batch.push(TrackEvent::performance("lat", 5000.0).at(T0 + 20));
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!((s.events_aggregated, s.series_overflowed), (31, 0));
    let w0 = |q: QueryWindows| q.between(T0, T0 + MINUTE);
    assert_holds(
        &windows(&t, w0(exact("eu", "a"))).await,
        &eu_a,
        &span(1, 10),
    );
    assert_holds(
        &windows(&t, w0(exact("eu", "b"))).await,
        &eu_b,
        &span(101, 110),
    );
    assert_holds(
        &windows(&t, w0(exact("us", "a"))).await,
        &us_a,
        &span(91, 100),
    );
    assert_holds(
        &windows(&t, w0(QueryWindows::metric("lat"))).await,
        &Labels::new(),
        &[5000.0],
    );
    // an exact query of a label set nothing has: nothing
    assert!(
        windows(&t, QueryWindows::metric("lat").label("region", "eu"))
            .await
            .is_empty()
    );
    assert_eq!(
        db.count(&format!("metric_windows WHERE window_start_ms = {T0}")),
        4
    );
    assert_eq!(
        db.count("metric_windows WHERE labels_key = 0 AND labels = '{}'"),
        1
    );

    // the subset region=eu: every label set holding it, merged, equal to the merge of its parts
    let eu = || {
        QueryWindows::metric("lat")
            .label("region", "eu")
            .any_labels()
    };
    let mut eu_values = span(1, 10);
    eu_values.extend(span(101, 110));
    assert_holds(
        &windows(&t, w0(eu())).await,
        &labels(&[("region", "eu")]),
        &eu_values,
    );
    let parts = [
        windows(&t, w0(exact("eu", "a"))).await,
        windows(&t, w0(exact("eu", "b"))).await,
    ];
    let merged = &windows(&t, w0(eu())).await[0];
    assert_eq!(merged.count, parts.iter().map(|p| p[0].count).sum::<u64>());
    assert_eq!(merged.sum, parts.iter().map(|p| p[0].sum).sum::<f64>());
    let all = windows(&t, w0(QueryWindows::metric("lat").any_labels())).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].count, 31);

    // windows 1..=10 of eu/a and us/a, steady, with a spike in us/a only in window 10: the
    // detectors watch each label set apart
    for w in 1..=10 {
        let spike = if w == 10 { 4.0 } else { 1.0 };
        let batch: Vec<TrackEvent> = (0..20)
            .flat_map(|i| {
                let ts = T0 + w * MINUTE + i * 1000;
                [
                    lat("eu", "a", steady(10.0, w, i), ts),
                    lat("us", "a", steady(100.0, w, i) * spike, ts),
                ]
            })
            .collect();
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        clock.set(T0 + (w + 1) * MINUTE + 10_000);
        t.send(Tick).await.unwrap();
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    let patterns = t
        .send(QueryPatterns::all().metric("lat"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        patterns.iter().any(|p| p.kind == PatternKind::Spike
            && p.window_start_ms == T0 + 10 * MINUTE
            && p.labels == us_a),
        "{patterns:#?}"
    );
    assert!(
        patterns.iter().all(|p| p.labels == us_a),
        "only us/a moved: {patterns:#?}"
    );
    assert_eq!(windows(&t, exact("eu", "a")).await.len(), 11);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);

    // A restart of the same instance on the same store: late events for window 0 merge into
    // each label set's own row.
    let (t, _) = start_on(&db, "lb", T0 + 20 * MINUTE, Config::default());
    let late: Vec<TrackEvent> = (11..=15)
        .flat_map(|v| {
            [
                lat("eu", "a", v as f64, T0 + v),
                lat("us", "a", 90.0 + v as f64, T0 + v),
            ]
        })
        .collect();
    t.send(TrackBatch(late)).await.unwrap().unwrap();
    conservation(&t.send(Flush).await.unwrap().unwrap());
    assert_holds(
        &windows(&t, w0(exact("eu", "a"))).await,
        &eu_a,
        &span(1, 15),
    );
    assert_holds(
        &windows(&t, w0(exact("us", "a"))).await,
        &us_a,
        &span(91, 105),
    );
    assert_eq!(
        db.count(&format!("metric_windows WHERE window_start_ms = {T0}")),
        4,
        "one row per label set and window"
    );
    conservation(&t.send(Shutdown).await.unwrap());

    // Another instance's events for window 0: a row of its own, merged by the queries.
    let (t, clock) = start_on(&db, "lb-2", T0 + 20 * MINUTE, Config::default());
    t.send(TrackBatch(vec![lat("eu", "a", 16.0, T0 + 16)]))
        .await
        .unwrap()
        .unwrap();
    conservation(&t.send(Flush).await.unwrap().unwrap());
    assert_holds(
        &windows(&t, w0(exact("eu", "a"))).await,
        &eu_a,
        &span(1, 16),
    );
    let mut eu_values = span(1, 16);
    eu_values.extend(span(101, 110));
    assert_holds(
        &windows(&t, w0(eu())).await,
        &labels(&[("region", "eu")]),
        &eu_values,
    );

    // Hour and day roll-ups keep the label sets apart: merged from the windows while pending,
    // then stored once the buckets close.
    let eu_a_total = 16 + 10 * 20;
    for stage in ["pending", "rolled up"] {
        if stage == "rolled up" {
            clock.set(T0 + DAY);
            t.send(Tick).await.unwrap();
            t.send(Flush).await.unwrap().unwrap();
        }
        for res in [Resolution::Hour, Resolution::Day] {
            let got = windows(&t, exact("eu", "a").resolution(res)).await;
            assert_eq!(got.len(), 1, "{stage} {res:?}: {got:#?}");
            assert_eq!((got[0].count, &got[0].labels), (eu_a_total, &eu_a));
            let got = windows(&t, eu().resolution(res)).await;
            assert_eq!(got.len(), 1, "{stage} {res:?}: {got:#?}");
            assert_eq!(got[0].count, eu_a_total + 10, "{stage} {res:?}");
            let got = windows(&t, QueryWindows::metric("lat").resolution(res)).await;
            assert_eq!(
                got[0].count, 1,
                "{stage} {res:?}: the series without labels"
            );
        }
    }
    for res in ["hour", "day"] {
        assert_eq!(
            db.count(&format!(
                "metric_rollups WHERE resolution = '{res}' AND labels_key <> 0"
            )),
            3,
            "{res}: one roll-up per label set"
        );
        assert_eq!(
            db.count(&format!(
                "metric_rollups WHERE resolution = '{res}' AND labels = '{{\"host\":\"a\",\"region\":\"eu\"}}' AND count = {eu_a_total}"
            )),
            1,
            "{res}"
        );
    }
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
}

#[actix_rt::test]
async fn two_label_sets_of_one_metric_stay_two_series_sqlite() {
    label_sets_stay_apart(Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn two_label_sets_of_one_metric_stay_two_series_postgres() {
    label_sets_stay_apart(Db::Pg(TestDb::create("labels"))).await;
}

/// 10,000 label sets of one metric against `max_series_per_metric = 1,000`: the first 1,000
/// are series of their own, the other 9,000 samples fold into one overflow series; every
/// sample is counted and stored.
async fn cardinality_is_bounded(db: Db) {
    let config = Config {
        max_series_per_metric: 1_000,
        ..Config::default()
    };
    let (t, _) = start_on(&db, "card", T0, config);
    let batch: Vec<TrackEvent> = (0..10_000)
        .map(|i| {
            TrackEvent::performance("lat", 1.0 + (i % 100) as f64)
                .tag("user", format!("u{i}"))
                .at(T0 + i / 1000)
        })
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.events_aggregated, 10_000);
    assert_eq!(s.events_dropped, 0);
    assert_eq!(s.series_overflowed, 9_000, "{s:?}");
    assert_eq!(db.count("metric_windows WHERE metric = 'lat'"), 1_001);
    let overflow = db.count(&format!(
        "metric_windows WHERE labels = '{{\"{OVERFLOW_LABEL}\":\"true\"}}' AND count = 9000"
    ));
    assert_eq!(overflow, 1);
    let q = QueryWindows::metric("lat").label(OVERFLOW_LABEL, "true");
    let got = windows(&t, q).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].count, 9_000);
    let all = windows(&t, QueryWindows::metric("lat").any_labels()).await;
    assert_eq!(all[0].count, 10_000, "every sample is in the merge");
    let one = windows(&t, QueryWindows::metric("lat").label("user", "u7")).await;
    assert_eq!(
        one[0].count, 1,
        "the first label sets are series of their own"
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.series_overflowed, 9_000);
}

#[actix_rt::test]
async fn ten_thousand_label_sets_against_a_limit_of_1000_sqlite() {
    cardinality_is_bounded(Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn ten_thousand_label_sets_against_a_limit_of_1000_postgres() {
    cardinality_is_bounded(Db::Pg(TestDb::create("labels_card"))).await;
}

#[test]
fn max_series_per_metric_is_validated_like_every_size() {
    let err = Config {
        max_series_per_metric: 0,
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        (err.field.as_str(), err.value.as_str()),
        ("max_series_per_metric", "0")
    );
}
