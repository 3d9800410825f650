//! Record-only write throughput into the local PostgreSQL server: the whole pipeline (batches
//! of 500 rows, those waiting together written in one transaction by one binary COPY) next to
//! raw diesel doing the same rows 500 per transaction, as multi-row INSERTs and as COPY, and
//! 4,000 per transaction as COPY.
//!
//! `cargo bench --bench pg_write` (needs the server on
//! 127.0.0.1:5432; each iteration gets a fresh database, created and dropped outside the clock).

// the tests' PostgreSQL helpers, of which the bench uses the throwaway database only
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

#[path = "support/raw_events.rs"]
mod raw_events;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diesel::prelude::*;
use eventbatch::{start, Config, Flush, Shutdown, Store, TrackBatch, TrackEvent};
use pg::TestDb;
use raw_events::{command_rows, events};

const N: usize = 200_000;
#[path = "support/workloads.rs"]
mod workloads;
use workloads::{batches, command, T0};

/// A fresh database with the pipeline's schema.
fn fresh_db() -> TestDb {
    let db = TestDb::create("bench");
    actix::System::new().block_on(async {
        let t = start(Config::default(), Store::postgres(db.url())).unwrap();
        t.send(Shutdown).await.unwrap();
    });
    db
}

fn run_pipeline(n: usize) -> Duration {
    let db = fresh_db();
    let events: Vec<Vec<TrackEvent>> = batches(command, n);
    let url = db.url();
    let elapsed = actix::System::new().block_on(async move {
        let t = start(
            Config {
                max_batch_size: 500,
                // Room for every event: the bench measures writes, not the overflow policy.
                max_queued_events: 2 * n,
                ..Config::default()
            },
            Store::postgres(url),
        )
        .unwrap();
        let began = Instant::now();
        for batch in events {
            t.send(TrackBatch(batch)).await.unwrap().unwrap();
        }
        let s = t.send(Flush).await.unwrap().unwrap();
        let elapsed = began.elapsed();
        assert_eq!(s.records_written as usize, n);
        t.send(Shutdown).await.unwrap();
        elapsed
    });
    assert_eq!(db.count("events") as usize, n);
    elapsed
}

#[derive(Clone, Copy)]
enum Raw {
    /// `insert_into(events).values(&chunk)`, the chunk a slice.
    Insert,
    /// `copy_from(events).from_insertable(chunk)`.
    Copy,
}

/// The floor: the same rows, already built, written `per_txn` per transaction by hand.
fn run_raw(n: usize, how: Raw, per_txn: usize) -> Duration {
    let db = fresh_db();
    let mut c = db.conn();
    let rows = command_rows(n, T0);
    let began = Instant::now();
    for chunk in rows.chunks(per_txn) {
        c.transaction(|c| match how {
            Raw::Insert => diesel::insert_into(events::table).values(chunk).execute(c),
            Raw::Copy => diesel::copy_from(events::table)
                .from_insertable(chunk)
                .execute(c),
        })
        .unwrap();
    }
    let elapsed = began.elapsed();
    drop(c);
    assert_eq!(db.count("events") as usize, n);
    elapsed
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pg_write");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("pipeline_records_only", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(N)).sum())
    });
    g.bench_function(BenchmarkId::new("raw_diesel_insert_500_per_txn", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw(N, Raw::Insert, 500)).sum())
    });
    g.bench_function(BenchmarkId::new("raw_diesel_copy_500_per_txn", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw(N, Raw::Copy, 500)).sum())
    });
    // The pipeline writes up to `max_in_flight_batches` (8) waiting batches of 500 in one
    // transaction: this is its floor.
    g.bench_function(BenchmarkId::new("raw_diesel_copy_4000_per_txn", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw(N, Raw::Copy, 4000)).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
