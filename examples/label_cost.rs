//! What labels cost the pipeline, and why: the mostly-metric workload without labels, with
//! the same three labels on every sample (one label set per metric: as many series as without
//! labels), and with three labels of 24 combinations per metric (24 times the series and the
//! windows), interleaved in rounds in one process so the three share the machine's load.
//!
//! Each run: a fresh SQLite file, `EVENTS` events through `TrackBatch`es of 1,000 (as
//! `benches/pipeline`), then `Flush`; it prints events/s, the ratio to the run without labels
//! and the windows written.
//!
//! `cargo run --release --example label_cost [EVENTS] [ROUNDS] [CASE]` (default 200,000 and 3;
//! CASE 0, 1 or 2 runs that case alone, for a profiler).

use std::time::Instant;

use eventbatch::{start, Config, Flush, Store, TrackBatch, TrackEvent};

#[path = "../benches/support/workloads.rs"]
mod workloads;

/// Builds event `i` of a workload.
type Make = fn(usize) -> TrackEvent;

/// One run: events/s and windows written.
fn run(make: Make, n: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("labels.db");
    let batches = workloads::batches(make, n);
    actix::System::new().block_on(async move {
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * n,
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        let began = Instant::now();
        for batch in batches {
            t.send(TrackBatch(batch))
                .await
                .expect("mailbox")
                .expect("batch");
        }
        let s = t.send(Flush).await.expect("mailbox").expect("flush");
        let secs = began.elapsed().as_secs_f64();
        assert_eq!(s.events_received as usize, n);
        assert_eq!(s.events_dropped, 0, "nothing dropped");
        (n as f64 / secs, s.windows_written)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let only: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let cases: [(&str, Make); 3] = [
        ("no labels", workloads::mostly_metric),
        ("3 labels, 1 set", workloads::mostly_metric_one_label_set),
        ("3 labels, 24 sets", workloads::mostly_metric_labelled),
    ];
    println!("{n} mostly-metric events per run, {rounds} rounds, cases interleaved");
    let mut rates = vec![Vec::new(); cases.len()];
    let mut windows = vec![0; cases.len()];
    for round in 1..=rounds {
        for (i, (name, make)) in cases.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let (rate, w) = run(*make, n);
            println!("round {round}  {name:<18} {rate:>12.0} events/s  {w:>6} windows");
            rates[i].push(rate);
            windows[i] = w;
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if only.is_some() {
        return;
    }
    let base = median(&rates[0]);
    println!("median events/s, ratio to no labels, windows written:");
    for (i, (name, _)) in cases.iter().enumerate() {
        let m = median(&rates[i]);
        println!("{name:<18} {m:>12.0} {:>6.2} {:>8}", m / base, windows[i]);
    }
}
