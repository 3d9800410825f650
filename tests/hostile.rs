//! Hostile input against the real pipeline and an SQLite file: more distinct series than the
//! detector cap, more distinct error messages in a window than their cap, and one event dated
//! far ahead. Memory stays bounded, and nothing accepted is lost from the counts.

mod common;

use common::*;
use eventbatch::*;

/// An hour, in ms.
const HOUR: i64 = 3_600_000;

async fn batch(t: &actix::Addr<Tracker>, events: Vec<TrackEvent>) {
    let n = events.len();
    let ack = t.send(TrackBatch(events)).await.unwrap().unwrap();
    assert_eq!((ack.accepted, ack.rejected), (n, 0));
}

#[actix_rt::test]
async fn live_detectors_stay_at_the_cap_and_evictions_are_counted() {
    let db = TempDb::new();
    let cap = 50;
    let config = Config {
        max_detector_series: cap,
        ..quiet_config()
    };
    let (t, clock) = start_manual(config, &db);
    let series = 200;
    for round in 0..2 {
        let at = T0 + round * 60_000;
        let events = (0..series)
            .map(|i| TrackEvent::performance(format!("s{i}"), i as f64).at(at))
            .collect();
        batch(&t, events).await;
        // the windows close by the clock and reach the detector
        clock.set(at + 2 * 60_000);
        t.send(Tick).await.unwrap();
        let s = t.send(Flush).await.unwrap().unwrap();
        assert_eq!(s.windows_open, 0, "{s:?}");
        assert_eq!(s.detector_series as usize, cap, "{s:?}");
        // every series that got detectors and is gone now was evicted, and counted
        let seen = (round as u64 + 1) * series as u64;
        assert_eq!(s.detector_series + s.detectors_evicted, seen, "{s:?}");
        conservation(&s);
    }
    // nothing lost: every sample is in its window
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        2 * series as i64
    );
    let s = t.send(Shutdown).await.unwrap();
    assert!(s.detector_series as usize <= cap);
}

#[actix_rt::test]
async fn distinct_error_messages_beyond_the_cap_go_to_one_overflow_row() {
    let db = TempDb::new();
    let cap = 100;
    let config = Config {
        max_error_messages_per_window: cap,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    let distinct = 250;
    let events: Vec<TrackEvent> = (0..distinct)
        .flat_map(|i| {
            // each message twice in the window
            (0..2).map(move |k| {
                TrackEvent::error("timeout", "api")
                    .message(format!("upstream {i}"))
                    .at(T0 + k)
            })
        })
        .collect();
    let accepted = events.len() as i64;
    send_all(&t, events, 100).await;
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    let rows = db.count(&format!("error_counts WHERE window_start_ms = {T0}"));
    assert_eq!(rows, cap as i64 + 1, "{s:?}");
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM error_counts"),
        accepted,
        "the counts hold every error accepted"
    );
    let overflow = db.scalar(&format!(
        "SELECT count AS n FROM error_counts WHERE error_hash = '(other)' \
         AND error_type = '(other)' AND window_start_ms = {T0}"
    ));
    assert_eq!(overflow, 2 * (distinct - cap) as i64);
    assert_eq!(s.error_messages_overflowed, overflow as u64);
    // the first of each hash under the cap is a record, as before
    assert_eq!(db.count("events WHERE kind = 'error'"), cap as i64);
}

/// 50 batches of two series `a` and `b` in one window (and an error each), optionally with
/// one event of `a` and one error dated 23 hours ahead after the first; then a shutdown. The `Stats` at the end.
async fn fifty_batches(db: &TempDb, outlier: bool) -> Stats {
    let (t, _) = start_manual(quiet_config(), db);
    for i in 0..50 {
        if outlier && i == 1 {
            batch(
                &t,
                vec![
                    TrackEvent::performance("a", 1_000.0).at(T0 + 23 * HOUR),
                    TrackEvent::error("timeout", "api").at(T0 + 23 * HOUR),
                ],
            )
            .await;
        }
        let at = T0 + i * 100;
        batch(
            &t,
            vec![
                TrackEvent::performance("a", i as f64).at(at),
                TrackEvent::performance("b", i as f64).at(at),
                TrackEvent::error("timeout", "api").at(at),
            ],
        )
        .await;
    }
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    s
}

#[actix_rt::test]
async fn one_event_far_ahead_does_not_move_the_watermark() {
    let plain = TempDb::new();
    let without = fifty_batches(&plain, false).await;
    assert_eq!(
        (without.windows_written, without.error_counts_written),
        (2, 1)
    );

    let db = TempDb::new();
    let with = fifty_batches(&db, true).await;
    // the outlier's own window and error count, and nothing else more
    assert_eq!(
        (with.windows_written, with.error_counts_written),
        (
            without.windows_written + 1,
            without.error_counts_written + 1
        ),
        "{with:?}"
    );
    for series in ["a", "b"] {
        assert_eq!(
            db.scalar(&format!(
                "SELECT count AS n FROM metric_windows WHERE series = '{series}' \
                 AND window_start_ms = {T0}"
            )),
            50
        );
    }
    // nothing lost: the outlier is stored in its own window and error count
    let ahead = T0 + 23 * HOUR;
    assert_eq!(
        db.count(&format!(
            "metric_windows WHERE series = 'a' AND window_start_ms = {ahead} AND count = 1 \
             AND max = 1000.0"
        )),
        1
    );
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM error_counts"),
        51,
        "every error counted"
    );
    assert_eq!(
        db.count(&format!("error_counts WHERE window_start_ms = {ahead}")),
        1
    );
}
