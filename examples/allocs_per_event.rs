//! Heap allocations per event on the `do_send` path, counted by a wrapper around the System
//! allocator (in this example only: the library chooses no allocator for its users).
//!
//! For each workload (the mostly-metric mix, the records-only commands and the record-heavy
//! mix of `do_send_vs_loop`, from `benches/support/workloads.rs`), it starts the real pipeline
//! on a fresh SQLite file with `do_send_vs_loop`'s configuration, warms it up (the first events
//! create series, windows, prepared statements: once per run, not per event), then builds and
//! `do_send`s `EVENTS` events, as an application does, and a `Flush` that writes them. It
//! counts the allocations (`alloc`, `alloc_zeroed` and `realloc` calls) made meanwhile on the
//! application's thread (building the events, the mailbox, validation, sampling, aggregation)
//! and in the whole process (the stages' and the writer's threads too), and prints them per
//! event, with what building the events alone costs.
//!
//! `cargo run --release --example allocs_per_event [EVENTS]` (default 200,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use eventbatch::{start, Config, Flush, Store, TrackEvent};

#[path = "../benches/support/workloads.rs"]
mod workloads;

/// The System allocator, counting calls that allocate.
struct Counting;

/// Allocations in the whole process.
static TOTAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations on this thread.
    static HERE: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    TOTAL.fetch_add(1, Relaxed);
    // `try_with`: a thread being torn down may allocate after its locals are gone
    let _ = HERE.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on to `System` unchanged; counting touches no memory of the
// caller's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations on this thread and in the process so far.
fn counts() -> (u64, u64) {
    (HERE.with(Cell::get), TOTAL.load(Relaxed))
}

/// `do_send_vs_loop`'s sampled keys.
fn rates() -> HashMap<String, f64> {
    [("performance.response_time", 0.5), ("datastore.save", 0.5)]
        .into_iter()
        .map(|(k, r)| (k.to_string(), r))
        .collect()
}

/// Builds event `i` of a workload.
type Make = fn(usize) -> TrackEvent;

/// Events built to warm the pipeline up before counting.
const WARM_UP: usize = 20_000;

/// Allocations per event: building the events alone, then on the application's thread and in
/// the whole process while `n` events are built, sent with `do_send` and flushed.
fn measure(make: Make, n: usize) -> (f64, f64, f64) {
    let (before, _) = counts();
    for i in 0..n {
        std::hint::black_box(make(WARM_UP + i));
    }
    let building = (counts().0 - before) as f64 / n as f64;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("allocs.db");
    let (here, total) = actix::System::new().block_on(async move {
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * (n + WARM_UP),
            sampling_rates: rates(),
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).expect("start");
        for i in 0..WARM_UP {
            t.do_send(make(i));
        }
        t.send(Flush).await.expect("mailbox").expect("flush");
        let (here, total) = counts();
        for i in WARM_UP..WARM_UP + n {
            t.do_send(make(i));
        }
        let s = t.send(Flush).await.expect("mailbox").expect("flush");
        let (here_after, total_after) = counts();
        assert_eq!(s.events_received as usize, WARM_UP + n);
        assert_eq!(s.events_dropped, 0, "nothing dropped");
        (here_after - here, total_after - total)
    });
    (building, here as f64 / n as f64, total as f64 / n as f64)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("{n} events per workload, each built and sent with do_send, then a Flush");
    println!(
        "{:<14} {:>10} {:>20} {:>10}",
        "workload", "building", "application thread", "process"
    );
    let workloads: [(&str, Make); 3] = [
        ("mostly-metric", workloads::mostly_metric),
        ("records-only", workloads::command),
        ("record-heavy", workloads::record_heavy),
    ];
    for (name, make) in workloads {
        let (building, here, total) = measure(make, n);
        println!("{name:<14} {building:>10.3} {here:>20.3} {total:>10.3}");
    }
    println!("(allocations per event: alloc, alloc_zeroed and realloc calls)");
}
