//! Helpers shared by the integration tests, the one place they live: here a temporary SQLite
//! file, direct SQL reads, a pipeline on a manual clock, the conservation laws, and sending to
//! a pipeline and waiting for it; in the submodules, what needs more than that:
//!
//! - [`pg`]: a throwaway PostgreSQL database per test, and a TCP proxy a test can cut or stall;
//! - [`netns`]: a real network partition between the pipeline and PostgreSQL (root);
//! - [`tmpfs`]: a small real file system a test can fill (root);
//! - [`metrics`]: a workload that moves every counter, and the metrics a `Stats` shows as;
//! - [`forward`]: the forwarding tests' mixed workload, one test at a time;
//! - [`nats`]: `nats-server -js` processes and a three-node cluster.
//!
//! Every test file starts with `mod common;` and names what it uses (`use common::pg;`).
#![allow(dead_code)]

pub mod forward;
pub mod metrics;
pub mod nats;
pub mod netns;
pub mod pg;
pub mod tmpfs;

use std::path::PathBuf;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use eventbatch::{Config, GetStats, ManualClock, Stats, Store, TrackBatch, TrackEvent, Tracker};

/// 2025-11-24T16:00:00Z, a multiple of a minute and of an hour.
pub const T0: i64 = 1_764_000_000_000;

pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("analytics.db");
        TempDb { dir, path }
    }

    /// Another SQLite file (a journal, say), read with the same helpers (`dir` is an empty
    /// temporary directory of its own).
    pub fn reading(path: PathBuf) -> TempDb {
        let dir = tempfile::tempdir().expect("tempdir");
        TempDb { dir, path }
    }

    pub fn store(&self) -> Store {
        Store::sqlite(&self.path)
    }

    pub fn conn(&self) -> SqliteConnection {
        use diesel::connection::SimpleConnection;
        let mut c = SqliteConnection::establish(self.path.to_str().unwrap()).expect("open sqlite");
        // the pipeline's connections may be checkpointing the WAL as they close
        c.batch_execute("PRAGMA busy_timeout = 10000")
            .expect("busy_timeout");
        c
    }

    /// `SELECT <expr> AS n ...` as an i64.
    pub fn scalar(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<N> = diesel::sql_query(sql).load(&mut self.conn()).expect(sql);
        rows.first().map(|r| r.n).unwrap_or(0)
    }

    pub fn count(&self, table_and_filter: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) AS n FROM {table_and_filter}"))
    }

    /// Makes the store refuse every command named "poison" with a real UNIQUE violation (a
    /// trigger inserting a duplicate key), so the writer has to quarantine it. The schema must
    /// exist (after the first `Flush`).
    pub fn poison_commands(&self) {
        use diesel::connection::SimpleConnection;
        self.conn()
            .batch_execute(
                "CREATE TABLE guard (x INTEGER PRIMARY KEY); INSERT INTO guard VALUES (1);
                 CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.name = 'poison'
                 BEGIN INSERT INTO guard VALUES (1); END;",
            )
            .unwrap();
    }
}

/// One store of either backend, with direct SQL reads.
pub enum Db {
    Sqlite(TempDb),
    Pg(pg::TestDb),
}

impl Db {
    pub fn store(&self) -> Store {
        match self {
            Db::Sqlite(db) => db.store(),
            Db::Pg(db) => Store::postgres(db.url()),
        }
    }

    pub fn count(&self, from: &str) -> i64 {
        match self {
            Db::Sqlite(db) => db.count(from),
            Db::Pg(db) => db.count(from),
        }
    }
}

/// A pipeline on a manual clock set to `T0`; the batch timer never fires on its own.
pub fn start_manual(config: Config, db: &TempDb) -> (actix::Addr<Tracker>, ManualClock) {
    let _ = env_logger::builder().is_test(true).try_init();
    let clock = ManualClock::new(T0);
    let addr =
        eventbatch::start_with_clock(config, db.store(), Arc::new(clock.clone())).expect("start");
    (addr, clock)
}

/// Config for deterministic tests: nothing is written until a trigger or a flush.
pub fn quiet_config() -> Config {
    Config {
        batch_interval_ms: 3_600_000,
        ..Config::default()
    }
}

/// The conservation law after a `Flush`: every event received is rejected, sampled out or
/// kept, and every kept event is written, aggregated into a written window, dropped by the
/// counted overflow policy, or quarantined (a row the store refused, kept with its error).
pub fn conservation(s: &Stats) {
    assert_eq!(
        s.events_received,
        s.events_rejected + s.events_sampled_out + s.events_kept,
        "{s:?}"
    );
    assert_eq!(
        s.events_kept,
        s.records_written + s.events_aggregated + s.events_dropped + s.events_quarantined,
        "{s:?}"
    );
}

/// The conservation law while some kept events are still pending (e.g. held by the writer
/// after a failed `Flush`): every kept event is written, aggregated, dropped by a counted
/// policy, or counted in the `events_queued` gauge.
pub fn conservation_pending(s: &Stats) {
    assert_eq!(
        s.events_received,
        s.events_rejected + s.events_sampled_out + s.events_kept,
        "{s:?}"
    );
    assert_eq!(
        s.events_kept,
        s.records_written + s.events_aggregated + s.events_dropped + s.events_queued,
        "{s:?}"
    );
}

/// Events of each kind [`fill_every_stage_and_stop`] sends.
pub const BARE_STOP_EVENTS: i64 = 2_550;

/// Starts a pipeline on `db` with `config` (at `max_batch_size` 100), fills every stage with
/// records in full batches (in flight to the writer) and queued, open windows and an error
/// count, all still in the mailboxes, then stops the System without a `Shutdown`: what an
/// application returning from `main` does.
pub fn fill_every_stage_and_stop(config: Config, db: &TempDb) {
    let sys = actix::System::new();
    sys.block_on(async {
        let (t, _) = start_manual(
            Config {
                max_batch_size: 100,
                ..config
            },
            db,
        );
        for i in 0..BARE_STOP_EVENTS {
            t.do_send(eventbatch::TrackEvent::command("c").at(T0 + i));
            t.do_send(eventbatch::TrackEvent::performance("rt", 1.0).at(T0 + i * 100));
            t.do_send(eventbatch::TrackEvent::error("timeout", "api").at(T0));
        }
        actix::System::current().stop();
    });
    sys.run().unwrap();
}

/// Every event [`fill_every_stage_and_stop`] sent is in the store.
pub fn assert_every_stage_was_written(db: &TempDb) {
    assert_eq!(db.count("events WHERE kind = 'command'"), BARE_STOP_EVENTS);
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM metric_windows"),
        BARE_STOP_EVENTS
    );
    assert_eq!(
        db.scalar("SELECT sum(count) AS n FROM error_counts"),
        BARE_STOP_EVENTS
    );
}

/// Sends `events` in `TrackBatch`es of `chunk`, every one accepted.
pub async fn send_all(t: &actix::Addr<Tracker>, events: Vec<TrackEvent>, chunk: usize) {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<TrackEvent> = events.by_ref().take(chunk).collect();
        let n = batch.len();
        let ack = t.send(TrackBatch(batch)).await.unwrap().unwrap();
        assert_eq!((ack.accepted, ack.rejected), (n, 0));
    }
}

/// Polls `GetStats` until `pred` holds (work that finishes on the writer thread), failing after
/// 20 s. Not a timing assertion: it waits for completion, however long it takes up to then.
pub async fn wait_for(t: &actix::Addr<Tracker>, pred: impl Fn(&Stats) -> bool) -> Stats {
    for _ in 0..2_000 {
        let s = t.send(GetStats).await.unwrap();
        if pred(&s) {
            return s;
        }
        actix::clock::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "condition not reached: {:?}",
        t.send(GetStats).await.unwrap()
    );
}

/// Both futures, polled concurrently on this thread (`b` as a task of the current System).
pub async fn join_both<A: std::future::Future, B: std::future::Future + 'static>(
    a: A,
    b: B,
) -> (A::Output, B::Output)
where
    B::Output: 'static,
{
    let b = actix_rt::spawn(b);
    let a = a.await;
    (a, b.await.unwrap())
}

/// HMAC-SHA256(key, id), first 32 hex digits: what an analyst computes to find a user's rows.
pub fn pseudonym(key: &str, id: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    let tag = mac.finalize().into_bytes();
    tag.iter().map(|b| format!("{b:02x}")).collect::<String>()[..32].to_string()
}

/// Every log line of this test binary from the first call on (all levels), as `LEVEL target:
/// message`, for tests that check what is logged. The first call installs the logger; call it
/// before anything logs (a test binary has one logger: `start_manual`'s `env_logger` then
/// stays out).
pub fn captured_log() -> &'static std::sync::Mutex<Vec<String>> {
    struct Capture;
    static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            let line = format!("{} {}: {}", r.level(), r.target(), r.args());
            LINES.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
        fn flush(&self) {}
    }
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if log::set_boxed_logger(Box::new(Capture)).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
    &LINES
}

/// A pipeline of `instance` on `db` with `config`, on a manual clock at `now` (batches written
/// on `Flush`, the timer's hour being far off).
pub fn start_on(
    db: &Db,
    instance: &str,
    now: i64,
    config: Config,
) -> (actix::Addr<Tracker>, ManualClock) {
    let _ = env_logger::builder().is_test(true).try_init();
    let clock = ManualClock::new(now);
    let config = Config {
        instance_id: Some(instance.into()),
        batch_interval_ms: 3_600_000,
        ..config
    };
    let t =
        eventbatch::start_with_clock(config, db.store(), Arc::new(clock.clone())).expect("start");
    (t, clock)
}
