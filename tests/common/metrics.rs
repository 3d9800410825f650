//! For the metrics tests (tests/metrics.rs, tests/prometheus.rs): a workload that moves every
//! counter, and the metrics a `Stats` should show as.

use eventbatch::{Config, Stats, TrackBatch, TrackEvent, Tracker};

/// `Stats` fields published as gauges (`eventbatch_<field>`); every other count is a counter
/// (`eventbatch_<field>_total`).
pub const GAUGES: [&str; 6] = [
    "events_queued",
    "windows_open",
    "actors_running",
    "journal_failing_ms",
    "rows_held",
    "detector_series",
];

/// Every count of `stats` as the metric it is published as, with its value.
pub fn expected(stats: &Stats) -> Vec<(String, u64)> {
    let json = serde_json::to_value(stats).expect("Stats serializes");
    json.as_object()
        .expect("an object")
        .iter()
        .filter_map(|(field, v)| Some((field, v.as_u64()?)))
        .map(|(field, v)| {
            let name = if GAUGES.contains(&field.as_str()) {
                format!("eventbatch_{field}")
            } else {
                format!("eventbatch_{field}_total")
            };
            (name, v)
        })
        .collect()
}

/// Commands (half sampled out under [`config`]), latency samples over four one-minute windows
/// (the first ones close, the last stays open), repeated errors, custom events and invalid
/// ones, starting at `t0` (ms).
pub async fn workload(t: &actix::Addr<Tracker>, t0: i64) {
    let mut events = Vec::new();
    for i in 0..300 {
        events.push(
            TrackEvent::command("help")
                .user(format!("u{}", i % 7))
                .at(t0 + i),
        );
    }
    for i in 0..200 {
        events.push(
            TrackEvent::performance("rt", (i % 50) as f64 + 1.0)
                .context("api")
                .at(t0 + i * 1_000),
        );
    }
    for i in 0..50 {
        events.push(
            TrackEvent::error("timeout", "api")
                .message("upstream")
                .at(t0 + i),
        );
    }
    for i in 0..20 {
        events.push(TrackEvent::custom("checkout").value(i as f64).at(t0 + i));
    }
    for _ in 0..10 {
        events.push(TrackEvent::performance("rt", f64::NAN).at(t0));
    }
    let ack = t
        .send(TrackBatch(events))
        .await
        .expect("mailbox")
        .expect("batch");
    assert_eq!((ack.accepted, ack.rejected), (570, 10));
    // and one by one, so TrackEvent is counted too
    for i in 0..5 {
        t.send(TrackEvent::command("ask").at(t0 + i))
            .await
            .expect("mailbox")
            .expect("event");
    }
}

/// The config [`workload`] runs under, as `instance`: half the `help` commands kept, and the
/// metrics published only when `GetStats`, `Flush` or `Shutdown` answers (nothing between
/// the answers to race with).
pub fn config(instance: &str) -> Config {
    Config {
        instance_id: Some(instance.into()),
        sampling_rates: [("help".to_string(), 0.5)].into(),
        metrics_interval_ms: 3_600_000,
        ..super::quiet_config()
    }
}

/// The workload moved the counters the tests compare (so equality is not 0 == 0).
pub fn moved(s: &Stats) {
    assert_eq!(s.events_received, 585, "{s:?}");
    assert_eq!(s.events_rejected, 10, "{s:?}");
    assert!(s.events_sampled_out > 0 && s.events_aggregated > 0, "{s:?}");
    assert!(s.records_written > 0 && s.windows_written > 0, "{s:?}");
    assert!(
        s.snapshot_rows_written > 0 && s.error_counts_written > 0,
        "{s:?}"
    );
    assert!(s.transactions > 0 && s.windows_open > 0, "{s:?}");
}
