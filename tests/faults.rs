//! Faults and bad input (issue 9), against a real SQLite file and the local PostgreSQL server:
//! input the stores cannot hold is refused at the door, configuration is bounded, pseudonyms
//! are keyed, time toward PostgreSQL is bounded, and a corrupt, deleted or replaced SQLite
//! file is an error rather than a silent success. Each test that runs the pipeline checks the
//! conservation laws afterwards.

mod common;
use common::netns;
use common::pg;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{conservation, conservation_pending, pseudonym, TempDb, T0};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use eventbatch::*;
use pg::{Proxy, TestDb};

fn config(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        ..Config::default()
    }
}

fn start_at_t0(config: Config, store: Store) -> actix::Addr<Tracker> {
    let _ = env_logger::builder().is_test(true).try_init();
    start_with_clock(config, store, Arc::new(ManualClock::new(T0))).expect("start")
}

/// Commands and metric samples, with the bad events of the issue mixed in: a NUL byte in a
/// command name, in a metric context, in a user id and in a tag; 65 tags; a tag key twice.
fn mixed_batch(n: i64) -> (Vec<TrackEvent>, u64) {
    let mut events = Vec::new();
    let mut bad = 0;
    for i in 0..n {
        let ts = T0 + i;
        events.push(TrackEvent::command("help").user(format!("u{i}")).at(ts));
        events.push(
            TrackEvent::performance("rt", i as f64)
                .context("api")
                .at(ts),
        );
        if i % 10 == 0 {
            let many_tags = (0..65).fold(TrackEvent::custom("c").at(ts), |e, k| {
                e.tag(format!("k{k}"), "v")
            });
            events.extend([
                TrackEvent::command("he\0lp").at(ts),
                TrackEvent::performance("rt", 1.0).context("a\0pi").at(ts),
                TrackEvent::command("help").user("u\0").at(ts),
                TrackEvent::custom("c").tag("k", "v\0").at(ts),
                many_tags,
                TrackEvent::custom("c").tag("k", "1").tag("k", "2").at(ts),
            ]);
            bad += 6;
        }
    }
    (events, bad)
}

/// Sends the mixed batch and one bad event alone, flushes, checks what was refused and that
/// everything else arrived; returns the stats.
async fn bad_input_is_refused(t: &actix::Addr<Tracker>) -> Stats {
    let n = 200;
    let (events, bad) = mixed_batch(n);
    let total = events.len() as u64;
    let ack = t.send(TrackBatch(events)).await.unwrap().unwrap();
    assert_eq!(ack.rejected as u64, bad);
    assert_eq!(ack.accepted as u64, total - bad);
    let err = t
        .send(TrackEvent::error("timeout", "api").message("x\0y").at(T0))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        TrackError::NulByte {
            field: "message",
            at: 1
        }
    );
    let s = t
        .send(Flush)
        .await
        .unwrap()
        .expect("the flush after bad input succeeds");
    conservation(&s);
    assert_eq!(s.events_rejected, bad + 1);
    assert_eq!(s.records_written, n as u64);
    assert_eq!(s.events_aggregated, n as u64);
    assert_eq!(s.db_errors, 0);
    let windows = t
        .send(QueryWindows::metric("rt").context("api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), n as u64);
    s
}

#[actix_rt::test]
async fn nul_bytes_and_too_many_tags_are_refused_at_the_door_sqlite() {
    let db = TempDb::new();
    let t = start_at_t0(config("nul-sqlite"), db.store());
    bad_input_is_refused(&t).await;
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(db.count("events"), 200);
    assert_eq!(db.count("events WHERE instr(name, char(0)) > 0"), 0);
}

#[actix_rt::test]
async fn nul_bytes_never_reach_postgres_and_the_writes_keep_flowing() {
    let db = TestDb::create("nul");
    let t = start_at_t0(config("nul-pg"), Store::postgres(db.url()));
    bad_input_is_refused(&t).await;
    let started = Instant::now();
    let s = t.send(Shutdown).await.unwrap();
    let took = started.elapsed();
    eprintln!("shutdown after bad input took {took:?}");
    conservation(&s);
    assert_eq!(s.db_errors, 0);
    assert_eq!(db.count("events"), 200);
    assert_eq!(db.count("events WHERE name = 'help'"), 200);
}

#[actix_rt::test]
async fn sizes_beyond_their_bounds_are_config_errors_at_start_and_at_run_time() {
    let db = TempDb::new();
    let huge = [
        (
            Config {
                max_queued_events: 1 << 40,
                ..Config::default()
            },
            "max_queued_events",
        ),
        (
            Config {
                max_in_flight_batches: usize::MAX,
                ..Config::default()
            },
            "max_in_flight_batches",
        ),
        (
            Config {
                store_retry_budget_ms: u64::MAX,
                ..Config::default()
            },
            "store_retry_budget_ms",
        ),
        (
            Config {
                high_priority_flush_threshold: usize::MAX,
                ..Config::default()
            },
            "high_priority_flush_threshold",
        ),
    ];
    for (config, field) in huge.iter().cloned() {
        match start(config, db.store()) {
            Err(Error::Config(e)) => assert_eq!(e.field, field, "{e}"),
            other => panic!("{field}: {:?}", other.map(|_| ())),
        }
    }
    let t = start_at_t0(config("bounds"), db.store());
    for (patch, field) in [
        (
            ConfigPatch {
                max_queued_events: Some(usize::MAX),
                ..ConfigPatch::default()
            },
            "max_queued_events",
        ),
        (
            ConfigPatch {
                max_in_flight_batches: Some(1 << 30),
                ..ConfigPatch::default()
            },
            "max_in_flight_batches",
        ),
        (
            ConfigPatch {
                sqlite_busy_timeout_ms: Some(u64::MAX),
                ..ConfigPatch::default()
            },
            "sqlite_busy_timeout_ms",
        ),
        (
            ConfigPatch {
                identity_key: Some("short".into()),
                ..ConfigPatch::default()
            },
            "identity_key",
        ),
    ] {
        let err = t.send(Configure(patch)).await.unwrap().unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(
            !err.value.contains("short"),
            "the key is never shown: {err}"
        );
    }
    assert_eq!(t.send(GetConfig).await.unwrap(), config("bounds"));
    t.send(TrackEvent::command("still-working").at(T0))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(db.count("events"), 1);
}

fn stored_users(db: &TempDb) -> Vec<(Option<String>, Option<String>)> {
    use eventbatch::db::schema::events::dsl::*;
    events
        .select((user_hash, server_hash))
        .order(id)
        .load(&mut db.conn())
        .unwrap()
}

#[actix_rt::test]
async fn with_an_identity_key_users_and_servers_are_stored_keyed_without_one_as_given() {
    const KEY: &str = "a key of at least sixteen bytes";
    let keyed = TempDb::new();
    let t = start_at_t0(
        Config {
            identity_key: Some(KEY.into()),
            ..config("keyed")
        },
        keyed.store(),
    );
    for i in 0..3 {
        t.send(
            TrackEvent::command("help")
                .user(format!("{}", 123_456 + i))
                .server("guild-1")
                .at(T0 + i),
        )
        .await
        .unwrap()
        .unwrap();
    }
    // last in event time too: a transaction's rows are stored in event-time order
    t.send(TrackEvent::engagement("reaction").at(T0 + 3))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    let want: Vec<_> = (0..3)
        .map(|i| {
            (
                Some(pseudonym(KEY, &format!("{}", 123_456 + i))),
                Some(pseudonym(KEY, "guild-1")),
            )
        })
        .chain([(None, None)])
        .collect();
    assert_eq!(stored_users(&keyed), want);
    assert_eq!(
        keyed.count("events WHERE user_hash LIKE '%123456%' OR server_hash = 'guild-1'"),
        0
    );

    let plain = TempDb::new();
    let t = start_at_t0(config("plain"), plain.store());
    t.send(
        TrackEvent::command("help")
            .user("userHash42")
            .server("s9")
            .at(T0),
    )
    .await
    .unwrap()
    .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(
        stored_users(&plain),
        vec![(Some("userHash42".into()), Some("s9".into()))]
    );
}

/// Needs `WriterCore::set_settings` to hand the new key to the store (`self.pool.set_pseudonyms
/// (s.pseudonyms.clone())`); until the writer does, `Configure` of the key is not applied.
#[actix_rt::test]
async fn configure_of_identity_key_applies_to_events_written_afterwards() {
    const KEY: &str = "another key, sixteen bytes or more";
    let db = TempDb::new();
    let t = start_at_t0(config("reconfigure"), db.store());
    t.send(TrackEvent::command("a").user("u1").at(T0))
        .await
        .unwrap()
        .unwrap();
    t.send(Flush).await.unwrap().unwrap();
    let patch = ConfigPatch {
        identity_key: Some(KEY.into()),
        ..ConfigPatch::default()
    };
    let now = t.send(Configure(patch)).await.unwrap().unwrap();
    assert_eq!(now.identity_key.as_deref(), Some(KEY));
    t.send(TrackEvent::command("b").user("u1").at(T0))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(
        stored_users(&db),
        vec![
            (Some("u1".into()), None),
            (Some(pseudonym(KEY, "u1")), None)
        ]
    );
}

/// A server that accepts TCP connections and never says a word; it keeps what clients send
/// (libpq's startup message, with its parameters in plain text).
fn silent_server() -> (u16, Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ears = heard.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let ears = ears.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    ears.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, heard)
}

#[actix_rt::test]
async fn start_returns_err_within_its_budget_against_a_silent_postgres() {
    let (port, heard) = silent_server();
    let url = format!("postgres://root@127.0.0.1:{port}/silent");
    // the URL's own settings win over the defaults
    let own = format!("{url}?connect_timeout=3&options=-c%20statement_timeout%3D777");
    for (url, budget_ms, statement_timeout) in [
        (&url, 2_000, "statement_timeout=10000"),
        (
            &url,
            Config::default().store_retry_budget_ms,
            "statement_timeout=30000",
        ),
        (&own, 2_000, "statement_timeout=777"),
    ] {
        heard.lock().unwrap().clear();
        let started = Instant::now();
        let result = start(
            Config {
                store_retry_budget_ms: budget_ms,
                ..Config::default()
            },
            Store::postgres(url.clone()),
        );
        let took = started.elapsed();
        eprintln!("{url}, budget {budget_ms} ms: start() failed after {took:?}");
        match result {
            Err(Error::Store { reason, .. }) => assert!(reason.contains("timeout"), "{reason}"),
            other => panic!("start against a silent server: {:?}", other.map(|_| ())),
        }
        assert!(took < Duration::from_secs(60), "{took:?}");
        // the startup message carried the default statement timeout to the server
        let sent = String::from_utf8_lossy(&heard.lock().unwrap()).into_owned();
        assert!(sent.contains(statement_timeout), "{sent:?}");
    }
}

/// `n` commands and `n` latency samples, from event time `T0 + from` on.
fn commands_and_samples(from: i64, n: i64) -> Vec<TrackEvent> {
    (from..from + n)
        .flat_map(|i| {
            [
                TrackEvent::command("help").duration_ms(i as f64).at(T0 + i),
                TrackEvent::performance("rt", i as f64)
                    .context("api")
                    .at(T0 + i),
            ]
        })
        .collect()
}

/// A pipeline writing to PostgreSQL through `url`, a path that `stop` makes stop answering
/// mid-run and `heal` brings back: `Flush` (and a query) answer `Err` within about the retry
/// budget, with the errors counted and nothing counted as written that is not; once the path
/// is back, everything is written exactly once and the conservation laws hold.
async fn flush_fails_within_budget_and_recovers(
    db: &TestDb,
    url: String,
    stop: impl Fn(),
    heal: impl Fn(),
) {
    let budget_ms = 2_000;
    let t = start_at_t0(
        Config {
            store_retry_budget_ms: budget_ms,
            ..config("black-hole")
        },
        Store::postgres(url),
    );
    t.send(TrackBatch(commands_and_samples(0, 200)))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Flush).await.unwrap().expect("the path works");
    conservation(&s);
    assert_eq!((s.records_written, s.db_errors), (200, 0));

    stop();
    t.send(TrackBatch(commands_and_samples(200, 300)))
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let answer = actix_rt::time::timeout(Duration::from_secs(60), t.send(Flush))
        .await
        .expect("Flush answers while the store does not")
        .unwrap();
    eprintln!(
        "Flush against a store that stopped answering (budget {budget_ms} ms): {:?} after {:?}",
        answer.as_ref().map(drop),
        started.elapsed()
    );
    answer.expect_err("nothing was written, the Flush cannot succeed");
    let query = actix_rt::time::timeout(
        Duration::from_secs(60),
        t.send(QueryWindows::metric("rt").context("api")),
    )
    .await
    .expect("a query answers too")
    .unwrap();
    assert!(query.is_err(), "{query:?}");
    let s = t.send(GetStats).await.unwrap();
    assert!(s.db_errors > 0, "{s:?}");
    assert_eq!(s.records_written, 200, "nothing counted as written: {s:?}");
    conservation_pending(&s);

    heal();
    // The writer's blocked call returns (or fails on its own timeouts) and it writes what it
    // holds; until then a Flush still answers Err at once.
    let healed = Instant::now();
    let s = loop {
        match t.send(Flush).await.unwrap() {
            Ok(s) => break s,
            Err(e) if healed.elapsed() < Duration::from_secs(60) => {
                eprintln!("a flush after the path came back: {e}");
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the writer did not recover: {e}"),
        }
    };
    eprintln!("recovered {:?} after the path came back", healed.elapsed());
    conservation(&s);
    assert_eq!(s.records_written, 500, "{s:?}");
    assert_eq!(db.count("events"), 500, "every command once");
    assert_eq!(db.count("(SELECT DISTINCT duration_ms FROM events) d"), 500);
    let windows = t
        .send(QueryWindows::metric("rt").context("api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), 500);
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!((s.records_written, s.events_dropped), (500, 0), "{s:?}");
    assert_eq!(db.scalar("SELECT sum(count) FROM metric_windows"), 500);
}

/// A proxy that stops forwarding keeps both TCP connections alive (its kernel acknowledges
/// everything), so no TCP or libpq timeout fires and the writer's call blocks until the proxy
/// forwards again: `Flush` answers within the budget all the same.
#[actix_rt::test]
async fn flush_answers_err_within_the_budget_against_a_hung_proxy_and_recovers() {
    let db = TestDb::create("hung");
    let proxy = Proxy::start();
    let url = db.url_via(proxy.port);
    flush_fails_within_budget_and_recovers(&db, url, || proxy.stall(), || proxy.resume()).await;
}

/// Backends other than this test's own connected to `db` (the pipeline's).
fn other_connections(db: &TestDb) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
}

/// Issue 16, item 2, a store that goes silent after start: `Shutdown` answers within about the
/// retry budget however long the store stays silent, with every accepted event not written
/// counted (`events_unwritten_at_stop`, in `events_dropped` too: the conservation laws hold).
/// When the proxy forwards again, the writer's blocked call ends and the writer starts no other
/// call: the window's final row, counted as not written, is never written, and the pipeline's
/// connections close.
#[actix_rt::test]
async fn shutdown_answers_within_the_budget_against_a_hung_proxy_and_counts_what_it_left() {
    let db = TestDb::create("hungstop");
    let proxy = Proxy::start();
    let budget_ms = 2_000;
    let t = start_at_t0(
        Config {
            store_retry_budget_ms: budget_ms,
            ..config("hung-stop")
        },
        Store::postgres(db.url_via(proxy.port)),
    );
    t.send(TrackBatch(commands_and_samples(0, 200)))
        .await
        .unwrap()
        .unwrap();
    let s = t.send(Flush).await.unwrap().expect("the path works");
    assert_eq!(s.records_written, 200);

    proxy.stall();
    t.send(TrackBatch(commands_and_samples(200, 300)))
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let s = actix_rt::time::timeout(Duration::from_secs(60), t.send(Shutdown))
        .await
        .expect("Shutdown answers while the store does not")
        .unwrap();
    eprintln!(
        "Shutdown against a hung proxy (budget {budget_ms} ms): answered after {:?}",
        started.elapsed()
    );
    conservation(&s);
    // 300 commands, and the 500 samples of the window whose final row is not written (the
    // Flush wrote a snapshot of its first 200)
    assert_eq!(s.events_unwritten_at_stop, 800, "{s:?}");
    assert_eq!(s.events_dropped, 800, "{s:?}");
    assert_eq!((s.records_written, s.events_queued), (200, 0), "{s:?}");

    proxy.resume();
    let resumed = Instant::now();
    while other_connections(&db) > 0 {
        assert!(
            resumed.elapsed() < Duration::from_secs(60),
            "the pipeline's connections are still open"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    // the call in flight may have committed its records; nothing after it was written
    assert_eq!(
        db.scalar("SELECT sum(count) FROM metric_windows"),
        200,
        "only the snapshot"
    );
    let stored = db.count("events");
    assert!((200..=500).contains(&stored), "{stored}");
    assert_eq!(
        db.count("(SELECT DISTINCT duration_ms FROM events) d"),
        stored
    );
}

/// Issue 16, item 2, the other stop path: the application returns from `main` (its System
/// ends, no `Shutdown`) while the store is silent. The System's end returns within about the
/// retry budget; in durable mode what was not written stays in the journal, which is closed
/// (its lock released) while the writer's thread is still blocked, and the next start replays
/// it: every event in the store exactly once.
#[test]
fn returning_from_main_against_a_hung_store_ends_within_the_budget_and_the_journal_replays() {
    let _ = env_logger::builder().is_test(true).try_init();
    let db = TestDb::create("hungmain");
    let proxy = Arc::new(Proxy::start());
    let dir = tempfile::tempdir().unwrap();
    let budget_ms = 2_000;
    let config = Config {
        durable: true,
        journal_path: Some(dir.path().join("hung-main.journal")),
        store_retry_budget_ms: budget_ms,
        ..config("hung-main")
    };
    let (done, ended) = std::sync::mpsc::channel();
    {
        let (config, url, proxy) = (config.clone(), db.url_via(proxy.port), proxy.clone());
        std::thread::spawn(move || {
            let sys = actix::System::new();
            let flushed = sys.block_on(async {
                let t = start_at_t0(config, Store::postgres(url));
                t.send(TrackBatch(commands_and_samples(0, 200)))
                    .await
                    .unwrap()
                    .unwrap();
                let s = t.send(Flush).await.unwrap().expect("the path works");
                proxy.stall();
                for e in commands_and_samples(200, 300) {
                    t.do_send(e);
                }
                s // returns from "main" without Shutdown
            });
            let started = Instant::now();
            drop(sys);
            let _ = done.send((flushed, started.elapsed()));
        });
    }
    let (flushed, took) = ended
        .recv_timeout(Duration::from_secs(60))
        .expect("the System's end returns while the store does not answer");
    eprintln!("the System ended against a hung proxy (budget {budget_ms} ms) after {took:?}");
    assert_eq!(flushed.records_written, 200);

    // the proxy stays hung (the old writer blocked in it); the next start goes direct
    let sys = actix::System::new();
    let s = sys.block_on(async {
        let t = start_at_t0(config, Store::postgres(db.url()));
        let s = t.send(Flush).await.unwrap().expect("the store answers");
        conservation(&t.send(Shutdown).await.unwrap());
        s
    });
    drop(sys);
    assert_eq!(s.events_replayed, 600, "{s:?}");
    assert_eq!(db.count("events"), 500);
    assert_eq!(db.count("(SELECT DISTINCT duration_ms FROM events) d"), 500);
    assert_eq!(db.scalar("SELECT sum(count) FROM metric_windows"), 500);
}

/// A real partition: every packet between the pipeline and the server is dropped (the path
/// runs through a network namespace of the test's own, see `common/netns.rs`).
#[actix_rt::test]
async fn flush_answers_err_within_the_budget_across_a_network_partition_and_recovers() {
    let Some(path) = netns::NetPath::to_postgres(pg::PG_PORT) else {
        return;
    };
    let db = TestDb::create("partition");
    let url = db.url_at(path.addr, path.port);
    flush_fails_within_budget_and_recovers(&db, url, || path.cut(), || path.restore()).await;
}

/// Fills a pipeline's SQLite file with `n` commands and closes it, WAL checkpointed into the
/// file.
async fn filled_sqlite(db: &TempDb, n: i64) {
    let t = start_at_t0(config("fill"), db.store());
    let events: Vec<TrackEvent> = (0..n)
        .map(|i| {
            TrackEvent::command("help")
                .user(format!("user-{i}"))
                .duration_ms(i as f64)
                .at(T0 + i)
        })
        .collect();
    t.send(TrackBatch(events)).await.unwrap().unwrap();
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.records_written, n as u64);
    db.conn()
        .batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
}

#[actix_rt::test]
async fn a_database_file_with_16_kb_of_random_bytes_in_its_middle_is_refused_at_start() {
    let db = TempDb::new();
    filled_sqlite(&db, 20_000).await;
    let mut bytes = std::fs::read(&db.path).unwrap();
    let len = bytes.len();
    assert!(len > 256 * 1024, "a real file, not a toy: {len} bytes");
    let mid = len / 2;
    getrandom::fill(&mut bytes[mid..mid + 16 * 1024]).unwrap();
    std::fs::write(&db.path, &bytes).unwrap();
    let started = Instant::now();
    let result = start(config("corrupt"), db.store());
    eprintln!(
        "start on a corrupt {len}-byte file failed after {:?}",
        started.elapsed()
    );
    match result {
        Err(Error::Store { reason, .. }) => assert!(
            reason.contains("corrupt") || reason.contains("malformed"),
            "{reason}"
        ),
        other => panic!("a corrupt file started: {:?}", other.map(|_| ())),
    }
    // the intact file opens (quick_check passes on an existing file)
    let intact = TempDb::new();
    filled_sqlite(&intact, 2_000).await;
    let started = Instant::now();
    let t = start(config("intact"), intact.store()).expect("an intact file starts");
    eprintln!(
        "start with quick_check on an intact file: {:?}",
        started.elapsed()
    );
    conservation(&t.send(Shutdown).await.unwrap());
}

#[actix_rt::test]
async fn a_sqlite_file_deleted_under_a_running_pipeline_fails_the_flush() {
    let db = TempDb::new();
    let t = start_at_t0(
        Config {
            store_retry_budget_ms: 300,
            ..config("deleted")
        },
        db.store(),
    );
    let commands = |from: i64, n: i64| {
        (from..from + n)
            .map(|i| TrackEvent::command("help").at(T0 + i))
            .collect::<Vec<_>>()
    };
    t.send(TrackBatch(commands(0, 500))).await.unwrap().unwrap();
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.records_written, 500);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    t.send(TrackBatch(commands(500, 15_000)))
        .await
        .unwrap()
        .unwrap();
    let err = t.send(Flush).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("was deleted"), "{err}");
    let s = t.send(GetStats).await.unwrap();
    assert!(s.db_errors > 0, "{s:?}");
    assert_eq!(s.records_written, 500, "nothing counted as written: {s:?}");
    conservation_pending(&s);
    let s = t.send(Shutdown).await.unwrap();
    // what could not be written is never counted as written; the Shutdown's own Stats count
    // it as dropped, nothing pending
    conservation(&s);
    assert_eq!(s.records_written, 500);
    assert_eq!((s.events_dropped, s.events_queued), (15_000, 0), "{s:?}");
    assert!(!db.path.exists(), "no new file appeared at the path");
}

#[actix_rt::test]
async fn a_sqlite_file_replaced_under_a_running_pipeline_fails_the_flush() {
    let db = TempDb::new();
    let t = start_at_t0(
        Config {
            store_retry_budget_ms: 300,
            ..config("replaced")
        },
        db.store(),
    );
    t.send(TrackEvent::command("before").at(T0))
        .await
        .unwrap()
        .unwrap();
    conservation(&t.send(Flush).await.unwrap().unwrap());
    // another, valid database moved over the path (a restore, a deploy)
    let other = TempDb::new();
    filled_sqlite(&other, 10).await;
    std::fs::rename(&other.path, &db.path).unwrap();
    t.send(TrackEvent::command("after").at(T0))
        .await
        .unwrap()
        .unwrap();
    let err = t.send(Flush).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("was replaced"), "{err}");
    conservation_pending(&t.send(GetStats).await.unwrap());
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.records_written, 1);
    assert_eq!((s.events_dropped, s.events_queued), (1, 0), "{s:?}");
    // (reading the path now also replays the old file's leftover -wal over the new file: the
    // kind of mix-up that refusing to write avoids adding to)
    assert_eq!(db.count("events WHERE name = 'after'"), 0);
}

#[actix_rt::test]
async fn extreme_but_finite_samples_give_finite_windows_and_writes_keep_flowing() {
    let db = TempDb::new();
    let t = start_at_t0(config("extreme"), db.store());
    let series: [(&str, &[f64]); 3] = [
        ("nan_mean_before", &[1e308, -1e308, 1e308]),
        ("inf_stddev_before", &[1e200, -1e200]),
        ("inf_sum_before", &[1e308, 1e308]),
    ];
    for (metric, values) in series {
        for &v in values {
            t.send(TrackEvent::performance(metric, v).at(T0))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{metric} {v}: {e}"));
        }
    }
    for i in 0..1000 {
        t.send(TrackEvent::command("after").at(T0 + i))
            .await
            .unwrap()
            .unwrap();
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!((s.db_errors, s.rows_quarantined), (0, 0), "{s:?}");
    assert_eq!(db.count("events WHERE name = 'after'"), 1000);
    for (metric, values) in series {
        let w = t.send(QueryWindows::metric(metric)).await.unwrap().unwrap();
        assert_eq!(w.len(), 1, "{metric}");
        let w = &w[0];
        assert_eq!(w.count, values.len() as u64, "{metric}: read back whole");
        for (name, x) in [
            ("sum", w.sum),
            ("mean", w.mean),
            ("stddev", w.stddev),
            ("p50", w.p50),
            ("p99", w.p99),
        ] {
            assert!(x.is_finite(), "{metric}: {name} = {x}");
        }
        assert!(w.min <= w.mean && w.mean <= w.max, "{metric}: {w:?}");
    }
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
}
