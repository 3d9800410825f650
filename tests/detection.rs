//! Detection in the pipeline, on a real SQLite file: the guide's own case, a restart that
//! keeps detecting, alarms that do not hide each other, and a latency tail watched on its own.

mod common;

use common::{quiet_config, start_manual, TempDb, T0};
use eventbatch::{
    Flush, ManualClock, Pattern, PatternKind, QueryPatterns, Shutdown, TrackBatch, TrackEvent,
    Tracker,
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
        .filter(|p| !p.description.starts_with('p'))
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
    let elsewhere: Vec<_> = found
        .iter()
        .filter(|p| {
            let w = (p.window_start_ms - T0) / MINUTE;
            !(12..=13).contains(&w) && !(20..=21).contains(&w)
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "nothing on the steady part: {elsewhere:#?}"
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
            .any(|p| p.description.starts_with("p99") && p.kind != PatternKind::Drop),
        "{found:#?}"
    );
    t.send(Shutdown).await.unwrap();
}
