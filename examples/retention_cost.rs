//! What a retention round costs:
//! `cargo run --release --example retention_cost [-- ROWS [postgres://.../EMPTY_DB]]`.
//!
//! Writes ROWS command events (default 300,000) dated ten days back through the pipeline into a
//! new SQLite file (or, given a URL, an empty PostgreSQL database), switches retention on
//! (events kept one day) and times the `Flush` that runs the round, once per batch size: rows
//! removed per second, and the mean time of one delete transaction, which is how long a chunk
//! keeps other writers (SQLite's write lock) waiting.

use std::sync::Arc;
use std::time::Instant;

use eventbatch::{
    start_with_clock, Config, ConfigPatch, Configure, Flush, ManualClock, Retention, Shutdown,
    Store, TrackBatch, TrackEvent,
};

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_764_000_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rows: i64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300_000);
    let pg_url = args.get(2).cloned();
    for batch_size in [1_000, 10_000] {
        let dir = tempfile::tempdir()?;
        let store = match &pg_url {
            Some(url) => Store::postgres(url.clone()),
            None => Store::sqlite(dir.path().join("retention.db")),
        };
        actix::System::new().block_on(run(store, rows, batch_size))?;
        if let Some(url) = &pg_url {
            // the next batch size starts from an empty table again
            use diesel::{Connection, RunQueryDsl};
            let mut c = diesel::PgConnection::establish(url)?;
            diesel::sql_query("TRUNCATE events, writer_runs").execute(&mut c)?;
        }
    }
    Ok(())
}

async fn run(store: Store, rows: i64, batch_size: usize) -> anyhow::Result<()> {
    let described = store.describe();
    let clock = ManualClock::new(NOW);
    let config = Config {
        max_batch_size: 10_000,
        max_queued_events: 10_000_000, // nothing dropped by the overflow policy
        ..Config::default()
    };
    let t = start_with_clock(config, store, Arc::new(clock.clone()))?;
    let old = NOW - 10 * DAY;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                TrackEvent::command("help")
                    .user(format!("u{}", i % 5_000))
                    .at(old + i)
            })
            .collect();
        t.send(TrackBatch(batch)).await??;
    }
    t.send(Flush).await??;
    let retention = Retention {
        events_max_age_ms: DAY as u64,
        batch_size,
        ..Retention::default()
    };
    t.send(Configure(ConfigPatch {
        retention: Some(retention),
        ..ConfigPatch::default()
    }))
    .await??;
    let started = Instant::now();
    let stats = t.send(Flush).await??;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        stats.records_written == rows as u64 && stats.rows_pruned == rows as u64,
        "{stats:?}"
    );
    let chunks = (rows as f64 / batch_size as f64).ceil();
    println!(
        "{described}: {} rows pruned in {:.2} s ({:.0} rows/s), batch_size {batch_size}: \
         {:.2} ms per delete transaction",
        stats.rows_pruned,
        elapsed.as_secs_f64(),
        stats.rows_pruned as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / chunks
    );
    t.send(Shutdown).await?;
    Ok(())
}
