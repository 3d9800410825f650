//! The pipeline's metrics through the `metrics` facade, caught by metrics-util's debugging
//! recorder (installed once for this test binary, as an application installs its exporter),
//! against the real pipeline on an SQLite file: what is recorded equals the `Stats` the
//! pipeline answers, under the `instance_id` label, with help text and unit.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{conservation, quiet_config, start_manual, TempDb, T0};
use eventbatch::{Config, ConfigPatch, Configure, Flush, GetStats, Shutdown, Stats};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The process's recorder. A snapshot resets what it read (counters to 0, histograms
/// emptied), so the tests of this binary take turns (`turn`).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        snapshotter
    })
}

/// Runs `test` in an actix System of its own (the turn is held outside it, never across an
/// await).
fn in_a_system(test: impl std::future::Future<Output = ()>) {
    actix::System::new().block_on(test)
}

fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One metric as recorded for one instance.
#[derive(Debug)]
struct Recorded {
    value: DebugValue,
    unit: Option<Unit>,
    help: String,
}

/// What the recorder holds for `instance` (by metric name), read (and reset) now.
fn recorded(instance: &str) -> HashMap<String, Recorded> {
    let mut out = HashMap::new();
    for (key, unit, help, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        if !labels.contains(&("instance_id", instance)) {
            continue;
        }
        // the sampling rate is one series per sampling key: `name{key}`
        let name = match labels.iter().find(|(l, _)| *l == "sampling_key") {
            Some((_, sampling_key)) if key.name() == "eventbatch_sampling_rate" => {
                format!("eventbatch_sampling_rate{{{sampling_key}}}")
            }
            _ => key.name().to_string(),
        };
        let expected_labels = if name.contains('{') { 2 } else { 1 };
        assert_eq!(labels.len(), expected_labels, "{key:?}: unexpected labels");
        let help = help.map(|h| h.to_string()).unwrap_or_default();
        out.insert(name, Recorded { value, unit, help });
    }
    out
}

/// Every count of `stats` is recorded with its value, described, with a unit.
fn equal_to_stats(got: &HashMap<String, Recorded>, stats: &Stats) {
    for (name, value) in common::metrics::expected(stats) {
        let m = got
            .get(&name)
            .unwrap_or_else(|| panic!("{name} not recorded"));
        let expected = if common::metrics::GAUGES
            .iter()
            .any(|g| name == format!("eventbatch_{g}"))
        {
            DebugValue::Gauge((value as f64).into())
        } else {
            DebugValue::Counter(value)
        };
        assert_eq!(m.value, expected, "{name}: {stats:?}");
        assert_eq!(m.unit, Some(Unit::Count), "{name}");
        assert!(m.help.len() > 10, "{name} has no help text: {:?}", m.help);
    }
    for (sampling_key, rate) in &stats.sampling_rates_in_force {
        let name = format!("eventbatch_sampling_rate{{{sampling_key}}}");
        let m = got
            .get(&name)
            .unwrap_or_else(|| panic!("{name} not recorded"));
        assert_eq!(m.value, DebugValue::Gauge((*rate).into()), "{name}");
    }
    let batch_rows = match got["eventbatch_batch_rows_total"].value {
        DebugValue::Counter(n) => n,
        ref other => panic!("batch rows: {other:?}"),
    };
    assert_eq!(
        batch_rows as f64 / stats.batches_written as f64,
        stats.avg_batch_size
    );
}

/// The writer's histograms since the last read: (samples, their sum).
fn histogram(got: &HashMap<String, Recorded>, name: &str) -> (usize, f64) {
    match &got
        .get(name)
        .unwrap_or_else(|| panic!("{name} not recorded"))
        .value
    {
        DebugValue::Histogram(values) => (values.len(), values.iter().map(|v| v.0).sum()),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn what_is_recorded_equals_stats_after_flush_and_shutdown() {
    snapshotter();
    let _turn = turn();
    in_a_system(async {
        let db = TempDb::new();
        let config = common::metrics::config("metrics-flush");
        let (t, _clock) = start_manual(config, &db);
        common::metrics::workload(&t, T0).await;
        let stats = t.send(Flush).await.unwrap().unwrap();
        conservation(&stats);
        common::metrics::moved(&stats);
        assert_eq!(
            stats.records_written as i64,
            db.count("events WHERE instance_id = 'metrics-flush'")
        );

        let got = recorded("metrics-flush");
        equal_to_stats(&got, &stats);
        assert!(
            !stats.sampling_rates_in_force.is_empty(),
            "the workload has sampled keys, whose rates are gauges"
        );
        let (transactions, rows) = histogram(&got, "eventbatch_transaction_rows");
        assert_eq!(transactions as u64, stats.transactions);
        let batch_rows = stats.avg_batch_size * stats.batches_written as f64;
        assert_eq!(
            rows, batch_rows,
            "nothing was quarantined: every row is a batch's"
        );
        let (timed, seconds) = histogram(&got, "eventbatch_transaction_duration_seconds");
        assert_eq!(timed as u64, stats.transactions);
        assert!(seconds > 0.0 && seconds.is_finite());
        assert_eq!(
            got["eventbatch_transaction_duration_seconds"].unit,
            Some(Unit::Seconds)
        );

        // GetStats publishes too; then Shutdown: the final counts, no actor running
        let again = t.send(GetStats).await.unwrap();
        equal_to_stats(&recorded("metrics-flush"), &again);
        let last = t.send(Shutdown).await.unwrap();
        conservation(&last);
        let got = recorded("metrics-flush");
        equal_to_stats(&got, &last);
        assert!(got.contains_key("eventbatch_transaction_rows"));
        assert_eq!(
            got["eventbatch_windows_written_total"].value,
            DebugValue::Counter(last.windows_written)
        );
        assert!(
            last.windows_written > stats.windows_written,
            "the open window closed"
        );
    });
}

#[test]
fn a_system_stopped_without_shutdown_publishes_its_final_counts() {
    snapshotter();
    let _turn = turn();
    let db = TempDb::new();
    let sys = actix::System::new();
    sys.block_on(async {
        let config = common::metrics::config("metrics-drop");
        let (t, _clock) = start_manual(config, &db);
        common::metrics::workload(&t, T0).await;
        actix::System::current().stop();
    });
    sys.run().unwrap();
    let got = recorded("metrics-drop");
    let count = |name: &str| match got.get(name).map(|m| &m.value) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    };
    // everything was written as the System stopped, and the last publication says so
    assert_eq!(
        count("eventbatch_records_written_total") as i64,
        db.count("events WHERE instance_id = 'metrics-drop'")
    );
    assert_eq!(count("eventbatch_events_received_total"), 585);
    let kept = count("eventbatch_events_kept_total");
    assert_eq!(
        kept,
        count("eventbatch_records_written_total")
            + count("eventbatch_events_aggregated_total")
            + count("eventbatch_events_dropped_total")
            + count("eventbatch_events_quarantined_total")
    );
    assert_eq!(
        got["eventbatch_actors_running"].value,
        DebugValue::Gauge(0.0.into())
    );
}

#[test]
fn the_timer_publishes_without_being_asked() {
    snapshotter();
    let _turn = turn();
    in_a_system(async {
        let db = TempDb::new();
        let config = Config {
            instance_id: Some("metrics-timer".into()),
            metrics_interval_ms: 5,
            ..quiet_config()
        };
        let (t, _clock) = start_manual(config, &db);
        for i in 0..7 {
            t.send(eventbatch::TrackEvent::command("help").at(T0 + i))
                .await
                .unwrap()
                .unwrap();
        }
        // no GetStats, Flush or Shutdown: only the timer can publish (waits at most 30 s)
        let mut seen = None;
        for _ in 0..3_000 {
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            let got = recorded("metrics-timer");
            seen = match got
                .get("eventbatch_events_received_total")
                .map(|m| &m.value)
            {
                Some(DebugValue::Counter(n)) => Some(*n),
                _ => None,
            };
            if seen == Some(7) {
                break;
            }
        }
        assert_eq!(seen, Some(7));
        t.send(Shutdown).await.unwrap();
    });
}

#[test]
fn metrics_off_records_nothing_and_configure_turns_them_on() {
    snapshotter();
    let _turn = turn();
    in_a_system(async {
        let db = TempDb::new();
        let config = Config {
            instance_id: Some("metrics-off".into()),
            metrics_interval_ms: 0,
            ..quiet_config()
        };
        let (t, _clock) = start_manual(config, &db);
        common::metrics::workload(&t, T0).await;
        let stats = t.send(Flush).await.unwrap().unwrap();
        assert!(stats.transactions > 0);
        assert!(recorded("metrics-off").is_empty(), "metrics are off");

        let on = ConfigPatch {
            metrics_interval_ms: Some(3_600_000),
            ..ConfigPatch::default()
        };
        t.send(Configure(on)).await.unwrap().unwrap();
        common::metrics::workload(&t, T0 + 600_000).await;
        let stats = t.send(Flush).await.unwrap().unwrap();
        let got = recorded("metrics-off");
        equal_to_stats(&got, &stats);
        // the writer records from the change on
        let (transactions, _) = histogram(&got, "eventbatch_transaction_rows");
        assert!(transactions > 0 && (transactions as u64) < stats.transactions);
        t.send(Shutdown).await.unwrap();
    });
}
