//! Scale-out end to end with the built binary (docs/scale-out.md): `eventbatch demo --forward`
//! into a real `nats-server -js` (started on a free port), two `eventbatch worker` processes
//! into a real PostgreSQL database of the test's own, one of them killed with SIGKILL while it
//! works. The workers' store must hold what the embedded demo stores with the same `--events`:
//! the same records, the same sum of window counts, the same error counts.
//! Reads both stores with the `psql` and `sqlite3` commands.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;

const EVENTS: &str = "200000";

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "root", "-d", db, "-tAc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sqlite(path: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .output()
        .expect("sqlite3 runs");
    assert!(out.status.success(), "sqlite3 {sql}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL database dropped when the guard goes.
struct Db(String);

impl Db {
    fn create() -> Db {
        let name = format!("eb_cli_scale_{}_{}", std::process::id(), nats::free_port());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        Db(name)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-tAc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .output();
    }
}

/// A child process killed when the guard goes.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(nats: &str, stream: &str, db: &Db) -> Proc {
    let url = format!("postgres://root@127.0.0.1:5432/{}", db.0);
    Proc(
        Command::new(env!("CARGO_BIN_EXE_eventbatch"))
            .args(["worker", "--nats", nats, "--stream", stream, "--url", &url])
            .args(["--ack-wait-ms", "2000"])
            .stdout(Stdio::null())
            .spawn()
            .expect("the worker starts"),
    )
}

/// The totals a store holds: records, sum of window counts, sum of error counts.
type Totals = (i64, i64, i64);

const TOTALS: &str = "SELECT (SELECT count(*) FROM events) || ' ' || \
    (SELECT COALESCE(SUM(count), 0) FROM metric_windows) || ' ' || \
    (SELECT COALESCE(SUM(count), 0) FROM error_counts)";

fn totals(text: &str) -> Totals {
    let v: Vec<i64> = text
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

#[test]
fn the_demo_through_two_workers_one_killed_stores_what_the_embedded_demo_stores() {
    let server = nats::NatsServer::start();
    let db = Db::create();
    let dir = tempfile::tempdir().unwrap();
    let stream = "demo";
    let a = worker(&server.url(), stream, &db);
    let b = worker(&server.url(), stream, &db);
    let local = dir.path().join("local.db");
    // no sampling (the default demo keeps 10% of one series with random coins): both runs keep
    // every event, so their stores can be compared exactly
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, "max_batch_size = 500\n").unwrap();
    let demo = Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args([
            "demo",
            "--events",
            EVENTS,
            "--forward",
            &server.url(),
            "--stream",
            stream,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&local)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    // kill -9 one worker once the workers have committed something
    let deadline = Instant::now() + Duration::from_secs(120);
    let applied = |db: &Db| -> i64 {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "root", "-d", &db.0, "-tAc"])
            .arg("SELECT count(*) FROM nats_applied")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    };
    while applied(&db) == 0 {
        assert!(Instant::now() < deadline, "no message committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut a = a;
    a.0.kill().expect("SIGKILL");
    let out = demo.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let batches: i64 = text
        .split("forwarded to stream demo (")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the demo says how many batches: {text}"));
    // the survivor takes the dead worker's messages over after the 2 s acknowledgement wait
    while applied(&db) < batches {
        assert!(
            Instant::now() < deadline,
            "{} of {batches} committed",
            applied(&db)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(applied(&db), batches);
    drop(b);
    let forwarded = totals(&psql(&db.0, TOTALS));

    let embedded_db = dir.path().join("embedded.db");
    let out = Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(["demo", "--events", EVENTS])
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&embedded_db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let embedded = totals(&sqlite(&embedded_db, TOTALS));
    assert!(embedded.0 > 0 && embedded.1 > 0 && embedded.2 > 0);
    assert_eq!(
        forwarded, embedded,
        "(records, window counts, error counts)"
    );
}
