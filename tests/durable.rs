//! Durable mode (`Config::durable`) on a real SQLite file and the real actor system: a child
//! process killed with SIGKILL loses nothing it acknowledged more than `fsync_interval_ms`
//! before, a restart replays the journal exactly once, and a clean stop leaves it empty; also
//! on PostgreSQL.

mod common;
use common::pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{conservation, quiet_config, start_manual, wait_for, TempDb, T0};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use eventbatch::{
    start, Config, ConfigPatch, Configure, Error, Flush, GetStats, PipelineError, Shutdown, Stats,
    Store, Tick, TrackBatch, TrackError, TrackEvent,
};

const FSYNC_MS: u64 = 100;
const WINDOW_MS: i64 = 60_000;

/// Events acknowledged before the kill: `N` rounds of a command `a-<i>`, a sample of `rt` and,
/// every 7th round, an error, over 150 s of event time (two windows close, one stays open).
/// The first `CHECKPOINTED` rounds are followed by a `Flush`; the rest are only journaled.
const N: usize = 3_000;
const CHECKPOINTED: usize = 1_500;

fn round(i: usize) -> Vec<TrackEvent> {
    let ts = T0 + i as i64 * 50;
    let mut events = vec![
        TrackEvent::command(format!("a-{i}")).user("u").at(ts),
        TrackEvent::performance("rt", (i % 97 + 1) as f64).at(ts),
    ];
    if i.is_multiple_of(7) {
        events.push(TrackEvent::error("timeout", "api").message("m").at(ts));
    }
    events
}

/// Per window start: (samples, sum of values) of `rt`, and errors counted.
fn expected() -> BTreeMap<i64, (i64, i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for i in 0..N {
        let ts = T0 + i as i64 * 50;
        let w = out.entry(ts.div_euclid(WINDOW_MS) * WINDOW_MS).or_default();
        w.0 += 1;
        w.1 += (i % 97 + 1) as i64;
        w.2 += i64::from(i.is_multiple_of(7));
    }
    out
}

fn durable_config() -> Config {
    Config {
        durable: true,
        fsync_interval_ms: FSYNC_MS,
        ..quiet_config()
    }
}

fn journal_of(db: &TempDb) -> PathBuf {
    let mut p = db.path.as_os_str().to_owned();
    p.push(".journal");
    p.into()
}

/// Entries left in a journal file (read once its pipeline has stopped).
fn journal_entries(path: &Path) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM journal_entries")
        .get_result::<N>(&mut c)
        .unwrap()
        .n
}

/// What the store holds: per `rt` window (samples, sum, errors), over every instance's rows.
fn stored_windows(db: &TempDb) -> BTreeMap<i64, (i64, i64, i64)> {
    let mut out = BTreeMap::new();
    for (start, _) in expected() {
        let count = db.scalar(&format!(
            "SELECT coalesce(sum(count), 0) AS n FROM metric_windows WHERE series = 'rt' AND window_start_ms = {start}"
        ));
        let sum = db.scalar(&format!(
            "SELECT CAST(coalesce(sum(sum), 0) AS INTEGER) AS n FROM metric_windows WHERE series = 'rt' AND window_start_ms = {start}"
        ));
        let errors = db.scalar(&format!(
            "SELECT coalesce(sum(count), 0) AS n FROM error_counts WHERE window_start_ms = {start}"
        ));
        out.insert(start, (count, sum, errors));
    }
    out
}

/// Starts a durable pipeline on `db` in a System of its own, shuts it down and drops it (so
/// its journal is closed); returns the stats from a `Flush` right after the start (it answers
/// once the replay is through, so the whole replay is counted then) and from `Shutdown`.
fn run_durable(db: &TempDb, config: Config) -> (Stats, Stats) {
    let sys = actix::System::new();
    let stats = sys.block_on(async {
        let t = start(config, db.store()).expect("start");
        let first = t.send(Flush).await.unwrap().expect("flush after the start");
        let last = t.send(Shutdown).await.unwrap();
        (first, last)
    });
    drop(sys);
    stats
}

const CHILD_DB: &str = "EVENTBATCH_TEST_DURABLE_DB";

/// Batches of 500 commands and 500 samples that open the child's tail (150,000 commands: six
/// checkpoints' worth).
const TAIL_BATCHES: i64 = 300;

/// The child of `a_kill_9_loses_nothing_acknowledged_before_the_fsync_interval`: acknowledges
/// the rounds (a `Flush` after the first `CHECKPOINTED`), sleeps three fsync intervals, says
/// DURABLE, then acknowledges a tail of commands and samples in batches until it is killed.
#[test]
#[ignore = "run by a_kill_9_loses_nothing_acknowledged_before_the_fsync_interval"]
fn durable_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    actix::System::new().block_on(async move {
        let config = Config {
            // room for the tail's burst: the overflow policy drops nothing here
            max_queued_events: 1_000_000,
            ..durable_config()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        for i in 0..CHECKPOINTED {
            for e in round(i) {
                t.send(e).await.unwrap().unwrap();
            }
        }
        t.send(Flush).await.unwrap().unwrap();
        for chunk in (CHECKPOINTED..N).collect::<Vec<_>>().chunks(100) {
            let events: Vec<TrackEvent> = chunk.iter().flat_map(|&i| round(i)).collect();
            let n = events.len();
            assert_eq!(
                t.send(TrackBatch(events)).await.unwrap().unwrap().accepted,
                n
            );
        }
        actix::clock::sleep(Duration::from_millis(3 * FSYNC_MS)).await;
        println!("DURABLE");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        // the tail: first batches of 500 commands and 500 samples, interleaved, back to back,
        // so that checkpoints (every 25,000 commands) fall while later batches are on their
        // way; then one event at a time until the kill
        let pair = |i: i64| {
            let ts = T0 + 200_000 + i;
            [
                TrackEvent::command(format!("tail-{i}")).at(ts),
                TrackEvent::performance("tail", 1.0).at(ts),
            ]
        };
        for batch in 0..TAIL_BATCHES {
            let events: Vec<TrackEvent> = (batch * 500..(batch + 1) * 500).flat_map(pair).collect();
            let ack = t.send(TrackBatch(events)).await.unwrap().unwrap();
            assert_eq!(ack.dropped, 0, "the tail must not meet the overflow policy");
        }
        for i in TAIL_BATCHES * 500.. {
            for e in pair(i) {
                t.send(e).await.unwrap().unwrap();
            }
        }
    });
}

#[cfg(unix)]
#[test]
fn a_kill_9_loses_nothing_acknowledged_before_the_fsync_interval() {
    let db = TempDb::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durable_child", "--ignored", "--nocapture"])
        .env(CHILD_DB, &db.path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("child output").expect("read");
        if line.trim() == "DURABLE" {
            break;
        }
    }
    // the tail is being acknowledged while the child dies
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    assert!(!child.wait().expect("wait").success(), "killed, not ended");

    // Before any restart: the store holds what the Flush checkpointed, or all the rounds if a
    // checkpoint of the tail came after them.
    let rounds = db.count("events WHERE name LIKE 'a-%'");
    assert!(
        rounds == CHECKPOINTED as i64 || rounds == N as i64,
        "{rounds} rounds stored"
    );
    assert!(journal_entries(&journal_of(&db)) > 0);

    // The first restart replays the journal after the checkpoint, through a queue far smaller
    // than the replay: held back while the queue has no room, nothing meets the overflow
    // policy (admission once let in what the queue, behind on the writer's `Committed`
    // messages, dropped: acknowledged events lost at replay).
    let small_queue = Config {
        max_queued_events: 20_000,
        ..durable_config()
    };
    let (started, stopped) = run_durable(&db, small_queue);
    assert_eq!(stopped.events_dropped, 0, "{stopped:?}");
    let journaled_rounds: usize = (CHECKPOINTED..N).map(|i| round(i).len()).sum();
    assert!(
        started.events_replayed >= journaled_rounds as u64,
        "{started:?}"
    );
    assert_eq!(started.events_received, started.events_replayed);
    assert_eq!(stopped.events_received, started.events_replayed);
    conservation(&stopped);
    assert_eq!(stopped.events_queued, 0);

    // Every acknowledged round once: each command, each sample, each error.
    assert_eq!(db.count("events WHERE name LIKE 'a-%'"), N as i64);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT name) AS n FROM events WHERE name LIKE 'a-%'"),
        N as i64
    );
    assert_eq!(stored_windows(&db), expected());
    // The tail: what the store holds is a prefix of what was acknowledged, each event once.
    let tail: Vec<i64> = {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let names: Vec<Name> =
            diesel::sql_query("SELECT name FROM events WHERE name LIKE 'tail-%'")
                .load(&mut db.conn())
                .unwrap();
        let mut ids: Vec<i64> = names.iter().map(|n| n.name[5..].parse().unwrap()).collect();
        ids.sort_unstable();
        ids
    };
    let m = tail.len() as i64;
    eprintln!(
        "replayed {} events; {m} tail commands stored",
        started.events_replayed
    );
    let gap = tail.iter().zip(0..).find(|(id, k)| **id != *k);
    assert_eq!(
        gap, None,
        "{m} tail commands stored: not a prefix, or one twice"
    );
    let samples =
        db.scalar("SELECT coalesce(sum(count), 0) AS n FROM metric_windows WHERE series = 'tail'");
    assert!(
        samples == m || samples == m - 1,
        "{m} tail commands and {samples} tail samples: not one cut of the sequence"
    );
    assert_eq!(
        journal_entries(&journal_of(&db)),
        0,
        "a clean stop empties it"
    );

    // A second restart replays nothing and changes nothing.
    let events = db.count("events");
    let (started, stopped) = run_durable(&db, durable_config());
    assert_eq!((started.events_replayed, stopped.events_received), (0, 0));
    assert_eq!(db.count("events"), events);
    assert_eq!(stored_windows(&db), expected());
}

#[actix_rt::test]
async fn the_store_changes_only_at_checkpoints() {
    let db = TempDb::new();
    let (t, _) = start_manual(durable_config(), &db);
    for i in 0..100 {
        t.send(TrackEvent::command("c").at(T0 + i))
            .await
            .unwrap()
            .unwrap();
        t.send(TrackEvent::performance("rt", 1.0).at(T0 + i))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(t.send(GetStats).await.unwrap().checkpoints, 0);
    assert_eq!(db.count("events"), 0, "nothing before a checkpoint");
    t.send(Tick).await.unwrap();
    let s = wait_for(&t, |s| s.checkpoints >= 1).await;
    assert_eq!((s.records_written, s.snapshot_rows_written), (100, 1));
    assert_eq!(db.count("events"), 100);
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM metric_windows"), 100);
    assert_eq!(db.count("durable_checkpoints WHERE position = 200"), 1);
    // a query checkpoints first, so it sees what was just accepted
    t.send(TrackEvent::performance("rt", 3.0).at(T0))
        .await
        .unwrap()
        .unwrap();
    let w = t
        .send(eventbatch::QueryWindows::metric("rt"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w[0].count, w[0].sum), (101, 103.0));
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(db.scalar("SELECT sum(count) AS n FROM metric_windows"), 101);
    assert_eq!(db.count("durable_checkpoints WHERE position = 201"), 1);
}

/// With a large `max_queued_events`, a burst still checkpoints every 25,000 record-like
/// events, so the store is written while the events arrive, not all at the end; and each
/// checkpoint holds exactly the events up to its position, even with the next batches
/// already on their way (records and samples of later events must not ride along).
#[actix_rt::test]
async fn a_burst_checkpoints_every_25_000_records_whatever_the_queue_bound() {
    let db = TempDb::new();
    let (t, _) = start_manual(
        Config {
            max_queued_events: 1_000_000,
            ..durable_config()
        },
        &db,
    );
    // 120 batches back to back, each 500 commands and 500 samples, interleaved
    for batch in 0..120 {
        let events = (0..1_000)
            .map(|i| {
                let at = T0 + batch * 1_000 + i;
                if i % 2 == 0 {
                    TrackEvent::command("c").at(at)
                } else {
                    TrackEvent::performance("rt", 1.0).at(at)
                }
            })
            .collect();
        t.send(TrackBatch(events)).await.unwrap().unwrap();
    }
    // no Tick and no Flush: only the count triggers checkpoints, after the 25,000th and the
    // 50,000th command (positions 50,000 and 100,000)
    let s = wait_for(&t, |s| s.checkpoints >= 2).await;
    assert_eq!(s.checkpoints, 2, "{s:?}");
    assert_eq!(db.count("durable_checkpoints WHERE position = 100000"), 1);
    assert_eq!(db.count("events"), 50_000, "the commands up to 100,000");
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        50_000,
        "the samples up to 100,000"
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(db.count("events"), 60_000);
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        60_000
    );
}

#[test]
fn a_bare_system_stop_checkpoints_everything_and_empties_the_journal() {
    let db = TempDb::new();
    common::fill_every_stage_and_stop(durable_config(), &db);
    common::assert_every_stage_was_written(&db);
    assert_eq!(
        db.scalar("SELECT max(position) AS n FROM durable_checkpoints"),
        3 * common::BARE_STOP_EVENTS
    );
    assert_eq!(journal_entries(&journal_of(&db)), 0);
    let (started, _) = run_durable(&db, durable_config());
    assert_eq!(started.events_replayed, 0);
}

#[test]
fn durable_mode_on_postgresql_needs_a_journal_path() {
    let sys = actix::System::new();
    let result = sys.block_on(async {
        start(
            durable_config(),
            Store::postgres("postgres://nobody@127.0.0.1:1/none"),
        )
        .map(drop)
    });
    match result {
        Err(Error::Config(e)) => assert_eq!(e.field, "journal_path"),
        other => panic!("expected a ConfigError naming journal_path: {other:?}"),
    }
}

#[actix_rt::test]
async fn configure_refuses_to_switch_durability_and_applies_the_fsync_interval() {
    let db = TempDb::new();
    let (t, _) = start_manual(durable_config(), &db);
    let patch = |p: ConfigPatch| t.send(Configure(p));
    let e = patch(ConfigPatch {
        durable: Some(false),
        ..ConfigPatch::default()
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.field, "durable");
    assert!(e.reason.contains("restart"), "{e}");
    let e = patch(ConfigPatch {
        journal_path: Some("elsewhere".into()),
        ..ConfigPatch::default()
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.field, "journal_path");
    let c = patch(ConfigPatch {
        fsync_interval_ms: Some(20),
        ..ConfigPatch::default()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(c.fsync_interval_ms, 20);
    let e = patch(ConfigPatch {
        fsync_interval_ms: Some(0),
        ..ConfigPatch::default()
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.field, "fsync_interval_ms");
    t.send(Shutdown).await.unwrap();
}

#[test]
fn durable_mode_on_postgresql_checkpoints_and_replays_nothing_after_a_clean_stop() {
    let pg = pg::TestDb::create("durable");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        journal_path: Some(dir.path().join("instance-1.journal")),
        instance_id: Some("i1".into()),
        ..durable_config()
    };
    let sys = actix::System::new();
    let stats = sys.block_on(async {
        let t = start(config.clone(), Store::postgres(pg.url())).expect("start");
        let events: Vec<TrackEvent> = (0..1_000)
            .flat_map(|i| {
                [
                    TrackEvent::command("c").at(T0 + i),
                    TrackEvent::performance("rt", 2.0).at(T0 + i),
                ]
            })
            .collect();
        t.send(TrackBatch(events)).await.unwrap().unwrap();
        let flushed = t.send(Flush).await.unwrap().unwrap();
        assert!(flushed.checkpoints >= 1, "{flushed:?}");
        t.send(Shutdown).await.unwrap()
    });
    drop(sys);
    conservation(&stats);
    assert_eq!(pg.count("events"), 1_000);
    assert_eq!(
        pg.scalar("SELECT sum(count)::bigint AS n FROM metric_windows"),
        1_000
    );
    assert_eq!(
        pg.scalar("SELECT max(position) AS n FROM durable_checkpoints"),
        2_000
    );
    let sys = actix::System::new();
    let replayed = sys.block_on(async {
        let t = start(config, Store::postgres(pg.url())).expect("restart");
        let s = t.send(GetStats).await.unwrap();
        t.send(Shutdown).await.unwrap();
        s.events_replayed
    });
    drop(sys);
    assert_eq!(replayed, 0);
    assert_eq!(pg.count("events"), 1_000);
}

/// Commands `help` numbered `from..from + n` (each its own `duration_ms`, so each row can be
/// told apart).
fn commands(from: i64, n: i64) -> Vec<TrackEvent> {
    (from..from + n)
        .map(|i| TrackEvent::command("help").duration_ms(i as f64).at(T0 + i))
        .collect()
}

/// Commands journaled by [`a_run_stopped_on_a_locked_store`] (after the first ten, stored).
const LEFT_IN_THE_JOURNAL: i64 = 5_000;

/// A queue of 1,000: the replay of [`LEFT_IN_THE_JOURNAL`] commands has to wait for room.
fn small_queue_config(db: &TempDb) -> Config {
    Config {
        journal_path: Some(db.dir.path().join("events.journal")),
        store_retry_budget_ms: 500,
        max_queued_events: 1_000,
        ..durable_config()
    }
}

/// A first run that stores ten commands, then has its store locked by another connection's
/// write transaction, journals [`LEFT_IN_THE_JOURNAL`] more and stops (the store still locked:
/// they stay in the journal). Returns the connection holding the lock.
fn a_run_stopped_on_a_locked_store(db: &TempDb) -> SqliteConnection {
    let _ = env_logger::builder().is_test(true).try_init();
    let sys = actix::System::new();
    let lock = sys.block_on(async {
        let t = start(small_queue_config(db), db.store()).expect("start");
        common::send_all(&t, commands(0, 10), 10).await;
        t.send(Flush).await.unwrap().expect("the first flush");
        let mut lock = db.conn();
        lock.batch_execute("BEGIN IMMEDIATE").unwrap();
        for i in 0..LEFT_IN_THE_JOURNAL / 100 {
            let ack = t
                .send(TrackBatch(commands(10 + i * 100, 100)))
                .await
                .unwrap()
                .expect("journaled");
            assert_eq!(ack.accepted, 100);
        }
        t.send(Shutdown).await.unwrap();
        lock
    });
    drop(sys);
    assert_eq!(db.count("events"), 10);
    assert!(journal_entries(&db.dir.path().join("events.journal")) > 0);
    lock
}

/// Every command of the two runs, each stored once.
fn assert_every_command_stored_once(db: &TempDb) {
    let n = 10 + LEFT_IN_THE_JOURNAL;
    assert_eq!(db.count("events WHERE name = 'help'"), n);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT duration_ms) AS n FROM events WHERE name = 'help'"),
        n
    );
}

/// How long a request may take to be answered at all (the retry budget is 500 ms).
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

/// A restart whose journal holds more than the queue has room for, while the store is locked:
/// the replay waits for room that only commits bring, and the front door keeps answering
/// meanwhile (the replay once paused the mailbox until there was room: nothing was answered
/// while the store failed). `GetStats` answers with the replay part-way, `Flush` and
/// `Shutdown` with the store's failure; events sent meanwhile wait behind the replay, never
/// ahead of it, and the stop refuses them. What was not replayed stays in the journal: the
/// next start, the store unlocked, writes every journaled event exactly once.
#[test]
fn a_replay_waiting_for_a_locked_store_leaves_the_front_door_answering_and_loses_nothing() {
    let db = TempDb::new();
    let lock = a_run_stopped_on_a_locked_store(&db);

    let sys = actix::System::new();
    sys.block_on(async {
        let t = start(small_queue_config(&db), db.store()).expect("restart");
        // sent now, answered once they have gone in behind the replay
        let event = t.send(TrackEvent::command("sent-during-the-replay").at(T0));
        let batch = t.send(TrackBatch(vec![TrackEvent::command(
            "sent-during-the-replay",
        )
        .at(T0)]));
        let answered = |what| format!("{what} not answered within {ANSWERED_WITHIN:?}");
        let stats = actix_rt::time::timeout(ANSWERED_WITHIN, t.send(GetStats))
            .await
            .unwrap_or_else(|_| panic!("{}", answered("GetStats")))
            .unwrap();
        assert!(
            stats.events_replayed > 0 && stats.events_replayed < LEFT_IN_THE_JOURNAL as u64,
            "the replay is held back by the queue's bound: {stats:?}"
        );
        assert_eq!(
            stats.events_received, stats.events_replayed,
            "the new events wait behind the replay: {stats:?}"
        );
        let flushed = actix_rt::time::timeout(ANSWERED_WITHIN, t.send(Flush))
            .await
            .unwrap_or_else(|_| panic!("{}", answered("Flush")))
            .unwrap();
        assert!(
            matches!(flushed, Err(PipelineError::Store(_))),
            "Flush on a locked store: {flushed:?}"
        );
        let stopped = actix_rt::time::timeout(ANSWERED_WITHIN, t.send(Shutdown))
            .await
            .unwrap_or_else(|_| panic!("{}", answered("Shutdown")))
            .unwrap();
        assert!(
            stopped.events_replayed < LEFT_IN_THE_JOURNAL as u64,
            "{stopped:?}"
        );
        // they could not go before the replay, which the stop ended
        let event = actix_rt::time::timeout(ANSWERED_WITHIN, event).await;
        assert_eq!(event.expect("answered").unwrap(), Err(TrackError::ShutDown));
        let batch = actix_rt::time::timeout(ANSWERED_WITHIN, batch).await;
        assert_eq!(batch.expect("answered").unwrap(), Err(TrackError::ShutDown));
        assert_eq!(stopped.events_rejected, 2, "{stopped:?}");
    });
    drop(sys);
    drop(lock);
    assert_eq!(db.count("events"), 10, "nothing written while locked");

    let (started, stopped) = run_durable(&db, small_queue_config(&db));
    assert_eq!(started.events_replayed, LEFT_IN_THE_JOURNAL as u64);
    assert_eq!(stopped.events_dropped, 0, "{stopped:?}");
    conservation(&stopped);
    assert_every_command_stored_once(&db);
    assert_eq!(db.count("events WHERE name = 'sent-during-the-replay'"), 0);
    assert_eq!(journal_entries(&db.dir.path().join("events.journal")), 0);
}

/// The same restart, the store unlocked while the replay waits: the replay goes on and
/// completes, a `Flush` sent while the store was locked answers its failure, the next answers
/// once the whole replay is stored, and the events that waited behind the replay are accepted
/// after it; every replayed event is stored once. (The waiting events go in behind a queue the
/// replay has just filled to its bound, so the overflow policy may drop them, counted, as any
/// new event meeting a full queue; it never drops a replayed one for them.)
#[test]
fn a_replay_waiting_for_a_locked_store_completes_once_the_store_is_unlocked() {
    let db = TempDb::new();
    let lock = a_run_stopped_on_a_locked_store(&db);

    let sys = actix::System::new();
    let stopped = sys.block_on(async {
        let t = start(small_queue_config(&db), db.store()).expect("restart");
        let event = t.send(TrackEvent::command("sent-during-the-replay").at(T0));
        let batch = t.send(TrackBatch(vec![TrackEvent::command(
            "sent-during-the-replay",
        )
        .at(T0)]));
        let flushed = actix_rt::time::timeout(ANSWERED_WITHIN, t.send(Flush))
            .await
            .expect("Flush answered while the store is locked")
            .unwrap();
        assert!(flushed.is_err(), "{flushed:?}");
        drop(lock);
        let flushed = t
            .send(Flush)
            .await
            .unwrap()
            .expect("Flush once the store is unlocked");
        assert_eq!(flushed.events_replayed, LEFT_IN_THE_JOURNAL as u64);
        assert_eq!(
            flushed.records_written,
            LEFT_IN_THE_JOURNAL as u64 + 2 - flushed.events_dropped,
            "the whole replay written by the time Flush answers: {flushed:?}"
        );
        assert_eq!(event.await.unwrap(), Ok(()));
        let ack = batch.await.unwrap().expect("the batch, after the replay");
        assert_eq!(ack.accepted, 1);
        let stopped = t.send(Shutdown).await.unwrap();
        assert_eq!(
            stopped.events_received,
            LEFT_IN_THE_JOURNAL as u64 + 2,
            "{stopped:?}"
        );
        conservation(&stopped);
        stopped
    });
    drop(sys);
    assert_every_command_stored_once(&db);
    assert_eq!(
        db.count("events WHERE name = 'sent-during-the-replay'") + stopped.events_dropped as i64,
        2,
        "{stopped:?}"
    );
    assert_eq!(journal_entries(&db.dir.path().join("events.journal")), 0);
    let (started, _) = run_durable(&db, small_queue_config(&db));
    assert_eq!(started.events_replayed, 0);
}

/// A restart on a healthy store whose journal holds more than the queue has room for, stopped
/// at once: the stop lets the replay through first, and every journaled event is written.
#[test]
fn a_stop_right_after_a_restart_lets_the_replay_through_on_a_healthy_store() {
    let db = TempDb::new();
    drop(a_run_stopped_on_a_locked_store(&db));
    let sys = actix::System::new();
    let stopped = sys.block_on(async {
        let t = start(small_queue_config(&db), db.store()).expect("restart");
        t.send(Shutdown).await.unwrap()
    });
    drop(sys);
    assert_eq!(
        stopped.events_replayed, LEFT_IN_THE_JOURNAL as u64,
        "{stopped:?}"
    );
    assert_eq!(stopped.events_dropped, 0, "{stopped:?}");
    conservation(&stopped);
    assert_every_command_stored_once(&db);
    assert_eq!(journal_entries(&db.dir.path().join("events.journal")), 0);
}

/// A restart whose replay waits for room, and `Configure` lowering `max_queued_events`
/// meanwhile: the replay hands on batches under the new bound (it once kept the size it
/// started with, larger than the new bound, and never found room: every `Flush` waited for
/// it forever).
#[test]
fn a_replay_goes_on_when_configure_lowers_the_queue_bound() {
    let db = TempDb::new();
    drop(a_run_stopped_on_a_locked_store(&db));
    let sys = actix::System::new();
    let stopped = sys.block_on(async {
        let t = start(small_queue_config(&db), db.store()).expect("restart");
        let patch = ConfigPatch {
            max_queued_events: Some(200),
            ..ConfigPatch::default()
        };
        t.send(Configure(patch)).await.unwrap().unwrap();
        let flushed = actix_rt::time::timeout(ANSWERED_WITHIN, t.send(Flush))
            .await
            .expect("Flush answered")
            .unwrap()
            .expect("the replay through");
        assert_eq!(flushed.events_replayed, LEFT_IN_THE_JOURNAL as u64);
        t.send(Shutdown).await.unwrap()
    });
    drop(sys);
    assert_eq!(stopped.events_dropped, 0, "{stopped:?}");
    conservation(&stopped);
    assert_every_command_stored_once(&db);
}
