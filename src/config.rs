//! Configuration: [`Config`] as the application writes it and [`ConfigPatch`] for run-time
//! changes. Validation, into the settings the actors take, is `crate::settings`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::retention::Retention;
use crate::stats::detect::DetectorSettings;

/// The pipeline's configuration. Every field has a default (`Config::default()`), so
/// `Config { max_batch_size: 500, ..Config::default() }` works; serde fills missing fields with
/// the same defaults and rejects unknown ones.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Records per write batch: a priority queue is written as soon as it holds this many.
    pub max_batch_size: usize,
    /// Queued records are written at least this often (ms), and open windows are checked for
    /// closing on the same tick.
    pub batch_interval_ms: u64,
    /// As soon as this many high-priority records wait, they are written at once.
    pub high_priority_flush_threshold: usize,
    /// Width of the event-time aggregation windows `[k*w, (k+1)*w)`, in ms.
    pub aggregation_window_ms: u64,
    /// Keep probability per sampling key (`"help"`, `"performance.response_time"`,
    /// `"error.timeout"`, ...). Keys not listed keep everything. A key has a fixed rate here or
    /// a target in `sampling_targets`, not both.
    pub sampling_rates: HashMap<String, f64>,
    /// Adaptive sampling: a target of kept events per second per sampling key (0.001 to
    /// 10,000,000). The pipeline counts the events offered under the key each second of its
    /// clock and sets the key's rate to `target / predicted offered rate` (at most 1), so the
    /// key keeps about `target` events a second whatever it is offered; a rise is followed
    /// within a second, a fall over a few. Each kept event carries the rate in force when it
    /// was kept (`sample_rate`, and `estimated_count` of windows), so counts scaled back by
    /// `1/rate` stay unbiased; the rates in force are in `Stats::sampling_rates_in_force`.
    pub sampling_targets: HashMap<String, f64>,
    /// Consistent sampling: binds a sampling key's keep decision to an event field, so that
    /// it is a function of that field's value and the rate (fixed or adaptive): every event of
    /// a kept user (server, tag value) is kept, and a value kept at rate `r` is kept at every
    /// rate above `r`. The value's position in `[0, 1)` is its XXH3-64 hash (seed 0) over
    /// 2^64; it is kept when the position is below the rate, the same in every process and
    /// every instance. Keys bound to the same field with the same rate keep the same values.
    /// An event without the field falls back to a coin flip at the rate. A key without a rate
    /// or target keeps everything, bound or not.
    pub sampling_by: HashMap<String, SampleBy>,
    /// Batch records into transactions (the default). Off: the guide's
    /// `configureBatching(false)`: each kept record goes to the writer as soon as it is
    /// sampled and is written in a transaction of its own (`max_batch_size`,
    /// `high_priority_flush_threshold` and `batch_interval_ms` do not apply to records).
    /// Metric samples and errors are still folded into windows and error counts, written as
    /// before. `max_in_flight_batches` still bounds the transactions waiting for the store
    /// (records beyond wait in the queues, under `max_queued_events`). `Configure` switches it
    /// at once.
    pub batching: bool,
    /// Memory bound: records queued or in flight to the store. Beyond it, the overflow
    /// policy drops Low first, then Normal, then the incoming High record, and counts each
    /// drop in `Stats::events_dropped`. At most 10,000,000 (about 1.5 GB of records).
    pub max_queued_events: usize,
    /// Identifies this pipeline's rows in a shared database. `None`: a fresh random id per start.
    pub instance_id: Option<String>,
    /// How long (ms) after its end a window stays open for late events before it closes
    /// (closing is driven by the series' newest event time, which one event far ahead does not
    /// move on its own, or by the clock for idle windows).
    /// Events later than that are still folded into the stored window.
    pub allowed_lateness_ms: u64,
    /// How long (ms) a `Flush` or `Shutdown` keeps retrying, with exponential backoff, after
    /// the store began failing: each answers within this budget plus a second, whatever the
    /// store answers. Meanwhile what failed is held and retried in the background with one
    /// backoff (at most a second apart) shared by every message; a query makes one attempt.
    /// Also bounds the time toward the store: the connection pool's wait, SQLite's busy wait
    /// within a failing attempt and, on PostgreSQL, the connect, statement and TCP timeouts
    /// derive from it (see `Store::postgres`). At most an hour.
    pub store_retry_budget_ms: u64,
    /// SQLite busy timeout (ms): how long a write waits for another connection's lock. At
    /// most an hour.
    pub sqlite_busy_timeout_ms: u64,
    /// Write batches handed to the writer and not yet confirmed, at most. Bounds memory
    /// while the store is slow or down (records then wait in the queues, under
    /// `max_queued_events`). At most 1,000.
    pub max_in_flight_batches: usize,
    /// Secret key for pseudonyms. Set: `events.user_hash` and `events.server_hash` hold
    /// HMAC-SHA256(key, id), hex, first 32 digits (128 bits), so the ids cannot be recovered
    /// without the key, even by trying every possible id. `None`: they hold the ids as the
    /// application gave them (the guide's applications pass their own hashes). 16 to 1024
    /// bytes; never printed by `Debug`, serialised (written as `"<redacted>"`) or shown in
    /// a [`ConfigError`]. Applied as an event is accepted, so a raw id never reaches the
    /// journal, the `quarantine` table or any other file; changing it at run time applies to
    /// events accepted afterwards (those accepted before keep the id or pseudonym they had).
    /// Replaces the former `hash_identities` flag (an unkeyed 64-bit hash); a config that
    /// still sets that is refused as an unknown field.
    #[serde(serialize_with = "serialize_redacted")]
    pub identity_key: Option<String>,
    /// Pattern detection settings (spike, drop, anomaly, trend).
    pub detection: DetectorSettings,
    /// Roll closed windows up into hour, day and week windows in the store (`metric_rollups`),
    /// for `QueryWindows::resolution`. With several instances on one database, one of them does
    /// it for all (on PostgreSQL the holder of an advisory lock; on SQLite whichever takes the
    /// write lock first). Off: hour, day and week queries merge the windows on the fly instead.
    pub rollups: bool,
    /// How often (ms, on the pipeline clock) the writer rolls up the hours, days and weeks that
    /// closed, busy or idle: a bucket is closed once its end plus `allowed_lateness_ms` has
    /// passed.
    pub rollup_interval_ms: u64,
    /// The tail percentile the detector watches besides the window mean: 90, 95 or 99, or 0
    /// for the mean only. A tail that moves in the same window as the mean is the same pattern
    /// (one report per event): the pattern's `statistics` lists each statistic that moved
    /// (`mean`, `p99`), its headline is the most confident of them.
    pub watch_percentile: u8,
    /// How often (ms) the pipeline logs one line of its batching metrics (events in, kept,
    /// rows and transactions written, write reduction, queued, open windows, errors) at
    /// `info` level, the guide's "log batching metrics every minute"; 0: never.
    pub stats_log_interval_ms: u64,
    /// Most metric series with open windows at once (memory: about 2.6 KB per open series
    /// at the default window). A sample of a new series beyond it is dropped, counted in
    /// `Stats::events_dropped` and logged; series whose windows closed do not count.
    pub max_open_series: usize,
    /// Most series with pattern detectors in memory (1 to 10,000,000; memory: under 2 KB per
    /// series that has closed a few windows, up to about 30 KB per series with a long
    /// history at the default detection settings). A series beyond it evicts the least
    /// recently used ones (counted in `Stats::detectors_evicted`, logged once); an evicted
    /// series that returns is warmed again from its stored windows, as after 6 hours idle.
    pub max_detector_series: usize,
    /// Most distinct error hashes counted per window (1 to 10,000,000; memory: about 200
    /// bytes each). The errors of further hashes in that window are counted in one row
    /// whose `error_hash` and `error_type` are `(other)` (and are not written as records),
    /// counted in `Stats::error_messages_overflowed` and logged once: the window's counts
    /// still add up to every error accepted.
    pub max_error_messages_per_window: usize,
    /// How often (ms) the pipeline publishes its counters and gauges through the `metrics`
    /// facade (as `eventbatch_*` metrics; they are also published whenever `GetStats`, `Flush`
    /// or `Shutdown` answers); 0: the pipeline records no metrics at all, the writer's
    /// histograms included. See the README, "Metrics and Prometheus".
    pub metrics_interval_ms: u64,
    /// How long each table keeps its rows, by event time (every table forever by default),
    /// and how pruning runs: see [`Retention`]. Rows removed are counted in
    /// `Stats::rows_pruned`.
    pub retention: Retention,
    /// Durable mode: an event acknowledged to the caller survives a crash (kill -9) of the
    /// process, except those of the last `fsync_interval_ms`. Each accepted event is appended
    /// to a journal (a local SQLite file, [`Config::journal_path`]) committed every
    /// `fsync_interval_ms`; the writer commits to the store only at checkpoints (every
    /// `batch_interval_ms`, each `Flush`, query and `Shutdown`, and after
    /// `min(max_queued_events / 4, 25,000)` records), each in one transaction with the journal position it
    /// covers; a start replays the journal after the store's checkpoint, exactly once. Costs
    /// throughput (README, "Durable mode"), and a query commits a checkpoint first. Off by
    /// default; changing it needs a restart.
    pub durable: bool,
    /// Durable mode: the journal file. `None`: the SQLite store's path with `.journal`
    /// appended (`analytics.db.journal`); PostgreSQL needs one set (a local file per
    /// instance). Changing it needs a restart.
    pub journal_path: Option<PathBuf>,
    /// Durable mode: the journal is committed (and fsynced) at least this often (ms): what a
    /// crash can lose. 1 to 60,000.
    pub fsync_interval_ms: u64,
    /// Forwarding mode (docs/scale-out.md): publish what the pipeline would write (records,
    /// window snapshots, error counts, patterns: validated, pseudonymised, sampled and
    /// aggregated as usual) to a NATS JetStream stream instead of the store, for workers
    /// (`eventbatch worker`) to write. The store given to `start` then only serves the
    /// detectors' warm-up; queries answer `Err`. Not with `durable`. `None` (the default): the
    /// pipeline writes to its store. Changing it needs a restart.
    pub forward: Option<crate::forward::Forward>,
}

/// Default of [`Config::max_open_series`].
pub(crate) const DEFAULT_MAX_OPEN_SERIES: usize = 200_000;
/// Default of [`Config::max_detector_series`].
pub(crate) const DEFAULT_MAX_DETECTOR_SERIES: usize = 100_000;
/// Default of [`Config::max_error_messages_per_window`].
pub(crate) const DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW: usize = 1_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_batch_size: 100,
            batch_interval_ms: 1000,
            high_priority_flush_threshold: 10,
            aggregation_window_ms: 60_000,
            sampling_rates: HashMap::new(),
            sampling_targets: HashMap::new(),
            sampling_by: HashMap::new(),
            batching: true,
            max_queued_events: 100_000,
            instance_id: None,
            allowed_lateness_ms: 5_000,
            store_retry_budget_ms: 30_000,
            sqlite_busy_timeout_ms: 5_000,
            max_in_flight_batches: 8,
            identity_key: None,
            detection: DetectorSettings::default(),
            rollups: true,
            rollup_interval_ms: 60_000,
            watch_percentile: 99,
            stats_log_interval_ms: 60_000,
            max_open_series: DEFAULT_MAX_OPEN_SERIES,
            max_detector_series: DEFAULT_MAX_DETECTOR_SERIES,
            max_error_messages_per_window: DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW,
            metrics_interval_ms: 1_000,
            retention: Retention::default(),
            durable: false,
            journal_path: None,
            fsync_interval_ms: 100,
            forward: None,
        }
    }
}

/// A run-time change to the configuration: every `Some` field replaces the current value.
/// `aggregation_window_ms` and `instance_id` cannot change while running (windows and rows
/// already written depend on them).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigPatch {
    /// See [`Config::max_batch_size`].
    pub max_batch_size: Option<usize>,
    /// See [`Config::batch_interval_ms`].
    pub batch_interval_ms: Option<u64>,
    /// See [`Config::high_priority_flush_threshold`].
    pub high_priority_flush_threshold: Option<usize>,
    /// See [`Config::aggregation_window_ms`] (must equal the current value).
    pub aggregation_window_ms: Option<u64>,
    /// See [`Config::sampling_rates`] (replaces the whole map).
    pub sampling_rates: Option<HashMap<String, f64>>,
    /// See [`Config::sampling_targets`] (replaces the whole map; a key that keeps its target
    /// keeps its prediction of the offered rate).
    pub sampling_targets: Option<HashMap<String, f64>>,
    /// See [`Config::sampling_by`] (replaces the whole map).
    pub sampling_by: Option<HashMap<String, SampleBy>>,
    /// See [`Config::batching`].
    pub batching: Option<bool>,
    /// See [`Config::max_queued_events`].
    pub max_queued_events: Option<usize>,
    /// See [`Config::instance_id`] (must equal the current value).
    pub instance_id: Option<String>,
    /// See [`Config::allowed_lateness_ms`].
    pub allowed_lateness_ms: Option<u64>,
    /// See [`Config::store_retry_budget_ms`].
    pub store_retry_budget_ms: Option<u64>,
    /// See [`Config::sqlite_busy_timeout_ms`] (applies to connections opened later).
    pub sqlite_busy_timeout_ms: Option<u64>,
    /// See [`Config::max_in_flight_batches`].
    pub max_in_flight_batches: Option<usize>,
    /// See [`Config::identity_key`] (sets or changes the key; removing it needs a restart).
    #[serde(serialize_with = "serialize_redacted")]
    pub identity_key: Option<String>,
    /// See [`Config::detection`].
    pub detection: Option<DetectorSettings>,
    /// See [`Config::rollups`].
    pub rollups: Option<bool>,
    /// See [`Config::rollup_interval_ms`].
    pub rollup_interval_ms: Option<u64>,
    /// See [`Config::watch_percentile`].
    pub watch_percentile: Option<u8>,
    /// See [`Config::stats_log_interval_ms`].
    pub stats_log_interval_ms: Option<u64>,
    /// See [`Config::max_open_series`].
    pub max_open_series: Option<usize>,
    /// See [`Config::max_detector_series`].
    pub max_detector_series: Option<usize>,
    /// See [`Config::max_error_messages_per_window`].
    pub max_error_messages_per_window: Option<usize>,
    /// See [`Config::metrics_interval_ms`].
    pub metrics_interval_ms: Option<u64>,
    /// See [`Config::retention`] (replaces the whole section; applies at once: a round under
    /// way ends, and the next `Tick` or `Flush` starts one with the new ages).
    pub retention: Option<Retention>,
    /// See [`Config::durable`] (must equal the current value: needs a restart).
    pub durable: Option<bool>,
    /// See [`Config::journal_path`] (must equal the current value: needs a restart).
    pub journal_path: Option<PathBuf>,
    /// See [`Config::fsync_interval_ms`] (applies from the next journal commit).
    pub fsync_interval_ms: Option<u64>,
}

/// The event field a sampling key's keep decision is bound to ([`Config::sampling_by`]).
/// In TOML: `help = "user"`, `checkout = { tag = "plan" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    /// The user ([`crate::TrackEvent::user`], as the application gave it).
    User,
    /// The server ([`crate::TrackEvent::server`], as the application gave it).
    Server,
    /// The value of the tag with this key ([`crate::TrackEvent::tag`]).
    Tag(String),
}

impl Config {
    /// This config with `patch` applied and validated. `aggregation_window_ms` and
    /// `instance_id` may only be "changed" to their current values.
    pub fn patched(&self, patch: &ConfigPatch) -> Result<Config, ConfigError> {
        let mut next = self.clone();
        if let Some(w) = patch.aggregation_window_ms {
            if w != self.aggregation_window_ms {
                return Err(ConfigError::new(
                    "aggregation_window_ms",
                    w,
                    format!(
                        "cannot change at run time (is {})",
                        self.aggregation_window_ms
                    ),
                ));
            }
        }
        if let Some(durable) = patch.durable {
            if durable != self.durable {
                return Err(ConfigError::new(
                    "durable",
                    durable,
                    format!(
                        "cannot change at run time (is {}): needs a restart",
                        self.durable
                    ),
                ));
            }
        }
        if let Some(path) = &patch.journal_path {
            if Some(path) != self.journal_path.as_ref() {
                return Err(ConfigError::new(
                    "journal_path",
                    path.display(),
                    "cannot change at run time: needs a restart",
                ));
            }
        }
        if let Some(id) = &patch.instance_id {
            if Some(id) != self.instance_id.as_ref() {
                return Err(ConfigError::new(
                    "instance_id",
                    id,
                    "cannot change at run time",
                ));
            }
        }
        macro_rules! apply {
            ($($field:ident),*) => {$(
                if let Some(v) = &patch.$field { next.$field = v.clone(); }
            )*};
        }
        apply!(
            max_batch_size,
            batch_interval_ms,
            high_priority_flush_threshold,
            sampling_rates,
            sampling_targets,
            sampling_by,
            batching,
            max_queued_events,
            allowed_lateness_ms,
            store_retry_budget_ms,
            sqlite_busy_timeout_ms,
            max_in_flight_batches,
            detection,
            rollups,
            rollup_interval_ms,
            watch_percentile,
            stats_log_interval_ms,
            max_open_series,
            max_detector_series,
            max_error_messages_per_window,
            metrics_interval_ms,
            retention,
            fsync_interval_ms
        );
        if let Some(key) = &patch.identity_key {
            next.identity_key = Some(key.clone());
        }
        next.validate()?;
        Ok(next)
    }
}

/// `{:?}` of a secret: its length, never its bytes.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0)
    }
}

/// What a serialised configuration holds in place of `identity_key` (a configuration read
/// back with it is refused, naming the field, rather than running with another key).
pub const REDACTED_KEY: &str = "<redacted>";

/// Serialises `identity_key` as [`REDACTED_KEY`] (or nothing): configurations end up in files,
/// logs and answers.
fn serialize_redacted<S: serde::Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(_) => s.serialize_some(REDACTED_KEY),
        None => s.serialize_none(),
    }
}

fn redacted(key: &Option<String>) -> Option<Redacted> {
    key.as_ref().map(|k| Redacted(k.len()))
}

/// Like a derived `Debug`, with `identity_key` redacted (configs end up in logs).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("max_batch_size", &self.max_batch_size)
            .field("batch_interval_ms", &self.batch_interval_ms)
            .field(
                "high_priority_flush_threshold",
                &self.high_priority_flush_threshold,
            )
            .field("aggregation_window_ms", &self.aggregation_window_ms)
            .field("sampling_rates", &self.sampling_rates)
            .field("sampling_targets", &self.sampling_targets)
            .field("sampling_by", &self.sampling_by)
            .field("batching", &self.batching)
            .field("max_queued_events", &self.max_queued_events)
            .field("instance_id", &self.instance_id)
            .field("allowed_lateness_ms", &self.allowed_lateness_ms)
            .field("store_retry_budget_ms", &self.store_retry_budget_ms)
            .field("sqlite_busy_timeout_ms", &self.sqlite_busy_timeout_ms)
            .field("max_in_flight_batches", &self.max_in_flight_batches)
            .field("identity_key", &redacted(&self.identity_key))
            .field("detection", &self.detection)
            .field("rollups", &self.rollups)
            .field("rollup_interval_ms", &self.rollup_interval_ms)
            .field("watch_percentile", &self.watch_percentile)
            .field("stats_log_interval_ms", &self.stats_log_interval_ms)
            .field("max_open_series", &self.max_open_series)
            .field("max_detector_series", &self.max_detector_series)
            .field(
                "max_error_messages_per_window",
                &self.max_error_messages_per_window,
            )
            .field("metrics_interval_ms", &self.metrics_interval_ms)
            .field("retention", &self.retention)
            .field("durable", &self.durable)
            .field("journal_path", &self.journal_path)
            .field("fsync_interval_ms", &self.fsync_interval_ms)
            .field("forward", &self.forward)
            .finish()
    }
}

/// Like a derived `Debug`, with `identity_key` redacted.
impl std::fmt::Debug for ConfigPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigPatch")
            .field("max_batch_size", &self.max_batch_size)
            .field("batch_interval_ms", &self.batch_interval_ms)
            .field(
                "high_priority_flush_threshold",
                &self.high_priority_flush_threshold,
            )
            .field("aggregation_window_ms", &self.aggregation_window_ms)
            .field("sampling_rates", &self.sampling_rates)
            .field("sampling_targets", &self.sampling_targets)
            .field("sampling_by", &self.sampling_by)
            .field("batching", &self.batching)
            .field("max_queued_events", &self.max_queued_events)
            .field("instance_id", &self.instance_id)
            .field("allowed_lateness_ms", &self.allowed_lateness_ms)
            .field("store_retry_budget_ms", &self.store_retry_budget_ms)
            .field("sqlite_busy_timeout_ms", &self.sqlite_busy_timeout_ms)
            .field("max_in_flight_batches", &self.max_in_flight_batches)
            .field("identity_key", &redacted(&self.identity_key))
            .field("detection", &self.detection)
            .field("rollups", &self.rollups)
            .field("rollup_interval_ms", &self.rollup_interval_ms)
            .field("watch_percentile", &self.watch_percentile)
            .field("stats_log_interval_ms", &self.stats_log_interval_ms)
            .field("max_open_series", &self.max_open_series)
            .field("max_detector_series", &self.max_detector_series)
            .field(
                "max_error_messages_per_window",
                &self.max_error_messages_per_window,
            )
            .field("metrics_interval_ms", &self.metrics_interval_ms)
            .field("retention", &self.retention)
            .field("durable", &self.durable)
            .field("journal_path", &self.journal_path)
            .field("fsync_interval_ms", &self.fsync_interval_ms)
            .finish()
    }
}
