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

/// `eventbatch worker` with `args` (and a NATS server nobody listens on, a store nobody
/// serves: an invalid option is refused before either is used); its exit code and stderr.
fn worker_refuses(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(["worker", "--nats", "nats://127.0.0.1:1", "--stream", "s"])
        .args(["--url", "postgres://nobody@127.0.0.1:1/none"])
        .args(["--idle-exit-ms", "100"])
        .args(args)
        .output()
        .expect("the worker runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn worker_help_names_the_stream_settings_with_their_defaults_and_the_age_rule() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(["worker", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // clap wraps long help: one paragraph per flag, up to the next flag
    let paragraph = |flag: &str| -> String {
        let start = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("no {flag} in:\n{help}"));
        let rest = &help[start + flag.len() + 6..];
        let end = rest.find("\n      --").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let window = paragraph("--duplicate-window-ms");
    assert!(window.contains("[default: 120000]"), "{window}");
    assert!(window.contains("100 to 86,400,000"), "{window}");
    let age = paragraph("--max-age-ms");
    assert!(age.contains("[default: 0]"), "{age}");
    assert!(
        age.contains("at least `--duplicate-window-ms`")
            && age.contains("at most `--applied-max-age-ms`"),
        "{age}"
    );
}

#[test]
fn worker_refuses_invalid_stream_settings_naming_the_flag() {
    let (code, err) = worker_refuses(&["--duplicate-window-ms", "50"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("invalid --duplicate-window-ms 50: must be 100 ms to a day"),
        "{err}"
    );
    let (code, err) = worker_refuses(&["--duplicate-window-ms", "5000", "--max-age-ms", "4000"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("invalid --max-age-ms 4000: must be 0 (no maximum) or at least the duplicate window, 5000 ms"),
        "{err}"
    );
    // a duplicate window longer than the claims' age: refused with the claims' flag
    let (code, err) = worker_refuses(&[
        "--duplicate-window-ms",
        "3600000",
        "--applied-max-age-ms",
        "600000",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("invalid --applied-max-age-ms 600000"), "{err}");
    let (code, err) = worker_refuses(&["--max-age-ms", "-1"]);
    assert_eq!(code, Some(2), "clap refuses a negative age: {err}");
}

/// The stream a worker created with `--duplicate-window-ms` and `--max-age-ms` has them: read
/// from the server's own record of the stream's configuration (`meta.inf` in its storage,
/// durations in nanoseconds).
#[test]
fn a_worker_creates_the_stream_with_its_duplicate_window_and_maximum_age() {
    let server = nats::NatsServer::start();
    let db = Db::create();
    let url = format!("postgres://root@127.0.0.1:5432/{}", db.0);
    let out = Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(["worker", "--nats", &server.url(), "--stream", "flags"])
        .args(["--url", &url, "--idle-exit-ms", "200"])
        .args(["--duplicate-window-ms", "5000", "--max-age-ms", "3600000"])
        .output()
        .expect("the worker runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = walk(&server.storage())
        .into_iter()
        .find(|p| p.ends_with("streams/flags/meta.inf"))
        .expect("the stream's meta.inf");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).expect("JSON");
    assert_eq!(config["duplicate_window"], 5_000_000_000u64, "{config}");
    assert_eq!(config["max_age"], 3_600_000_000_000u64, "{config}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
