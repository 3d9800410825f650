//! Issue 16, items 2, 3, 4 and 13: a store that fails (a full disk, a locked file, a
//! PostgreSQL that died, a trigger that refuses a row) never hangs `Flush`, `Shutdown` or a
//! query, never makes what the writer holds grow with the attempts, and never makes a refused
//! row look like a busy store. Real parts: a SQLite file on a real full tmpfs, a SQLite file
//! locked by another connection, a real PostgreSQL behind a proxy that is cut or a network
//! partition, real triggers.

mod common;
use common::netns;
use common::pg;
use common::tmpfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{conservation, conservation_pending, quiet_config, start_manual, TempDb, T0};
use diesel::connection::SimpleConnection;
use eventbatch::*;
use pg::{Proxy, TestDb};
use tmpfs::Tmpfs;

fn start_at_t0(config: Config, store: Store) -> actix::Addr<Tracker> {
    let _ = env_logger::builder().is_test(true).try_init();
    start_with_clock(config, store, Arc::new(ManualClock::new(T0))).expect("start")
}

/// `n` commands and `n` latency samples over `series` series, from event time `T0 + from` on.
fn commands_and_samples(from: i64, n: i64, series: i64) -> Vec<TrackEvent> {
    (from..from + n)
        .flat_map(|i| {
            [
                TrackEvent::command("help").duration_ms(i as f64).at(T0 + i),
                TrackEvent::performance(format!("rt{}", i % series), i as f64).at(T0 + i),
            ]
        })
        .collect()
}

/// `ask` answers within `bound`; returns the answer and how long it took.
async fn within<T>(
    what: &str,
    bound: Duration,
    ask: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let started = Instant::now();
    let answer = actix_rt::time::timeout(bound, ask)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {bound:?}"));
    let took = started.elapsed();
    eprintln!("{what}: answered after {took:?} (bound {bound:?})");
    (answer, took)
}

/// Item 2: SQLite on a 2 MiB tmpfs that fills after start, the batch timer ticking every 50 ms.
/// `Flush` after `Flush`, a query and `Shutdown` (through `shutdown_on_signal` and a real
/// SIGTERM) each answer within the retry budget plus a second; `Shutdown` counts what it could
/// not write as dropped, so the conservation law holds.
#[actix_rt::test]
async fn on_a_full_disk_flush_queries_and_shutdown_answer_within_the_budget() {
    let fs = Tmpfs::new(2 << 20);
    let path = fs.path().join("analytics.db");
    let budget_ms = 2_000;
    let bound = Duration::from_millis(budget_ms + 1_000);
    let t = start_at_t0(
        Config {
            store_retry_budget_ms: budget_ms,
            batch_interval_ms: 200,
            ..Config::default()
        },
        Store::sqlite(&path),
    );
    common::send_all(&t, commands_and_samples(0, 50, 5), 100).await;
    let s = t.send(Flush).await.unwrap().expect("the disk has room");
    assert_eq!(s.records_written, 50);

    fs.fill();
    common::send_all(&t, commands_and_samples(50, 3_000, 500), 500).await;
    for i in 0..3 {
        let (answer, _) = within(&format!("Flush {i} on a full disk"), bound, t.send(Flush)).await;
        answer.unwrap().expect_err("the disk is full");
    }
    let (answer, _) = within(
        "QueryWindows on a full disk",
        bound,
        t.send(QueryWindows::metric("rt1")),
    )
    .await;
    answer.unwrap().expect_err("what it holds is not written");
    let s = t.send(GetStats).await.unwrap();
    assert!(s.db_errors > 0, "the store really failed: {s:?}");
    conservation_pending(&s);

    let stop = eventbatch::shutdown_on_signal(t.clone());
    // SAFETY: kill(2) on this process; `shutdown_on_signal` has installed its handler.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
    let (s, _) = within("shutdown_on_signal on a full disk", bound, stop).await;
    let s = s.expect("Shutdown answered with the stats");
    assert!(s.events_dropped > 0, "what could not be written: {s:?}");
    assert_eq!(s.events_queued, 0, "{s:?}");
    conservation(&s);
}

/// Item 3: many open windows, the SQLite file locked by another connection, `Flush` after
/// `Flush` answering `Err`: what the writer holds (`Stats::rows_held`) is the same after ten
/// failed flushes as after one (a newer snapshot of a window replaces the held one); each
/// answers within the budget plus a second (the SQLite busy timeout is the default 5 s); once
/// the lock goes, everything is written once.
#[actix_rt::test]
async fn held_rows_do_not_grow_with_failed_flushes() {
    let db = TempDb::new();
    let budget_ms = 300;
    let bound = Duration::from_millis(budget_ms + 1_000);
    let (t, _) = start_manual(
        Config {
            store_retry_budget_ms: budget_ms,
            ..quiet_config()
        },
        &db,
    );
    let series = 2_000;
    common::send_all(&t, commands_and_samples(0, 4_000, series), 1_000).await;
    t.send(Flush).await.unwrap().expect("not locked yet");

    let mut lock = db.conn();
    lock.batch_execute("BEGIN EXCLUSIVE").unwrap();
    common::send_all(&t, commands_and_samples(4_000, 500, series), 500).await;
    let mut held = Vec::new();
    for i in 0..10 {
        let (answer, _) = within(&format!("Flush {i}, file locked"), bound, t.send(Flush)).await;
        answer.unwrap().expect_err("the file is locked");
        // the first answer may come from the supervisor's watch on a silent store (SQLite
        // waiting for its lock) while the writer is still taking the flush's snapshots in
        let s = common::wait_for(&t, |s| s.rows_held >= 500 + series as u64).await;
        conservation_pending(&s);
        held.push(s.rows_held);
    }
    eprintln!("rows held after each failed Flush: {held:?}");
    assert!(held.iter().all(|&h| h == held[0]), "{held:?}");

    lock.batch_execute("COMMIT").unwrap();
    drop(lock);
    let s = t.send(Flush).await.unwrap().expect("the lock is gone");
    conservation(&s);
    assert_eq!((s.records_written, s.rows_held), (4_500, 0), "{s:?}");
    assert_eq!(db.count("events"), 4_500);
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        4_500
    );
    t.send(Shutdown).await.unwrap();
}

/// Item 4: a query against a PostgreSQL that went away mid-run (`stop`) answers `Err` within
/// a few seconds with the default 30 s retry budget; once it is back (`heal`), everything is
/// written once.
async fn queries_answer_within_seconds(db: &TestDb, url: String, stop: impl Fn(), heal: impl Fn()) {
    let bound = Duration::from_secs(5);
    let t = start_at_t0(
        Config {
            instance_id: Some("gone".into()),
            ..quiet_config()
        },
        Store::postgres(url),
    );
    common::send_all(&t, commands_and_samples(0, 100, 2), 200).await;
    t.send(Flush).await.unwrap().expect("the server is there");

    stop();
    common::send_all(&t, commands_and_samples(100, 100, 2), 200).await;
    t.send(Tick).await.unwrap();
    for i in 0..3 {
        let (answer, _) = within(
            &format!("QueryWindows {i}, server gone"),
            bound,
            t.send(QueryWindows::metric("rt0")),
        )
        .await;
        let e = answer.unwrap().expect_err("the store is gone");
        assert!(e.to_string().contains("unavailable"), "{e}");
        let (answer, _) = within(
            &format!("QueryPatterns {i}, server gone"),
            bound,
            t.send(QueryPatterns::default()),
        )
        .await;
        answer.unwrap().expect_err("the store is gone");
    }
    let s = t.send(GetStats).await.unwrap();
    assert_eq!(s.records_written, 100, "{s:?}");
    conservation_pending(&s);

    heal();
    let healed = Instant::now();
    let s = loop {
        match t.send(Flush).await.unwrap() {
            Ok(s) => break s,
            Err(e) if healed.elapsed() < Duration::from_secs(60) => {
                eprintln!("a flush after the server came back: {e}");
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the writer did not recover: {e}"),
        }
    };
    conservation(&s);
    assert_eq!((s.records_written, s.rows_held), (200, 0), "{s:?}");
    assert_eq!(db.count("events"), 200);
    let windows = t.send(QueryWindows::metric("rt0")).await.unwrap().unwrap();
    assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), 100);
    let s = t.send(Shutdown).await.unwrap();
    assert_eq!((s.records_written, s.events_dropped), (200, 0), "{s:?}");
}

/// The server's connections reset and new ones refused, as when PostgreSQL is stopped.
#[actix_rt::test]
async fn a_query_answers_within_seconds_when_postgres_dies_mid_run() {
    let db = TestDb::create("died");
    let proxy = Proxy::start();
    let url = db.url_via(proxy.port);
    queries_answer_within_seconds(&db, url, || proxy.cut(), || proxy.restore()).await;
}

/// The pipeline's connections terminated by the server, then a real network partition: new
/// connections get no answer at all.
#[actix_rt::test]
async fn a_query_answers_within_seconds_across_terminated_connections_and_a_partition() {
    let Some(path) = netns::NetPath::to_postgres(pg::PG_PORT) else {
        return;
    };
    let db = TestDb::create("partitioned");
    let url = db.url_at(path.addr, path.port);
    let stop = || {
        assert!(db.kill_connections() > 0);
        // let the server's goodbye reach the client before the partition swallows it
        std::thread::sleep(Duration::from_millis(300));
        path.cut();
    };
    queries_answer_within_seconds(&db, url, stop, || path.restore()).await;
}

/// Ten good commands and the ones `refused` names, in one batch: after `Flush` (answered `Ok`)
/// the good ones are stored, each refused one is in `quarantine`, nothing was retried as if
/// the store were busy, and nothing is dropped at `Shutdown`.
async fn refused_rows_are_quarantined(t: &actix::Addr<Tracker>, refused: &[TrackEvent]) -> Stats {
    let mut batch: Vec<TrackEvent> = (0..10)
        .map(|i| TrackEvent::command("good").duration_ms(i as f64).at(T0 + i))
        .collect();
    batch.splice(5..5, refused.iter().cloned());
    common::send_all(t, batch, 100).await;
    let s = t
        .send(Flush)
        .await
        .unwrap()
        .expect("a refused row does not fail the flush");
    conservation(&s);
    assert_eq!(
        (s.records_written, s.events_quarantined, s.retries),
        (10, refused.len() as u64, 0),
        "{s:?}"
    );
    let s = t.send(Shutdown).await.unwrap();
    assert_eq!(s.events_dropped, 0, "{s:?}");
    s
}

const SQLITE_REFUSE: &str = "CREATE TRIGGER refuse BEFORE INSERT ON events \
     WHEN NEW.name = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by policy'); END;";

/// Item 13 on SQLite: a trigger refusing one command (`RAISE(ABORT, ...)`, result code
/// SQLITE_CONSTRAINT_TRIGGER), durable mode off and on.
#[actix_rt::test]
async fn a_row_a_sqlite_trigger_refuses_is_quarantined_and_the_rest_written() {
    for durable in [false, true] {
        let db = TempDb::new();
        let (t, _) = start_manual(
            Config {
                durable,
                store_retry_budget_ms: 1_000,
                ..quiet_config()
            },
            &db,
        );
        db.conn().batch_execute(SQLITE_REFUSE).unwrap();
        let refused = [TrackEvent::command("refused").at(T0)];
        refused_rows_are_quarantined(&t, &refused).await;
        assert_eq!(db.count("events"), 10, "durable {durable}");
        assert_eq!(
            db.count("quarantine WHERE error LIKE '%refused by policy%'"),
            1,
            "durable {durable}"
        );
    }
}

/// A trigger refusing `poison` commands with `RAISE(ROLLBACK, ...)`: SQLite rolls back the
/// whole transaction itself, so diesel's own ROLLBACK fails (`cannot rollback - no
/// transaction is active`, or `no such savepoint`), which must not hide the refusal.
const SQLITE_ROLLBACK: &str = "CREATE TRIGGER poison BEFORE INSERT ON events \
     WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ROLLBACK, 'refused by policy'); END;";

/// `n` good commands at event times `T0 + from ..`.
fn good_commands(from: i64, n: i64) -> Vec<TrackEvent> {
    (from..from + n)
        .map(|i| TrackEvent::command("good").duration_ms(i as f64).at(T0 + i))
        .collect()
}

/// 10 events written, then the `RAISE(ROLLBACK)` trigger, then 10 good events with one poison
/// event among them: the poison row is quarantined, the 10 good ones written once, `Flush`
/// answers `Ok`. In durable mode a restart on the same journal writes nothing again.
async fn a_trigger_rolling_back_refuses_one_row(durable: bool) {
    let db = TempDb::new();
    let config = Config {
        durable,
        journal_path: durable.then(|| db.dir.path().join("journal.db")),
        store_retry_budget_ms: 1_000,
        ..quiet_config()
    };
    let (t, _) = start_manual(config.clone(), &db);
    common::send_all(&t, good_commands(0, 10), 10).await;
    t.send(Flush).await.unwrap().expect("first flush");
    db.conn().batch_execute(SQLITE_ROLLBACK).unwrap();
    let mut batch = good_commands(10, 10);
    batch.insert(5, TrackEvent::command("poison").at(T0 + 15));
    common::send_all(&t, batch, 11).await;
    let s = t
        .send(Flush)
        .await
        .unwrap()
        .expect("a row refused by RAISE(ROLLBACK) does not fail the flush");
    conservation(&s);
    assert_eq!(
        (s.records_written, s.events_quarantined, s.rows_held),
        (20, 1, 0),
        "durable {durable}: {s:?}"
    );
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.events_dropped, 0, "durable {durable}: {s:?}");
    let stored = || {
        (
            db.count("events"),
            db.count("events WHERE name = 'good'"),
            db.count("quarantine"),
            db.count("quarantine WHERE error LIKE '%refused by policy%'"),
        )
    };
    assert_eq!(stored(), (20, 20, 1, 1), "durable {durable}");
    if durable {
        // the checkpoint committed with the rows: nothing is replayed into the store again
        let (t, _) = start_manual(config, &db);
        let s = t.send(Flush).await.unwrap().expect("flush after restart");
        assert_eq!((s.records_written, s.events_quarantined), (0, 0), "{s:?}");
        t.send(Shutdown).await.unwrap();
        assert_eq!(stored(), (20, 20, 1, 1), "after restart");
    }
}

/// A SQLite trigger refusing one command with `RAISE(ROLLBACK, ...)`, durable mode off.
#[actix_rt::test]
async fn a_row_a_sqlite_trigger_refuses_with_rollback_is_quarantined_and_the_rest_written() {
    a_trigger_rolling_back_refuses_one_row(false).await;
}

/// The same in durable mode: SQLite rolls back the whole checkpoint transaction, not just the
/// savepoint of the isolating pass, which starts again in a new transaction.
#[actix_rt::test]
async fn a_row_a_sqlite_trigger_refuses_with_rollback_is_quarantined_and_the_rest_written_durable()
{
    a_trigger_rolling_back_refuses_one_row(true).await;
}

const PG_REFUSE: &str = "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN IF NEW.name = 'refused' THEN RAISE EXCEPTION 'refused by policy'; END IF; \
     RETURN NEW; END $$; \
     CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse(); \
     ALTER TABLE events ADD CONSTRAINT short_commands \
     CHECK (duration_ms IS NULL OR duration_ms < 1000000);";

/// Item 13 on PostgreSQL: a trigger raising an exception (SQLSTATE P0001) and a CHECK
/// constraint (23514), durable mode off and on.
#[actix_rt::test]
async fn rows_postgres_refuses_are_quarantined_and_the_rest_written() {
    for durable in [false, true] {
        let db = TestDb::create("refuses");
        let journal = tempfile::tempdir().unwrap();
        let t = start_at_t0(
            Config {
                durable,
                journal_path: Some(journal.path().join("journal")),
                store_retry_budget_ms: 1_000,
                ..quiet_config()
            },
            Store::postgres(db.url()),
        );
        db.conn().batch_execute(PG_REFUSE).unwrap();
        let refused = [
            TrackEvent::command("refused").at(T0),
            TrackEvent::command("slow").duration_ms(5e6).at(T0),
        ];
        refused_rows_are_quarantined(&t, &refused).await;
        assert_eq!(db.count("events"), 10, "durable {durable}");
        assert_eq!(
            db.count("quarantine WHERE error LIKE '%refused by policy%'"),
            1,
            "durable {durable}"
        );
        assert_eq!(
            db.count("quarantine WHERE error LIKE '%short_commands%'"),
            1,
            "durable {durable}"
        );
    }
}

/// A quarantine row as the tests read it.
#[derive(diesel::QueryableByName)]
struct Quarantined {
    #[diesel(sql_type = diesel::sql_types::Text)]
    instance_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    error: String,
}

fn quarantined(db: &common::Db) -> Vec<Quarantined> {
    use diesel::RunQueryDsl;
    let q = diesel::sql_query("SELECT instance_id, kind, payload, error FROM quarantine");
    match db {
        common::Db::Sqlite(d) => q.load(&mut d.conn()),
        common::Db::Pg(d) => q.load(&mut d.conn()),
    }
    .unwrap()
}

fn execute(db: &common::Db, sql: &str) {
    match db {
        common::Db::Sqlite(d) => d.conn().batch_execute(sql),
        common::Db::Pg(d) => d.conn().batch_execute(sql),
    }
    .unwrap()
}

const SQLITE_REFUSE_USERS: &str = "CREATE TRIGGER refuse_users BEFORE INSERT ON command_users \
     WHEN NEW.command = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by policy'); END;";

const PG_REFUSE_USERS: &str = "CREATE FUNCTION refuse_users() RETURNS trigger LANGUAGE plpgsql \
     AS $$ BEGIN IF NEW.command = 'refused' THEN RAISE EXCEPTION 'refused by policy'; END IF; \
     RETURN NEW; END $$; \
     CREATE TRIGGER refuse_users BEFORE INSERT ON command_users FOR EACH ROW \
     EXECUTE FUNCTION refuse_users();";

/// Ten users run `good` and three run `refused` in one window, and the store refuses the
/// distinct-user rows of `refused` (`refuse` creates the trigger): `Flush` answers `Ok`, every
/// event and the sketch of `good` are written, the sketch of `refused` is in `quarantine`
/// (kind `users`, counted in `rows_quarantined`) whole, so that written back by hand into
/// `command_users` (`blob` gives the SQL literal of its bytes) it answers `QueryUsers` as the
/// store would have.
async fn a_refused_user_sketch_is_quarantined_whole(
    t: &actix::Addr<Tracker>,
    db: &common::Db,
    refuse: &str,
    unrefuse: &str,
    blob: fn(&str) -> String,
) {
    execute(db, refuse);
    let mut batch: Vec<TrackEvent> = (0..10)
        .map(|i| {
            TrackEvent::command("good")
                .user(format!("user-{i}"))
                .at(T0 + i)
        })
        .collect();
    batch.extend((0..3).map(|i| {
        TrackEvent::command("refused")
            .user(format!("user-{i}"))
            .at(T0 + i)
    }));
    common::send_all(t, batch, 100).await;
    let s = t
        .send(Flush)
        .await
        .unwrap()
        .expect("a refused sketch does not fail the flush");
    conservation(&s);
    assert_eq!(
        (
            s.records_written,
            s.rows_quarantined,
            s.events_quarantined,
            s.retries
        ),
        (13, 1, 0, 0),
        "{s:?}"
    );
    let users = |command: &'static str, res| {
        let t = t.clone();
        async move {
            let q = QueryUsers::command(command).resolution(res);
            let counts = t.send(q).await.unwrap().unwrap();
            counts.iter().map(|c| c.users).collect::<Vec<_>>()
        }
    };
    assert_eq!(users("good", Resolution::Window).await, [10]);
    assert_eq!(users("good", Resolution::Day).await, [10]);
    assert_eq!(
        users("refused", Resolution::Window).await,
        Vec::<u64>::new()
    );
    assert_eq!(db.count("command_users WHERE command = 'good'"), 4);
    assert_eq!(db.count("command_users WHERE command = 'refused'"), 0);

    let rows = quarantined(db);
    assert_eq!(rows.len(), 1);
    let q = &rows[0];
    assert_eq!(q.kind, "users");
    assert!(q.error.contains("refused by policy"), "{}", q.error);
    let payload: serde_json::Value = serde_json::from_str(&q.payload).unwrap();
    assert_eq!(
        (&payload["command"], &payload["context"], &payload["users"]),
        (&"refused".into(), &"".into(), &3.into()),
        "{payload}"
    );
    assert_eq!(payload["window_start_ms"], T0);

    // Recovered by hand: the window's row, its registers the quarantined bytes.
    execute(db, unrefuse);
    execute(
        db,
        &format!(
            "INSERT INTO command_users VALUES ('{}', 'refused', '', 'window', {}, {}, {}, 0)",
            q.instance_id,
            payload["window_start_ms"],
            payload["window_ms"],
            blob(payload["sketch_hex"].as_str().unwrap()),
        ),
    );
    assert_eq!(users("refused", Resolution::Window).await, [3]);
    let s = t.send(Shutdown).await.unwrap();
    assert_eq!((s.events_dropped, s.rows_quarantined), (0, 1), "{s:?}");
}

/// Issue 18 item 4 on SQLite: a trigger refusing one command's distinct-user rows, durable
/// mode off and on.
#[actix_rt::test]
async fn a_user_sketch_a_sqlite_trigger_refuses_is_quarantined_with_its_registers() {
    for durable in [false, true] {
        let db = TempDb::new();
        let (t, _) = start_manual(
            Config {
                durable,
                store_retry_budget_ms: 1_000,
                ..quiet_config()
            },
            &db,
        );
        let db = common::Db::Sqlite(db);
        a_refused_user_sketch_is_quarantined_whole(
            &t,
            &db,
            SQLITE_REFUSE_USERS,
            "DROP TRIGGER refuse_users",
            |hex| format!("X'{hex}'"),
        )
        .await;
    }
}

/// The same on PostgreSQL (the trigger raises SQLSTATE P0001), durable mode off and on.
#[actix_rt::test]
async fn a_user_sketch_postgres_refuses_is_quarantined_with_its_registers() {
    for durable in [false, true] {
        let db = TestDb::create("refuses_users");
        let journal = tempfile::tempdir().unwrap();
        let t = start_at_t0(
            Config {
                durable,
                journal_path: Some(journal.path().join("journal")),
                store_retry_budget_ms: 1_000,
                ..quiet_config()
            },
            Store::postgres(db.url()),
        );
        let db = common::Db::Pg(db);
        a_refused_user_sketch_is_quarantined_whole(
            &t,
            &db,
            PG_REFUSE_USERS,
            "DROP TRIGGER refuse_users ON command_users",
            |hex| format!("decode('{hex}', 'hex')"),
        )
        .await;
    }
}

/// A column renamed under the running pipeline (an operator's migration, another version's):
/// the store cannot take the rows now. They are held and `Flush` fails; nothing is
/// quarantined as if each row were bad, and once the column is back every row is written.
async fn a_column_renamed_under_the_pipeline_holds_the_rows(
    db: &common::Db,
    t: &actix::Addr<Tracker>,
) {
    let first = commands_and_samples(0, 10, 1);
    t.send(TrackBatch(first)).await.unwrap().unwrap();
    t.send(Flush).await.unwrap().expect("first flush");
    execute(
        db,
        "ALTER TABLE events RENAME COLUMN duration_ms TO duration_ms_old",
    );
    t.send(TrackBatch(commands_and_samples(10, 8, 1)))
        .await
        .unwrap()
        .unwrap();
    let refused = t.send(Flush).await.unwrap();
    let s = t.send(GetStats).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!((s.events_quarantined, s.rows_quarantined), (0, 0), "{s:?}");
    assert!(s.rows_held > 0, "{s:?}");
    execute(
        db,
        "ALTER TABLE events RENAME COLUMN duration_ms_old TO duration_ms",
    );
    let s = t.send(Flush).await.unwrap().expect("the column is back");
    conservation(&s);
    assert_eq!(db.count("events"), 18);
    assert_eq!(db.count("quarantine"), 0);
    t.send(Shutdown).await.unwrap();
}

async fn a_column_renamed_under_the_pipeline(db: common::Db) {
    let config = Config {
        store_retry_budget_ms: 500,
        ..quiet_config()
    };
    let t = start_at_t0(config, db.store());
    a_column_renamed_under_the_pipeline_holds_the_rows(&db, &t).await;
}

#[actix_rt::test]
async fn sqlite_a_column_renamed_under_the_pipeline_holds_the_rows() {
    a_column_renamed_under_the_pipeline(common::Db::Sqlite(TempDb::new())).await;
}

#[actix_rt::test]
async fn postgres_a_column_renamed_under_the_pipeline_holds_the_rows() {
    a_column_renamed_under_the_pipeline(common::Db::Pg(TestDb::create("column_renamed"))).await;
}
