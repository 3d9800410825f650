//! What the pipeline's metrics cost, with the real Prometheus recorder installed (feature
//! `prometheus`):
//!
//! `cargo run --release --features prometheus --example metrics_cost [EVENTS] [ROUNDS]`
//! (default 300,000 x 5).
//!
//! 1. One publication of every counter and gauge (what the timer does every
//!    `metrics_interval_ms`): the time of a `GetStats` round trip with metrics on, less the
//!    same with metrics off.
//! 2. What recording at each increment would have cost instead, per call: the facade's macro
//!    with the `instance_id` label (a registry lookup each time), and a handle resolved once
//!    (an indirect call and an atomic add), next to a plain atomic add.
//! 3. The pipeline, one `do_send` per event in a burst and a `Flush` (as
//!    `examples/do_send_vs_loop.rs`), with metrics off, at the default interval (a second), and
//!    published every millisecond, alternating in one run so machine noise hits all alike.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbatch::{start, Config, Flush, GetStats, Shutdown, Store, TrackEvent};

const T0: i64 = 1_764_000_000_000;

/// The i-th event: a third commands, a third latency samples, a third datastore timings.
fn event(i: usize) -> TrackEvent {
    let ts = T0 + i as i64;
    match i % 3 {
        0 => TrackEvent::command("help")
            .user("user123")
            .success(true)
            .at(ts),
        1 => TrackEvent::performance("response_time", (i % 500) as f64 + 1.0)
            .context("api")
            .at(ts),
        _ => TrackEvent::datastore("save", "conversation", (i % 37) as f64 + 0.5).at(ts),
    }
}

fn config(metrics_interval_ms: u64, n: usize) -> Config {
    let rates: HashMap<String, f64> = [("performance.response_time", 0.5), ("datastore.save", 0.5)]
        .into_iter()
        .map(|(k, r)| (k.to_string(), r))
        .collect();
    Config {
        max_batch_size: 500,
        max_queued_events: 2 * n,
        sampling_rates: rates,
        metrics_interval_ms,
        ..Config::default()
    }
}

/// Events per second through the pipeline, `n` events in one burst, then a `Flush`.
fn pipeline(n: usize, metrics_interval_ms: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    actix::System::new().block_on(async move {
        let t = start(config(metrics_interval_ms, n), Store::sqlite(&path)).expect("start");
        let began = Instant::now();
        for i in 0..n {
            t.do_send(event(i));
        }
        let s = t.send(Flush).await.expect("mailbox").expect("flush");
        let rate = n as f64 / began.elapsed().as_secs_f64();
        assert_eq!(s.events_received as usize, n);
        assert_eq!(s.events_dropped, 0);
        t.send(Shutdown).await.expect("mailbox");
        rate
    })
}

/// Median time of a `GetStats` round trip, with metrics on or off.
fn get_stats(metrics_interval_ms: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stats.db");
    actix::System::new().block_on(async move {
        let t = start(config(metrics_interval_ms, 1_000), Store::sqlite(&path)).expect("start");
        let mut times = Vec::new();
        for _ in 0..20_000 {
            let began = Instant::now();
            black_box(t.send(GetStats).await.expect("mailbox"));
            times.push(began.elapsed());
        }
        t.send(Shutdown).await.expect("mailbox");
        times.sort();
        times[times.len() / 2]
    })
}

/// Nanoseconds per call of `f`, over `calls` calls.
fn per_call(calls: u64, mut f: impl FnMut()) -> f64 {
    let began = Instant::now();
    for _ in 0..calls {
        f();
    }
    began.elapsed().as_nanos() as f64 / calls as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // the exporter's recorder, without its HTTP listener (scrapes are not what is measured)
    let handle = eventbatch::prometheus_builder()?.install_recorder()?;

    let on = get_stats(1_000);
    let off = get_stats(0);
    println!(
        "GetStats round trip, median of 20,000: {:.2} us with metrics on, {:.2} us off: one publication ~ {:.2} us",
        on.as_secs_f64() * 1e6,
        off.as_secs_f64() * 1e6,
        (on.as_secs_f64() - off.as_secs_f64()) * 1e6
    );

    let calls = 10_000_000;
    let id = "bench-instance".to_string();
    let by_macro = per_call(calls, || {
        metrics::counter!("eventbatch_cost_total", "instance_id" => id.clone()).increment(1)
    });
    let cached = metrics::counter!("eventbatch_cost_cached_total", "instance_id" => id.clone());
    let by_handle = per_call(calls, || cached.increment(black_box(1)));
    let atomic = AtomicU64::new(0);
    let plain = per_call(calls, || {
        atomic.fetch_add(black_box(1), Ordering::Relaxed);
    });
    println!(
        "one increment: counter! macro with the label {by_macro:.1} ns, a cached handle {by_handle:.1} ns, a plain atomic add {plain:.1} ns"
    );

    println!("pipeline, {n} events per run in one burst, then Flush; {rounds} rounds");
    let (mut off, mut default, mut every_ms) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = pipeline(n, 0);
        let b = pipeline(n, 1_000);
        let c = pipeline(n, 1);
        println!(
            "round {round}: metrics off {a:>9.0}  every 1 s {b:>9.0} ({:.3}x)  every 1 ms {c:>9.0} ({:.3}x) events/s",
            b / a,
            c / a
        );
        off.push(a);
        default.push(b / a);
        every_ms.push(c / a);
    }
    println!(
        "median: metrics off {:.0} events/s; against it, every 1 s {:.3}x, every 1 ms {:.3}x (medians of per-round ratios)",
        median(off),
        median(default),
        median(every_ms)
    );
    let text = handle.render();
    println!(
        "the recorder holds {} eventbatch_ lines",
        text.lines()
            .filter(|l| l.starts_with("eventbatch_"))
            .count()
    );
    Ok(())
}
