//! Configuration: [`Config`] as the application writes it, [`ConfigPatch`] for run-time changes,
//! and [`Settings`], the validated form the actors take.
//!
//! `Config` is validated once (by [`crate::start`] and by `Configure`); every
//! [`ConfigError`] names the field and the bad value.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::pseudonyms::Pseudonyms;
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
}

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
    /// Checks every field; the first invalid one is returned as a [`ConfigError`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        Settings::from_config(self)
    }

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

/// A validated [`Config`]: the values the actors run with, in types that cannot be wrong.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`Config::max_batch_size`].
    pub max_batch_size: NonZeroUsize,
    /// See [`Config::batch_interval_ms`].
    pub batch_interval: Duration,
    /// See [`Config::high_priority_flush_threshold`].
    pub high_priority_flush_threshold: NonZeroUsize,
    /// See [`Config::aggregation_window_ms`] (> 0).
    pub window_ms: i64,
    /// See [`Config::sampling_rates`]; every rate in `[0, 1]`.
    pub sampling_rates: HashMap<String, f64>,
    /// See [`Config::sampling_targets`]; every target in `[0.001, 10^7]` events/s, no key
    /// also in `sampling_rates`.
    pub sampling_targets: HashMap<String, f64>,
    /// See [`Config::sampling_by`].
    pub sampling_by: HashMap<String, SampleBy>,
    /// See [`Config::batching`].
    pub batching: bool,
    /// See [`Config::max_queued_events`].
    pub max_queued_events: NonZeroUsize,
    /// The instance id in force (generated when the config had none).
    pub instance_id: String,
    /// See [`Config::allowed_lateness_ms`].
    pub allowed_lateness_ms: i64,
    /// See [`Config::store_retry_budget_ms`].
    pub store_retry_budget: Duration,
    /// See [`Config::sqlite_busy_timeout_ms`].
    pub sqlite_busy_timeout: Duration,
    /// See [`Config::max_in_flight_batches`].
    pub max_in_flight_batches: NonZeroUsize,
    /// Whether an identity key is set. Deprecated, for the writer's current signature only:
    /// what is stored is decided by [`Settings::pseudonyms`] (at the front door).
    pub(crate) hash_identities: bool,
    /// How users and servers are stored: see [`Config::identity_key`].
    pub(crate) pseudonyms: Pseudonyms,
    /// See [`Config::detection`].
    pub detection: DetectorSettings,
    /// See [`Config::rollups`].
    pub rollups: bool,
    /// See [`Config::rollup_interval_ms`] (> 0).
    pub rollup_interval_ms: i64,
    /// See [`Config::watch_percentile`]; `None` for 0.
    pub watch_percentile: Option<u8>,
    /// See [`Config::stats_log_interval_ms`]; `None` for 0.
    pub stats_log_interval: Option<Duration>,
    /// See [`Config::max_open_series`] (1 to 10,000,000).
    pub max_open_series: usize,
    /// See [`Config::max_detector_series`] (1 to 10,000,000).
    pub max_detector_series: usize,
    /// See [`Config::max_error_messages_per_window`] (1 to 10,000,000).
    pub max_error_messages_per_window: usize,
    /// See [`Config::metrics_interval_ms`]; `None` for 0.
    pub metrics_interval: Option<Duration>,
    /// See [`Config::retention`] (validated).
    pub retention: Retention,
    /// See [`Config::durable`].
    pub durable: bool,
    /// See [`Config::journal_path`] (resolved against the store at start).
    pub journal_path: Option<PathBuf>,
    /// See [`Config::fsync_interval_ms`].
    pub fsync_interval: Duration,
}

/// Largest accepted window or interval: one week, so `i64` ms arithmetic never overflows.
const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;
/// Largest retry budget and SQLite busy timeout: an hour (a flush waits at most that long).
const MAX_WAIT_MS: u64 = 3_600_000;
/// Largest write batch (records per transaction).
const MAX_BATCH_SIZE: usize = 100_000;
/// Largest `max_queued_events`: 10 million records, about 1.5 GB at 150 bytes each.
const MAX_QUEUED_EVENTS: usize = 10_000_000;

/// Largest `fsync_interval_ms`: a minute.
const MAX_FSYNC_INTERVAL_MS: u64 = 60_000;

/// Default of [`Config::max_open_series`].
pub(crate) const DEFAULT_MAX_OPEN_SERIES: usize = 200_000;
/// Default of [`Config::max_detector_series`].
pub(crate) const DEFAULT_MAX_DETECTOR_SERIES: usize = 100_000;
/// Default of [`Config::max_error_messages_per_window`].
pub(crate) const DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW: usize = 1_000;
/// Largest `max_in_flight_batches`.
const MAX_IN_FLIGHT_BATCHES: usize = 1_000;
/// Most sampling keys, and the longest (a sampling key is a prefix such as `performance.` and
/// a name of at most [`crate::MAX_NAME_BYTES`]).
const MAX_SAMPLING_KEYS: usize = 10_000;
const MAX_SAMPLING_KEY_BYTES: usize = 2 * crate::event::MAX_NAME_BYTES;
/// Bounds of a `sampling_targets` value, in kept events per second.
const MIN_SAMPLING_TARGET: f64 = 0.001;
const MAX_SAMPLING_TARGET: f64 = 10_000_000.0;
/// Bounds of `identity_key`: at least 128 bits' worth of bytes, and no megabyte secrets.
const MIN_IDENTITY_KEY_BYTES: usize = 16;
const MAX_IDENTITY_KEY_BYTES: usize = 1024;
/// Longest `instance_id`.
const MAX_INSTANCE_ID_BYTES: usize = 128;

/// `v` in `1..=max`, else a [`ConfigError`] naming `field` and `v`.
fn count(field: &str, v: usize, max: usize) -> Result<NonZeroUsize, ConfigError> {
    let n = NonZeroUsize::new(v).ok_or_else(|| ConfigError::new(field, v, "must be at least 1"))?;
    if v > max {
        return Err(ConfigError::new(field, v, format!("must be at most {max}")));
    }
    Ok(n)
}

/// `v` ms within `max`, and not zero unless `allow_zero`.
fn millis(field: &str, v: u64, allow_zero: bool, max: u64) -> Result<u64, ConfigError> {
    if v == 0 && !allow_zero {
        Err(ConfigError::new(field, v, "must be at least 1 ms"))
    } else if v > max {
        Err(ConfigError::new(
            field,
            v,
            format!("must be at most {max} ms"),
        ))
    } else {
        Ok(v)
    }
}

impl Settings {
    fn from_config(c: &Config) -> Result<Settings, ConfigError> {
        const WEEK: u64 = MAX_DURATION_MS;
        let max_batch_size = count("max_batch_size", c.max_batch_size, MAX_BATCH_SIZE)?;
        let batch_interval_ms = millis("batch_interval_ms", c.batch_interval_ms, false, WEEK)?;
        let high = count(
            "high_priority_flush_threshold",
            c.high_priority_flush_threshold,
            MAX_BATCH_SIZE,
        )?;
        let window_ms = millis(
            "aggregation_window_ms",
            c.aggregation_window_ms,
            false,
            WEEK,
        )?;
        let lateness = millis("allowed_lateness_ms", c.allowed_lateness_ms, true, WEEK)?;
        let retry = millis(
            "store_retry_budget_ms",
            c.store_retry_budget_ms,
            true,
            MAX_WAIT_MS,
        )?;
        let busy = millis(
            "sqlite_busy_timeout_ms",
            c.sqlite_busy_timeout_ms,
            true,
            MAX_WAIT_MS,
        )?;
        let max_queued_events = count("max_queued_events", c.max_queued_events, MAX_QUEUED_EVENTS)?;
        let in_flight = count(
            "max_in_flight_batches",
            c.max_in_flight_batches,
            MAX_IN_FLIGHT_BATCHES,
        )?;
        let rollup_interval = millis("rollup_interval_ms", c.rollup_interval_ms, false, WEEK)?;
        check_sampling_rates(&c.sampling_rates)?;
        check_sampling_targets(&c.sampling_targets, &c.sampling_rates)?;
        check_sampling_by(&c.sampling_by)?;
        let watch_percentile = match c.watch_percentile {
            0 => None,
            q @ (90 | 95 | 99) => Some(q),
            q => {
                return Err(ConfigError::new(
                    "watch_percentile",
                    q,
                    "must be 90, 95 or 99 (or 0 to watch the mean only)",
                ))
            }
        };
        let stats_log = millis("stats_log_interval_ms", c.stats_log_interval_ms, true, WEEK)?;
        let max_open_series = count("max_open_series", c.max_open_series, MAX_QUEUED_EVENTS)?;
        let (max_detectors, max_error_messages) = cardinality_caps(c)?;
        let metrics = millis(
            "metrics_interval_ms",
            c.metrics_interval_ms,
            true,
            MAX_WAIT_MS,
        )?;
        let fsync = millis(
            "fsync_interval_ms",
            c.fsync_interval_ms,
            false,
            MAX_FSYNC_INTERVAL_MS,
        )?;
        if c.journal_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                "journal_path",
                "\"\"",
                "must be a file path (or absent for the default)",
            ));
        }
        let instance_id = match &c.instance_id {
            Some(id) => check_instance_id(id)?,
            None => crate::util::random_instance_id(),
        };
        let pseudonyms = match &c.identity_key {
            Some(key) => Pseudonyms::keyed(check_identity_key(key)?),
            None => Pseudonyms::as_given(),
        };
        c.detection.validate().map_err(|(field, value)| {
            ConfigError::new(format!("detection.{field}"), value, "out of range")
        })?;
        c.retention.validate()?;
        Ok(Settings {
            max_batch_size,
            batch_interval: Duration::from_millis(batch_interval_ms),
            high_priority_flush_threshold: high,
            window_ms: window_ms as i64,
            sampling_rates: c.sampling_rates.clone(),
            sampling_targets: c.sampling_targets.clone(),
            sampling_by: c.sampling_by.clone(),
            batching: c.batching,
            max_queued_events,
            instance_id,
            allowed_lateness_ms: lateness as i64,
            store_retry_budget: Duration::from_millis(retry),
            sqlite_busy_timeout: Duration::from_millis(busy),
            max_in_flight_batches: in_flight,
            hash_identities: pseudonyms.is_keyed(),
            pseudonyms,
            detection: c.detection.clone(),
            rollups: c.rollups,
            rollup_interval_ms: rollup_interval as i64,
            watch_percentile,
            stats_log_interval: (stats_log > 0).then(|| Duration::from_millis(stats_log)),
            max_open_series: max_open_series.get(),
            max_detector_series: max_detectors,
            max_error_messages_per_window: max_error_messages,
            metrics_interval: (metrics > 0).then(|| Duration::from_millis(metrics)),
            retention: c.retention.clone(),
            durable: c.durable,
            journal_path: c.journal_path.clone(),
            fsync_interval: Duration::from_millis(fsync),
        })
    }
}

/// The caps that bound memory whatever the names: `max_detector_series` and
/// `max_error_messages_per_window`, each 1 to 10,000,000.
fn cardinality_caps(c: &Config) -> Result<(usize, usize), ConfigError> {
    let detectors = count(
        "max_detector_series",
        c.max_detector_series,
        MAX_QUEUED_EVENTS,
    )?;
    let errors = count(
        "max_error_messages_per_window",
        c.max_error_messages_per_window,
        MAX_QUEUED_EVENTS,
    )?;
    Ok((detectors.get(), errors.get()))
}

/// Not too many keys, each non-empty and of a sensible length.
fn check_sampling_keys<'a>(
    field: &str,
    keys: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    if keys.len() > MAX_SAMPLING_KEYS {
        return Err(ConfigError::new(
            field,
            format!("{} keys", keys.len()),
            format!("at most {MAX_SAMPLING_KEYS} keys"),
        ));
    }
    for key in keys {
        if key.is_empty() {
            return Err(ConfigError::new(
                field,
                "\"\"",
                "a sampling key must not be empty",
            ));
        }
        if key.len() > MAX_SAMPLING_KEY_BYTES {
            return Err(ConfigError::new(
                field,
                format!("a key of {} bytes", key.len()),
                format!("a sampling key is at most {MAX_SAMPLING_KEY_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// Sensible keys ([`check_sampling_keys`]), every rate a probability.
fn check_sampling_rates(rates: &HashMap<String, f64>) -> Result<(), ConfigError> {
    check_sampling_keys("sampling_rates", rates.keys())?;
    for (key, &rate) in rates {
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::new(
                format!("sampling_rates[{key:?}]"),
                rate,
                "must be a probability in [0, 1]",
            ));
        }
    }
    Ok(())
}

/// Sensible keys, every target a finite number of events per second within bounds, and no
/// key with a fixed rate too (which would win is not obvious: the config must say one).
fn check_sampling_targets(
    targets: &HashMap<String, f64>,
    rates: &HashMap<String, f64>,
) -> Result<(), ConfigError> {
    check_sampling_keys("sampling_targets", targets.keys())?;
    for (key, &target) in targets {
        if !(MIN_SAMPLING_TARGET..=MAX_SAMPLING_TARGET).contains(&target) {
            return Err(ConfigError::new(
                format!("sampling_targets[{key:?}]"),
                target,
                format!(
                    "must be {MIN_SAMPLING_TARGET} to {MAX_SAMPLING_TARGET} kept events per second"
                ),
            ));
        }
        if rates.contains_key(key) {
            return Err(ConfigError::new(
                format!("sampling_targets[{key:?}]"),
                target,
                "the key has a fixed rate in sampling_rates too: give it a rate or a target",
            ));
        }
    }
    Ok(())
}

/// Sensible keys; a tag binding names a tag key as `TrackEvent::tag` accepts it.
fn check_sampling_by(by: &HashMap<String, SampleBy>) -> Result<(), ConfigError> {
    check_sampling_keys("sampling_by", by.keys())?;
    for (key, field) in by {
        if let SampleBy::Tag(tag) = field {
            if tag.is_empty() || tag.len() > crate::event::MAX_NAME_BYTES || tag.contains('\0') {
                return Err(ConfigError::new(
                    format!("sampling_by[{key:?}]"),
                    format!("tag {tag:?}"),
                    format!(
                        "a tag key is 1 to {} bytes without NUL",
                        crate::event::MAX_NAME_BYTES
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// 1 to 128 bytes without control characters (it is stored on every row; PostgreSQL refuses
/// a NUL in `TEXT`).
fn check_instance_id(id: &str) -> Result<String, ConfigError> {
    if id.is_empty() || id.len() > MAX_INSTANCE_ID_BYTES {
        return Err(ConfigError::new(
            "instance_id",
            format!("{id:?}"),
            format!("must be 1 to {MAX_INSTANCE_ID_BYTES} bytes"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "instance_id",
            format!("{id:?}"),
            "must not contain control characters (NUL, newline, ...)",
        ));
    }
    Ok(id.to_string())
}

/// 16 to 1024 bytes. The error shows the length, never the key.
fn check_identity_key(key: &str) -> Result<&str, ConfigError> {
    if key == REDACTED_KEY {
        return Err(ConfigError::new(
            "identity_key",
            REDACTED_KEY,
            "is the placeholder a serialised configuration holds in place of the key; give \
             the key itself",
        ));
    }
    if !(MIN_IDENTITY_KEY_BYTES..=MAX_IDENTITY_KEY_BYTES).contains(&key.len()) {
        return Err(ConfigError::new(
            "identity_key",
            format!("<secret, {} bytes>", key.len()),
            format!(
                "must be {MIN_IDENTITY_KEY_BYTES} to {MAX_IDENTITY_KEY_BYTES} bytes \
                 (a short key can be guessed, and with it every pseudonym reversed)"
            ),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.max_batch_size.get(), 100);
        assert_eq!(s.window_ms, 60_000);
        assert!(!s.instance_id.is_empty());
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: Vec<(Config, &str, &str)> = vec![
            (
                Config {
                    max_batch_size: 0,
                    ..Config::default()
                },
                "max_batch_size",
                "0",
            ),
            (
                Config {
                    batch_interval_ms: 0,
                    ..Config::default()
                },
                "batch_interval_ms",
                "0",
            ),
            (
                Config {
                    rollup_interval_ms: 0,
                    ..Config::default()
                },
                "rollup_interval_ms",
                "0",
            ),
            (
                Config {
                    aggregation_window_ms: 0,
                    ..Config::default()
                },
                "aggregation_window_ms",
                "0",
            ),
            (
                Config {
                    high_priority_flush_threshold: 0,
                    ..Config::default()
                },
                "high_priority_flush_threshold",
                "0",
            ),
            (
                Config {
                    max_queued_events: 0,
                    ..Config::default()
                },
                "max_queued_events",
                "0",
            ),
            (
                Config {
                    sampling_rates: [("help".to_string(), 1.5)].into(),
                    ..Config::default()
                },
                "sampling_rates[\"help\"]",
                "1.5",
            ),
            (
                Config {
                    sampling_rates: [("help".to_string(), -1.0)].into(),
                    ..Config::default()
                },
                "sampling_rates[\"help\"]",
                "-1",
            ),
            (
                Config {
                    sampling_rates: [("help".to_string(), f64::NAN)].into(),
                    ..Config::default()
                },
                "sampling_rates[\"help\"]",
                "NaN",
            ),
        ];
        for (config, field, value) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert_eq!(err.value, value);
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn every_size_has_an_upper_bound_naming_field_and_value() {
        let d = Config::default;
        let cases: Vec<(Config, &str, String)> = vec![
            (
                Config {
                    max_batch_size: 100_001,
                    ..d()
                },
                "max_batch_size",
                "100001".into(),
            ),
            (
                Config {
                    high_priority_flush_threshold: usize::MAX,
                    ..d()
                },
                "high_priority_flush_threshold",
                usize::MAX.to_string(),
            ),
            (
                Config {
                    max_queued_events: 1 << 40,
                    ..d()
                },
                "max_queued_events",
                (1u64 << 40).to_string(),
            ),
            (
                Config {
                    max_in_flight_batches: usize::MAX,
                    ..d()
                },
                "max_in_flight_batches",
                usize::MAX.to_string(),
            ),
            (
                Config {
                    store_retry_budget_ms: u64::MAX,
                    ..d()
                },
                "store_retry_budget_ms",
                u64::MAX.to_string(),
            ),
            (
                Config {
                    sqlite_busy_timeout_ms: 3_600_001,
                    ..d()
                },
                "sqlite_busy_timeout_ms",
                "3600001".into(),
            ),
            (
                Config {
                    batch_interval_ms: u64::MAX,
                    ..d()
                },
                "batch_interval_ms",
                u64::MAX.to_string(),
            ),
            (
                Config {
                    aggregation_window_ms: MAX_DURATION_MS + 1,
                    ..d()
                },
                "aggregation_window_ms",
                (MAX_DURATION_MS + 1).to_string(),
            ),
            (
                Config {
                    allowed_lateness_ms: u64::MAX,
                    ..d()
                },
                "allowed_lateness_ms",
                u64::MAX.to_string(),
            ),
            (
                Config {
                    rollup_interval_ms: u64::MAX,
                    ..d()
                },
                "rollup_interval_ms",
                u64::MAX.to_string(),
            ),
            (
                Config {
                    max_in_flight_batches: 0,
                    ..d()
                },
                "max_in_flight_batches",
                "0".into(),
            ),
            (
                Config {
                    metrics_interval_ms: MAX_WAIT_MS + 1,
                    ..d()
                },
                "metrics_interval_ms",
                (MAX_WAIT_MS + 1).to_string(),
            ),
            (
                Config {
                    sampling_rates: [("x".repeat(513), 0.5)].into(),
                    ..d()
                },
                "sampling_rates",
                "a key of 513 bytes".into(),
            ),
            (
                Config {
                    sampling_rates: (0..10_001).map(|i| (format!("k{i}"), 0.5)).collect(),
                    ..d()
                },
                "sampling_rates",
                "10001 keys".into(),
            ),
            (
                Config {
                    instance_id: Some("a\0b".into()),
                    ..d()
                },
                "instance_id",
                "\"a\\0b\"".into(),
            ),
            (
                Config {
                    instance_id: Some("x".repeat(129)),
                    ..d()
                },
                "instance_id",
                format!("{:?}", "x".repeat(129)),
            ),
        ];
        for (config, field, value) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.value.as_str()),
                (field, value.as_str())
            );
            assert!(err.to_string().contains(field), "{err}");
        }
        // the bounds themselves are accepted
        Config {
            max_batch_size: MAX_BATCH_SIZE,
            high_priority_flush_threshold: MAX_BATCH_SIZE,
            max_queued_events: MAX_QUEUED_EVENTS,
            max_in_flight_batches: MAX_IN_FLIGHT_BATCHES,
            store_retry_budget_ms: MAX_WAIT_MS,
            sqlite_busy_timeout_ms: MAX_WAIT_MS,
            aggregation_window_ms: MAX_DURATION_MS,
            metrics_interval_ms: MAX_WAIT_MS,
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn cardinality_caps_name_field_and_value_and_take_their_bounds() {
        let d = Config::default;
        for (config, field, value) in [
            (
                Config {
                    max_detector_series: 0,
                    ..d()
                },
                "max_detector_series",
                "0",
            ),
            (
                Config {
                    max_error_messages_per_window: MAX_QUEUED_EVENTS + 1,
                    ..d()
                },
                "max_error_messages_per_window",
                "10000001",
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.value.as_str()), (field, value));
        }
        let s = Config {
            max_detector_series: MAX_QUEUED_EVENTS,
            max_error_messages_per_window: 1,
            ..d()
        }
        .validate()
        .unwrap();
        assert_eq!(
            (s.max_detector_series, s.max_error_messages_per_window),
            (MAX_QUEUED_EVENTS, 1)
        );
        let patch = ConfigPatch {
            max_detector_series: Some(7),
            ..ConfigPatch::default()
        };
        assert_eq!(d().patched(&patch).unwrap().max_detector_series, 7);
    }

    #[test]
    fn sampling_targets_and_bindings_are_validated() {
        let targets = |pairs: &[(&str, f64)]| -> HashMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let cases: Vec<(Config, &str, String)> = vec![
            (
                Config {
                    sampling_targets: targets(&[("help", 0.0)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "0".into(),
            ),
            (
                Config {
                    sampling_targets: targets(&[("help", -5.0)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "-5".into(),
            ),
            (
                Config {
                    sampling_targets: targets(&[("help", f64::NAN)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "NaN".into(),
            ),
            (
                Config {
                    sampling_targets: targets(&[("help", f64::INFINITY)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "inf".into(),
            ),
            (
                Config {
                    sampling_targets: targets(&[("help", 1e7 + 1.0)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "10000001".into(),
            ),
            (
                Config {
                    sampling_targets: targets(&[("", 10.0)]),
                    ..Config::default()
                },
                "sampling_targets",
                "\"\"".into(),
            ),
            (
                Config {
                    sampling_targets: (0..10_001).map(|i| (format!("k{i}"), 1.0)).collect(),
                    ..Config::default()
                },
                "sampling_targets",
                "10001 keys".into(),
            ),
            (
                Config {
                    sampling_rates: targets(&[("help", 0.5)]),
                    sampling_targets: targets(&[("help", 100.0)]),
                    ..Config::default()
                },
                "sampling_targets[\"help\"]",
                "100".into(),
            ),
            (
                Config {
                    sampling_by: [("help".to_string(), SampleBy::Tag(String::new()))].into(),
                    ..Config::default()
                },
                "sampling_by[\"help\"]",
                "tag \"\"".into(),
            ),
            (
                Config {
                    sampling_by: [("x".repeat(513), SampleBy::User)].into(),
                    ..Config::default()
                },
                "sampling_by",
                "a key of 513 bytes".into(),
            ),
        ];
        for (config, field, value) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.value.as_str()),
                (field, value.as_str()),
                "{err}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
        let ok = Config {
            sampling_rates: targets(&[("help", 0.5)]),
            sampling_targets: targets(&[("performance.rt", 0.001), ("ask", 1e7)]),
            sampling_by: [
                ("help".to_string(), SampleBy::User),
                ("ask".to_string(), SampleBy::Tag("tenant".into())),
            ]
            .into(),
            batching: false,
            ..Config::default()
        };
        let s = ok.validate().unwrap();
        assert_eq!(s.sampling_targets["ask"], 1e7);
        assert_eq!(s.sampling_by["help"], SampleBy::User);
        assert!(!s.batching && Config::default().validate().unwrap().batching);
        // a patch that moves a key from a rate to a target says both at once
        let moved = ok
            .patched(&ConfigPatch {
                sampling_rates: Some(HashMap::new()),
                sampling_targets: Some(targets(&[("help", 50.0)])),
                batching: Some(true),
                sampling_by: Some(HashMap::new()),
                ..ConfigPatch::default()
            })
            .unwrap();
        assert_eq!(moved.sampling_targets, targets(&[("help", 50.0)]));
        assert!(moved.batching && moved.sampling_by.is_empty());
        let conflicting = ConfigPatch {
            sampling_targets: Some(targets(&[("help", 50.0)])),
            ..ConfigPatch::default()
        };
        assert_eq!(
            ok.patched(&conflicting).unwrap_err().field,
            "sampling_targets[\"help\"]"
        );
        // bindings in JSON: "user", {"tag": "plan"}
        let json = serde_json::to_string(&ok).unwrap();
        assert!(json.contains(r#""help":"user""#), "{json}");
        assert!(json.contains(r#""ask":{"tag":"tenant"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), ok);
    }

    #[test]
    fn identity_key_is_bounded_and_never_shown() {
        let secret = "correct horse battery staple";
        let keyed = Config {
            identity_key: Some(secret.into()),
            ..Config::default()
        };
        let s = keyed.validate().unwrap();
        assert!(s.pseudonyms.is_keyed() && s.hash_identities);
        assert!(!Config::default().validate().unwrap().pseudonyms.is_keyed());
        for shown in [
            format!("{keyed:?}"),
            format!("{s:?}"),
            format!(
                "{:?}",
                ConfigPatch {
                    identity_key: Some(secret.into()),
                    ..ConfigPatch::default()
                }
            ),
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let short = Config {
            identity_key: Some("hunter2".into()),
            ..Config::default()
        };
        let err = short.validate().unwrap_err();
        assert_eq!(err.field, "identity_key");
        assert_eq!(err.value, "<secret, 7 bytes>");
        assert!(!err.to_string().contains("hunter2"));
        // set at run time
        let patched = Config::default()
            .patched(&ConfigPatch {
                identity_key: Some(secret.into()),
                ..ConfigPatch::default()
            })
            .unwrap();
        assert_eq!(patched.identity_key.as_deref(), Some(secret));
        // the old flag is refused by name, not silently ignored
        let old = serde_json::from_str::<Config>(r#"{"hash_identities": true}"#).unwrap_err();
        assert!(old.to_string().contains("hash_identities"), "{old}");
    }

    #[test]
    fn retention_is_validated_and_patched_whole() {
        let keep_a_day = Retention {
            events_max_age_ms: 86_400_000,
            ..Retention::default()
        };
        let c = Config::default();
        let patched = c
            .patched(&ConfigPatch {
                retention: Some(keep_a_day.clone()),
                ..ConfigPatch::default()
            })
            .unwrap();
        assert_eq!(patched.retention, keep_a_day);
        assert_eq!(patched.validate().unwrap().retention, keep_a_day);
        let bad = ConfigPatch {
            retention: Some(Retention {
                windows_max_age_ms: 10,
                hour_rollups_max_age_ms: 5,
                ..Retention::default()
            }),
            ..ConfigPatch::default()
        };
        let e = c.patched(&bad).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("retention.hour_rollups_max_age_ms", "5")
        );
        let json = r#"{"retention": {"events_max_age_ms": 5, "batch_sise": 1}}"#;
        assert!(
            serde_json::from_str::<Config>(json).is_err(),
            "unknown field"
        );
        let json = r#"{"retention": {"events_max_age_ms": 5}}"#;
        let partial: Config = serde_json::from_str(json).unwrap();
        assert_eq!(
            partial.retention.batch_size,
            Retention::default().batch_size
        );
    }

    #[test]
    fn patch_applies_and_validates() {
        let c = Config::default();
        let p = ConfigPatch {
            max_batch_size: Some(7),
            ..ConfigPatch::default()
        };
        assert_eq!(c.patched(&p).unwrap().max_batch_size, 7);
        let bad = ConfigPatch {
            max_batch_size: Some(0),
            ..ConfigPatch::default()
        };
        assert_eq!(c.patched(&bad).unwrap_err().field, "max_batch_size");
        let window = ConfigPatch {
            aggregation_window_ms: Some(1),
            ..ConfigPatch::default()
        };
        assert_eq!(
            c.patched(&window).unwrap_err().field,
            "aggregation_window_ms"
        );
    }

    #[test]
    fn durable_mode_fields_are_bounded_and_need_a_restart_to_switch() {
        let d = Config::default();
        assert!(!d.durable && d.journal_path.is_none());
        assert_eq!(
            d.validate().unwrap().fsync_interval,
            Duration::from_millis(100)
        );
        for (ms, ok) in [(0, false), (1, true), (60_000, true), (60_001, false)] {
            let c = Config {
                fsync_interval_ms: ms,
                ..Config::default()
            };
            match c.validate() {
                Ok(_) => assert!(ok, "{ms}"),
                Err(e) => {
                    assert!(!ok, "{ms}");
                    assert_eq!(
                        (e.field.as_str(), e.value),
                        ("fsync_interval_ms", ms.to_string())
                    );
                }
            }
        }
        let empty = Config {
            journal_path: Some(PathBuf::new()),
            ..Config::default()
        };
        assert_eq!(empty.validate().unwrap_err().field, "journal_path");
        let on = Config {
            durable: true,
            journal_path: Some("a.journal".into()),
            ..Config::default()
        };
        let switch = ConfigPatch {
            durable: Some(false),
            ..ConfigPatch::default()
        };
        assert_eq!(on.patched(&switch).unwrap_err().field, "durable");
        let moved = ConfigPatch {
            journal_path: Some("b.journal".into()),
            ..ConfigPatch::default()
        };
        assert_eq!(on.patched(&moved).unwrap_err().field, "journal_path");
        let same = ConfigPatch {
            durable: Some(true),
            journal_path: Some("a.journal".into()),
            fsync_interval_ms: Some(10),
            ..ConfigPatch::default()
        };
        assert_eq!(on.patched(&same).unwrap().fsync_interval_ms, 10);
    }

    #[test]
    fn serde_round_trip_and_unknown_fields() {
        let c = Config {
            max_batch_size: 5,
            ..Config::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: Config = serde_json::from_str(r#"{"max_batch_size": 9}"#).unwrap();
        assert_eq!(partial.batch_interval_ms, 1000);
        assert!(serde_json::from_str::<Config>(r#"{"max_batch_sise": 9}"#).is_err());
    }
}
