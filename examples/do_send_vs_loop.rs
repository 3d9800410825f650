//! The path the README shows, measured: one `do_send(TrackEvent)` per event through the real
//! pipeline into a fresh SQLite file, next to a hand-written single-threaded loop that does
//! the same work (validation, sampling, aggregation into windows with the same window state,
//! 500-row batched diesel inserts with a cached statement, the windows written at the end),
//! alternating in one run so machine noise hits both alike.
//!
//! The mix is record-heavy: a third commands (written as records), a third latency samples, a
//! third datastore timings, with two sampled keys (`performance.response_time` and
//! `datastore.save` at 0.5).
//!
//! `cargo run --release --example do_send_vs_loop [EVENTS] [ROUNDS]` (default 300,000 x 5).
//! Prints each round and the medians; the time includes the final `Flush`, so every event is
//! durable when the clock stops.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use eventbatch::stats::window::WindowState;
use eventbatch::{start, Config, Flush, Store};

#[path = "../benches/support/raw_events.rs"]
#[allow(dead_code)]
mod raw_events;
use raw_events::{events, OwnedRow as Row};

#[path = "../benches/support/workloads.rs"]
mod workloads;
use workloads::{record_heavy as event, T0};

fn rates() -> HashMap<String, f64> {
    [("performance.response_time", 0.5), ("datastore.save", 0.5)]
        .into_iter()
        .map(|(k, r)| (k.to_string(), r))
        .collect()
}

/// `yield_every`: 0 sends everything in one burst before the event loop runs anything else
/// (a loop that never awaits); N yields to the event loop after every N events, as a service
/// producing events from its request handlers does.
fn pipeline(n: usize, yield_every: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    actix::System::new().block_on(async move {
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * n,
            sampling_rates: rates(),
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        let began = Instant::now();
        for i in 0..n {
            t.do_send(event(i));
            if yield_every > 0 && i % yield_every == yield_every - 1 {
                actix_rt::task::yield_now().await;
            }
        }
        let s = t.send(Flush).await.expect("mailbox").expect("flush");
        let elapsed = began.elapsed();
        assert_eq!(s.events_received as usize, n);
        assert_eq!(
            s.events_dropped, 0,
            "the bench must not measure dropped events"
        );
        assert_eq!(
            s.events_kept,
            s.records_written + s.events_aggregated,
            "everything kept is written"
        );
        elapsed
    })
}

diesel::table! {
    metric_windows (id) {
        id -> BigInt, instance_id -> Text, series -> Text, metric -> Text,
        context -> Nullable<Text>, window_start_ms -> BigInt, window_end_ms -> BigInt,
        count -> BigInt, estimated_count -> Double, sum -> Double, min -> Double,
        max -> Double, mean -> Double, stddev -> Double, p50 -> Double, p90 -> Double,
        p95 -> Double, p99 -> Double, sketch -> Nullable<Binary>, is_final -> Bool,
    }
}

#[derive(Insertable)]
#[diesel(table_name = metric_windows, treat_none_as_default_value = false)]
struct WindowRow<'a> {
    instance_id: &'a str,
    series: &'a str,
    metric: &'a str,
    context: Option<&'a str>,
    window_start_ms: i64,
    window_end_ms: i64,
    count: i64,
    estimated_count: f64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    p50: f64,
    p90: f64,
    p95: f64,
    p99: f64,
    sketch: Option<&'a [u8]>,
    is_final: bool,
}

/// The events the loop builds, as the application would, before it validates them.
struct Plain {
    kind: &'static str,
    name: String,
    ts: i64,
    user: Option<String>,
    server: Option<String>,
    success: Option<bool>,
    duration: Option<f64>,
    value: Option<f64>,
    context: Option<String>,
}

fn plain(i: usize) -> Plain {
    let ts = T0 + i as i64;
    let base = |kind, name: &str| Plain {
        kind,
        name: name.to_string(),
        ts,
        user: None,
        server: None,
        success: None,
        duration: None,
        value: None,
        context: None,
    };
    match i % 3 {
        0 => Plain {
            user: Some("user123".into()),
            server: Some("server456".into()),
            success: Some(!i.is_multiple_of(50)),
            duration: Some(250.0),
            ..base("command", "help")
        },
        1 => Plain {
            value: Some((i % 500) as f64 + 1.0),
            context: Some("api".into()),
            ..base("performance", "response_time")
        },
        _ => Plain {
            value: Some((i % 37) as f64 + 0.5),
            context: Some("conversation".into()),
            ..base("datastore", "save")
        },
    }
}

fn valid(e: &Plain, now: i64) -> bool {
    !e.name.is_empty()
        && e.name.len() <= 256
        && e.value.is_none_or(|v| v.is_finite() && v >= 0.0)
        && e.duration.is_none_or(|v| v.is_finite() && v >= 0.0)
        && e.ts >= 946_684_800_000
        && e.ts <= now + 86_400_000
}

/// A tiny PRNG, as the pipeline's sampler uses.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn hashed(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn insert(c: &mut SqliteConnection, rows: &mut Vec<Row>) {
    c.immediate_transaction(|c| {
        if rows.len() == 500 {
            let array: Box<[Row; 500]> = std::mem::take(rows)
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("500 rows"));
            diesel::insert_into(events::table)
                .values(&*array)
                .execute(c)?;
        } else {
            diesel::insert_into(events::table)
                .values(&rows[..])
                .execute(c)?;
            rows.clear();
        }
        Ok::<_, diesel::result::Error>(())
    })
    .expect("insert");
}

fn hand_written_loop(n: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("loop.db");
    let mut c = SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open");
    c.batch_execute(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
    )
    .expect("pragmas");
    c.batch_execute(include_str!(
        "../migrations/sqlite/2026-11-26-000000_create/up.sql"
    ))
    .expect("schema");
    let began = Instant::now();
    let rates = rates();
    let mut rng = Rng(7);
    let mut key = String::new();
    let mut windows: HashMap<String, BTreeMap<i64, WindowState>> = HashMap::new();
    let mut rows: Vec<Row> = Vec::with_capacity(500);
    let now = T0 + n as i64;
    for i in 0..n {
        let e = plain(i);
        if !valid(&e, now) {
            continue;
        }
        key.clear();
        if e.kind != "command" {
            key.push_str(e.kind);
            key.push('.');
        }
        key.push_str(&e.name);
        let rate = rates.get(key.as_str()).copied().unwrap_or(1.0);
        if rate < 1.0 && rng.next_f64() >= rate {
            continue;
        }
        if e.kind == "command" {
            rows.push(Row {
                instance_id: "loop".into(),
                ts_ms: e.ts,
                kind: "command".into(),
                name: e.name,
                priority: "normal".into(),
                user_hash: e.user.as_deref().map(hashed),
                server_hash: e.server.as_deref().map(hashed),
                success: e.success,
                duration_ms: e.duration,
                sample_rate: rate,
                ..Row::default()
            });
            if rows.len() == 500 {
                insert(&mut c, &mut rows);
            }
        } else {
            let series = format!("{key}.{}", e.context.as_deref().unwrap_or(""));
            let start = e.ts - e.ts.rem_euclid(60_000);
            windows
                .entry(series)
                .or_default()
                .entry(start)
                .or_default()
                .observe(e.value.unwrap_or(0.0), 1.0 / rate);
        }
    }
    if !rows.is_empty() {
        insert(&mut c, &mut rows);
    }
    c.immediate_transaction(|c| {
        for (series, by_start) in &windows {
            for (&start, w) in by_start {
                let s = w.summary();
                let blob = w.to_bytes();
                diesel::insert_into(metric_windows::table)
                    .values(&WindowRow {
                        instance_id: "loop",
                        series,
                        metric: series,
                        context: None,
                        window_start_ms: start,
                        window_end_ms: start + 60_000,
                        count: s.count as i64,
                        estimated_count: s.estimated_count,
                        sum: s.sum,
                        min: s.min,
                        max: s.max,
                        mean: s.mean,
                        stddev: s.stddev,
                        p50: s.p50,
                        p90: s.p90,
                        p95: s.p95,
                        p99: s.p99,
                        sketch: Some(&blob),
                        is_final: true,
                    })
                    .execute(c)?;
            }
        }
        Ok::<_, diesel::result::Error>(())
    })
    .expect("windows");
    began.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if std::env::var("ONLY").as_deref() == Ok("pipeline") {
        // for profiling: the pipeline alone
        for _ in 0..rounds {
            println!(
                "pipeline {:.0} events/s",
                n as f64 / pipeline(n, 0).as_secs_f64()
            );
        }
        return;
    }
    if std::env::var("ONLY").as_deref() == Ok("loop") {
        // for profiling: the hand-written loop alone
        for _ in 0..rounds {
            println!(
                "loop {:.0} events/s",
                n as f64 / hand_written_loop(n).as_secs_f64()
            );
        }
        return;
    }
    println!("{n} events per run, one do_send each; record-heavy mix; {rounds} rounds");
    println!("burst: the producer sends all events before yielding; interleaved: it yields to the event loop every 1,000");
    let (mut burst, mut inter, mut lp) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let b = n as f64 / pipeline(n, 0).as_secs_f64();
        let i = n as f64 / pipeline(n, 1_000).as_secs_f64();
        let l = n as f64 / hand_written_loop(n).as_secs_f64();
        println!(
            "round {round}: loop {l:>9.0}  pipeline burst {b:>9.0} ({:.2}x)  interleaved {i:>9.0} ({:.2}x) events/s",
            b / l,
            i / l
        );
        burst.push(b / l);
        inter.push(i / l);
        lp.push(l);
    }
    println!(
        "median: loop {:.0} events/s; pipeline/loop ratio: burst {:.2}, interleaved {:.2} (medians of per-round ratios)",
        median(lp),
        median(burst),
        median(inter)
    );
}
