//! Counters and gauges (issue 18 item 3) through the real pipeline on SQLite and PostgreSQL:
//! `TrackEvent::counter` sums its increments per window, corrected for sampling exactly as the
//! estimated count is, with a rate; `TrackEvent::gauge` keeps the last value (by event time),
//! min and max. Both are series of their own kind (the counter `requests` and the distribution
//! `requests` are two series), merged across a restart and two instances into one answer per
//! window, and rolled up with their meaning (the hour's sum is the sum of its windows, its last
//! value the latest of them).

mod common;
use common::pg;

use std::collections::HashMap;

use common::{conservation, start_on, Db, TempDb, T0};
use eventbatch::*;
use pg::TestDb;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

async fn windows(t: &actix::Addr<Tracker>, q: QueryWindows) -> Vec<WindowStats> {
    t.send(q).await.unwrap().unwrap()
}

fn counter_q() -> QueryWindows {
    QueryWindows::metric("requests")
        .context("api")
        .label("route", "/help")
        .kind(SeriesKind::Counter)
}

fn gauge_q() -> QueryWindows {
    QueryWindows::metric("queue_depth").kind(SeriesKind::Gauge)
}

/// The one element of `got`, a window of `kind`.
fn one(got: &[WindowStats], kind: SeriesKind) -> &WindowStats {
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].kind, kind, "{got:#?}");
    &got[0]
}

/// A counter's window: `kept` increments of 3 kept at rate `1 / weight`, so its sum is three
/// times its estimated count, exactly, and its rate that sum per second of `width_ms`.
fn assert_counter(w: &WindowStats, kept: u64, estimated: f64, sum: f64, width_ms: i64) {
    assert_eq!(w.count, kept, "{w:?}");
    assert_eq!(w.estimated_count, estimated, "{w:?}");
    assert_eq!(w.sum, sum, "{w:?}");
    assert_eq!(
        w.rate_per_s,
        Some(sum / (width_ms as f64 / 1000.0)),
        "{w:?}"
    );
    assert_eq!(
        (w.last, w.p99),
        (None, 0.0),
        "a counter has no last, no quantiles"
    );
}

fn assert_gauge(w: &WindowStats, last: (i64, f64), min: f64, max: f64, count: u64) {
    assert_eq!(
        (w.last_ts_ms, w.last),
        (Some(last.0), Some(last.1)),
        "{w:?}"
    );
    assert_eq!((w.min, w.max, w.count), (min, max, count), "{w:?}");
    assert_eq!(w.rate_per_s, None, "{w:?}");
}

/// The gauge's reading `i` of window 0: a level that goes up and down, at `T0 + i` seconds.
fn depth(i: i64) -> f64 {
    ((i * 7) % 23) as f64
}

async fn counters_and_gauges(db: Db) {
    // Window 0: 400 increments of 3 to the counter, sampled at 1/4; a distribution of the
    // same name; 30 gauge readings, one of them arriving late (an earlier time: not the last).
    let config = Config {
        sampling_rates: HashMap::from([("counter.requests".to_string(), 0.25)]),
        ..Config::default()
    };
    let (t, clock) = start_on(&db, "cg", T0, config);
    let mut batch: Vec<TrackEvent> = (0..400)
        .map(|i| {
            TrackEvent::counter("requests", 3.0)
                .context("api")
                .tag("route", "/help")
                .at(T0 + i * 100)
        })
        .collect();
    batch.push(
        TrackEvent::performance("requests", 7.0)
            .context("api")
            .tag("route", "/help")
            .at(T0),
    );
    batch.extend((0..30).map(|i| TrackEvent::gauge("queue_depth", depth(i)).at(T0 + i * 1000)));
    batch.push(TrackEvent::gauge("queue_depth", 5.0).at(T0 + 500));
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.events_received, 432);
    assert_eq!(s.events_aggregated + s.events_sampled_out, 432, "{s:?}");
    let kept = 400 - s.events_sampled_out;
    assert!(kept > 0 && kept < 400, "sampling at 1/4 kept {kept} of 400");
    let w0 = |q: QueryWindows| q.between(T0, T0 + MINUTE);
    let c = windows(&t, w0(counter_q())).await;
    let estimated = 4.0 * kept as f64;
    assert_counter(
        one(&c, SeriesKind::Counter),
        kept,
        estimated,
        3.0 * estimated,
        MINUTE,
    );
    assert_eq!(c[0].labels.get("route").map(String::as_str), Some("/help"));
    let d = windows(
        &t,
        w0(QueryWindows::metric("requests")
            .context("api")
            .label("route", "/help")),
    )
    .await;
    let d = one(&d, SeriesKind::Distribution);
    assert_eq!((d.count, d.sum, d.p50, d.rate_per_s), (1, 7.0, 7.0, None));
    let g = windows(&t, w0(gauge_q())).await;
    assert_gauge(
        one(&g, SeriesKind::Gauge),
        (T0 + 29_000, depth(29)),
        0.0,
        22.0,
        31,
    );
    assert_eq!(db.count("metric_windows WHERE metric = 'requests'"), 2);
    assert_eq!(
        db.count(&format!(
            "metric_windows WHERE kind = 'gauge' AND last_ts_ms = {} AND last_value = {}",
            T0 + 29_000,
            depth(29)
        )),
        1
    );
    assert_eq!(
        db.count(&format!(
            "metric_windows WHERE kind = 'counter' AND sum = {} AND last_value IS NULL",
            3.0 * estimated
        )),
        1
    );

    // Window 1, on the clock: 10 increments of 3 (sampled too), gauge readings up to 42.
    let batch: Vec<TrackEvent> = (0..10)
        .map(|i| {
            TrackEvent::counter("requests", 3.0)
                .context("api")
                .tag("route", "/help")
                .at(T0 + MINUTE + i)
        })
        .chain([
            TrackEvent::gauge("queue_depth", 40.0).at(T0 + MINUTE + 10_000),
            TrackEvent::gauge("queue_depth", 42.0).at(T0 + MINUTE + 30_000),
        ])
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    clock.set(T0 + 3 * MINUTE);
    t.send(Tick).await.unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    let kept_w1 = 410 - s.events_sampled_out - kept;
    let windows_total = 4.0 * (kept + kept_w1) as f64;

    // A restart of the same instance (no sampling now): late events of window 0 merge into
    // its rows, the counter's sum adds, the gauge's later reading becomes the last.
    let (t, _) = start_on(&db, "cg", T0 + 3 * MINUTE, Config::default());
    let mut late: Vec<TrackEvent> = (0..5)
        .map(|i| {
            TrackEvent::counter("requests", 3.0)
                .context("api")
                .tag("route", "/help")
                .at(T0 + 50_000 + i)
        })
        .collect();
    late.push(TrackEvent::gauge("queue_depth", 100.0).at(T0 + 59_000));
    late.push(TrackEvent::gauge("queue_depth", -1.0).at(T0 + 200));
    t.send(TrackBatch(late)).await.unwrap().unwrap();
    conservation(&t.send(Flush).await.unwrap().unwrap());
    let c = windows(&t, w0(counter_q())).await;
    let (est0, sum0) = (estimated + 5.0, 3.0 * (estimated + 5.0));
    assert_counter(one(&c, SeriesKind::Counter), kept + 5, est0, sum0, MINUTE);
    let g = windows(&t, w0(gauge_q())).await;
    assert_gauge(
        one(&g, SeriesKind::Gauge),
        (T0 + 59_000, 100.0),
        -1.0,
        100.0,
        33,
    );
    assert_eq!(
        db.count(&format!("metric_windows WHERE window_start_ms = {T0}")),
        3,
        "one row per series and window: counter, distribution, gauge"
    );
    conservation(&t.send(Shutdown).await.unwrap());

    // Another instance's events for window 0: rows of its own, merged into one answer.
    let (t, clock) = start_on(&db, "cg-2", T0 + 3 * MINUTE, Config::default());
    t.send(TrackBatch(vec![
        TrackEvent::counter("requests", 2.5)
            .context("api")
            .tag("route", "/help")
            .at(T0 + 1),
        TrackEvent::gauge("queue_depth", 7.0).at(T0 + 59_500),
    ]))
    .await
    .unwrap()
    .unwrap();
    conservation(&t.send(Flush).await.unwrap().unwrap());
    let c = windows(&t, w0(counter_q())).await;
    assert_counter(
        one(&c, SeriesKind::Counter),
        kept + 6,
        est0 + 1.0,
        sum0 + 2.5,
        MINUTE,
    );
    let g = windows(&t, w0(gauge_q())).await;
    assert_gauge(
        one(&g, SeriesKind::Gauge),
        (T0 + 59_500, 7.0),
        -1.0,
        100.0,
        34,
    );
    assert_eq!(
        db.count(&format!(
            "metric_windows WHERE window_start_ms = {T0} AND kind = 'counter'"
        )),
        2,
        "a row per instance"
    );

    // The hour roll-up: the counter's sum is the sum of its windows (rate per second of the
    // hour), the gauge's last the latest reading of the hour (window 1's 42), min and max over
    // it; merged on the fly while pending, then stored once the hour closes.
    let hour_sum = 3.0 * (windows_total + 5.0) + 2.5;
    for stage in ["pending", "rolled up"] {
        if stage == "rolled up" {
            clock.set(T0 + DAY);
            t.send(Tick).await.unwrap();
            t.send(Flush).await.unwrap().unwrap();
        }
        let c = windows(&t, counter_q().resolution(Resolution::Hour)).await;
        let c = one(&c, SeriesKind::Counter);
        assert_eq!(
            (c.sum, c.estimated_count),
            (hour_sum, windows_total + 6.0),
            "{stage}"
        );
        assert_eq!(c.rate_per_s, Some(hour_sum / 3600.0), "{stage}");
        let g = windows(&t, gauge_q().resolution(Resolution::Hour)).await;
        assert_gauge(
            one(&g, SeriesKind::Gauge),
            (T0 + MINUTE + 30_000, 42.0),
            -1.0,
            100.0,
            36,
        );
    }
    assert_eq!(
        db.count("metric_rollups WHERE resolution = 'hour' AND metric = 'requests'"),
        2,
        "the counter and the distribution roll up apart"
    );
    assert_eq!(
        db.count(&format!(
            "metric_rollups WHERE resolution = 'hour' AND kind = 'counter' AND sum = {hour_sum}"
        )),
        1
    );
    assert_eq!(
        db.count(&format!(
            "metric_rollups WHERE resolution = 'hour' AND kind = 'gauge' AND last_value = 42 \
             AND last_ts_ms = {}",
            T0 + MINUTE + 30_000
        )),
        1
    );
    conservation(&t.send(Shutdown).await.unwrap());

    // A reader lists each series with its kind, and its query (what the report reads) reads
    // that kind.
    let reader = StoreReader::open(&db.store()).unwrap();
    let series = reader.series().unwrap();
    for s in &series {
        let got = reader.windows(&s.query()).unwrap();
        // the distribution has window 0 only, the gauge windows 0 and 1, the counter window 1
        // too unless sampling at 1/4 dropped all ten of its increments there (p = 0.75^10)
        let want = match s.kind {
            SeriesKind::Distribution => 1,
            SeriesKind::Counter if kept_w1 == 0 => 1,
            _ => 2,
        };
        assert_eq!(got.len(), want, "{s:?}");
        assert!(got.iter().all(|w| w.kind == s.kind), "{got:#?}");
    }
    let kinds: Vec<(String, SeriesKind)> = series.into_iter().map(|s| (s.metric, s.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("queue_depth".to_string(), SeriesKind::Gauge),
            ("requests".to_string(), SeriesKind::Counter),
            ("requests".to_string(), SeriesKind::Distribution),
        ]
    );
}

#[actix_rt::test]
async fn counters_and_gauges_through_windows_and_roll_ups_sqlite() {
    counters_and_gauges(Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn counters_and_gauges_through_windows_and_roll_ups_postgres() {
    counters_and_gauges(Db::Pg(TestDb::create("counters_gauges"))).await;
}

/// A counter's increment is finite and not negative, a gauge's value finite: anything else is
/// a clear error naming the field, counted as rejected.
#[actix_rt::test]
async fn bad_counter_and_gauge_values_are_rejected() {
    let db = Db::Sqlite(TempDb::new());
    let (t, _) = start_on(&db, "bad", T0, Config::default());
    let cases = [
        (TrackEvent::counter("c", -1.0), "increment"),
        (TrackEvent::counter("c", f64::NAN), "increment"),
        (TrackEvent::gauge("g", f64::INFINITY), "value"),
    ];
    for (event, field) in cases {
        let err = t.send(event.at(T0)).await.unwrap().unwrap_err();
        let text = err.to_string();
        assert!(text.contains(field), "{text}");
    }
    t.send(TrackEvent::gauge("g", -5.0).at(T0))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!((s.events_rejected, s.events_aggregated), (3, 1));
}
