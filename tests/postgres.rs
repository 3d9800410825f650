//! The PostgreSQL backend against the real local server (`127.0.0.1:5432`). Each test creates
//! its own database and drops it when done, also on failure. `.ci/run` starts the server.

mod common;
use common::pg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{conservation, send_all};
use eventbatch::*;
use pg::{Proxy, TestDb};

/// A multiple of the 60 s window, in November 2025.
const T0: i64 = 1_764_000_000_000;
const MINUTE: i64 = 60_000;

fn config(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        max_batch_size: 500,
        ..Config::default()
    }
}

/// Exact count, sum, min, max and `floor(q (n - 1))` order statistics of each window.
#[derive(Debug, Default)]
struct Truth(BTreeMap<i64, Vec<f64>>);

impl Truth {
    fn add(&mut self, ts: i64, v: f64) {
        self.0
            .entry(ts - ts.rem_euclid(MINUTE))
            .or_default()
            .push(v);
    }

    fn check(&mut self, windows: &[WindowStats]) {
        assert_eq!(windows.len(), self.0.len(), "one window per slot");
        for (w, (start, values)) in windows.iter().zip(self.0.iter_mut()) {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            assert_eq!(w.window_start_ms, *start);
            assert_eq!(w.count, n as u64, "count of {start}");
            assert_eq!(w.sum, values.iter().sum::<f64>(), "sum of {start}");
            assert_eq!(
                (w.min, w.max),
                (values[0], values[n - 1]),
                "min/max of {start}"
            );
            for (q, est) in [(0.5, w.p50), (0.9, w.p90), (0.95, w.p95), (0.99, w.p99)] {
                let exact = values[(q * (n - 1) as f64).floor() as usize];
                assert!(
                    (est - exact).abs() <= 0.01 * exact.abs(),
                    "p{q} of {start}: {est} vs {exact}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// a. Everything lands.

#[actix_rt::test]
async fn records_windows_error_counts_and_patterns_land_in_postgres() {
    let db = TestDb::create("basic");
    let clock = ManualClock::new(T0);
    let t = start_with_clock(
        Config {
            identity_key: Some("postgres test key, 16 bytes or more".into()),
            ..config("basic")
        },
        Store::from_url(&db.url()),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let mut truth = Truth::default();
    for w in 0..80i64 {
        let mut batch = Vec::new();
        for i in 0..20i64 {
            let noise = ((w * 31 + i * 17) % 11) as f64;
            let v = if w == 60 {
                500.0 + noise
            } else {
                100.0 + noise
            };
            let ts = T0 + w * MINUTE + i * 1000;
            truth.add(ts, v);
            batch.push(
                TrackEvent::performance("api_latency", v)
                    .context("api")
                    .at(ts),
            );
            batch.push(
                TrackEvent::command("help")
                    .user(format!("u{i}"))
                    .success(i % 4 != 0)
                    .duration_ms(v)
                    .at(ts),
            );
        }
        if w == 3 {
            for i in 0..5 {
                batch.push(
                    TrackEvent::error("timeout", "api")
                        .message("upstream timed out")
                        .at(T0 + w * MINUTE + i),
                );
            }
        }
        t.send(TrackBatch(batch)).await.unwrap().unwrap();
        clock.set(T0 + (w + 1) * MINUTE);
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    conservation(&s);
    assert_eq!(s.events_received, 80 * 40 + 5);
    assert_eq!(
        s.records_written,
        80 * 20 + 1,
        "commands and the first error of its hash"
    );
    assert_eq!(
        db.count("events WHERE kind = 'command' AND name = 'help'"),
        80 * 20
    );
    assert_eq!(
        db.count("events WHERE kind = 'command' AND success = false"),
        80 * 5
    );
    assert_eq!(
        db.count("events WHERE user_hash = 'u1'"),
        0,
        "identities are hashed"
    );
    assert_eq!(
        db.count("events WHERE kind = 'error' AND error_type = 'timeout'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT sum(count) FROM error_counts WHERE error_type = 'timeout'"),
        5
    );
    assert_eq!(db.count("writer_runs WHERE instance_id = 'basic'"), 1);

    let windows = t
        .send(
            QueryWindows::metric("api_latency")
                .context("api")
                .between(T0, T0 + 80 * MINUTE),
        )
        .await
        .unwrap()
        .unwrap();
    truth.check(&windows);
    let patterns = t
        .send(QueryPatterns::all().metric("api_latency"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        patterns
            .iter()
            .any(|p| p.kind == PatternKind::Spike && p.window_start_ms == T0 + 60 * MINUTE),
        "{patterns:?}"
    );
    assert_eq!(db.count("patterns") as usize, patterns.len());
    let s = t.send(Shutdown).await.unwrap();
    conservation(&s);
    assert_eq!(s.db_errors, 0);

    // The same windows and patterns through a reader, with no pipeline running.
    let rows_before = db.count("metric_windows") + db.count("patterns");
    let reader = StoreReader::open(&Store::from_url(&db.url())).unwrap();
    let series = reader.series().unwrap();
    assert_eq!(
        series,
        [StoredSeries {
            series: "api_latency.api".into(),
            metric: "api_latency".into(),
            context: Some("api".into()),
            labels: Labels::new(),
            kind: SeriesKind::Distribution,
        }]
    );
    truth.check(&reader.windows(&series[0].query()).unwrap());
    let hours = reader
        .windows(&series[0].query().resolution(Resolution::Hour))
        .unwrap();
    assert_eq!(hours.iter().map(|h| h.count).sum::<u64>(), 80 * 20);
    let read = reader
        .patterns(&QueryPatterns::all().metric("api_latency"))
        .unwrap();
    assert!(read.len() >= patterns.len(), "{read:?}");
    assert!(patterns.iter().all(|p| read.contains(p)), "{read:?}");
    assert_eq!(
        db.count("metric_windows") + db.count("patterns"),
        rows_before,
        "the reader wrote nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// b. Three pipelines, two processes, one series.

const MERGE_WINDOWS: i64 = 3;
const MERGE_VALUES: i64 = 3000; // per window per instance
const MERGE_RECORDS: i64 = 1000; // per instance
const CHILD_URL: &str = "EB_PG_CHILD_URL";

/// Instance `k`'s latency samples `(ts, value)` over three windows: integers, so sums are exact
/// in any order, log-spread over 1..=20,000.
fn merge_samples(k: i64) -> Vec<(i64, f64)> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
    let mut out = Vec::new();
    for i in 0..MERGE_VALUES {
        for w in 0..MERGE_WINDOWS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (20_000f64.powf((x % 10_000) as f64 / 10_000.0)).round();
            out.push((T0 + w * MINUTE + (i * 17 + k) % MINUTE, v));
        }
    }
    out
}

/// What instance `k` sends: its samples, interleaved with commands whose `duration_ms` is
/// unique per instance.
fn merge_workload(k: i64) -> Vec<TrackEvent> {
    let mut out = Vec::new();
    for (n, (ts, v)) in merge_samples(k).into_iter().enumerate() {
        out.push(TrackEvent::performance("latency", v).context("api").at(ts));
        let i = n as i64;
        if i % MERGE_WINDOWS == 0 && i / MERGE_WINDOWS < MERGE_RECORDS {
            out.push(
                TrackEvent::command("cmd")
                    .duration_ms((i / MERGE_WINDOWS) as f64)
                    .at(T0 + i),
            );
        }
    }
    out
}

/// One instance: send in chunks with a `Flush` (window snapshots) now and then, then shut down.
fn run_instance(url: String, k: i64) {
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(T0 + MERGE_WINDOWS * MINUTE);
        let t = start_with_clock(
            config(&format!("inst{k}")),
            Store::postgres(url),
            Arc::new(clock),
        )
        .unwrap();
        for (n, chunk) in merge_workload(k).chunks(1000).enumerate() {
            t.send(TrackBatch(chunk.to_vec())).await.unwrap().unwrap();
            if n % 3 == 0 {
                t.send(Flush).await.unwrap().unwrap();
            }
        }
        let s = t.send(Shutdown).await.unwrap();
        conservation(&s);
        assert_eq!(s.records_written, MERGE_RECORDS as u64);
    });
}

/// The separate process of [`three_pipelines_in_two_processes_merge_exactly`]; does nothing
/// unless started by it.
#[test]
#[ignore = "run by three_pipelines_in_two_processes_merge_exactly"]
fn child_instance() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        run_instance(url, 2);
    }
}

#[test]
fn three_pipelines_in_two_processes_merge_exactly() {
    let db = TestDb::create("merge");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_instance",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, db.url())
        .spawn()
        .unwrap();
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let url = db.url();
            std::thread::spawn(move || run_instance(url, k))
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "child process failed: {status}");

    let mut truth = Truth::default();
    for k in 0..3 {
        for (ts, v) in merge_samples(k) {
            truth.add(ts, v);
        }
    }
    assert_eq!(
        db.count("metric_windows"),
        3 * MERGE_WINDOWS,
        "one row per instance and slot"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT instance_id) FROM metric_windows"),
        3
    );
    assert_eq!(db.count("events"), 3 * MERGE_RECORDS);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT (instance_id, duration_ms)) FROM events"),
        3 * MERGE_RECORDS
    );
    // A fresh pipeline (a fourth instance) reads the merged windows of all three.
    actix::System::new().block_on(async {
        let t = start_with_clock(
            config("reader"),
            Store::postgres(db.url()),
            Arc::new(ManualClock::new(T0)),
        )
        .unwrap();
        let windows = t
            .send(
                QueryWindows::metric("latency")
                    .context("api")
                    .between(T0, T0 + 10 * MINUTE),
            )
            .await
            .unwrap()
            .unwrap();
        truth.check(&windows);
        t.send(Shutdown).await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// c. Connections killed mid-run.

#[actix_rt::test]
async fn killed_connections_lose_and_duplicate_nothing() {
    let db = Arc::new(TestDb::create("kill"));
    let t = start_with_clock(
        config("kill"),
        Store::postgres(db.url()),
        Arc::new(ManualClock::new(T0 + MINUTE)),
    )
    .unwrap();
    const N: i64 = 60_000;
    let mut truth = Truth::default();
    let events: Vec<TrackEvent> = (0..N)
        .flat_map(|i| {
            let v = (1 + i % 997) as f64;
            truth.add(T0 + i % MINUTE, v);
            [
                TrackEvent::command("cmd")
                    .duration_ms(i as f64)
                    .at(T0 + i % MINUTE),
                TrackEvent::performance("rt", v).at(T0 + i % MINUTE),
            ]
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut killed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                killed += db.kill_connections();
                std::thread::sleep(Duration::from_millis(15));
            }
            killed
        })
    };
    for chunk in events.chunks(2000) {
        t.send(TrackBatch(chunk.to_vec())).await.unwrap().unwrap();
        if chunk.len() == 2000 {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let s = t.send(Flush).await.unwrap().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = killer.join().unwrap();
    assert!(killed > 0, "no connection was killed");
    eprintln!(
        "killed {killed} connections; db_errors {}, retries {}",
        s.db_errors, s.retries
    );
    conservation(&s);
    assert_eq!(s.records_written, N as u64);
    assert_eq!(db.count("events"), N, "nothing lost or duplicated");
    assert_eq!(
        db.scalar("SELECT count(DISTINCT duration_ms) FROM events"),
        N
    );
    truth.check(&t.send(QueryWindows::metric("rt")).await.unwrap().unwrap());
    t.send(Shutdown).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// d. The database unreachable for seconds.

#[actix_rt::test]
async fn an_outage_of_several_seconds_loses_nothing() {
    let db = TestDb::create("outage");
    let proxy = Proxy::start();
    let cfg = Config {
        max_batch_size: 100,
        store_retry_budget_ms: 60_000,
        ..config("outage")
    };
    let t = start_with_clock(
        cfg,
        Store::postgres(db.url_via(proxy.port)),
        Arc::new(ManualClock::new(T0 + MINUTE)),
    )
    .unwrap();
    let cmds = |from: i64, to: i64| {
        (from..to)
            .map(|i| TrackEvent::command("cmd").duration_ms(i as f64).at(T0 + i))
            .collect::<Vec<_>>()
    };
    send_all(&t, cmds(0, 1000), 250).await;
    t.send(Flush).await.unwrap().unwrap();
    assert_eq!(db.count("events"), 1000);

    proxy.cut();
    send_all(&t, cmds(1000, 3000), 250).await;
    send_all(
        &t,
        (0..500)
            .map(|i| TrackEvent::performance("rt", i as f64).at(T0 + i))
            .collect(),
        250,
    )
    .await;
    let restore = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        proxy.restore();
        proxy
    });
    let s = t.send(Flush).await.unwrap().unwrap();
    let _proxy = restore.join().unwrap();
    eprintln!("db_errors {}, retries {}", s.db_errors, s.retries);
    assert!(s.db_errors > 0 && s.retries > 0, "{s:?}");
    conservation(&s);
    assert_eq!(s.records_written, 3000);
    assert_eq!(db.count("events"), 3000);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT duration_ms) FROM events"),
        3000
    );
    assert_eq!(
        t.send(QueryWindows::metric("rt")).await.unwrap().unwrap()[0].count,
        500
    );
    t.send(Shutdown).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Idempotent retries: the reply to COMMIT lost.

#[actix_rt::test]
async fn a_batch_whose_commit_reply_is_lost_is_stored_once() {
    let db = TestDb::create("commit");
    let proxy = Proxy::start();
    let cfg = Config {
        max_batch_size: 100,
        ..config("commit")
    };
    let t = start_with_clock(
        cfg,
        Store::postgres(db.url_via(proxy.port)),
        Arc::new(ManualClock::new(T0 + MINUTE)),
    )
    .unwrap();
    let step = |from: i64, to: i64| {
        (from..to)
            .flat_map(|i| {
                [
                    TrackEvent::command("cmd").duration_ms(i as f64).at(T0 + i),
                    TrackEvent::performance("rt", (1 + i % 50) as f64).at(T0 + i),
                ]
            })
            .collect::<Vec<_>>()
    };
    send_all(&t, step(0, 250), 1000).await;
    t.send(Flush).await.unwrap().unwrap();
    for round in 1..=3i64 {
        proxy.trap_next_commit();
        send_all(&t, step(250 * round, 250 * (round + 1)), 1000).await;
        let s = t.send(Flush).await.unwrap().unwrap();
        assert_eq!(proxy.commits_trapped(), round as u64);
        assert!(s.db_errors >= round as u64, "{s:?}");
        let n = 250 * (round + 1);
        assert_eq!(s.records_written, n as u64);
        assert_eq!(
            db.count("events"),
            n,
            "round {round}: a retried batch was stored twice"
        );
        assert_eq!(
            db.scalar("SELECT count(DISTINCT duration_ms) FROM events"),
            n
        );
        let w = t.send(QueryWindows::metric("rt")).await.unwrap().unwrap();
        assert_eq!(
            (w.len(), w[0].count),
            (1, n as u64),
            "round {round}: a window snapshot counted twice"
        );
    }
    t.send(Shutdown).await.unwrap();
}
