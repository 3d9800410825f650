//! Configuration: [`Config`] as the application writes it and [`ConfigPatch`] for run-time
//! changes, both generated from one list of fields (`config_fields!`: each field is declared
//! once, with its type, default, documentation and how a patch changes it). Validation, into
//! the settings the actors take, is `crate::settings`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::retention::Retention;
use crate::stats::detect::DetectorSettings;

/// Declares [`Config`] (with its `Default`), [`ConfigPatch`], their redacting `Debug`s and
/// `Config::apply` from one list of fields. Each entry: the field's documentation and serde
/// attribute (an attribute marks the secret: redacted by `Debug` and serialisation), `name:
/// Type = default;`, then `patch KIND PatchType: "patch doc";`, where KIND says what a `Some`
/// in a patch does: `set` replaces the value, `some` sets `Some(value)`, `fixed` applies
/// nothing (the value cannot change at run time: [`Config::patched`] refuses another).
macro_rules! config_fields {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde $serde:tt])?
        $field:ident: $ty:ty = $default:expr;
        patch $kind:ident $pty:ty: $pdoc:literal;
    )*) => {
        /// The pipeline's configuration. Every field has a default (`Config::default()`), so
        /// `Config { max_batch_size: 500, ..Config::default() }` works; serde fills missing
        /// fields with the same defaults and rejects unknown ones.
        #[derive(Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $($(#[doc = $doc])* $(#[serde $serde])? pub $field: $ty,)*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $($field: $default,)* }
            }
        }

        /// A run-time change to the configuration: every `Some` field replaces the current
        /// value. `aggregation_window_ms`, `instance_id`, `durable` and `journal_path` cannot
        /// change while running (windows and rows already written, or the journal, depend on
        /// them).
        #[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ConfigPatch {
            $(#[doc = $pdoc] $(#[serde $serde])? pub $field: $pty,)*
        }

        impl Config {
            /// Takes every `Some` of `patch` but those that cannot change at run time.
            fn apply(&mut self, patch: &ConfigPatch) {
                $(patch_field!($kind, self.$field, patch.$field);)*
            }
        }

        redacting_debug!(Config, $($field $([$serde])?),*);
        redacting_debug!(ConfigPatch, $($field $([$serde])?),*);
    };
}

/// What a patch's `Some` does to a field (see `config_fields!`).
macro_rules! patch_field {
    (set, $to:expr, $from:expr) => {
        if let Some(v) = &$from {
            $to = v.clone();
        }
    };
    (some, $to:expr, $from:expr) => {
        if let Some(v) = &$from {
            $to = Some(v.clone());
        }
    };
    (fixed, $to:expr, $from:expr) => {};
}

/// Like a derived `Debug`, with the secret (`identity_key`) redacted: configs end up in logs.
macro_rules! redacting_debug {
    ($name:ident, $($field:ident $([$($serde:tt)*])?),*) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), shown!($([$($serde)*])? &self.$field)))*
                    .finish()
            }
        }
    };
}

/// A field for `Debug`: the secret (the one field with a serde attribute) redacted.
macro_rules! shown {
    ([$($serde:tt)*] $value:expr) => {
        &redacted($value)
    };
    ($value:expr) => {
        $value
    };
}

config_fields! {
    /// Records per write batch: a priority queue is written as soon as it holds this many.
    max_batch_size: usize = 100;
    patch set Option<usize>: "See [`Config::max_batch_size`].";
    /// Queued records are written at least this often (ms), and open windows are checked for
    /// closing on the same tick.
    batch_interval_ms: u64 = 1000;
    patch set Option<u64>: "See [`Config::batch_interval_ms`].";
    /// As soon as this many high-priority records wait, they are written at once.
    high_priority_flush_threshold: usize = 10;
    patch set Option<usize>: "See [`Config::high_priority_flush_threshold`].";
    /// Width of the event-time aggregation windows `[k*w, (k+1)*w)`, in ms.
    aggregation_window_ms: u64 = 60_000;
    patch fixed Option<u64>: "See [`Config::aggregation_window_ms`] (must equal the current value).";
    /// Keep probability per sampling key (`"help"`, `"performance.response_time"`,
    /// `"error.timeout"`, ...). Keys not listed keep everything. A key has a fixed rate here or
    /// a target in `sampling_targets`, not both.
    sampling_rates: HashMap<String, f64> = HashMap::new();
    patch set Option<HashMap<String, f64>>: "See [`Config::sampling_rates`] (replaces the whole map).";
    /// Adaptive sampling: a target of kept events per second per sampling key (0.001 to
    /// 10,000,000). The pipeline counts the events offered under the key each second of its
    /// clock and sets the key's rate to `target / predicted offered rate` (at most 1), so the
    /// key keeps about `target` events a second whatever it is offered; a rise is followed
    /// within a second, a fall over a few. Each kept event carries the rate in force when it
    /// was kept (`sample_rate`, and `estimated_count` of windows), so counts scaled back by
    /// `1/rate` stay unbiased; the rates in force are in `Stats::sampling_rates_in_force`.
    sampling_targets: HashMap<String, f64> = HashMap::new();
    patch set Option<HashMap<String, f64>>: "See [`Config::sampling_targets`] (replaces the whole map; a key that keeps its target keeps its prediction of the offered rate).";
    /// Consistent sampling: binds a sampling key's keep decision to an event field, so that
    /// it is a function of that field's value and the rate (fixed or adaptive): every event of
    /// a kept user (server, tag value) is kept, and a value kept at rate `r` is kept at every
    /// rate above `r`. The value's position in `[0, 1)` is its XXH3-64 hash (seed 0) over
    /// 2^64; it is kept when the position is below the rate, the same in every process and
    /// every instance. Keys bound to the same field with the same rate keep the same values.
    /// An event without the field falls back to a coin flip at the rate. A key without a rate
    /// or target keeps everything, bound or not.
    sampling_by: HashMap<String, SampleBy> = HashMap::new();
    patch set Option<HashMap<String, SampleBy>>: "See [`Config::sampling_by`] (replaces the whole map).";
    /// Batch records into transactions (the default). Off: the guide's
    /// `configureBatching(false)`: each kept record goes to the writer as soon as it is
    /// sampled and is written in a transaction of its own (`max_batch_size`,
    /// `high_priority_flush_threshold` and `batch_interval_ms` do not apply to records).
    /// Metric samples and errors are still folded into windows and error counts, written as
    /// before. `max_in_flight_batches` still bounds the transactions waiting for the store
    /// (records beyond wait in the queues, under `max_queued_events`). `Configure` switches it
    /// at once.
    batching: bool = true;
    patch set Option<bool>: "See [`Config::batching`].";
    /// Memory bound: records queued or in flight to the store. Beyond it, the overflow
    /// policy drops Low first, then Normal, then the incoming High record, and counts each
    /// drop in `Stats::events_dropped`. At most 10,000,000 (about 1.5 GB of records).
    max_queued_events: usize = 100_000;
    patch set Option<usize>: "See [`Config::max_queued_events`].";
    /// Identifies this pipeline's rows in a shared database. `None`: a fresh random id per start.
    instance_id: Option<String> = None;
    patch fixed Option<String>: "See [`Config::instance_id`] (must equal the current value).";
    /// How long (ms) after its end a window stays open for late events before it closes
    /// (closing is driven by the series' newest event time, which one event far ahead does not
    /// move on its own, or by the clock for idle windows).
    /// Events later than that are still folded into the stored window.
    allowed_lateness_ms: u64 = 5_000;
    patch set Option<u64>: "See [`Config::allowed_lateness_ms`].";
    /// How long (ms) a `Flush` or `Shutdown` keeps retrying, with exponential backoff, after
    /// the store began failing: each answers within this budget plus a second, whatever the
    /// store answers. Meanwhile what failed is held and retried in the background with one
    /// backoff (at most a second apart) shared by every message; a query makes one attempt.
    /// Also bounds the time toward the store: the connection pool's wait, SQLite's busy wait
    /// within a failing attempt and, on PostgreSQL, the connect, statement and TCP timeouts
    /// derive from it (see `Store::postgres`). At most an hour.
    store_retry_budget_ms: u64 = 30_000;
    patch set Option<u64>: "See [`Config::store_retry_budget_ms`].";
    /// SQLite busy timeout (ms): how long a write waits for another connection's lock. At
    /// most an hour.
    sqlite_busy_timeout_ms: u64 = 5_000;
    patch set Option<u64>: "See [`Config::sqlite_busy_timeout_ms`] (applies to connections opened later).";
    /// Write batches handed to the writer and not yet confirmed, at most. Bounds memory
    /// while the store is slow or down (records then wait in the queues, under
    /// `max_queued_events`). At most 1,000.
    max_in_flight_batches: usize = 8;
    patch set Option<usize>: "See [`Config::max_in_flight_batches`].";
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
    identity_key: Option<String> = None;
    patch some Option<String>: "See [`Config::identity_key`] (sets or changes the key; removing it needs a restart).";
    /// Pattern detection settings (spike, drop, anomaly, trend).
    detection: DetectorSettings = DetectorSettings::default();
    patch set Option<DetectorSettings>: "See [`Config::detection`].";
    /// Roll closed windows up into hour, day and week windows in the store (`metric_rollups`),
    /// for `QueryWindows::resolution`. With several instances on one database, one of them does
    /// it for all (on PostgreSQL the holder of an advisory lock; on SQLite whichever takes the
    /// write lock first). Off: hour, day and week queries merge the windows on the fly instead.
    rollups: bool = true;
    patch set Option<bool>: "See [`Config::rollups`].";
    /// How often (ms, on the pipeline clock) the writer rolls up the hours, days and weeks that
    /// closed, busy or idle: a bucket is closed once its end plus `allowed_lateness_ms` has
    /// passed.
    rollup_interval_ms: u64 = 60_000;
    patch set Option<u64>: "See [`Config::rollup_interval_ms`].";
    /// The tail percentile the detector watches besides the window mean: 90, 95 or 99, or 0
    /// for the mean only. A tail that moves in the same window as the mean is the same pattern
    /// (one report per event): the pattern's `statistics` lists each statistic that moved
    /// (`mean`, `p99`), its headline is the most confident of them.
    watch_percentile: u8 = 99;
    patch set Option<u8>: "See [`Config::watch_percentile`].";
    /// How often (ms) the pipeline logs one line of its batching metrics (events in, kept,
    /// rows and transactions written, write reduction, queued, open windows, errors) at
    /// `info` level, the guide's "log batching metrics every minute"; 0: never.
    stats_log_interval_ms: u64 = 60_000;
    patch set Option<u64>: "See [`Config::stats_log_interval_ms`].";
    /// Most metric series with open windows at once (memory: about 0.7 KB per open series
    /// with a few samples in its window, up to about 4.8 KB with 256 of differing weights). A
    /// sample of a new series beyond it is dropped, counted in
    /// `Stats::events_dropped` and logged; series whose windows closed do not count. It also
    /// bounds the distinct-user sketches open at once (docs/distinct-users.md: at the limit
    /// every open one is written early, which loses nothing).
    max_open_series: usize = DEFAULT_MAX_OPEN_SERIES;
    patch set Option<usize>: "See [`Config::max_open_series`].";
    /// Most series with pattern detectors in memory (1 to 10,000,000; memory: under 2 KB per
    /// series that has closed a few windows, up to about 30 KB per series with a long
    /// history at the default detection settings). A series beyond it evicts the least
    /// recently used ones (counted in `Stats::detectors_evicted`, logged once); an evicted
    /// series that returns is warmed again from its stored windows, as after 6 hours idle.
    max_detector_series: usize = DEFAULT_MAX_DETECTOR_SERIES;
    patch set Option<usize>: "See [`Config::max_detector_series`].";
    /// Most distinct error hashes counted per window (1 to 10,000,000; memory: about 200
    /// bytes each). The errors of further hashes in that window are counted in one row
    /// whose `error_hash` and `error_type` are `(other)` (and are not written as records),
    /// counted in `Stats::error_messages_overflowed` and logged once: the window's counts
    /// still add up to every error accepted.
    max_error_messages_per_window: usize = DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW;
    patch set Option<usize>: "See [`Config::max_error_messages_per_window`].";
    /// Most label sets (series) of one metric with open windows at once (1 to 10,000,000).
    /// A sample of a new label set beyond it is folded into the metric's overflow series,
    /// labelled `otel.metric.overflow="true"` (one per metric and context), counted in
    /// `Stats::series_overflowed` and logged once per metric: nothing is lost, and a
    /// runaway label (a user id as a tag) cannot fill `max_open_series` on its own.
    max_series_per_metric: usize = DEFAULT_MAX_SERIES_PER_METRIC;
    patch set Option<usize>: "See [`Config::max_series_per_metric`].";
    /// How often (ms) the pipeline publishes its counters and gauges through the `metrics`
    /// facade (as `eventbatch_*` metrics; they are also published whenever `GetStats`, `Flush`
    /// or `Shutdown` answers); 0: the pipeline records no metrics at all, the writer's
    /// histograms included. See the README, "Metrics and Prometheus".
    metrics_interval_ms: u64 = 1_000;
    patch set Option<u64>: "See [`Config::metrics_interval_ms`].";
    /// How long each table keeps its rows, by event time (every table forever by default),
    /// and how pruning runs: see [`Retention`]. Rows removed are counted in
    /// `Stats::rows_pruned`.
    retention: Retention = Retention::default();
    patch set Option<Retention>: "See [`Config::retention`] (replaces the whole section; applies at once: a round under way ends, and the next `Tick` or `Flush` starts one with the new ages).";
    /// Durable mode: an event acknowledged to the caller survives a crash (kill -9) of the
    /// process, except those of the last `fsync_interval_ms`. Each accepted event is appended
    /// to a journal (a local SQLite file, [`Config::journal_path`]) committed every
    /// `fsync_interval_ms`; the writer commits to the store only at checkpoints (every
    /// `batch_interval_ms`, each `Flush`, query and `Shutdown`, and after
    /// `min(max_queued_events / 4, 25,000)` records), each in one transaction with the journal position it
    /// covers; a start replays the journal after the store's checkpoint, exactly once. Costs
    /// throughput (README, "Durable mode"), and a query commits a checkpoint first. With
    /// [`Config::forward`], checkpoints commit the messages to publish into the journal's
    /// outbox instead, and the journal is the outage buffer while NATS is unreachable
    /// (docs/durable.md, "Forwarding"). Off by default; changing it needs a restart.
    durable: bool = false;
    patch fixed Option<bool>: "See [`Config::durable`] (must equal the current value: needs a restart).";
    /// Durable mode: the journal file. `None`: the SQLite store's path with `.journal`
    /// appended (`analytics.db.journal`); PostgreSQL needs one set (a local file per
    /// instance). Changing it needs a restart.
    journal_path: Option<PathBuf> = None;
    patch fixed Option<PathBuf>: "See [`Config::journal_path`] (must equal the current value: needs a restart).";
    /// Durable mode: the journal is committed (and fsynced) at least this often (ms): what a
    /// crash can lose. 1 to 60,000.
    fsync_interval_ms: u64 = 100;
    patch set Option<u64>: "See [`Config::fsync_interval_ms`] (applies from the next journal commit).";
    /// Forwarding mode (docs/scale-out.md): publish what the pipeline would write (records,
    /// window snapshots, error counts, patterns: validated, pseudonymised, sampled and
    /// aggregated as usual) to a NATS JetStream stream instead of the store, for workers
    /// (`eventbatch worker`) to write. The store given to `start` then only serves the
    /// detectors' warm-up; queries answer `Err`. With `durable`, what an instance accepted
    /// survives its crash while NATS is unreachable. `None` (the default): the pipeline writes
    /// to its store. Changing it needs a restart.
    forward: Option<crate::forward::Forward> = None;
    patch fixed Option<crate::forward::Forward>: "See [`Config::forward`] (must equal the current value: needs a restart).";
}

/// Default of [`Config::max_open_series`].
pub(crate) const DEFAULT_MAX_OPEN_SERIES: usize = 200_000;
/// Default of [`Config::max_detector_series`].
pub(crate) const DEFAULT_MAX_DETECTOR_SERIES: usize = 100_000;
/// Default of [`Config::max_error_messages_per_window`].
pub(crate) const DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW: usize = 1_000;
/// Default of [`Config::max_series_per_metric`].
pub(crate) const DEFAULT_MAX_SERIES_PER_METRIC: usize = 1_000;

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
        if let Some(forward) = &patch.forward {
            if Some(forward) != self.forward.as_ref() {
                return Err(ConfigError::new(
                    "forward",
                    format!("{forward:?}"),
                    "cannot change at run time: needs a restart",
                ));
            }
        }
        next.apply(patch);
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
