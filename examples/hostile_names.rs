//! Memory under hostile cardinality: drives distinct names through the real pipeline (an SQLite
//! file, a manual clock) and prints the resident memory (`VmRSS`, and the peak `VmHWM`, from
//! `/proc/self/status`) before and after, with the counters that say where the events went.
//!
//! - `names N SECONDS`: `N` distinct metric names spread over `SECONDS` seconds of 1 s windows
//!   (one sample each), the clock following the events and ticking every second; then
//!   everything closes and is written. Every name is a series whose windows close, and whose
//!   detectors stay in memory (at most `Config::max_detector_series`).
//! - `errors N`: `N` distinct error messages in one window, then a `Flush` (at most
//!   `Config::max_error_messages_per_window` rows for the window, the rest counted in one
//!   overflow row).
//!
//! `cargo run --release --example hostile_names -- names 1220000 90`
//! `cargo run --release --example hostile_names -- errors 1000000`

use std::sync::Arc;

use eventbatch::{
    start_with_clock, Config, Flush, GetStats, ManualClock, Shutdown, Stats, Store, Tick,
    TrackBatch, TrackEvent, Tracker,
};

/// 2025-11-24T16:00:00Z.
const T0: i64 = 1_764_000_000_000;
const CHUNK: usize = 10_000;

/// `VmRSS` and `VmHWM` of this process, in MB.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A `Stats` field by name (0 when this version of the library does not have it).
fn field(stats: &Stats, name: &str) -> u64 {
    let json = serde_json::to_value(stats).unwrap_or_default();
    json.get(name).and_then(|v| v.as_u64()).unwrap_or(0)
}

fn print_stats(label: &str, s: &Stats) {
    let (rss, hwm) = memory_mb();
    println!(
        "{label:<22} RSS {rss:>7.0} MB  peak {hwm:>7.0} MB  received {}  aggregated {}  \
         dropped {}  windows_open {}  windows_written {}  error_counts_written {}  \
         detector_series {}  detectors_evicted {}  error_messages_overflowed {}",
        s.events_received,
        s.events_aggregated,
        s.events_dropped,
        s.windows_open,
        s.windows_written,
        s.error_counts_written,
        field(s, "detector_series"),
        field(s, "detectors_evicted"),
        field(s, "error_messages_overflowed"),
    );
}

async fn send(t: &actix::Addr<Tracker>, events: Vec<TrackEvent>) {
    for chunk in events.chunks(CHUNK) {
        let ack = t.send(TrackBatch(chunk.to_vec())).await.expect("mailbox");
        let ack = ack.expect("batch");
        assert_eq!(ack.rejected, 0);
    }
}

async fn names(t: &actix::Addr<Tracker>, clock: &ManualClock, n: usize, seconds: usize) {
    let per_second = n.div_ceil(seconds.max(1));
    let mut peak_open = 0;
    for s in 0..seconds {
        let now = T0 + s as i64 * 1_000;
        clock.set(now);
        let events = (s * per_second..((s + 1) * per_second).min(n))
            .map(|i| TrackEvent::performance(format!("hostile.{i}"), i as f64).at(now + 500))
            .collect();
        send(t, events).await;
        t.send(Tick).await.expect("mailbox");
        peak_open = peak_open.max(t.send(GetStats).await.expect("mailbox").windows_open);
    }
    clock.set(T0 + (seconds as i64 + 10) * 1_000);
    t.send(Tick).await.expect("mailbox");
    let stats = t.send(Flush).await.expect("mailbox").expect("flush");
    println!("peak windows_open {peak_open}");
    print_stats("all written", &stats);
}

async fn errors(t: &actix::Addr<Tracker>, n: usize) {
    let events = (0..n)
        .map(|i| {
            TrackEvent::error("hostile", "api")
                .message(format!("message {i}"))
                .at(T0 + 100)
        })
        .collect();
    send(t, events).await;
    let stats = t.send(Flush).await.expect("mailbox").expect("flush");
    print_stats("after Flush", &stats);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("names");
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hostile.db");
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(T0);
        let config = Config {
            aggregation_window_ms: 1_000,
            batch_interval_ms: 3_600_000,
            metrics_interval_ms: 0,
            ..Config::default()
        };
        let t =
            start_with_clock(config, Store::sqlite(&path), Arc::new(clock.clone())).expect("start");
        print_stats(
            "started",
            &t.send(Flush).await.expect("mailbox").expect("flush"),
        );
        match mode {
            "errors" => errors(&t, arg(1, 1_000_000)).await,
            _ => names(&t, &clock, arg(1, 1_220_000), arg(2, 90)).await,
        }
        print_stats("shut down", &t.send(Shutdown).await.expect("mailbox"));
    });
}
