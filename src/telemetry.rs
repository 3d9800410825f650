//! The pipeline's own health through the Rust ecosystem's metrics facade (the `metrics` crate,
//! metrics-rs), so the exporter an application already runs (Prometheus, StatsD, OpenTelemetry,
//! ...) shows it next to the application's own metrics. With no recorder installed, the facade
//! drops everything. Applications without an exporter can start one: see
//! [`crate::serve_prometheus`] (feature `prometheus`).
//!
//! # What is published
//!
//! Names follow Prometheus conventions (`eventbatch_` prefix, `_total` on counters, base units
//! in the name), each with the label `instance_id` (the pipeline's, as in the store's rows):
//!
//! - every `u64` counter of [`Stats`] as the counter `eventbatch_<field>_total`
//!   (`eventbatch_events_received_total`, `eventbatch_rows_written_total`, ...), and
//!   `eventbatch_batch_rows_total`, the rows of the committed batches (with
//!   `eventbatch_batches_written_total`, the average batch size over any range:
//!   `Stats::avg_batch_size` is their ratio since the start);
//! - its gauges as `eventbatch_events_queued`, `eventbatch_windows_open`,
//!   `eventbatch_actors_running`, `eventbatch_journal_failing_ms`, `eventbatch_rows_held` and
//!   `eventbatch_detector_series`;
//! - `Stats::sampling_rates_in_force` as the gauge `eventbatch_sampling_rate`, one series per
//!   sampling key (label `sampling_key`): the keep probability in force, fixed or adapted to a
//!   target;
//! - from the writer, per committed transaction: the histograms
//!   `eventbatch_transaction_duration_seconds` (from the first attempt to the commit, retries
//!   and their backoff included) and `eventbatch_transaction_rows`.
//!
//! # When: absolute values, off the hot path
//!
//! The stages count in shared atomics, per batch ([`Counters`]); the supervisor publishes a
//! snapshot of them as absolute values (`Counter::absolute`, `Gauge::set`) every
//! `Config::metrics_interval_ms` (default a second), and whenever `GetStats`, `Flush` or
//! `Shutdown` answers (what the metrics show then equals the `Stats` in the answer). Nothing
//! is recorded per event. Recording at each increment instead would put the facade's key
//! lookup (or, with handles cached at start, an indirect call) on the hot path, and handles
//! cached at start would stay no-ops for a recorder the application installs after `start`;
//! a snapshot resolves the recorder on each publication, so a late recorder gets the totals.
//! The cost of a publication is in `examples/metrics_cost.rs`.
//!
//! A counter published with `absolute` only grows in the usual recorders (the exporter keeps
//! the larger value): a pipeline restarted in the same process under the same configured
//! `instance_id` shows its counts once they pass the previous run's. The default instance id
//! is fresh per start.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};

use crate::counters::{Counters, Stats};
use crate::settings::Settings;

/// The label every metric carries.
pub(crate) const INSTANCE_LABEL: &str = "instance_id";

/// Where the facade's records say they come from.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// One metric published from a [`Stats`] snapshot.
struct FromStats {
    name: &'static str,
    help: &'static str,
    value: fn(&Stats) -> u64,
}

/// `eventbatch_<field>_total` for each `Stats` field, with its help text.
macro_rules! counters_of_stats {
    ($($field:ident: $help:literal,)*) => {
        &[$(FromStats {
            name: concat!("eventbatch_", stringify!($field), "_total"),
            help: $help,
            value: |s: &Stats| s.$field,
        },)*]
    };
}

/// `eventbatch_<field>` for each gauge of `Stats`, with its help text.
macro_rules! gauges_of_stats {
    ($($field:ident: $help:literal,)*) => {
        &[$(FromStats {
            name: concat!("eventbatch_", stringify!($field)),
            help: $help,
            value: |s: &Stats| s.$field,
        },)*]
    };
}

/// The counters of [`Stats`] (all but `avg_batch_size`, published as
/// [`BATCH_ROWS`] over `eventbatch_batches_written_total`).
const COUNTERS: &[FromStats] = counters_of_stats! {
    events_received: "Events offered to the pipeline (TrackEvent and the elements of TrackBatch).",
    events_rejected: "Events rejected as invalid, never stored.",
    events_sampled_out: "Valid events dropped by sampling.",
    events_kept: "Valid events kept by sampling.",
    events_aggregated: "Kept events folded into metric windows or error counts.",
    records_written: "Rows written to the events table.",
    windows_written: "Rows written (inserted or replaced) in metric_windows, snapshots included.",
    rows_written: "Rows the pipeline produced in the store (events, closed windows and error counts, patterns, roll-ups).",
    snapshot_rows_written: "Rewrites of still-open windows and error counts made by Flush.",
    transactions: "Committed write transactions.",
    batches_written: "Write batches committed.",
    db_errors: "Failed store operations (each failed attempt).",
    retries: "Store attempts repeated after a failure.",
    events_dropped: "Kept events dropped by the overflow policy, or lost with the store failing at shutdown.",
    patterns_detected: "Patterns detected.",
    error_counts_written: "Rows written (inserted or replaced) in error_counts.",
    rollups_written: "Hour, day and week roll-up rows written by this instance.",
    rows_quarantined: "Rows the store refused for good, kept in the quarantine table.",
    events_quarantined: "Kept events among the quarantined rows that were records.",
    rows_pruned: "Rows deleted by this instance's retention rounds (Config::retention).",
    events_replayed: "Durable mode: events replayed from the journal at start (also counted as received).",
    checkpoints: "Durable mode: checkpoints committed (the store holds every event up to a journal position).",
    journal_errors: "Durable mode: failed journal file operations (commits are retried every fsync_interval_ms).",
    journal_entries_rejected: "Durable mode: journal entries set aside at start (checksum mismatch or undecodable) instead of replayed.",
    batches_resent: "Durable forwarding: messages of an earlier run published again from the journal's outbox at start.",
    detectors_evicted: "Series whose detectors were evicted as least recently used (Config::max_detector_series).",
    error_messages_overflowed: "Errors of new hashes counted in their window's (other) row (Config::max_error_messages_per_window).",
    series_overflowed: "Metric samples of a new label set folded into their metric's otel.metric.overflow=\"true\" series (Config::max_series_per_metric).",
    events_unwritten_at_stop: "Kept events not written at stop, the store failing or silent through the retry budget (also in events_dropped).",
};

/// The gauges of [`Stats`].
const GAUGES: &[FromStats] = gauges_of_stats! {
    events_queued: "Records waiting in the priority queues or handed to the writer, not yet written.",
    windows_open: "Aggregation windows open in memory.",
    actors_running: "The pipeline's internal actors running (0 once it has stopped).",
    journal_failing_ms: "Durable mode: how long (ms) the journal has been failing to commit; 0 while healthy.",
    rows_held: "Rows the writer holds because the store failed, waiting for the next attempt.",
    detector_series: "Series with pattern detectors in memory (at most Config::max_detector_series).",
};

/// Rows of the committed batches: with `eventbatch_batches_written_total`, the average batch
/// size over any range.
pub(crate) const BATCH_ROWS: &str = "eventbatch_batch_rows_total";
const BATCH_ROWS_HELP: &str =
    "Rows in the committed write batches (records, windows, error counts, patterns).";

/// The keep probability in force per sampling key (label [`SAMPLING_KEY_LABEL`]).
pub(crate) const SAMPLING_RATE: &str = "eventbatch_sampling_rate";
const SAMPLING_RATE_HELP: &str =
    "Keep probability in force per sampling key (Config::sampling_rates, or adapted to Config::sampling_targets).";
/// The label of [`SAMPLING_RATE`] that names the sampling key.
pub(crate) const SAMPLING_KEY_LABEL: &str = "sampling_key";

/// Seconds from a transaction's first attempt to its commit, retries and backoff included.
pub(crate) const TRANSACTION_SECONDS: &str = "eventbatch_transaction_duration_seconds";
const TRANSACTION_SECONDS_HELP: &str =
    "Seconds from a write transaction's first attempt to its commit, retries included.";
/// Rows per committed transaction.
pub(crate) const TRANSACTION_ROWS: &str = "eventbatch_transaction_rows";
const TRANSACTION_ROWS_HELP: &str = "Rows per committed write transaction.";

/// Every metric name the pipeline publishes, with its kind (`counter`, `gauge` or
/// `histogram`).
#[cfg(test)]
fn metric_names() -> Vec<(&'static str, &'static str)> {
    COUNTERS
        .iter()
        .map(|m| (m.name, "counter"))
        .chain([(BATCH_ROWS, "counter")])
        .chain(GAUGES.iter().map(|m| (m.name, "gauge")))
        .chain([(SAMPLING_RATE, "gauge")])
        .chain([
            (TRANSACTION_SECONDS, "histogram"),
            (TRANSACTION_ROWS, "histogram"),
        ])
        .collect()
}

/// The `instance_id` label, shared (not copied) by every key.
fn instance_label(settings: &Settings) -> Vec<Label> {
    let id: Arc<str> = settings.instance_id.as_str().into();
    vec![Label::new(INSTANCE_LABEL, SharedString::from_shared(id))]
}

/// Describes every metric (help text and unit) to `recorder`.
fn describe(r: &dyn Recorder) {
    let text = SharedString::const_str;
    for m in COUNTERS {
        r.describe_counter(
            KeyName::from_const_str(m.name),
            Some(Unit::Count),
            text(m.help),
        );
    }
    r.describe_counter(
        KeyName::from_const_str(BATCH_ROWS),
        Some(Unit::Count),
        text(BATCH_ROWS_HELP),
    );
    for m in GAUGES {
        r.describe_gauge(
            KeyName::from_const_str(m.name),
            Some(Unit::Count),
            text(m.help),
        );
    }
    r.describe_gauge(
        KeyName::from_const_str(SAMPLING_RATE),
        None,
        text(SAMPLING_RATE_HELP),
    );
    r.describe_histogram(
        KeyName::from_const_str(TRANSACTION_SECONDS),
        Some(Unit::Seconds),
        text(TRANSACTION_SECONDS_HELP),
    );
    r.describe_histogram(
        KeyName::from_const_str(TRANSACTION_ROWS),
        Some(Unit::Count),
        text(TRANSACTION_ROWS_HELP),
    );
}

/// Publishes the supervisor's snapshots (see the module docs). Keys are built once; the
/// recorder is looked up on each publication.
#[derive(Debug)]
pub(crate) struct Publisher {
    counters: Arc<Counters>,
    /// One key per entry of [`COUNTERS`], in order, then [`BATCH_ROWS`].
    counter_keys: Vec<Key>,
    /// One key per entry of [`GAUGES`], in order.
    gauge_keys: Vec<Key>,
    /// The `instance_id` label, for the per-key [`SAMPLING_RATE`] gauges.
    labels: Vec<Label>,
}

impl Publisher {
    pub(crate) fn new(settings: &Settings, counters: Arc<Counters>) -> Self {
        let labels = instance_label(settings);
        let key = |name: &'static str| Key::from_parts(name, labels.clone());
        Publisher {
            counters,
            counter_keys: COUNTERS
                .iter()
                .map(|m| key(m.name))
                .chain([key(BATCH_ROWS)])
                .collect(),
            gauge_keys: GAUGES.iter().map(|m| key(m.name)).collect(),
            labels,
        }
    }

    /// Publishes `stats` (a snapshot of this pipeline's counters) to the current recorder.
    pub(crate) fn publish(&self, stats: &Stats) {
        let batch_rows = self.counters.batch_rows.load(Relaxed);
        metrics::with_recorder(|r| {
            describe(r);
            for (m, key) in COUNTERS.iter().zip(&self.counter_keys) {
                r.register_counter(key, &METADATA)
                    .absolute((m.value)(stats));
            }
            if let Some(key) = self.counter_keys.last() {
                r.register_counter(key, &METADATA).absolute(batch_rows);
            }
            for (m, key) in GAUGES.iter().zip(&self.gauge_keys) {
                r.register_gauge(key, &METADATA)
                    .set((m.value)(stats) as f64);
            }
            for (sampling_key, rate) in &stats.sampling_rates_in_force {
                let mut labels = self.labels.clone();
                labels.push(Label::new(SAMPLING_KEY_LABEL, sampling_key.clone()));
                r.register_gauge(&Key::from_parts(SAMPLING_RATE, labels), &METADATA)
                    .set(*rate);
            }
        });
    }

    /// Takes a snapshot of the counters, publishes it, and returns it.
    pub(crate) fn snapshot_and_publish(&self) -> Stats {
        let stats = self.counters.snapshot();
        self.publish(&stats);
        stats
    }
}

/// The writer's histograms, one sample per committed transaction; nothing when
/// `metrics_interval_ms` is 0.
#[derive(Debug, Clone)]
pub(crate) struct TransactionMetrics {
    /// The keys of [`TRANSACTION_SECONDS`] and [`TRANSACTION_ROWS`]; `None` when off.
    keys: Option<Arc<(Key, Key)>>,
}

impl TransactionMetrics {
    pub(crate) fn new(settings: &Settings) -> Self {
        let keys = settings.metrics_interval.map(|_| {
            let labels = instance_label(settings);
            Arc::new((
                Key::from_parts(TRANSACTION_SECONDS, labels.clone()),
                Key::from_parts(TRANSACTION_ROWS, labels),
            ))
        });
        TransactionMetrics { keys }
    }

    /// One committed transaction of `rows` rows that took `elapsed`.
    pub(crate) fn record(&self, elapsed: Duration, rows: usize) {
        if let Some(keys) = &self.keys {
            metrics::with_recorder(|r| {
                r.register_histogram(&keys.0, &METADATA)
                    .record(elapsed.as_secs_f64());
                r.register_histogram(&keys.1, &METADATA).record(rows as f64);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn settings(id: &str) -> Settings {
        Config {
            instance_id: Some(id.into()),
            ..Config::default()
        }
        .settings()
        .unwrap()
    }

    /// A `Stats` field that is a count has its metric: a field added to `Stats` is published
    /// (or this fails, naming it).
    #[test]
    fn every_count_in_stats_is_published_under_its_name() {
        let names = metric_names();
        let stats = serde_json::to_value(Stats::default()).unwrap();
        let fields = stats.as_object().unwrap();
        for (field, value) in fields {
            if !value.is_u64() {
                continue;
            }
            let counter = format!("eventbatch_{field}_total");
            let gauge = format!("eventbatch_{field}");
            assert!(
                names
                    .iter()
                    .any(|(n, kind)| (*n == counter && *kind == "counter")
                        || (*n == gauge && *kind == "gauge")),
                "Stats::{field} has no metric ({counter} or {gauge})"
            );
        }
        // and nothing is published that Stats does not have (besides the documented extras)
        for (name, kind) in &names {
            let field = name
                .trim_start_matches("eventbatch_")
                .trim_end_matches("_total");
            assert!(
                fields.contains_key(field)
                    || [BATCH_ROWS, TRANSACTION_SECONDS, TRANSACTION_ROWS].contains(name)
                    || (*name == SAMPLING_RATE && fields.contains_key("sampling_rates_in_force")),
                "{name} ({kind}) is not a Stats field"
            );
            assert_eq!(kind == &"counter", name.ends_with("_total"), "{name}");
        }
    }

    #[test]
    fn a_publication_carries_the_values_the_label_and_the_descriptions() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counters = Arc::new(Counters::default());
        Counters::add(&counters.received, 7);
        Counters::add(&counters.windows_open, 2);
        Counters::add(&counters.batches_written, 2);
        Counters::add(&counters.batch_rows, 30);
        let publisher = Publisher::new(&settings("unit-1"), counters.clone());
        let stats = metrics::with_local_recorder(&recorder, || publisher.snapshot_and_publish());
        assert_eq!(stats.events_received, 7);
        let got = snapshotter.snapshot().into_vec();
        let value = |name: &str| {
            let (key, unit, help, value) = got
                .iter()
                .find(|(k, ..)| k.key().name() == name)
                .unwrap_or_else(|| panic!("{name} not published"));
            let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
            assert_eq!(labels, [(INSTANCE_LABEL, "unit-1")], "{name}");
            assert_eq!(*unit, Some(Unit::Count), "{name}");
            assert!(help.as_ref().is_some_and(|h| !h.is_empty()), "{name}");
            value
        };
        assert_eq!(
            value("eventbatch_events_received_total"),
            &DebugValue::Counter(7)
        );
        assert_eq!(value(BATCH_ROWS), &DebugValue::Counter(30));
        assert_eq!(
            value("eventbatch_batches_written_total"),
            &DebugValue::Counter(2)
        );
        assert_eq!(
            value("eventbatch_windows_open"),
            &DebugValue::Gauge(2.0.into())
        );
        assert_eq!(
            value("eventbatch_events_queued"),
            &DebugValue::Gauge(0.0.into())
        );
        let published = got.len();
        assert_eq!(published, COUNTERS.len() + 1 + GAUGES.len());
    }

    /// Each sampling key's rate in force is one gauge series, labelled with the key.
    #[test]
    fn the_rates_in_force_are_a_gauge_per_sampling_key() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counters = Arc::new(Counters::default());
        *counters.sampling_rates.lock().unwrap() = [
            ("help".to_string(), 0.25),
            ("performance.rt".to_string(), 1.0),
        ]
        .into();
        let publisher = Publisher::new(&settings("unit-3"), counters);
        metrics::with_local_recorder(&recorder, || publisher.snapshot_and_publish());
        let mut rates: Vec<(String, String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == SAMPLING_RATE)
            .map(|(k, _, help, value)| {
                assert!(help.is_some_and(|h| !h.is_empty()));
                let label = |name: &str| {
                    k.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let DebugValue::Gauge(v) = value else {
                    panic!("{k:?} is not a gauge")
                };
                (label(INSTANCE_LABEL), label(SAMPLING_KEY_LABEL), v.0)
            })
            .collect();
        rates.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            rates,
            [
                ("unit-3".to_string(), "help".to_string(), 0.25),
                ("unit-3".to_string(), "performance.rt".to_string(), 1.0)
            ]
        );
    }

    #[test]
    fn transactions_are_recorded_unless_metrics_are_off() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            TransactionMetrics::new(&settings("unit-2")).record(Duration::from_millis(3), 120);
            let off = Config {
                metrics_interval_ms: 0,
                ..Config::default()
            }
            .settings()
            .unwrap();
            TransactionMetrics::new(&off).record(Duration::from_millis(5), 7);
        });
        let got = snapshotter.snapshot().into_vec();
        assert_eq!(got.len(), 2, "{got:?}");
        for (key, _, _, value) in got {
            let DebugValue::Histogram(values) = value else {
                panic!("{key:?} is not a histogram")
            };
            let expected = match key.key().name() {
                TRANSACTION_SECONDS => 0.003,
                TRANSACTION_ROWS => 120.0,
                other => panic!("unexpected {other}"),
            };
            let values: Vec<f64> = values.iter().map(|v| v.0).collect();
            assert_eq!(values, [expected]);
        }
    }
}
