//! How long a `QueryWindows` for one series takes with 50,000 other series' windows open, and
//! that it writes nothing: `cargo run --release --example query_latency [OTHER_SERIES]`.

use std::time::Instant;

use eventbatch::{
    start, Config, Flush, GetStats, QueryWindows, Shutdown, Store, TrackBatch, TrackEvent,
};

fn main() {
    let others: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("query.db");
    actix::System::new().block_on(async move {
        let t = start(Config::default(), Store::sqlite(&path)).expect("start");
        for chunk in (0..others).collect::<Vec<_>>().chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|i| TrackEvent::performance(format!("series{i}"), 1.0))
                .collect();
            t.send(TrackBatch(batch)).await.unwrap().unwrap();
        }
        for v in [10.0, 20.0, 30.0] {
            t.send(TrackEvent::performance("rt", v).context("api"))
                .await
                .unwrap()
                .unwrap();
        }
        t.send(Flush).await.unwrap().unwrap();
        let before = t.send(GetStats).await.unwrap();
        let mut times = Vec::new();
        for _ in 0..21 {
            let began = Instant::now();
            let w = t
                .send(QueryWindows::metric("rt").context("api"))
                .await
                .unwrap()
                .unwrap();
            times.push(began.elapsed().as_secs_f64() * 1e3);
            assert_eq!(w.iter().map(|w| w.count).sum::<u64>(), 3);
        }
        let after = t.send(GetStats).await.unwrap();
        times.sort_by(f64::total_cmp);
        println!(
            "{others} other series open ({} windows): QueryWindows median {:.2} ms, max {:.2} ms over 21 queries; rows written by the queries: {}",
            after.windows_open,
            times[10],
            times[20],
            after.rows_written + after.snapshot_rows_written
                - before.rows_written
                - before.snapshot_rows_written
        );
        t.send(Shutdown).await.unwrap();
    });
}
