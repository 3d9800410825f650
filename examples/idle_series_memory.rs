//! Memory per series that has gone idle: 100,000 distinct series get one sample each; their
//! windows close and are written; later their detectors are dropped as idle. Prints the live
//! heap (counted by a wrapping global allocator: what the process holds, exactly) and the RSS
//! at each step, per series.
//!
//! `cargo run --release --example idle_series_memory [SERIES]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;

use eventbatch::{
    start_with_clock, Config, Flush, ManualClock, Store, Tick, TrackBatch, TrackEvent,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const T0: i64 = 1_764_000_000_000;
const HOUR: i64 = 3_600_000;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("memory.db");
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(T0);
        let config = Config {
            batch_interval_ms: 3_600_000,
            ..Config::default()
        };
        let t =
            start_with_clock(config, Store::sqlite(&path), Arc::new(clock.clone())).expect("start");
        t.send(Flush).await.unwrap().unwrap();
        let (heap0, rss0) = (LIVE.load(Relaxed), rss_bytes());
        let per = |heap: isize, rss: i64| {
            (
                (heap - heap0) as f64 / n as f64,
                (rss - rss0) as f64 / n as f64,
            )
        };
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|i| TrackEvent::performance(format!("series{i}"), 1.0).at(T0))
                .collect();
            t.send(TrackBatch(batch)).await.unwrap().unwrap();
        }
        t.send(Flush).await.unwrap().unwrap();
        let (h, r) = per(LIVE.load(Relaxed), rss_bytes());
        println!(
            "{n} series, windows open:          heap {h:>7.0} B/series, RSS {r:>7.0} B/series"
        );
        clock.set(T0 + 2 * 60_000);
        t.send(Tick).await.unwrap();
        let s = t.send(Flush).await.unwrap().unwrap();
        assert_eq!(s.windows_open, 0);
        let (h, r) = per(LIVE.load(Relaxed), rss_bytes());
        println!(
            "windows closed and written:        heap {h:>7.0} B/series, RSS {r:>7.0} B/series"
        );
        clock.set(T0 + 7 * HOUR);
        t.send(Tick).await.unwrap();
        t.send(Flush).await.unwrap().unwrap();
        let (h, r) = per(LIVE.load(Relaxed), rss_bytes());
        println!(
            "idle past the detector idle time:  heap {h:>7.0} B/series, RSS {r:>7.0} B/series"
        );
        println!(
            "(RSS keeps pages the allocator has not returned to the OS; the heap is what is held)"
        );
    });
}
