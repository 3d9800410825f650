//! What the command writes and shows (issue 16, items 8 and 12): the report page is readable by
//! its owner only and shows no PostgreSQL password, whatever form the URL gives it in; `detect`
//! writes through a temporary file it creates itself, so a symlink planted where a predictable
//! temporary name would be is never followed. The built binary, a real SQLite store written
//! by the pipeline, and the local PostgreSQL server (trust auth: any password is accepted).

use std::path::Path;
use std::process::{Command, Output};

use eventbatch::{start, Config, Shutdown, Store, TrackBatch, TrackEvent};

fn eventbatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(args)
        .output()
        .expect("the eventbatch binary runs")
}

/// stdout and stderr of a run that must succeed.
fn run_ok(args: &[&str]) -> String {
    let out = eventbatch(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {:?}\n{text}", out.status);
    text
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A few windows of one series, written through the pipeline into `store`.
fn write_store(store: Store) {
    actix::System::new().block_on(async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let t = start(Config::default(), store).expect("start");
        let batch = (0..300)
            .map(|i| TrackEvent::performance("rt", 10.0 + (i % 7) as f64).at(now - i * 1_000))
            .collect();
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        t.send(Shutdown).await.unwrap();
    });
}

#[cfg(unix)]
#[test]
fn the_report_is_written_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    write_store(Store::sqlite(&db));
    let page = dir.path().join("report.html");
    run_ok(&[
        "report",
        "--db",
        db.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&page).unwrap().contains("rt"));
    assert_eq!(mode(&page), 0o600);
}

/// A database of the local server, created with `createdb` and dropped with it.
struct PgDb(String);

impl PgDb {
    fn create() -> PgDb {
        let name = format!("eb_cli_files_{}", std::process::id());
        let ok = Command::new("createdb")
            .args(["-h", "127.0.0.1", "-U", "root", &name])
            .status()
            .expect("createdb runs (PostgreSQL client tools)");
        assert!(ok.success(), "createdb {name}");
        PgDb(name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("dropdb")
            .args(["-h", "127.0.0.1", "-U", "root", "--force", &self.0])
            .status();
    }
}

#[test]
fn the_report_shows_no_postgres_password() {
    let pg = PgDb::create();
    let db = &pg.0;
    write_store(Store::postgres(format!(
        "postgres://root@127.0.0.1:5432/{db}"
    )));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let urls = [
        (
            "pw-userinfo-71",
            format!("postgres://root:pw-userinfo-71@127.0.0.1:5432/{db}"),
        ),
        (
            "pw-query-72",
            format!("postgres://root@127.0.0.1:5432/{db}?password=pw-query-72"),
        ),
        (
            "pw-both-73",
            format!(
                "postgresql://root:pw-both-73@127.0.0.1/{db}?password=pw-both-73&connect_timeout=5"
            ),
        ),
    ];
    for (secret, url) in &urls {
        let shown = run_ok(&["report", "--url", url, "-o", page.to_str().unwrap()]);
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains(db.as_str()), "the page names the store");
        assert!(!html.contains(secret), "{secret} in the page");
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    // a mistyped scheme or an unreachable server: the error shows no password either
    for url in [
        format!("postgress://root:pw-scheme-74@127.0.0.1/{db}"),
        "postgres://root@127.0.0.1:1/x?password=pw-down-75".to_string(),
    ] {
        let out = eventbatch(&["report", "--url", &url, "-o", page.to_str().unwrap()]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("pw-"), "password shown: {text}");
    }
}

/// A symlink planted at `<output>.tmp` (where the command once wrote its temporary file) is
/// not followed: its target keeps its content, the output is a regular file of the results.
#[cfg(unix)]
#[test]
fn detect_never_follows_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let rows: String = (0..40)
        .map(|i| format!("2014-01-01 00:{i:02}:00,{}\n", 10 + i % 3))
        .collect();
    std::fs::write(&input, format!("timestamp,value\n{rows}")).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let output = dir.path().join("out.csv");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.csv.tmp")).unwrap();
    run_ok(&[
        "detect",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(&output).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    let out = std::fs::read_to_string(&output).unwrap();
    assert_eq!(out.lines().count(), 41, "{out}");
    assert_eq!(mode(&output), 0o600);
}
