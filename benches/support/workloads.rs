//! The event mixes the benches and the bench examples send, in one place so that every figure
//! that names a mix measures the same events.
#![allow(dead_code)] // each user of this file sends some of the mixes

use eventbatch::TrackEvent;

/// Event time of the first event (2025-11-24): windows close as event time passes.
pub const T0: i64 = 1_764_000_000_000;

/// The "mostly-metric mixed workload": 90% metric samples (two series), 5% datastore
/// latencies, 3% commands, 1% errors, 1% engagement; 3 ms of event time apart (200,000
/// events: 600 s, ten 1-minute windows).
pub fn mostly_metric(i: usize) -> TrackEvent {
    let ts = T0 + (i as i64) * 3;
    match i % 100 {
        0..=2 => TrackEvent::command("help")
            .user("user123")
            .server("s1")
            .success(true)
            .duration_ms(12.0)
            .at(ts),
        3 => TrackEvent::error("timeout", "api")
            .message("upstream timed out")
            .at(ts),
        4 => TrackEvent::engagement("reaction").user("u1").at(ts),
        5..=9 => TrackEvent::datastore("save", "conversation", (i % 37) as f64).at(ts),
        10..=54 => TrackEvent::performance("response_time", (i % 500) as f64 + 1.0)
            .context("api")
            .at(ts),
        _ => TrackEvent::performance("render_ms", (i % 90) as f64 + 0.5)
            .context("web")
            .at(ts),
    }
}

/// [`mostly_metric`] with three labels on every metric sample (`region` of 3, `host` of 4,
/// `method` of 2: 24 label sets per metric), given in an order that is not sorted by key.
pub fn mostly_metric_labelled(i: usize) -> TrackEvent {
    let e = mostly_metric(i);
    match i % 100 {
        5..=99 => e
            .tag("region", ["eu", "us", "ap"][i % 3])
            .tag("host", ["h1", "h2", "h3", "h4"][(i / 3) % 4])
            .tag("method", ["GET", "POST"][(i / 12) % 2]),
        _ => e,
    }
}

/// [`mostly_metric`] with the same three labels on every metric sample: one label set per
/// metric, so it has as many series as [`mostly_metric`] and pays only for the labels.
pub fn mostly_metric_one_label_set(i: usize) -> TrackEvent {
    let e = mostly_metric(i);
    match i % 100 {
        5..=99 => e.tag("region", "eu").tag("host", "h1").tag("method", "GET"),
        _ => e,
    }
}

/// The records-only workload: a command with user, server and duration, one in 50 failed
/// (a failed command is high priority), 1 ms apart.
pub fn command(i: usize) -> TrackEvent {
    TrackEvent::command("help")
        .user("user123")
        .server("server456")
        .success(!i.is_multiple_of(50))
        .duration_ms(250.0)
        .at(T0 + i as i64)
}

/// The record-heavy mix of issue 8: a third commands (as [`command`]), a third latency
/// samples, a third datastore timings; 1 ms apart.
pub fn record_heavy(i: usize) -> TrackEvent {
    let ts = T0 + i as i64;
    match i % 3 {
        0 => command(i),
        1 => TrackEvent::performance("response_time", (i % 500) as f64 + 1.0)
            .context("api")
            .at(ts),
        _ => TrackEvent::datastore("save", "conversation", (i % 37) as f64 + 0.5).at(ts),
    }
}

/// Events `0..n` of `make`, in `TrackBatch`-sized vectors of 1,000, built before a clock starts.
pub fn batches(make: fn(usize) -> TrackEvent, n: usize) -> Vec<Vec<TrackEvent>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|c| c.iter().map(|&i| make(i)).collect())
        .collect()
}
