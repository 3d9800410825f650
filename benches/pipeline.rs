//! Throughput of the whole pipeline (validation, sampling, aggregation, batched SQLite writes)
//! next to raw diesel batched inserts of the same record rows, in one run: 500 rows per
//! transaction as a slice (re-prepared every call), as a fixed-size array of `'static` rows
//! (prepared once, cached), as an array of rows copied into owned strings (what the store
//! does), and as 500 single-row INSERTs.
//!
//! `cargo bench --bench pipeline` (each iteration: a fresh SQLite file, N events through
//! `TrackBatch`es of 1,000, then `Flush`, so every event is durable when the clock stops).
//! The `_durable` variants run the same with `Config::durable` (journal, checkpoints).

#[path = "support/raw_events.rs"]
mod raw_events;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use eventbatch::{start, Config, Flush, Store, TrackBatch, TrackEvent};
use raw_events::{command_rows, events, OwnedRow};

const N: usize = 200_000;
#[path = "support/workloads.rs"]
mod workloads;
use workloads::{batches, command, mostly_metric as mixed, mostly_metric_labelled, T0};

fn run_pipeline(make: fn(usize) -> TrackEvent, n: usize, durable: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let events: Vec<Vec<TrackEvent>> = batches(make, n);
    actix::System::new().block_on(async move {
        // room for every event: the bench measures throughput, not the overflow policy
        let config = Config {
            max_batch_size: 500,
            max_queued_events: 2 * n,
            durable,
            ..Config::default()
        };
        let t = start(config, Store::sqlite(&path)).unwrap();
        let began = Instant::now();
        for batch in events {
            t.send(TrackBatch(batch)).await.unwrap().unwrap();
        }
        let s = t.send(Flush).await.unwrap().unwrap();
        let elapsed = began.elapsed();
        assert_eq!(s.events_received as usize, n);
        assert_eq!(
            s.events_kept,
            s.records_written + s.events_aggregated + s.events_dropped
        );
        assert_eq!(
            s.events_dropped, 0,
            "the bench must not measure dropped events"
        );
        elapsed
    })
}

/// How the raw bench sends each transaction's 500 rows.
#[derive(Clone, Copy)]
enum Raw {
    /// `values(chunk)` with `chunk: &[Row]`: diesel prepares the statement on every call.
    Slice,
    /// `values(chunk)` with `chunk: &[Row; 500]`: the prepared statement is cached.
    Array,
    /// 500 single-row INSERTs (one cached statement) in the transaction.
    SingleRows,
    /// Each chunk copied into an array of rows that own their strings (an array of rows that
    /// borrow is not cached: its query id would not be `'static`), then inserted as `Array`.
    OwnedArray,
}

/// The floor: the same rows, already built, inserted 500 per transaction by hand.
fn run_raw_diesel(n: usize, how: Raw) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.db");
    // reuse the pipeline's schema
    drop(
        actix::System::new()
            .block_on(async { start(Config::default(), Store::sqlite(&path)).map(|_| ()) }),
    );
    let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    c.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    let rows = command_rows(n, T0);
    let began = Instant::now();
    let (chunks, rest) = rows.as_chunks::<500>();
    assert!(rest.is_empty());
    for chunk in chunks {
        c.immediate_transaction(|c| match how {
            Raw::Slice => diesel::insert_into(events::table)
                .values(&chunk[..])
                .execute(c),
            Raw::Array => diesel::insert_into(events::table).values(chunk).execute(c),
            Raw::SingleRows => chunk.iter().try_fold(0, |n, row| {
                Ok(n + diesel::insert_into(events::table).values(row).execute(c)?)
            }),
            Raw::OwnedArray => {
                let owned: Box<[OwnedRow; 500]> = Box::new(chunk.each_ref().map(OwnedRow::from));
                diesel::insert_into(events::table)
                    .values(&*owned)
                    .execute(c)
            }
        })
        .unwrap();
    }
    began.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("pipeline_mixed_mostly_metrics", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(mixed, N, false)).sum())
    });
    g.bench_function(
        BenchmarkId::new("pipeline_mixed_mostly_metrics_3_labels", N),
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run_pipeline(mostly_metric_labelled, N, false))
                    .sum()
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("pipeline_mixed_mostly_metrics_durable", N),
        |b| b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(mixed, N, true)).sum()),
    );
    g.bench_function(BenchmarkId::new("pipeline_records_only", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(command, N, false)).sum())
    });
    g.bench_function(BenchmarkId::new("pipeline_records_only_durable", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(command, N, true)).sum())
    });
    g.bench_function(BenchmarkId::new("raw_diesel_500_per_txn", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw_diesel(N, Raw::Slice)).sum())
    });
    g.bench_function(BenchmarkId::new("raw_diesel_array_500_per_txn", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw_diesel(N, Raw::Array)).sum())
    });
    g.bench_function(
        BenchmarkId::new("raw_diesel_owned_array_500_per_txn", N),
        |b| b.iter_custom(|iters| (0..iters).map(|_| run_raw_diesel(N, Raw::OwnedArray)).sum()),
    );
    g.bench_function(
        BenchmarkId::new("raw_diesel_single_rows_500_per_txn", N),
        |b| b.iter_custom(|iters| (0..iters).map(|_| run_raw_diesel(N, Raw::SingleRows)).sum()),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
