//! Every way an application stops the pipeline writes everything it accepted, on a real SQLite
//! file: the README's usage at its shortest (`do_send`, then return from `#[actix::main]`, with
//! no `Shutdown` and no System stop), an explicit `SystemRunner` dropped on a thread of its own,
//! a bare `System::current().stop()` followed by `run()`, and `Shutdown`. One stop mechanism
//! (`Tracker::close`) serves them all.

mod common;

use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use common::{conservation, quiet_config, TempDb, T0};
use eventbatch::{Config, ManualClock, Shutdown, Store, TrackBatch, TrackEvent, Tracker};

/// How many events each test sends, half commands and half metric samples: a few, more than
/// one intake batch (1,024), and the 10,000. The teardown order of the application's
/// runtime can vary between runs, so each size is its own run.
const SIZES: [i64; 3] = [10, 1_500, 10_000];

/// `do_send`s `n` events without waiting for any: `n / 2` commands and `n / 2` performance
/// samples, one a millisecond of event time apart (all in the first minute's windows and the
/// next few).
fn send_without_waiting(t: &Addr<Tracker>, n: i64) {
    for i in 0..n / 2 {
        t.do_send(TrackEvent::command("c").at(T0 + i));
        t.do_send(TrackEvent::performance("rt", i as f64).at(T0 + i));
    }
}

/// The store holds every command as a row and every sample in a window.
fn assert_all_stored(db: &TempDb, n: i64, how: &str) {
    assert_eq!(
        db.count("events WHERE kind = 'command'"),
        n / 2,
        "{how}, {n} events: every command is a row"
    );
    assert_eq!(
        db.scalar("SELECT coalesce(sum(count), 0) AS n FROM metric_windows"),
        n / 2,
        "{how}, {n} events: every sample is in a window"
    );
}

/// Starts a pipeline on the SQLite file at `path` (the test's `TempDb`, which stays on the
/// test's thread), on a manual clock at `T0`.
fn start_at(path: &Path, config: Config) -> Addr<Tracker> {
    let _ = env_logger::builder().is_test(true).try_init();
    let clock = Arc::new(ManualClock::new(T0));
    eventbatch::start_with_clock(config, Store::sqlite(path), clock).expect("start")
}

/// Runs `body` on a fresh thread (an application's `main`) and waits for it.
fn on_a_fresh_thread(body: impl FnOnce() + Send + 'static) {
    std::thread::spawn(body).join().expect("the thread ran");
}

#[test]
fn returning_from_actix_main_after_do_send_stores_everything() {
    for n in SIZES {
        let db = TempDb::new();
        let path = db.path.clone();
        on_a_fresh_thread(move || {
            // what `#[actix::main]` expands to: the runner is a temporary, dropped at the end
            // of the statement, with the supervisor's mailbox still full
            actix::System::new().block_on(async move {
                let t = start_at(&path, quiet_config());
                send_without_waiting(&t, n);
            });
        });
        assert_all_stored(&db, n, "returned from main");
    }
}

#[test]
fn dropping_the_system_runner_after_do_send_stores_everything() {
    for n in SIZES {
        let db = TempDb::new();
        let path = db.path.clone();
        on_a_fresh_thread(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let t = start_at(&path, quiet_config());
                send_without_waiting(&t, n);
            });
            drop(system);
        });
        assert_all_stored(&db, n, "runner dropped");
    }
}

#[test]
fn a_bare_system_stop_after_do_send_stores_everything() {
    for n in SIZES {
        let db = TempDb::new();
        let path = db.path.clone();
        on_a_fresh_thread(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let t = start_at(&path, quiet_config());
                send_without_waiting(&t, n);
                actix::System::current().stop();
            });
            system.run().expect("the System ran");
        });
        assert_all_stored(&db, n, "System stopped");
    }
}

#[test]
fn shutdown_after_do_send_stores_everything_and_stops_every_actor() {
    for n in SIZES {
        let db = TempDb::new();
        let path = db.path.clone();
        on_a_fresh_thread(move || {
            actix::System::new().block_on(async move {
                let t = start_at(&path, quiet_config());
                send_without_waiting(&t, n);
                let stats = t.send(Shutdown).await.expect("Shutdown answered");
                conservation(&stats);
                assert_eq!(stats.events_received, n as u64);
                assert_eq!(stats.actors_running, 0, "every internal actor has stopped");
            });
        });
        assert_all_stored(&db, n, "Shutdown");
    }
}

#[test]
fn durable_mode_returning_from_main_stores_everything_and_empties_the_journal() {
    let db = TempDb::new();
    let journal = db.dir.path().join("journal.db");
    let (path, journal_path) = (db.path.clone(), journal.clone());
    on_a_fresh_thread(move || {
        actix::System::new().block_on(async move {
            let config = Config {
                durable: true,
                journal_path: Some(journal_path),
                ..quiet_config()
            };
            let t = start_at(&path, config);
            send_without_waiting(&t, 10_000);
        });
    });
    assert_all_stored(&db, 10_000, "durable, returned from main");
    let entries = TempDb::reading(journal).count("journal_entries");
    assert_eq!(entries, 0, "the last checkpoint emptied the journal");
}

#[test]
fn returning_from_actix_main_after_do_send_of_batches_stores_everything() {
    let db = TempDb::new();
    let path = db.path.clone();
    on_a_fresh_thread(move || {
        actix::System::new().block_on(async move {
            let t = start_at(&path, quiet_config());
            for b in 0..10 {
                let batch = (0..1_000)
                    .map(|i| TrackEvent::performance("rt", 1.0).at(T0 + b * 1_000 + i))
                    .collect();
                t.do_send(TrackBatch(batch));
                t.do_send(TrackEvent::command("c").at(T0 + b));
            }
        });
    });
    assert_eq!(db.count("events WHERE kind = 'command'"), 10);
    assert_eq!(
        db.scalar("SELECT coalesce(sum(count), 0) AS n FROM metric_windows"),
        10_000
    );
}
