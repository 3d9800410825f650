//! Scale-out (docs/scale-out.md): an instance's pipeline forwards what it would write to a NATS
//! JetStream stream ([`Forward`], `Config::forward`; the sink is `crate::actors::nats_sink`), and
//! workers ([`worker`]) consume the stream and write it exactly once to PostgreSQL.

pub(crate) mod checkpoint;
pub(crate) mod wire;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::stream;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub use wire::WireError;

/// Where a forwarding pipeline publishes (`Config::forward`).
///
/// ```
/// let f = eventbatch::Forward::new("nats://127.0.0.1:4222", "events");
/// assert_eq!(f.subject(), "events.batches");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The NATS server(s): `nats://host:port` (or `host:port`), several separated by commas.
    pub url: String,
    /// The JetStream stream, created when missing (subjects `<stream>.>`, file storage,
    /// limits retention, [`Forward::duplicate_window_ms`], [`Forward::max_age_ms`]): letters,
    /// digits, `-` and `_`.
    pub stream: String,
    /// The stream's replicas when this pipeline creates it: 1 to 5 (3 on a cluster of three
    /// or more servers keeps it through the loss of one). An existing stream is used as it
    /// is. Default 1.
    #[serde(default = "one_replica")]
    pub replicas: usize,
    /// The stream's duplicate window when this pipeline creates it (ms): a message published
    /// again within it under the same `Nats-Msg-Id` is stored once (the workers drop a copy
    /// stored later, docs/scale-out.md). 100 ms to a day; default 120,000 (2 minutes).
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
    /// The stream's maximum message age when this pipeline creates it (ms; JetStream's
    /// retention by age): 0 keeps messages until deleted by hand (the default); otherwise at
    /// least the duplicate window, and longer than any outage of the workers, whose messages
    /// would be lost past it.
    #[serde(default)]
    pub max_age_ms: u64,
}

fn one_replica() -> usize {
    1
}

const fn default_duplicate_window_ms() -> u64 {
    DEFAULT_DUPLICATE_WINDOW_MS
}

/// The stream's duplicate window by default: a publish retried within it is stored once.
pub(crate) const DEFAULT_DUPLICATE_WINDOW: Duration =
    Duration::from_millis(DEFAULT_DUPLICATE_WINDOW_MS);

/// The default of [`Forward::duplicate_window_ms`] and `WorkerOptions::duplicate_window`
/// (2 minutes), in ms.
pub const DEFAULT_DUPLICATE_WINDOW_MS: u64 = 120_000;

/// The longest duplicate window [`Forward`] takes.
const MAX_DUPLICATE_WINDOW_MS: u64 = 86_400_000;

/// JetStream's most replicas of a stream.
pub(crate) const MAX_REPLICAS: usize = 5;

impl Forward {
    /// Publish to `stream` on the NATS server(s) at `url`.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Forward {
            url: url.into(),
            stream: stream.into(),
            replicas: 1,
            duplicate_window_ms: default_duplicate_window_ms(),
            max_age_ms: 0,
        }
    }

    /// The same, creating the stream with `replicas` replicas when it is missing.
    ///
    /// ```
    /// let f = eventbatch::Forward::new("nats://a:4222,nats://b:4222,nats://c:4222", "events")
    ///     .with_replicas(3);
    /// assert_eq!(f.replicas, 3);
    /// ```
    pub fn with_replicas(self, replicas: usize) -> Self {
        Forward { replicas, ..self }
    }

    /// The subject batches are published on.
    pub fn subject(&self) -> String {
        format!("{}.batches", self.stream)
    }

    /// Checks the URL, the stream name and the stream's settings.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_url("forward.url", &self.url)?;
        check_stream("forward.stream", &self.stream)?;
        check_replicas("forward.replicas", self.replicas)?;
        check_stream_ages(
            "forward.duplicate_window_ms",
            self.duplicate_window(),
            "forward.max_age_ms",
            self.max_age(),
        )
    }

    /// [`Forward::duplicate_window_ms`].
    pub(crate) fn duplicate_window(&self) -> Duration {
        Duration::from_millis(self.duplicate_window_ms)
    }

    /// [`Forward::max_age_ms`] (zero: no maximum).
    pub(crate) fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }

    /// The stream's settings when this pipeline creates it.
    pub(crate) fn stream_config(&self) -> stream::Config {
        stream_config(
            &self.stream,
            self.replicas,
            self.duplicate_window(),
            self.max_age(),
        )
    }

    /// The server addresses of the URL.
    pub(crate) fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        addrs(&self.url)
    }
}

/// Like a derived `Debug`, with the credentials of the URL redacted (configs end up in logs).
impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("url", &redacted_url(&self.url))
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("duplicate_window_ms", &self.duplicate_window_ms)
            .field("max_age_ms", &self.max_age_ms)
            .finish()
    }
}

/// `url` (a comma-separated NATS URL list) with the user and password of each part (what
/// comes before an `@` in its authority) replaced by `<redacted>`.
pub(crate) fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(|part| {
            let (scheme, rest) = match part.find("://") {
                Some(i) => part.split_at(i + 3),
                None => ("", part),
            };
            let authority = rest.split('/').next().unwrap_or(rest);
            match authority.rfind('@') {
                Some(at) => format!("{scheme}<redacted>{}", &rest[at..]),
                None => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The stream's settings when it is created: subjects `<stream>.>`, file storage, limits
/// retention, the duplicate window, the maximum age (zero: none), `replicas` replicas (an
/// existing stream is used as it is).
pub(crate) fn stream_config(
    name: &str,
    replicas: usize,
    duplicate_window: Duration,
    max_age: Duration,
) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window,
        max_age,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// A stream's duplicate window (100 ms to a day) and maximum age (zero, or at least the
/// window: JetStream refuses a window longer than the age).
pub(crate) fn check_stream_ages(
    window_field: &str,
    window: Duration,
    age_field: &str,
    age: Duration,
) -> Result<(), ConfigError> {
    let window_ms = window.as_millis() as u64;
    if !(100..=MAX_DUPLICATE_WINDOW_MS).contains(&window_ms) {
        return Err(ConfigError::new(
            window_field,
            window_ms,
            "must be 100 ms to a day (86,400,000)",
        ));
    }
    if !age.is_zero() && age < window {
        return Err(ConfigError::new(
            age_field,
            age.as_millis(),
            format!("must be 0 (no maximum) or at least the duplicate window, {window_ms} ms"),
        ));
    }
    Ok(())
}

/// The server addresses of a checked URL list.
pub(crate) fn addrs(url: &str) -> Vec<async_nats::ServerAddr> {
    url.split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect()
}

/// A NATS URL list: each part parses as a server address.
pub(crate) fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let ok = !url.trim().is_empty()
        && url
            .split(',')
            .all(|u| u.trim().parse::<async_nats::ServerAddr>().is_ok());
    match ok {
        true => Ok(()),
        false => Err(ConfigError::new(
            field,
            format!("{:?}", redacted_url(url)),
            "must be nats://host:port (several separated by commas)",
        )),
    }
}

/// A JetStream stream name: 1 to 64 letters, digits, `-` and `_`.
pub(crate) fn check_stream(field: &str, stream: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&stream.len())
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(ConfigError::new(
            field,
            format!("{stream:?}"),
            "must be 1 to 64 letters, digits, '-' or '_'",
        )),
    }
}

/// A stream's replicas: 1 to [`MAX_REPLICAS`].
pub(crate) fn check_replicas(field: &str, replicas: usize) -> Result<(), ConfigError> {
    match (1..=MAX_REPLICAS).contains(&replicas) {
        true => Ok(()),
        false => Err(ConfigError::new(
            field,
            replicas,
            format!("must be 1 to {MAX_REPLICAS} (JetStream's limit)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_never_reach_debug_or_errors() {
        let f = Forward::new(
            "nats://alice:s3cret@h:4222, tok3n@h2:4222,nats://h3:4222",
            "s",
        );
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("nats://<redacted>@h:4222") && shown.contains("nats://h3:4222"));
        let e = Forward::new("nats://alice:s3cret@h:4222 x", "s")
            .validate()
            .unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn bad_urls_and_stream_names_name_the_field_and_value() {
        assert!(Forward::new("nats://127.0.0.1:4222", "ev_1-a")
            .validate()
            .is_ok());
        assert!(Forward::new("127.0.0.1:4222,nats://h:5", "s")
            .validate()
            .is_ok());
        let e = Forward::new("", "s").validate().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("forward.url", "\"\"")
        );
        let e = Forward::new("nats://h:4222", "a.b").validate().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("forward.stream", "\"a.b\"")
        );
        let e = Forward::new("nats://h:4222", "").validate().unwrap_err();
        assert_eq!(e.field, "forward.stream");
        let e = Forward::new("http://h:x", "s").validate().unwrap_err();
        assert_eq!(e.field, "forward.url");
        for bad in [0, MAX_REPLICAS + 1] {
            let e = Forward::new("nats://h:4222", "s")
                .with_replicas(bad)
                .validate()
                .unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                ("forward.replicas", bad.to_string().as_str())
            );
        }
        assert!(Forward::new("nats://h:4222", "s")
            .with_replicas(3)
            .validate()
            .is_ok());
    }

    #[test]
    fn replicas_and_ages_default_when_a_config_omits_them() {
        let f: Forward = serde_json::from_str(r#"{"url":"nats://h:4222","stream":"s"}"#).unwrap();
        assert_eq!(f, Forward::new("nats://h:4222", "s"));
        assert_eq!(
            (f.replicas, f.duplicate_window_ms, f.max_age_ms),
            (1, 120_000, 0)
        );
        let c = f.stream_config();
        assert_eq!(
            (c.duplicate_window, c.max_age, c.num_replicas),
            (Duration::from_secs(120), Duration::ZERO, 1)
        );
    }

    #[test]
    fn the_duplicate_window_and_the_maximum_age_are_checked_and_used() {
        let with = |window: u64, age: u64| Forward {
            duplicate_window_ms: window,
            max_age_ms: age,
            ..Forward::new("nats://h:4222", "s")
        };
        for (window, age, bad) in [
            (99, 0, Some(("forward.duplicate_window_ms", "99"))),
            (
                86_400_001,
                0,
                Some(("forward.duplicate_window_ms", "86400001")),
            ),
            (2_000, 1_999, Some(("forward.max_age_ms", "1999"))),
            (100, 0, None),
            (2_000, 2_000, None),
            (86_400_000, 7 * 86_400_000, None),
        ] {
            match (with(window, age).validate(), bad) {
                (Ok(()), None) => {}
                (Err(e), Some((field, value))) => {
                    assert_eq!((e.field.as_str(), e.value.as_str()), (field, value))
                }
                (got, want) => panic!("{window} {age}: {got:?}, wanted {want:?}"),
            }
        }
        let c = with(1_000, 3_600_000).stream_config();
        assert_eq!(
            (c.duplicate_window, c.max_age),
            (Duration::from_secs(1), Duration::from_secs(3600))
        );
    }
}
