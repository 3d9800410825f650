//! The pipeline's metrics on a Prometheus endpoint (feature `prometheus`):
//!
//! `cargo run --features prometheus --example prometheus [ADDR] [SECONDS]`
//!
//! serves on `ADDR` (default `127.0.0.1:9464`) while a trickle of synthetic events goes into
//! `prometheus-example.db`, for `SECONDS` (default: until Ctrl-C or SIGTERM). Meanwhile
//! `curl http://127.0.0.1:9464/metrics` shows the `eventbatch_*` metrics.

use std::time::Duration;

use eventbatch::{start, Config, Shutdown, Store, TrackEvent};

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9464".into());
    let seconds: Option<u64> = args.next().and_then(|s| s.parse().ok());
    eventbatch::serve_prometheus(addr.as_str())?;
    let config = Config {
        instance_id: Some("example".into()),
        ..Config::default()
    };
    let tracker = start(config, Store::sqlite("prometheus-example.db"))?;
    let stopped = eventbatch::shutdown_on_signal(tracker.clone());
    let producer = {
        let tracker = tracker.clone();
        actix::spawn(async move {
            for i in 0u64.. {
                tracker.do_send(TrackEvent::command("help").user(format!("u{}", i % 10)));
                tracker.do_send(
                    TrackEvent::performance("response_time", 100.0 + (i % 50) as f64)
                        .context("api"),
                );
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    match seconds {
        Some(s) => {
            actix_rt::time::sleep(Duration::from_secs(s)).await;
            producer.abort();
            let stats = tracker.send(Shutdown).await?;
            println!(
                "{} events in, {} rows written",
                stats.events_received, stats.rows_written
            );
        }
        None => {
            let stats = stopped.await;
            producer.abort();
            println!("stopped: {stats:?}");
        }
    }
    Ok(())
}
