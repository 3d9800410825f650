//! CPU time per event, by thread, for the pipeline bench's mostly-metric workload sent in
//! `TrackBatch`es of 1,000 into SQLite, as `benches/pipeline.rs` sends it: wall-clock events/s, and the CPU the whole process, the
//! application's thread, the writer's and the stages' spent while the events went through
//! (from `getrusage` and `/proc/self/task/*/stat`; the per-thread figures of the writer and the
//! stages count 10 ms ticks). On a loaded machine the wall clock measures the machine as much
//! as the code; CPU time per event, by thread, says which thread's work changed. Linux only.
//!
//! `cargo run --release --example cpu_per_event -- [EVENTS] [ROUNDS]` (default
//! 1,000,000 events, 2 rounds, each on a fresh SQLite file). The file builds at 8d2d62e too,
//! so two builds can be compared: `benches/ab_cpu.sh BASE NEW` alternates them.

use std::collections::BTreeMap;
use std::time::Instant;

use eventbatch::{start, Config, Flush, Store, TrackBatch};

#[path = "../benches/support/workloads.rs"]
mod workloads;

/// CPU seconds (user + system) of the process, of the calling thread, and the process's
/// system seconds.
fn rusage() -> (f64, f64, f64) {
    let get = |who| {
        // SAFETY: getrusage writes a plain C struct, zeroed before the call.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let secs = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
        (secs(u.ru_utime) + secs(u.ru_stime), secs(u.ru_stime))
    };
    let (process, system) = get(libc::RUSAGE_SELF);
    (process, get(libc::RUSAGE_THREAD).0, system)
}

/// CPU seconds (user + system, in 10 ms ticks) of the process's threads, by name.
fn threads() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        // fields after the command's closing parenthesis: utime and stime are the 12th and 13th
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        *out.entry(comm.trim().to_string()).or_insert(0.0) += ticks / 100.0;
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2);
    let dir = tempfile::tempdir()?;
    for round in 0..rounds {
        let path = dir.path().join(format!("round{round}.db"));
        let events = workloads::batches(workloads::mostly_metric, n);
        let (wall, cpu, stats) = actix::System::new().block_on(async move {
            let config = Config {
                max_batch_size: 500,
                max_queued_events: 2 * n,
                ..Config::default()
            };
            let t = start(config, Store::sqlite(&path))?;
            let (threads_before, cpu_before) = (threads(), rusage());
            let began = Instant::now();
            for batch in events {
                t.send(TrackBatch(batch)).await??;
            }
            let stats = t.send(Flush).await??;
            let wall = began.elapsed();
            let (cpu_after, threads_after) = (rusage(), threads());
            let of = |name: &str| {
                threads_after.get(name).copied().unwrap_or(0.0)
                    - threads_before.get(name).copied().unwrap_or(0.0)
            };
            let cpu = [
                cpu_after.0 - cpu_before.0,
                cpu_after.1 - cpu_before.1,
                of("eventbatch-writ"),
                of("eventbatch-stag"),
                cpu_after.2 - cpu_before.2,
            ];
            anyhow::Ok((wall, cpu, stats))
        })?;
        anyhow::ensure!(stats.events_received as usize == n, "{stats:?}");
        let per_event = |secs: f64| secs * 1e9 / n as f64;
        println!(
            "events/s {:.0} process_ns {:.1} app_thread_ns {:.1} writer_ns {:.1} stages_ns {:.1} \
             system_ns {:.1} transactions {} windows {}",
            n as f64 / wall.as_secs_f64(),
            per_event(cpu[0]),
            per_event(cpu[1]),
            per_event(cpu[2]),
            per_event(cpu[3]),
            per_event(cpu[4]),
            stats.transactions,
            stats.windows_written,
        );
    }
    Ok(())
}
