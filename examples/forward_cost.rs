//! What scale-out costs and carries (docs/scale-out.md), in one run on this machine:
//!
//! 1. the mostly-metric mix (benches/support/workloads.rs) through the embedded pipeline into
//!    a fresh SQLite file, and the same events through a pipeline in forwarding mode into a
//!    JetStream stream (a `nats-server -js` this example starts on a free port), alternating,
//!    each timed to its `Flush` (every event in the store, or acknowledged by JetStream);
//! 2. bytes per event on the wire (the stream's stored message bytes) against the JSON of the
//!    same events (`serde_json` of each `TrackEvent`), and the forwarded batches' raw encoding
//!    compressed with zstd (levels 1 and 3) and lz4, side by side (sizes, and CPU time to
//!    compress and decompress); for the mostly-metric mix, the same shares with varied fields
//!    (`mostly_metric_varied`: many users and servers, noisy values) and the record-heavy mix
//!    (a third commands), whose records travel as rows;
//! 3. one worker (`eventbatch::forward::worker`) draining each of these streams (after a
//!    warm-up worker has run the migrations) into a fresh PostgreSQL
//!    database (127.0.0.1:5432, trust auth; `EB_PG_ADMIN_URL` overrides the admin URL): events
//!    per second, CPU time of this process per event, and PostgreSQL's CPU time per event (the
//!    `postgres` processes' from /proc: other users of the same server count too);
//! 4. recovery: a forwarding pipeline fed at a steady rate, its nats-server killed for 10 s,
//!    then back: the time from the server listening again to `Flush` answered (everything
//!    accepted before it, the outage's backlog included, acknowledged by JetStream).
//!
//! `cargo run --release --example forward_cost [EVENTS] [ROUNDS] [RATE]` (default 1,000,000 x 3;
//! RATE of the recovery run in events/s, default 200,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use eventbatch::forward::worker::{self, WorkerOptions};
use eventbatch::{start, Config, Flush, Forward, Stats, Store, TrackBatch, TrackEvent};

#[path = "../benches/support/workloads.rs"]
mod workloads;
use workloads::{batches, mostly_metric, record_heavy};

#[path = "../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;

/// CPU time this process has used so far (user + system, every thread), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A workload: event `i` of a mix.
type Mix = fn(usize) -> TrackEvent;

/// `n` events of `make` into a pipeline (SQLite, or forwarding to `forward`), to `Flush`.
fn run(make: Mix, n: usize, forward: Option<Forward>) -> (Duration, Stats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let batches = batches(make, n);
    actix::System::new().block_on(async move {
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * n,
            forward,
            metrics_interval_ms: 0,
            stats_log_interval_ms: 0,
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        let began = Instant::now();
        for b in batches {
            t.send(TrackBatch(b))
                .await
                .expect("send")
                .expect("accepted");
        }
        let stats = t.send(Flush).await.expect("flush").expect("flushed");
        (began.elapsed(), stats)
    })
}

/// A pseudo-random number from `i` (splitmix64): varied fields without a generator's state.
fn mix64(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`mostly_metric`]'s shares with the fields a real application varies: 50,000 users, 200
/// servers, 20 commands, durations and metric values with noise (distinct values make bigger
/// sketches), 40 error types and messages with an id in them; event times 3 ms apart with
/// jitter. The synthetic mixes repeat one user, one server and a few values, which
/// compresses far better than real traffic would.
fn mostly_metric_varied(i: usize) -> TrackEvent {
    let r = mix64(i);
    let ts = workloads::T0 + (i as i64) * 3 + (r % 3) as i64;
    let noise = (r >> 8) as f64 / (1u64 << 56) as f64;
    let user = format!("user{}", (r >> 16) % 50_000);
    match i % 100 {
        0..=2 => TrackEvent::command(format!("cmd{}", (r >> 40) % 20))
            .user(user)
            .server(format!("srv{}", (r >> 32) % 200))
            .success(!r.is_multiple_of(50))
            .duration_ms(5.0 + 500.0 * noise * noise)
            .at(ts),
        3 => TrackEvent::error(format!("err{}", (r >> 40) % 40), "api")
            .message(format!(
                "request {} failed: upstream timed out",
                r % 1_000_000
            ))
            .at(ts),
        4 => TrackEvent::engagement("reaction").user(user).at(ts),
        5..=9 => TrackEvent::datastore("save", "conversation", 40.0 * noise).at(ts),
        10..=54 => TrackEvent::performance("response_time", 1.0 + 800.0 * noise * noise)
            .context("api")
            .at(ts),
        _ => TrackEvent::performance("render_ms", 0.5 + 90.0 * noise)
            .context("web")
            .at(ts),
    }
}

/// CPU time of every `postgres` process on this machine so far, from /proc.
fn postgres_cpu_time() -> Duration {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
    }
    Duration::from_millis(ticks * 10)
}

/// A forwarding pipeline fed `rate` mostly-metric events/s; its nats-server killed after 2 s
/// of load for `outage`, then started again on the same port and storage. Returns the time
/// from the server listening again to `Flush` answered, the events sent, and the stats.
fn recovery(rate: usize, outage: Duration) -> (Duration, usize, Stats) {
    let mut server = nats::NatsServer::start();
    let url = server.url();
    let back = Arc::new(AtomicBool::new(false));
    let feeding = back.clone();
    let feeder = std::thread::spawn(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Store::sqlite(dir.path().join("local.db"));
        actix::System::new().block_on(async move {
            let config = Config {
                max_batch_size: 500,
                // the outage's backlog waits in the queues: none of it is dropped
                max_queued_events: 4_000_000,
                forward: Some(Forward::new(url, "outage")),
                metrics_interval_ms: 0,
                stats_log_interval_ms: 0,
                ..Config::default()
            };
            let t = start(config, local).expect("start");
            let began = Instant::now();
            let mut sent = 0;
            while !feeding.load(Ordering::Relaxed) {
                let due = (began.elapsed().as_secs_f64() * rate as f64) as usize;
                if sent >= due {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let batch = (sent..sent + 1000).map(mostly_metric).collect();
                let ack = t.send(TrackBatch(batch)).await.expect("send");
                assert_eq!(ack.expect("accepted").dropped, 0, "nothing dropped");
                sent += 1000;
            }
            let stats = t.send(Flush).await.expect("flush").expect("flushed");
            (Instant::now(), sent, stats)
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    server.stop();
    std::thread::sleep(outage);
    server.resume();
    let listening = Instant::now();
    back.store(true, Ordering::Relaxed);
    let (answered, sent, stats) = feeder.join().expect("feeder");
    (answered.saturating_duration_since(listening), sent, stats)
}

/// Seconds per pass of `f` over its input: passes repeated until 0.5 s has gone by.
fn per_pass(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let began = Instant::now();
    let (mut passes, mut out) = (0u32, 0);
    while passes == 0 || began.elapsed() < Duration::from_millis(500) {
        out = f();
        passes += 1;
    }
    (began.elapsed().as_secs_f64() / passes as f64, out)
}

/// Bytes per event of the `n` events of `make` forwarded to `stream`: the stream's, their
/// JSON's, the raw encoding's, and that encoding under zstd-1, zstd-3 and lz4 (sizes and
/// CPU time per event to compress and to decompress, one thread).
fn wire_bytes(mix: &str, make: Mix, n: usize, url: &str, stream: &str) {
    let (stored, bodies) = stream_bodies(url, stream);
    let json: usize = (0..n)
        .map(|i| serde_json::to_vec(&make(i)).map(|v| v.len()).unwrap_or(0))
        .sum();
    let body: usize = bodies.iter().map(Vec::len).sum();
    let raw: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| zstd::bulk::decompress(b, 256 << 20).expect("a forwarded batch"))
        .collect();
    let raw_len: usize = raw.iter().map(Vec::len).sum();
    println!(
        "{mix}: {} messages; bytes/event: JSON {:.1}; wire (stream bytes) {:.2} ({:.0}x smaller); message bodies {:.2}; uncompressed encoding {:.2}",
        bodies.len(),
        json as f64 / n as f64,
        stored as f64 / n as f64,
        json as f64 / stored as f64,
        body as f64 / n as f64,
        raw_len as f64 / n as f64
    );
    for (name, level) in [("zstd-1", Some(1)), ("zstd-3", Some(3)), ("lz4", None)] {
        let pack = |r: &Vec<u8>| match level {
            Some(l) => zstd::bulk::compress(r, l).unwrap(),
            None => lz4_flex::compress_prepend_size(r),
        };
        let packed: Vec<Vec<u8>> = raw.iter().map(pack).collect();
        let out: usize = packed.iter().map(Vec::len).sum();
        let (pack_s, _) = per_pass(|| raw.iter().map(|r| pack(r).len()).sum());
        let (unpack_s, unpacked) = per_pass(|| {
            packed
                .iter()
                .zip(&raw)
                .map(|(p, r)| match level {
                    Some(_) => zstd::bulk::decompress(p, r.len()).unwrap().len(),
                    None => lz4_flex::decompress_size_prepended(p).unwrap().len(),
                })
                .sum()
        });
        assert_eq!(unpacked, raw_len);
        println!(
            "  {name:<7} {:>7.3} bytes/event ({:>5.1}x smaller than the raw encoding); compress {:>6.0} MB/s = {:.4} us/event; decompress {:>6.0} MB/s = {:.4} us/event",
            out as f64 / n as f64,
            raw_len as f64 / out as f64,
            raw_len as f64 / pack_s / 1e6,
            pack_s * 1e6 / n as f64,
            raw_len as f64 / unpack_s / 1e6,
            unpack_s * 1e6 / n as f64
        );
    }
}

/// One worker draining `stream` (`n` events of `mix`) into the PostgreSQL database at
/// `url`: events/s, CPU time per event of this process and of PostgreSQL.
fn drain(mix: &str, n: usize, nats: &str, stream: &str, url: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = WorkerOptions::new(nats, stream, Store::postgres(url));
    opts.fetch = 256;
    let messages = stream_bodies(nats, stream).1.len() as i64;
    let mut conn = PgConnection::establish(url).expect("the database");
    let cpu = cpu_time();
    let pg_cpu = postgres_cpu_time();
    let began = Instant::now();
    let w = {
        let stop = stop.clone();
        std::thread::spawn(move || worker::run(opts, stop))
    };
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    loop {
        let applied = diesel::sql_query("SELECT count(*) AS n FROM nats_applied WHERE stream = $1")
            .bind::<diesel::sql_types::Text, _>(stream)
            .get_result::<N>(&mut conn)
            .map(|r| r.n)
            .unwrap_or(0);
        if applied >= messages {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = began.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    let pg_cpu = postgres_cpu_time().saturating_sub(pg_cpu);
    stop.store(true, Ordering::Relaxed);
    let report = w.join().unwrap().expect("worker");
    println!(
        "worker into PostgreSQL, {mix}: {} messages, {} records, {} window rows in {:.2} s: {:.0} ev/s; CPU of this process {:.3} us/event, of PostgreSQL {:.3} us/event",
        report.messages,
        report.records,
        report.windows,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n as f64,
        pg_cpu.as_secs_f64() * 1e6 / n as f64
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The bodies of every message in `stream`.
fn stream_bodies(url: &str, stream: &str) -> (u64, Vec<Vec<u8>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let mut s = js.get_stream(stream).await.unwrap();
        let (first, last, bytes) = {
            let state = &s.info().await.unwrap().state;
            (state.first_sequence, state.last_sequence, state.bytes)
        };
        let mut bodies = Vec::new();
        for seq in first..=last {
            if let Ok(m) = s.get_raw_message(seq).await {
                bodies.push(m.payload.to_vec());
            }
        }
        (bytes, bodies)
    })
}

fn admin_url() -> String {
    std::env::var("EB_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let rate: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let server = nats::NatsServer::start();
    println!(
        "forward_cost: {n} mostly-metric events x {rounds} rounds, nats-server -js on port {}",
        server.port
    );

    // 1. embedded vs forwarded, alternating
    let (mut embedded, mut forwarded) = (Vec::new(), Vec::new());
    let mut last_stream = String::new();
    for round in 0..rounds {
        let (t, _) = run(mostly_metric, n, None);
        embedded.push(n as f64 / t.as_secs_f64());
        last_stream = format!("cost{round}");
        let (t, s) = run(
            mostly_metric,
            n,
            Some(Forward::new(server.url(), &last_stream)),
        );
        forwarded.push(n as f64 / t.as_secs_f64());
        println!(
            "  round {round}: embedded SQLite {:>10.0} ev/s   forwarded {:>10.0} ev/s   ({} messages, {} records, {} window rows)",
            embedded[round], forwarded[round], s.batches_written, s.records_written, s.windows_written
        );
    }
    let (e, f) = (median(embedded), median(forwarded));
    println!("events/s (median): embedded SQLite {e:.0}, forwarded to JetStream {f:.0}: forwarded/embedded {:.2}x", f / e);

    // 2. bytes on the wire, and the compressors on the same batches
    wire_bytes(
        "mostly-metric",
        mostly_metric,
        n,
        &server.url(),
        &last_stream,
    );
    let (varied_stream, records_stream) = ("cost_varied", "cost_records");
    let others: [(&str, Mix, &str); 2] = [
        ("mostly-metric varied", mostly_metric_varied, varied_stream),
        ("record-heavy", record_heavy, records_stream),
    ];
    for (mix, make, stream) in others {
        run(make, n, Some(Forward::new(server.url(), stream)));
        wire_bytes(mix, make, n, &server.url(), stream);
    }

    // 3. one worker into PostgreSQL
    let name = format!("eb_forward_cost_{}", std::process::id());
    let mut admin = PgConnection::establish(&admin_url()).expect("PostgreSQL must be running");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = format!("postgres://root@127.0.0.1:5432/{name}");
    // migrations first (a worker on an empty stream until idle), outside the timed runs
    let mut warm = WorkerOptions::new(server.url(), "cost_warm", Store::postgres(&url));
    warm.idle_exit = Some(Duration::from_millis(100));
    worker::run(warm, Arc::new(AtomicBool::new(false))).expect("warm-up worker");
    drain("mostly-metric", n, &server.url(), &last_stream, &url);
    drain(
        "mostly-metric varied",
        n,
        &server.url(),
        varied_stream,
        &url,
    );
    drain("record-heavy", n, &server.url(), records_stream, &url);
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    drop(server);

    // 4. recovery after a 10 s outage under load
    let (took, sent, stats) = recovery(rate, Duration::from_secs(10));
    println!(
        "recovery: {sent} events at {rate} ev/s, nats-server down 10 s: Flush answered {:.2} s after it listened again ({} messages, {} records, {} window rows acknowledged)",
        took.as_secs_f64(),
        stats.batches_written,
        stats.records_written,
        stats.windows_written
    );
}
