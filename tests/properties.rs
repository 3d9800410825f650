//! Property tests of the whole pipeline on a real SQLite file: whatever the events and the
//! limits, nothing is lost (the conservation law holds and the store holds exactly what the
//! counters say), and a window written in parts (across flushes, late events and restarts)
//! equals the window computed at once.

mod common;

use common::*;
use eventbatch::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Ev {
    Command(u8, u8),
    Metric(u8, u16, i64),
    Error(u8, i64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..3, 0u8..4).prop_map(|(p, n)| Ev::Command(p, n)),
        (0u8..3, 0u16..1000, 0i64..240_000).prop_map(|(s, v, t)| Ev::Metric(s, v, t)),
        (0u8..3, 0i64..240_000).prop_map(|(k, t)| Ev::Error(k, t)),
    ]
}

fn to_event(e: &Ev) -> TrackEvent {
    match *e {
        Ev::Command(p, n) => TrackEvent::command(format!("cmd{n}"))
            .priority([Priority::High, Priority::Normal, Priority::Low][p as usize]),
        Ev::Metric(s, v, t) => TrackEvent::performance(format!("m{s}"), f64::from(v)).at(T0 + t),
        Ev::Error(k, t) => TrackEvent::error(format!("e{k}"), "cat").at(T0 + t),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn nothing_is_lost_whatever_the_limits(
        events in prop::collection::vec(ev(), 1..400),
        max_batch in 1usize..50,
        high in 1usize..20,
        max_queued in 1usize..300,
        flush_every in 1usize..200,
    ) {
        let db = TempDb::new();
        let config = Config {
            max_batch_size: max_batch,
            high_priority_flush_threshold: high,
            max_queued_events: max_queued,
            allowed_lateness_ms: 0,
            ..quiet_config()
        };
        let stats = actix::System::new().block_on(async {
            let (t, _) = start_manual(config, &db);
            for (i, e) in events.iter().enumerate() {
                t.send(to_event(e)).await.unwrap().unwrap();
                if i % flush_every == flush_every - 1 {
                    t.send(Flush).await.unwrap().unwrap();
                }
            }
            t.send(Shutdown).await.unwrap()
        });
        prop_assert_eq!(stats.events_received, events.len() as u64);
        prop_assert_eq!(stats.events_kept, stats.records_written + stats.events_aggregated + stats.events_dropped);
        let records = db.count("events") as u64;
        prop_assert_eq!(records, stats.records_written);
        let metrics = events.iter().filter(|e| matches!(e, Ev::Metric(..))).count() as i64;
        prop_assert_eq!(db.scalar("SELECT coalesce(sum(count), 0) AS n FROM metric_windows"), metrics);
        let errors = events.iter().filter(|e| matches!(e, Ev::Error(..))).count() as i64;
        prop_assert_eq!(db.scalar("SELECT coalesce(sum(count), 0) AS n FROM error_counts"), errors);
        let commands = events.iter().filter(|e| matches!(e, Ev::Command(..))).count() as u64;
        // every command is written or dropped by the overflow policy (which may also drop
        // first-of-hash error records, so drops bound the missing commands from above)
        let command_rows = db.count("events WHERE kind = 'command'") as u64;
        prop_assert!(command_rows <= commands);
        prop_assert!(commands - command_rows <= stats.events_dropped);
        if stats.events_dropped == 0 {
            prop_assert_eq!(command_rows, commands);
        }
    }

    #[test]
    fn a_window_written_in_parts_equals_the_window_at_once(
        values in prop::collection::vec(1u32..100_000, 1..300),
        cuts in prop::collection::vec(0usize..300, 0..4),
    ) {
        let db_parts = TempDb::new();
        let db_whole = TempDb::new();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % values.len()).collect();
        cuts.sort();
        let part_of = |i: usize| cuts.iter().filter(|&&c| c <= i).count();
        let parts = cuts.len() + 1;
        // parts: each part in its own run (a restart), alternating instance ids
        for p in 0..parts {
            actix::System::new().block_on(async {
                let config = Config { instance_id: Some(format!("i{}", p % 2)), ..quiet_config() };
                let (t, _) = start_manual(config, &db_parts);
                for (i, v) in values.iter().enumerate().filter(|(i, _)| part_of(*i) == p) {
                    t.send(TrackEvent::performance("rt", f64::from(*v) / 10.0).at(T0 + i as i64)).await.unwrap().unwrap();
                }
                t.send(Shutdown).await.unwrap();
            });
        }
        let query = |db: &TempDb| {
            actix::System::new().block_on(async {
                let (t, _) = start_manual(quiet_config(), db);
                if std::ptr::eq(db, &db_whole) {
                    for (i, v) in values.iter().enumerate() {
                        t.send(TrackEvent::performance("rt", f64::from(*v) / 10.0).at(T0 + i as i64)).await.unwrap().unwrap();
                    }
                }
                let w = t.send(QueryWindows::metric("rt")).await.unwrap().unwrap();
                t.send(Shutdown).await.unwrap();
                w
            })
        };
        let (parts_w, whole_w) = (query(&db_parts), query(&db_whole));
        prop_assert_eq!(parts_w.len(), 1);
        prop_assert_eq!(whole_w.len(), 1);
        let (a, b) = (&parts_w[0], &whole_w[0]);
        prop_assert_eq!((a.count, a.min, a.max), (b.count, b.min, b.max));
        prop_assert!((a.sum - b.sum).abs() <= 1e-9 * b.sum.abs().max(1.0));
        prop_assert!((a.mean - b.mean).abs() <= 1e-9 * b.mean.abs().max(1.0));
        prop_assert!((a.stddev - b.stddev).abs() <= 1e-7 * b.stddev.abs().max(1.0));
        prop_assert_eq!((a.p50, a.p90, a.p95, a.p99), (b.p50, b.p90, b.p95, b.p99));
    }
}
