//! Detection in the pipeline, on a real SQLite file: the guide's own case, a restart that
//! keeps detecting, alarms that do not hide each other, a latency tail watched on its own,
//! one pattern per event with the statistics that moved, descriptions in plain words, and
//! patterns pushed to a subscriber. Every test also checks that the steady parts of its
//! series raise nothing (a detector that flags everything fails them).

mod common;

use actix::prelude::*;
use common::{quiet_config, start_manual, TempDb, T0};
use eventbatch::{
    DetectorSettings, Flush, ManualClock, Pattern, PatternFound, PatternKind, PipelineError,
    QueryPatterns, Shutdown, SubscribePatterns, TrackBatch, TrackEvent, Tracker,
    UnsubscribePatterns, View,
};

const MINUTE: i64 = 60_000;

/// Sends window `w` of series `metric` (20 samples made by `value(i)`), then moves the clock
/// past it so it closes.
async fn window(
    t: &actix::Addr<Tracker>,
    clock: &ManualClock,
    metric: &str,
    w: i64,
    value: impl Fn(i64) -> f64,
) {
    let batch: Vec<TrackEvent> = (0..20)
        .map(|i| TrackEvent::performance(metric, value(i)).at(T0 + w * MINUTE + i * 1000))
        .collect();
    t.send(TrackBatch(batch)).await.unwrap().unwrap();
    clock.set(T0 + (w + 1) * MINUTE + 10_000);
    t.send(eventbatch::Tick).await.unwrap();
}

/// A steady value around 100 (+-5, deterministic).
fn steady(w: i64, i: i64) -> f64 {
    100.0 + ((w * 31 + i * 17) % 11) as f64 - 5.0
}

async fn patterns(t: &actix::Addr<Tracker>, metric: &str) -> Vec<Pattern> {
    t.send(Flush).await.unwrap().unwrap();
    t.send(QueryPatterns::all().metric(metric))
        .await
        .unwrap()
        .unwrap()
}

fn at(p: &[Pattern], w: i64) -> Vec<&Pattern> {
    p.iter()
        .filter(|p| p.window_start_ms == T0 + w * MINUTE)
        .collect()
}

/// The patterns outside the given windows, after asserting that each of those windows has
/// exactly one pattern (one report per event): the steady parts of the series must raise
/// nothing, not even the window after an event.
fn elsewhere<'a>(found: &'a [Pattern], events: &[i64]) -> Vec<&'a Pattern> {
    for &e in events {
        assert_eq!(
            at(found, e).len(),
            1,
            "one pattern at window {e}: {found:#?}"
        );
    }
    found
        .iter()
        .filter(|p| {
            let w = (p.window_start_ms - T0) / MINUTE;
            !events.contains(&w)
        })
        .collect()
}

#[actix_rt::test]
async fn the_guides_spike_and_drop_are_found_in_the_first_minutes() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    for w in 0..30 {
        let factor = match w {
            12 => 5.0,
            20 => 0.25,
            _ => 1.0,
        };
        window(&t, &clock, "api_latency", w, |i| steady(w, i) * factor).await;
    }
    let found = patterns(&t, "api_latency").await;
    let mean_only: Vec<Pattern> = found
        .iter()
        .filter(|p| p.statistics.iter().any(|s| s.statistic == "mean"))
        .cloned()
        .collect();
    assert!(
        at(&mean_only, 12)
            .iter()
            .any(|p| p.kind == PatternKind::Spike),
        "{found:#?}"
    );
    assert!(
        at(&mean_only, 20)
            .iter()
            .any(|p| p.kind == PatternKind::Drop),
        "{found:#?}"
    );
    let steady_part = elsewhere(&found, &[12, 20]);
    assert!(
        steady_part.is_empty(),
        "nothing on the steady part: {steady_part:#?}"
    );
    t.send(Shutdown).await.unwrap();
}

#[test]
fn a_restart_keeps_detecting_without_a_new_warm_up() {
    let db = TempDb::new();
    actix::System::new().block_on(async {
        let (t, clock) = start_manual(quiet_config(), &db);
        for w in 0..40 {
            window(&t, &clock, "rt", w, |i| steady(w, i)).await;
        }
        t.send(Shutdown).await.unwrap();
    });
    actix::System::new().block_on(async {
        let (t, clock) = start_manual(quiet_config(), &db);
        clock.set(T0 + 40 * MINUTE);
        // the first window after the restart is a 5x spike
        window(&t, &clock, "rt", 40, |i| steady(40, i) * 5.0).await;
        window(&t, &clock, "rt", 41, |i| steady(41, i)).await;
        let found = patterns(&t, "rt").await;
        assert!(
            at(&found, 40).iter().any(|p| p.kind == PatternKind::Spike),
            "the detector was warmed from the stored windows: {found:#?}"
        );
        let steady_part = elsewhere(&found, &[40]);
        assert!(steady_part.is_empty(), "{steady_part:#?}");
        t.send(Shutdown).await.unwrap();
    });
}

#[actix_rt::test]
async fn two_events_twenty_windows_apart_are_both_reported() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    // a spike, then 20 windows later a drop (the case: a 0.45x drop after a spike
    // was hidden by the spike's cooldown)
    for w in 0..80 {
        let factor = match w {
            40 => 3.0,
            60 => 0.45,
            _ => 1.0,
        };
        window(&t, &clock, "rt", w, |i| steady(w, i) * factor).await;
    }
    let found = patterns(&t, "rt").await;
    for (w, kind) in [(40, PatternKind::Spike), (60, PatternKind::Drop)] {
        assert!(
            at(&found, w).iter().any(|p| p.kind == kind),
            "window {w}: {found:#?}"
        );
    }
    let steady_part = elsewhere(&found, &[40, 60]);
    assert!(steady_part.is_empty(), "{steady_part:#?}");
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_tail_that_triples_with_a_steady_mean_is_reported() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    for w in 0..70 {
        // 200 samples: 196 around 100, 4 in the tail (p99 sits in the tail; the mean moves
        // by 2% of the tail's change)
        let tail = if w == 60 {
            1500.0
        } else {
            500.0 + (w % 5) as f64 * 10.0
        };
        let batch: Vec<TrackEvent> = (0..200)
            .map(|i| {
                let v = if i % 50 == 49 { tail } else { steady(w, i) };
                TrackEvent::performance("rt", v).at(T0 + w * MINUTE + i * 100)
            })
            .collect();
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        clock.set(T0 + (w + 1) * MINUTE + 10_000);
        t.send(eventbatch::Tick).await.unwrap();
    }
    let found = patterns(&t, "rt").await;
    assert!(
        at(&found, 60)
            .iter()
            .any(|p| p.kind != PatternKind::Drop
                && p.statistics.iter().any(|s| s.statistic == "p99")),
        "{found:#?}"
    );
    let steady_part = elsewhere(&found, &[60]);
    assert!(steady_part.is_empty(), "{steady_part:#?}");
    t.send(Shutdown).await.unwrap();
}

/// Windows of a steady series with a 5x spike of every sample in window `spike`: mean and
/// p99 both move.
async fn steady_with_spikes(
    t: &actix::Addr<Tracker>,
    clock: &ManualClock,
    metric: &str,
    windows: i64,
    spikes: &[(i64, f64)],
) {
    for w in 0..windows {
        let factor = spikes
            .iter()
            .find(|(s, _)| *s == w)
            .map_or(1.0, |&(_, f)| f);
        window(t, clock, metric, w, |i| steady(w, i) * factor).await;
    }
}

/// Runs 50 windows of `api_latency` with every sample of window 40 times `factor`; the one
/// pattern found, and the pipeline (to be shut down).
async fn one_event(db: &TempDb, factor: f64) -> (actix::Addr<Tracker>, Pattern) {
    let (t, clock) = start_manual(quiet_config(), db);
    steady_with_spikes(&t, &clock, "api_latency", 50, &[(40, factor)]).await;
    let found = patterns(&t, "api_latency").await;
    assert_eq!(found.len(), 1, "one pattern for one event: {found:#?}");
    (t, found[0].clone())
}

#[actix_rt::test]
async fn a_spike_of_the_mean_and_the_p99_is_one_pattern_counted_once() {
    let db = TempDb::new();
    let (t, p) = one_event(&db, 5.0).await;
    let p = &p;
    assert_eq!(p.kind, PatternKind::Spike);
    assert_eq!(p.window_start_ms, T0 + 40 * MINUTE);
    let moved: Vec<&str> = p.statistics.iter().map(|s| s.statistic.as_str()).collect();
    assert_eq!(moved.len(), 2, "{p:#?}");
    assert!(moved.contains(&"mean") && moved.contains(&"p99"), "{p:#?}");
    // the headline is the first statistic's
    assert_eq!(p.observed, p.statistics[0].observed);
    assert_eq!(p.kind, p.statistics[0].kind);
    let stats = t.send(Flush).await.unwrap().unwrap();
    assert_eq!(stats.patterns_detected, 1, "counted once");
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn patterns_are_told_in_plain_words_with_the_numbers_in_fields() {
    let db = TempDb::new();
    let (t, p) = one_event(&db, 4.0).await;
    let p = &p;
    // e.g. "api_latency mean 400.5, 4.0x its usual 100.1, from 00:40 UTC; p99 ..."
    let head = &p.statistics[0];
    let expected_start = format!(
        "api_latency {} {}, {}x its usual ",
        head.statistic,
        eventbatch::stats::detect::plain_number(head.observed),
        format_args!("{:.1}", head.observed / head.baseline)
    );
    assert!(
        p.description.starts_with(&expected_start),
        "{}",
        p.description
    );
    let minutes = (T0 + 40 * MINUTE) / MINUTE % (24 * 60);
    let from = format!(", from {:02}:{:02} UTC", minutes / 60, minutes % 60);
    assert!(p.description.contains(&from), "{}", p.description);
    for word in ["robust z", "decades", "surprise", "likelihood"] {
        assert!(!p.description.contains(word), "{}", p.description);
    }
    // the numbers stay, in fields
    for s in &p.statistics {
        assert!(s.evidence.z >= 3.0, "{s:#?}");
        assert!(s.evidence.surprise_decades > 0.0, "{s:#?}");
        assert!(matches!(
            s.evidence.view,
            View::Level | View::Early | View::Seasonal
        ));
    }
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn the_guides_rules_are_not_masked_by_an_earlier_spike() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    // two identical 3x spikes 20 windows apart, then a value 12 standard deviations out 30
    // windows after the second: standard deviations of what the detector sees, the window
    // means (steady() has a per-sample sd of about 3.2, its window means one of about 0.16,
    // and the detector's scale is floored at relative_scale_floor, 1% of the median)
    let sd = detector_sd(120);
    assert_eq!(sd, 1.0, "the floor: 1% of 100");
    for w in 0..120 {
        let shift = match w {
            40 | 60 => 200.0,
            90 => 12.0 * sd,
            _ => 0.0,
        };
        window(&t, &clock, "rt", w, |i| steady(w, i) + shift).await;
    }
    let found = patterns(&t, "rt").await;
    for (w, kind) in [
        (40, PatternKind::Spike),
        (60, PatternKind::Spike),
        (90, PatternKind::Anomaly),
    ] {
        assert!(
            at(&found, w).iter().any(|p| p.kind == kind),
            "window {w}: {found:#?}"
        );
    }
    let steady_part = elsewhere(&found, &[40, 60, 90]);
    assert!(steady_part.is_empty(), "{steady_part:#?}");
    t.send(Shutdown).await.unwrap();
}

/// The scale the level view gives steady()'s window means over `n` windows: the robust sd
/// (1.4826 MAD) of the means, floored at the default `relative_scale_floor` of the median.
fn detector_sd(n: i64) -> f64 {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let k = v.len();
        (v[(k - 1) / 2] + v[k / 2]) / 2.0
    };
    let means: Vec<f64> = (0..n)
        .map(|w| (0..20).map(|i| steady(w, i)).sum::<f64>() / 20.0)
        .collect();
    let m = median(means.clone());
    let mad = median(means.iter().map(|x| (x - m).abs()).collect());
    (1.4826 * mad).max(DetectorSettings::default().relative_scale_floor * m.abs())
}

/// Collects the patterns pushed to it.
struct Listener(std::sync::Arc<std::sync::Mutex<Vec<Pattern>>>);

impl Actor for Listener {
    type Context = Context<Self>;
}

impl Handler<PatternFound> for Listener {
    type Result = ();
    fn handle(&mut self, PatternFound(p): PatternFound, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(p);
    }
}

#[actix_rt::test]
async fn a_subscriber_receives_each_pattern_as_it_is_found() {
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = Listener(got.clone()).start();
    let id = t
        .send(SubscribePatterns(listener.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    // a second subscriber whose actor stops before any pattern is found
    let gone = Listener::create(|ctx| {
        ctx.stop();
        Listener(Default::default())
    });
    t.send(SubscribePatterns(gone.recipient()))
        .await
        .unwrap()
        .unwrap();
    steady_with_spikes(&t, &clock, "rt", 50, &[(40, 5.0)]).await;
    t.send(Flush).await.unwrap().unwrap();
    // pushed, without a query: exactly what the store holds
    let pushed = got.lock().unwrap().clone();
    let stored = patterns(&t, "rt").await;
    assert_eq!(pushed.len(), 1, "{pushed:#?}");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    // the statistics went through JSON in the store: the same up to the last bit
    // (serde_json's float_roundtrip), every field
    assert_eq!(pushed, stored);
    assert_eq!(pushed[0].window_start_ms, T0 + 40 * MINUTE);
    // unsubscribed: nothing more arrives
    t.send(UnsubscribePatterns(id)).await.unwrap();
    for w in 50..70 {
        let factor = if w == 60 { 0.2 } else { 1.0 };
        window(&t, &clock, "rt", w, |i| steady(w, i) * factor).await;
    }
    let stored = patterns(&t, "rt").await;
    assert!(at(&stored, 60).iter().any(|p| p.kind == PatternKind::Drop));
    assert_eq!(got.lock().unwrap().len(), 1);
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_pattern_row_whose_statistics_do_not_parse_fails_the_query_and_is_named() {
    use diesel::RunQueryDsl;
    let db = TempDb::new();
    let (t, clock) = start_manual(quiet_config(), &db);
    steady_with_spikes(&t, &clock, "rt", 50, &[(40, 5.0)]).await;
    assert_eq!(patterns(&t, "rt").await.len(), 1);
    diesel::sql_query("UPDATE patterns SET statistics = '[{\"truncated'")
        .execute(&mut db.conn())
        .unwrap();
    let err = t
        .send(QueryPatterns::all().metric("rt"))
        .await
        .unwrap()
        .expect_err("not an empty list of statistics");
    let text = err.to_string();
    assert!(
        text.contains("\"rt\"") && text.contains(&(T0 + 40 * MINUTE).to_string()),
        "the row is named: {text}"
    );
    t.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_subscription_after_shutdown_is_refused() {
    let db = TempDb::new();
    let (t, _clock) = start_manual(quiet_config(), &db);
    let listener = Listener(Default::default()).start();
    // queued right behind the Shutdown: handled while the pipeline stops, before the tracker
    // itself stops (after which the mailbox is closed)
    let shutdown = t.send(Shutdown);
    let subscribe = t.send(SubscribePatterns(listener.recipient()));
    shutdown.await.unwrap();
    let refused = subscribe.await.expect("the tracker answered");
    assert!(
        matches!(refused, Err(PipelineError::Unavailable(_))),
        "no id for a subscription nothing will be sent to: {refused:?}"
    );
}

#[actix_rt::test]
async fn a_subscription_does_not_keep_its_subscriber_alive() {
    let db = TempDb::new();
    let (t, _clock) = start_manual(quiet_config(), &db);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = Listener(got.clone()).start();
    t.send(SubscribePatterns(listener.recipient()))
        .await
        .unwrap()
        .unwrap();
    // a later subscription prunes the gone one (and must not keep it either)
    let other = Listener(Default::default()).start();
    t.send(SubscribePatterns(other.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    t.send(Flush).await.unwrap().unwrap();
    // the application dropped its address: the listener stops and its state is dropped,
    // releasing its handle on `got` (a subscription holding the recipient would keep it)
    let mut turns = 0;
    while std::sync::Arc::strong_count(&got) > 1 && turns < 1_000 {
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        turns += 1;
    }
    assert_eq!(
        std::sync::Arc::strong_count(&got),
        1,
        "the listener is dropped"
    );
    assert!(other.connected(), "the other subscriber is untouched");
    t.send(Shutdown).await.unwrap();
}
