//! The actor core, through the public API on a real SQLite file: a `Shutdown` racing with
//! producers loses nothing it acknowledged, stops every internal actor, and a bare System stop
//! or a SIGTERM (with `shutdown_on_signal`) writes everything accepted; queries write nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{conservation, quiet_config, start_manual, TempDb, T0};
use eventbatch::{
    start, Config, Flush, GetStats, QueryWindows, Shutdown, Store, TrackError, TrackEvent,
};

/// Rows in every table the pipeline writes.
fn row_counts(db: &TempDb) -> Vec<i64> {
    [
        "events",
        "metric_windows",
        "error_counts",
        "patterns",
        "metric_rollups",
        "rollup_pending",
        "writer_runs",
    ]
    .iter()
    .map(|t| db.count(t))
    .collect()
}

#[actix_rt::test]
async fn events_racing_a_shutdown_are_refused_or_written_never_acknowledged_and_lost() {
    let db = TempDb::new();
    let config = Config {
        max_queued_events: 1_000_000,
        ..quiet_config()
    };
    let (t, _) = start_manual(config, &db);
    for i in 0..100_000 {
        t.do_send(TrackEvent::command(format!("before{}", i % 7)).at(T0 + i));
    }
    // Requests are queued in the supervisor's mailbox as they are made: 10,000 before the
    // Shutdown, 10,000 after it, all before any is answered.
    let before: Vec<_> = (0..10_000)
        .map(|i| t.send(TrackEvent::command("racing").at(T0 + i)))
        .collect();
    let shutdown = t.send(Shutdown);
    let after: Vec<_> = (0..10_000)
        .map(|i| t.send(TrackEvent::command("racing").at(T0 + i)))
        .collect();
    let stats = shutdown.await.expect("shutdown answered");
    let (mut acked, mut refused) = (0i64, 0i64);
    for request in before.into_iter().chain(after) {
        match request.await {
            Ok(Ok(())) => acked += 1,
            Ok(Err(TrackError::ShutDown)) | Err(_) => refused += 1,
            Ok(Err(e)) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(acked + refused, 20_000);
    assert_eq!(acked, 10_000, "everything before the Shutdown is accepted");
    assert_eq!(db.count("events WHERE name = 'racing'"), acked);
    assert_eq!(db.count("events"), 100_000 + acked);
    conservation(&stats);
    assert_eq!(stats.events_queued, 0);
    assert_eq!(stats.actors_running, 0, "every internal actor has stopped");
    assert_eq!(
        stats.events_received - stats.events_rejected,
        (100_000 + acked) as u64
    );
}

#[actix_rt::test]
async fn a_shutdown_stops_every_internal_actor_and_later_events_are_refused() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    // the writer starts on its own thread: once it has answered a flush it runs
    let running = t.send(Flush).await.unwrap().unwrap().actors_running;
    assert_eq!(running, 3, "detector, queue, writer");
    t.send(TrackEvent::performance("rt", 1.0).at(T0))
        .await
        .unwrap()
        .unwrap();
    let stats = t.send(Shutdown).await.unwrap();
    assert_eq!(stats.actors_running, 0);
    assert_eq!(db.count("metric_windows WHERE is_final"), 1);
    // the supervisor itself has stopped: its mailbox is closed
    assert!(t.send(TrackEvent::command("late")).await.is_err());
}

#[actix_rt::test]
async fn a_query_writes_nothing_with_many_other_series_open() {
    let db = TempDb::new();
    let (t, _) = start_manual(quiet_config(), &db);
    let others: Vec<TrackEvent> = (0..50_000)
        .map(|i| TrackEvent::performance(format!("series{i}"), 1.0).at(T0))
        .collect();
    t.send(eventbatch::TrackBatch(others))
        .await
        .unwrap()
        .unwrap();
    for v in [10.0, 20.0, 30.0] {
        t.send(TrackEvent::performance("rt", v).context("api").at(T0 + 1))
            .await
            .unwrap()
            .unwrap();
    }
    // a snapshot of the window in the store, then more events in the same (open) window
    t.send(Flush).await.unwrap().unwrap();
    t.send(
        TrackEvent::performance("rt", 40.0)
            .context("api")
            .at(T0 + 2),
    )
    .await
    .unwrap()
    .unwrap();
    let rows = row_counts(&db);
    let written = t.send(GetStats).await.unwrap().rows_written;
    for _ in 0..3 {
        let w = t
            .send(QueryWindows::metric("rt").context("api"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].count, 4, "stored snapshot + open window, counted once");
        assert_eq!(w[0].sum, 100.0);
    }
    assert_eq!(row_counts(&db), rows, "queries leave every table as it was");
    assert_eq!(t.send(GetStats).await.unwrap().rows_written, written);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
}

const SIGTERM_DB: &str = "EVENTBATCH_TEST_SIGTERM_DB";
const SIGTERM_EVENTS: i64 = 500;

/// The child of `sigterm_with_shutdown_on_signal_loses_nothing`: an application that
/// acknowledges events, says READY, and waits for SIGTERM with `shutdown_on_signal`.
#[test]
#[ignore = "run by sigterm_with_shutdown_on_signal_loses_nothing"]
fn sigterm_child() {
    let Ok(path) = std::env::var(SIGTERM_DB) else {
        return;
    };
    actix::System::new().block_on(async move {
        let config = Config {
            batch_interval_ms: 3_600_000,
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        for i in 0..SIGTERM_EVENTS {
            t.send(TrackEvent::command("queued").at(T0 + i))
                .await
                .unwrap()
                .unwrap();
            t.send(TrackEvent::performance("rt", i as f64).at(T0 + i))
                .await
                .unwrap()
                .unwrap();
        }
        let stopped = eventbatch::shutdown_on_signal(t);
        println!("READY");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let stats = stopped.await.expect("stats");
        println!("STOPPED {}", stats.records_written);
    });
}

#[cfg(unix)]
#[test]
fn sigterm_with_shutdown_on_signal_loses_nothing() {
    let db = TempDb::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigterm_child", "--ignored", "--nocapture"])
        .env(SIGTERM_DB, &db.path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("child output").expect("read");
        if line.trim() == "READY" {
            break;
        }
    }
    // every event is acknowledged and none written yet (the batch interval is an hour)
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("wait").success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("STOPPED")),
        "the child shut down on the signal: {rest:?}"
    );
    assert_eq!(db.count("events WHERE name = 'queued'"), SIGTERM_EVENTS);
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows WHERE series = 'rt'"),
        SIGTERM_EVENTS
    );
}

#[test]
fn a_bare_system_stop_writes_what_every_stage_held() {
    let db = TempDb::new();
    common::fill_every_stage_and_stop(quiet_config(), &db);
    common::assert_every_stage_was_written(&db);
}

#[test]
fn returning_from_main_without_stopping_writes_everything() {
    let db = TempDb::new();
    actix::System::new().block_on(async {
        let (t, _) = start_manual(quiet_config(), &db);
        for i in 0..1_000 {
            t.send(TrackEvent::command("c").at(T0 + i))
                .await
                .unwrap()
                .unwrap();
        }
        // no Shutdown, no System stop: the runner is dropped with the actors in it
    });
    assert_eq!(db.count("events"), 1_000);
}
