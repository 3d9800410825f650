//! Configuration: [`Config`] as the application writes it, [`ConfigPatch`] for run-time changes,
//! and [`Settings`], the validated form the actors take.
//!
//! `Config` is validated once (by [`crate::start`] and by `Configure`); every
//! [`ConfigError`] names the field and the bad value.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::stats::detect::DetectorSettings;

/// The pipeline's configuration. Every field has a default (`Config::default()`), so
/// `Config { max_batch_size: 500, ..Config::default() }` works; serde fills missing fields with
/// the same defaults and rejects unknown ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `"error.timeout"`, ...). Keys not listed keep everything.
    pub sampling_rates: HashMap<String, f64>,
    /// Memory bound: records queued or in flight to the store. Beyond it, the overflow
    /// policy drops Low first, then Normal, then the incoming High record, and counts each
    /// drop in `Stats::events_dropped`.
    pub max_queued_events: usize,
    /// Identifies this pipeline's rows in a shared database. `None`: a fresh random id per start.
    pub instance_id: Option<String>,
    /// How long (ms) after its end a window stays open for late events before it closes
    /// (closing is driven by the newest event time, or by the clock for idle windows).
    /// Events later than that are still folded into the stored window.
    pub allowed_lateness_ms: u64,
    /// How long (ms) the writer keeps retrying a failing batch, with exponential backoff,
    /// before it holds the batch and retries it on the next tick or flush.
    pub store_retry_budget_ms: u64,
    /// SQLite busy timeout (ms): how long a write waits for another connection's lock.
    pub sqlite_busy_timeout_ms: u64,
    /// Write batches handed to the writer and not yet confirmed, at most. Bounds memory
    /// while the store is slow or down (records then wait in the queues, under
    /// `max_queued_events`).
    pub max_in_flight_batches: usize,
    /// Store users and servers as stable 64-bit hashes (hex) instead of the ids given.
    pub hash_identities: bool,
    /// Pattern detection settings (spike, drop, anomaly, trend).
    pub detection: DetectorSettings,
    /// Roll closed windows up into hour and day windows in the store (`metric_rollups`), for
    /// `QueryWindows::resolution`. With several instances on one database, one of them does
    /// it for all (on PostgreSQL the holder of an advisory lock; on SQLite whichever takes the
    /// write lock first). Off: hour and day queries merge the windows on the fly instead.
    pub rollups: bool,
    /// How often (ms, on the pipeline clock) the writer rolls up the hours and days that
    /// closed, busy or idle: a bucket is closed once its end plus `allowed_lateness_ms` has
    /// passed.
    pub rollup_interval_ms: u64,
    /// The tail percentile the detector watches besides the window mean: 90, 95 or 99, or 0
    /// for the mean only. A tail finding is its own pattern, its description starting `p99:`.
    pub watch_percentile: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_batch_size: 100,
            batch_interval_ms: 1000,
            high_priority_flush_threshold: 10,
            aggregation_window_ms: 60_000,
            sampling_rates: HashMap::new(),
            max_queued_events: 100_000,
            instance_id: None,
            allowed_lateness_ms: 5_000,
            store_retry_budget_ms: 30_000,
            sqlite_busy_timeout_ms: 5_000,
            max_in_flight_batches: 8,
            hash_identities: true,
            detection: DetectorSettings::default(),
            rollups: true,
            rollup_interval_ms: 60_000,
            watch_percentile: 99,
        }
    }
}

/// A run-time change to the configuration: every `Some` field replaces the current value.
/// `aggregation_window_ms` and `instance_id` cannot change while running (windows and rows
/// already written depend on them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// See [`Config::hash_identities`].
    pub hash_identities: Option<bool>,
    /// See [`Config::detection`].
    pub detection: Option<DetectorSettings>,
    /// See [`Config::rollups`].
    pub rollups: Option<bool>,
    /// See [`Config::rollup_interval_ms`].
    pub rollup_interval_ms: Option<u64>,
    /// See [`Config::watch_percentile`].
    pub watch_percentile: Option<u8>,
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
            max_queued_events,
            allowed_lateness_ms,
            store_retry_budget_ms,
            sqlite_busy_timeout_ms,
            max_in_flight_batches,
            hash_identities,
            detection,
            rollups,
            rollup_interval_ms,
            watch_percentile
        );
        next.validate()?;
        Ok(next)
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
    /// See [`Config::hash_identities`].
    pub hash_identities: bool,
    /// See [`Config::detection`].
    pub detection: DetectorSettings,
    /// See [`Config::rollups`].
    pub rollups: bool,
    /// See [`Config::rollup_interval_ms`] (> 0).
    pub rollup_interval_ms: i64,
    /// See [`Config::watch_percentile`]; `None` for 0.
    pub watch_percentile: Option<u8>,
}

/// Largest accepted window or interval: one week, so `i64` ms arithmetic never overflows.
const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;

impl Settings {
    fn from_config(c: &Config) -> Result<Settings, ConfigError> {
        let nonzero = |field: &str, v: usize| {
            NonZeroUsize::new(v).ok_or_else(|| ConfigError::new(field, v, "must be at least 1"))
        };
        let millis = |field: &str, v: u64, allow_zero: bool| {
            if v == 0 && !allow_zero {
                Err(ConfigError::new(field, v, "must be at least 1 ms"))
            } else if v > MAX_DURATION_MS {
                Err(ConfigError::new(
                    field,
                    v,
                    format!("must be at most {MAX_DURATION_MS} ms (a week)"),
                ))
            } else {
                Ok(v)
            }
        };
        let max_batch_size = nonzero("max_batch_size", c.max_batch_size)?;
        if c.max_batch_size > 100_000 {
            return Err(ConfigError::new(
                "max_batch_size",
                c.max_batch_size,
                "must be at most 100000",
            ));
        }
        let batch_interval_ms = millis("batch_interval_ms", c.batch_interval_ms, false)?;
        let high = nonzero(
            "high_priority_flush_threshold",
            c.high_priority_flush_threshold,
        )?;
        let window_ms = millis("aggregation_window_ms", c.aggregation_window_ms, false)?;
        let lateness = millis("allowed_lateness_ms", c.allowed_lateness_ms, true)?;
        let retry = millis("store_retry_budget_ms", c.store_retry_budget_ms, true)?;
        let busy = millis("sqlite_busy_timeout_ms", c.sqlite_busy_timeout_ms, true)?;
        let max_queued_events = nonzero("max_queued_events", c.max_queued_events)?;
        let in_flight = nonzero("max_in_flight_batches", c.max_in_flight_batches)?;
        let rollup_interval = millis("rollup_interval_ms", c.rollup_interval_ms, false)?;
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
        for (key, &rate) in &c.sampling_rates {
            let field = format!("sampling_rates[{key:?}]");
            if key.is_empty() {
                return Err(ConfigError::new(
                    "sampling_rates",
                    "\"\"",
                    "a sampling key must not be empty",
                ));
            }
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::new(
                    field,
                    rate,
                    "must be a probability in [0, 1]",
                ));
            }
        }
        let instance_id = match &c.instance_id {
            Some(id) if id.is_empty() || id.len() > 128 => {
                return Err(ConfigError::new(
                    "instance_id",
                    format!("{id:?}"),
                    "must be 1 to 128 bytes",
                ))
            }
            Some(id) => id.clone(),
            None => crate::util::random_instance_id(),
        };
        c.detection.validate().map_err(|(field, value)| {
            ConfigError::new(format!("detection.{field}"), value, "out of range")
        })?;
        Ok(Settings {
            max_batch_size,
            batch_interval: Duration::from_millis(batch_interval_ms),
            high_priority_flush_threshold: high,
            window_ms: window_ms as i64,
            sampling_rates: c.sampling_rates.clone(),
            max_queued_events,
            instance_id,
            allowed_lateness_ms: lateness as i64,
            store_retry_budget: Duration::from_millis(retry),
            sqlite_busy_timeout: Duration::from_millis(busy),
            max_in_flight_batches: in_flight,
            hash_identities: c.hash_identities,
            detection: c.detection.clone(),
            rollups: c.rollups,
            rollup_interval_ms: rollup_interval as i64,
            watch_percentile,
        })
    }
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
