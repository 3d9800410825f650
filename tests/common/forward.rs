//! What the forwarding tests (tests/nats.rs, tests/forward_edges.rs) share: their mixed
//! workload, and running one test at a time.

use eventbatch::TrackEvent;

use super::T0;

/// The aggregation window of the forwarding tests' configurations.
pub const WINDOW_MS: i64 = 60_000;

/// Event `i` of `n` of an instance's mixed workload: metric samples of two series and a
/// datastore series, commands, engagements and errors of two kinds, spread over 30 windows.
pub fn event(i: usize, n: usize) -> TrackEvent {
    let ts = T0 + (i as i64 * 30 * WINDOW_MS) / n as i64;
    let v = (i % 97) as f64 + 1.0;
    match i % 10 {
        0..=3 => TrackEvent::performance("latency", v).context("api").at(ts),
        4 | 5 => TrackEvent::performance("latency", v * 2.0).at(ts),
        6 => TrackEvent::command("help")
            .user("u1")
            .success(true)
            .duration_ms(v)
            .at(ts),
        7 => TrackEvent::engagement("reaction").user("u2").at(ts),
        8 => match i % 3 {
            0 => TrackEvent::error("timeout", "api")
                .message("timed out")
                .at(ts),
            _ => TrackEvent::error("rate_limit", "api").message("429").at(ts),
        },
        _ => TrackEvent::datastore("load", "conversation", v).at(ts),
    }
}

/// One test of a file at a time: each starts its own nats-server(s) and pushes up to 200,000
/// events, and four at once on a 2-core machine made the outage test's `Flush` miss its budget
/// (once, in `.ci/run`; alone it passes in about 20 s).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the file's one-at-a-time lock for a test (a test that failed before does not poison
/// it), with the test logger on.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    let _ = env_logger::builder().is_test(true).try_init();
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
