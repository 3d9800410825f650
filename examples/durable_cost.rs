//! What durable mode (`Config::durable`) costs: the same workloads through the real pipeline
//! into a fresh SQLite file, with durable mode off and on, alternating in one run so machine
//! noise hits both alike. Each time includes the final `Flush` (in durable mode a checkpoint),
//! so every event is in the store when the clock stops.
//!
//! - `mostly-metric`: `TrackBatch`es of 1,000 of the bench's mix (90% metric samples in two
//!   series, 5% datastore latencies, 3% commands, 1% errors, 1% engagement).
//! - `records-only`: `TrackBatch`es of 1,000 commands.
//! - `do_send`: one `do_send(TrackEvent)` per event, a third each commands, latency samples
//!   and datastore timings, yielding to the event loop every 1,000 events.
//!
//! `cargo run --release --example durable_cost [EVENTS] [ROUNDS] [WORKLOAD]` (default
//! 1,000,000 x 5, every workload).
//! Prints each round, then per workload the median throughput off and on, the median of the
//! rounds' on/off ratios, and the same for the CPU time the process spent per event (all its
//! threads, from `/proc/self/stat` on Linux): on a machine shared with other work, wall-clock
//! time varies with the neighbours' load more than CPU time does.

use std::time::{Duration, Instant};

use eventbatch::{start, Config, Flush, Stats, Store, TrackBatch, TrackEvent};

#[path = "../benches/support/workloads.rs"]
mod workloads;
use workloads::{batches, command, mostly_metric, record_heavy};

#[derive(Clone, Copy)]
enum Send {
    Batches(fn(usize) -> TrackEvent),
    DoSend(fn(usize) -> TrackEvent),
}

/// CPU time this process has used so far (user + system, every thread), if the platform says.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name (which is in parentheses and may hold spaces)
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust supports
    Some(Duration::from_millis(ticks * 10))
}

/// One run: `n` events of `how`, then `Flush`; the wall-clock time, the CPU time (if known)
/// and the final stats.
fn run(how: Send, n: usize, durable: bool) -> (Duration, Option<Duration>, Stats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let batches: Vec<Vec<TrackEvent>> = match how {
        Send::Batches(make) => batches(make, n),
        Send::DoSend(_) => Vec::new(),
    };
    actix::System::new().block_on(async move {
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * n,
            durable,
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        let cpu = cpu_time();
        let began = Instant::now();
        match how {
            Send::Batches(_) => {
                for batch in batches {
                    t.send(TrackBatch(batch)).await.unwrap().unwrap();
                }
            }
            Send::DoSend(make) => {
                for i in 0..n {
                    t.do_send(make(i));
                    if i % 1000 == 999 {
                        actix_rt::task::yield_now().await;
                    }
                }
            }
        }
        let s = t.send(Flush).await.expect("mailbox").expect("flush");
        let elapsed = began.elapsed();
        let cpu = cpu_time().zip(cpu).map(|(b, a)| b.saturating_sub(a));
        assert_eq!(s.events_received as usize, n);
        assert_eq!(s.events_dropped, 0, "must not measure dropped events");
        assert_eq!(
            s.events_kept,
            s.records_written + s.events_aggregated + s.events_quarantined
        );
        (elapsed, cpu, s)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let only = args.next();
    let workloads: Vec<(&str, Send)> = [
        ("mostly-metric", Send::Batches(mostly_metric)),
        ("records-only", Send::Batches(command)),
        ("do_send", Send::DoSend(record_heavy)),
    ]
    .into_iter()
    .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
    .collect();
    // per workload: events/s off and on, CPU ns per event off and on
    let mut rates = vec![(Vec::new(), Vec::new()); workloads.len()];
    let mut cpus = vec![(Vec::new(), Vec::new()); workloads.len()];
    let mut checkpoints = vec![0u64; workloads.len()];
    let per_event = |cpu: Option<Duration>| cpu.map(|c| c.as_nanos() as f64 / n as f64);
    for round in 1..=rounds {
        for (w, &(name, how)) in workloads.iter().enumerate() {
            let (off, cpu_off, _) = run(how, n, false);
            let (on, cpu_on, s) = run(how, n, true);
            let (off, on) = (n as f64 / off.as_secs_f64(), n as f64 / on.as_secs_f64());
            let (cpu_off, cpu_on) = (per_event(cpu_off), per_event(cpu_on));
            println!(
                "round {round} {name:>13}: off {off:>9.0} events/s {:>6.0} ns CPU/event, on {on:>9.0} events/s {:>6.0} ns CPU/event ({:.2}x throughput, {} checkpoints)",
                cpu_off.unwrap_or(f64::NAN),
                cpu_on.unwrap_or(f64::NAN),
                on / off,
                s.checkpoints
            );
            rates[w].0.push(off);
            rates[w].1.push(on);
            if let (Some(a), Some(b)) = (cpu_off, cpu_on) {
                cpus[w].0.push(a);
                cpus[w].1.push(b);
            }
            checkpoints[w] = s.checkpoints;
        }
    }
    println!(
        "\nmedians of {rounds} rounds, {n} events each (ratios: median of the rounds' on/off):"
    );
    let med = |v: &Vec<f64>| {
        if v.is_empty() {
            f64::NAN
        } else {
            median(v.clone())
        }
    };
    let ratio =
        |(off, on): &(Vec<f64>, Vec<f64>)| med(&off.iter().zip(on).map(|(a, b)| b / a).collect());
    for (w, (name, _)) in workloads.iter().enumerate() {
        println!(
            "{name:>13}: throughput off {:>9.0}, on {:>9.0} events/s ({:.2}x); CPU off {:>5.0}, on {:>5.0} ns/event ({:.2}x); {} checkpoints in the last run",
            med(&rates[w].0),
            med(&rates[w].1),
            ratio(&rates[w]),
            med(&cpus[w].0),
            med(&cpus[w].1),
            ratio(&cpus[w]),
            checkpoints[w]
        );
    }
}
