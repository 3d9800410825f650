//! [`Settings`]: a validated [`Config`], the values the actors run with, in types that cannot
//! be wrong; the limits every field is checked against.
//!
//! `Config` is validated once (by [`crate::start`] and by `Configure`); every
//! [`ConfigError`] names the field and the bad value.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, SampleBy, REDACTED_KEY};
use crate::error::ConfigError;
use crate::pseudonyms::Pseudonyms;
use crate::retention::Retention;
use crate::stats::detect::DetectorSettings;

impl Config {
    /// Checks every field; the first invalid one is returned as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        Settings::from_config(self).map(drop)
    }

    /// The validated settings of this config, or the first invalid field.
    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        Settings::from_config(self)
    }
}

/// A validated [`Config`]: the values the actors run with, in types that cannot be wrong.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
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
    /// See [`Config::max_series_per_metric`] (1 to 10,000,000).
    pub max_series_per_metric: usize,
    /// See [`Config::metrics_interval_ms`]; `None` for 0.
    pub metrics_interval: Option<Duration>,
    /// See [`Config::retention`] (validated).
    pub retention: Retention,
    /// See [`Config::durable`].
    pub durable: bool,
    /// See [`Config::forward`] (checked).
    pub forward: Option<crate::forward::Forward>,
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
        let max_series_per_metric = count(
            "max_series_per_metric",
            c.max_series_per_metric,
            MAX_QUEUED_EVENTS,
        )?;
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
        if let Some(f) = &c.forward {
            f.validate()?;
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
            pseudonyms,
            detection: c.detection.clone(),
            rollups: c.rollups,
            rollup_interval_ms: rollup_interval as i64,
            watch_percentile,
            stats_log_interval: (stats_log > 0).then(|| Duration::from_millis(stats_log)),
            max_open_series: max_open_series.get(),
            max_detector_series: max_detectors,
            max_error_messages_per_window: max_error_messages,
            max_series_per_metric: max_series_per_metric.get(),
            metrics_interval: (metrics > 0).then(|| Duration::from_millis(metrics)),
            retention: c.retention.clone(),
            durable: c.durable,
            journal_path: c.journal_path.clone(),
            forward: c.forward.clone(),
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
    use crate::config::ConfigPatch;

    #[test]
    fn defaults_validate() {
        let s = Config::default().settings().unwrap();
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
            let err = config.settings().unwrap_err();
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
            let err = config.settings().unwrap_err();
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
        .settings()
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
            (
                Config {
                    max_series_per_metric: 0,
                    ..d()
                },
                "max_series_per_metric",
                "0",
            ),
            (
                Config {
                    max_series_per_metric: MAX_QUEUED_EVENTS + 1,
                    ..d()
                },
                "max_series_per_metric",
                "10000001",
            ),
        ] {
            let err = config.settings().unwrap_err();
            assert_eq!((err.field.as_str(), err.value.as_str()), (field, value));
        }
        let s = Config {
            max_detector_series: MAX_QUEUED_EVENTS,
            max_error_messages_per_window: 1,
            ..d()
        }
        .settings()
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
            let err = config.settings().unwrap_err();
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
        let s = ok.settings().unwrap();
        assert_eq!(s.sampling_targets["ask"], 1e7);
        assert_eq!(s.sampling_by["help"], SampleBy::User);
        assert!(!s.batching && Config::default().settings().unwrap().batching);
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
        let s = keyed.settings().unwrap();
        assert!(s.pseudonyms.is_keyed());
        assert!(!Config::default().settings().unwrap().pseudonyms.is_keyed());
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
        let err = short.settings().unwrap_err();
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
        assert_eq!(patched.settings().unwrap().retention, keep_a_day);
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
            d.settings().unwrap().fsync_interval,
            Duration::from_millis(100)
        );
        for (ms, ok) in [(0, false), (1, true), (60_000, true), (60_001, false)] {
            let c = Config {
                fsync_interval_ms: ms,
                ..Config::default()
            };
            match c.settings() {
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
        assert_eq!(empty.settings().unwrap_err().field, "journal_path");
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
    fn durable_forwarding_is_accepted_and_its_stream_settings_checked() {
        // the journal is forwarding's outage buffer (docs/durable.md)
        let both = Config {
            durable: true,
            forward: Some(crate::forward::Forward::new("nats://127.0.0.1:4222", "s")),
            ..Config::default()
        };
        let s = both.settings().unwrap();
        assert!(s.durable && s.forward.is_some());
        let bad_window = Config {
            forward: both.forward.clone().map(|f| crate::forward::Forward {
                duplicate_window_ms: 0,
                ..f
            }),
            ..both
        };
        let e = bad_window.settings().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("forward.duplicate_window_ms", "0")
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
