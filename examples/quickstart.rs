//! The README's first example, as a program: `cargo run --example quickstart`.

use eventbatch::{start, Config, Flush, QueryWindows, Shutdown, Store, TrackEvent};

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tracker = start(Config::default(), Store::sqlite("analytics.db"))?;
    tracker.do_send(
        TrackEvent::command("help")
            .user("user123")
            .success(true)
            .duration_ms(250.0),
    );
    tracker.do_send(TrackEvent::performance("response_time", 212.0).context("api"));
    tracker.send(Flush).await??; // everything so far is in the database
    let windows = tracker
        .send(QueryWindows::metric("response_time").context("api"))
        .await??;
    println!("p99 = {:.1} ms", windows[0].p99);
    let stats = tracker.send(Shutdown).await?; // flush everything and stop

    // 2 events in, 2 rows (the command, the response_time window): nothing to fold yet.
    // A minute of traffic folds every latency sample of a series into one row.
    println!(
        "{} events in, {} rows written, write reduction {:.1}%",
        stats.events_received,
        stats.rows_written,
        stats.write_reduction() * 100.0
    );
    Ok(())
}
