//! [`TrackEvent`]: what the application records, its builder, and its validation.

use serde::{Deserialize, Serialize};

use crate::error::TrackError;
use crate::stats::window::SeriesKind;
use crate::text::Text;

/// Write priority of a record. High is written before Normal before Low, and overflow drops Low
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// Failed commands and errors by default; written first, flushed at once past a threshold.
    High,
    /// Everything not High or Low.
    Normal,
    /// `memory_usage` and `cache_hit*` metrics by default; dropped first on overflow.
    Low,
}

impl Priority {
    /// The text stored in `events.priority`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Index 0 (High), 1 (Normal), 2 (Low).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What kind of event this is; decides its sampling key and route. Serialised as the variant
/// name (`"Performance"`); deserialised from that or from [`EventKind::as_str`]
/// (`"performance"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A bot command or API call: written as a record.
    #[serde(alias = "command")]
    Command,
    /// A performance metric sample: aggregated into windows.
    #[serde(alias = "performance")]
    Performance,
    /// A datastore operation's latency: aggregated into windows.
    #[serde(alias = "datastore")]
    Datastore,
    /// An error: counted per hash and window; the first of each hash per window is a record.
    #[serde(alias = "error")]
    Error,
    /// A user engagement (reaction, message, ...): written as a record.
    #[serde(alias = "engagement")]
    Engagement,
    /// An application-defined event: written as a record.
    #[serde(alias = "custom")]
    Custom,
    /// A counter increment (not negative): summed per series and window, the sum corrected
    /// for sampling, and so a rate.
    #[serde(alias = "counter")]
    Counter,
    /// A gauge reading: the last value (by event time), min and max per series and window.
    #[serde(alias = "gauge")]
    Gauge,
}

impl EventKind {
    /// Every kind, in declaration order. The journal encodes a kind as its index here: append
    /// a new kind at the end, never reorder.
    pub(crate) const ALL: [EventKind; 8] = [
        EventKind::Command,
        EventKind::Performance,
        EventKind::Datastore,
        EventKind::Error,
        EventKind::Engagement,
        EventKind::Custom,
        EventKind::Counter,
        EventKind::Gauge,
    ];

    /// The text stored in `events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Command => "command",
            EventKind::Performance => "performance",
            EventKind::Datastore => "datastore",
            EventKind::Error => "error",
            EventKind::Engagement => "engagement",
            EventKind::Custom => "custom",
            EventKind::Counter => "counter",
            EventKind::Gauge => "gauge",
        }
    }

    /// What the series of a metric sample of this kind measures; `None` for a kind that is
    /// not a metric sample (records and errors).
    pub(crate) fn series_kind(self) -> Option<SeriesKind> {
        match self {
            EventKind::Performance | EventKind::Datastore => Some(SeriesKind::Distribution),
            EventKind::Counter => Some(SeriesKind::Counter),
            EventKind::Gauge => Some(SeriesKind::Gauge),
            EventKind::Command | EventKind::Engagement | EventKind::Custom | EventKind::Error => {
                None
            }
        }
    }
}

/// Longest accepted name or string field, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest accepted error message, in bytes (longer messages are rejected, not cut).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most tags one event may carry; more is a [`TrackError::TooManyTags`], never a silent cut.
pub const MAX_TAGS: usize = 64;
/// Earliest accepted event time: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// How far into the future an event time may be.
pub const MAX_FUTURE_MS: i64 = 86_400_000;

/// One analytics event. Build it with a constructor for its kind and builder methods, then send
/// it to the [`crate::Tracker`]:
///
/// ```
/// use eventbatch::{Priority, TrackEvent};
/// let e = TrackEvent::command("help").user("user123").server("server456").success(true).duration_ms(250.0);
/// let m = TrackEvent::performance("response_time", 212.0).context("api").priority(Priority::Low);
/// # let _ = (e, m);
/// ```
///
/// It also deserialises (serde): `{"kind": "performance", "name": "rt", "value": 212.0}`
/// (`"type"` for `"kind"`; absent fields are empty). Deserialised events are validated like
/// built ones when they arrive, so a field the kind needs that is missing (a performance
/// sample's `value`, a datastore operation's `value` (its latency) or `context` (its store
/// type)) is a [`TrackError::Missing`] naming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Result<(), TrackError>")]
pub struct TrackEvent {
    #[serde(alias = "type")]
    pub(crate) kind: EventKind,
    /// Command name, metric name, datastore operation, error type, engagement type or custom name.
    pub(crate) name: Text,
    pub(crate) ts_ms: Option<i64>,
    pub(crate) priority: Option<Priority>,
    pub(crate) user: Option<Text>,
    pub(crate) server: Option<Text>,
    pub(crate) success: Option<bool>,
    pub(crate) duration_ms: Option<f64>,
    /// Metric value, datastore latency, or custom value.
    pub(crate) value: Option<f64>,
    /// Metric context, datastore store type, or error category.
    pub(crate) context: Option<Text>,
    pub(crate) error_type: Option<Text>,
    pub(crate) message: Option<String>,
    pub(crate) error_hash: Option<String>,
    #[serde(default)]
    pub(crate) tags: Vec<(Text, Text)>,
}

impl TrackEvent {
    fn new(kind: EventKind, name: impl Into<Text>) -> Self {
        TrackEvent {
            kind,
            name: name.into(),
            ts_ms: None,
            priority: None,
            user: None,
            server: None,
            success: None,
            duration_ms: None,
            value: None,
            context: None,
            error_type: None,
            message: None,
            error_hash: None,
            tags: Vec::new(),
        }
    }

    /// A command (or API call) named `name`; written as a record.
    pub fn command(name: impl Into<Text>) -> Self {
        Self::new(EventKind::Command, name)
    }

    /// A performance sample of `metric`; aggregated per `metric` + `context` and window.
    pub fn performance(metric: impl Into<Text>, value: f64) -> Self {
        Self::new(EventKind::Performance, metric).value(value)
    }

    /// An increment of the counter `metric` (not negative, finite): the series `metric` (+
    /// context, labels) of kind counter sums its increments per window, corrected for sampling
    /// (a kept increment counts `1 / sample_rate` times, as the estimated count does), and
    /// shows the sum and its rate per second. A counter and a distribution (or a gauge) of one
    /// name are separate series: the kind is part of the series key.
    pub fn counter(metric: impl Into<Text>, increment: f64) -> Self {
        Self::new(EventKind::Counter, metric).value(increment)
    }

    /// A reading of the gauge `metric` (finite): per window its series keeps the last value
    /// by event time (at one millisecond the largest), the min and the max. Sampling leaves
    /// them as they are (no correction applies). A separate series from a distribution or a
    /// counter of the same name.
    pub fn gauge(metric: impl Into<Text>, value: f64) -> Self {
        Self::new(EventKind::Gauge, metric).value(value)
    }

    /// A datastore `operation` on `store_type` that took `latency_ms`; aggregated in the series
    /// `datastore.<operation>.<store_type>`.
    pub fn datastore(
        operation: impl Into<Text>,
        store_type: impl Into<Text>,
        latency_ms: f64,
    ) -> Self {
        let mut e = Self::new(EventKind::Datastore, operation).value(latency_ms);
        e.context = Some(store_type.into());
        e
    }

    /// An error of `error_type` in `category`; counted per hash and window.
    pub fn error(error_type: impl Into<Text>, category: impl Into<Text>) -> Self {
        let error_type = error_type.into();
        let mut e = Self::new(EventKind::Error, error_type.clone());
        e.error_type = Some(error_type);
        e.context = Some(category.into());
        e
    }

    /// A user engagement of `kind` (reaction, message, ...); written as a record.
    pub fn engagement(kind: impl Into<Text>) -> Self {
        Self::new(EventKind::Engagement, kind)
    }

    /// An application-defined event `name`; written as a record.
    pub fn custom(name: impl Into<Text>) -> Self {
        Self::new(EventKind::Custom, name)
    }

    /// The user the event is about: stored as given, or as a keyed hash when
    /// `Config::identity_key` is set.
    pub fn user(mut self, user: impl Into<Text>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The server (guild, tenant, host) the event is about (stored hashed like `user`).
    pub fn server(mut self, server: impl Into<Text>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Whether a command succeeded. A failed command is High priority by default.
    pub fn success(mut self, success: bool) -> Self {
        self.success = Some(success);
        self
    }

    /// How long a command took, in ms (not negative).
    pub fn duration_ms(mut self, ms: f64) -> Self {
        self.duration_ms = Some(ms);
        self
    }

    /// The error type of a failed command, or overrides the type of an error event.
    pub fn error_type(mut self, error_type: impl Into<Text>) -> Self {
        self.error_type = Some(error_type.into());
        self
    }

    /// The context of a performance metric (`"api"`, `"db"`, ...): part of its series.
    pub fn context(mut self, context: impl Into<Text>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// An error's message (stored in `payload`, and part of the default error hash).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Groups errors: the same hash in one window is counted, not written again.
    /// Default: a stable hash of the error type and message.
    pub fn error_hash(mut self, hash: impl Into<String>) -> Self {
        self.error_hash = Some(hash.into());
        self
    }

    /// A numeric value (custom events; replaces a metric's value).
    pub fn value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    /// A tag, stored in `events.tags` as a JSON object. On a metric sample (performance,
    /// datastore) the tags are the labels of its series: `performance("lat", 12.0).tag("region",
    /// "eu")` goes to the series `lat{region="eu"}`, stored, merged, rolled up, queried
    /// ([`QueryWindows::label`](crate::QueryWindows::label)) and watched for patterns apart from
    /// `lat{region="us"}` and from `lat` (see `Config::max_series_per_metric`). At most
    /// [`MAX_TAGS`] per event, each key once (more, or a key twice, rejects the event rather
    /// than dropping a tag). Keys and values are [`Text`]s: the short ones labels usually are
    /// cost no allocation.
    pub fn tag(mut self, key: impl Into<Text>, value: impl Into<Text>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Overrides the rule-based priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The event time in ms since the Unix epoch (default: the pipeline clock's now).
    pub fn at(mut self, ts_ms: i64) -> Self {
        self.ts_ms = Some(ts_ms);
        self
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The event's name (command, metric, operation, error type, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The priority: the override if given, else the default rules (failed commands and
    /// errors High; `memory_usage` and `cache_hit*` metrics Low; the rest Normal).
    pub fn effective_priority(&self) -> Priority {
        if let Some(p) = self.priority {
            return p;
        }
        match self.kind {
            EventKind::Error => Priority::High,
            EventKind::Command if self.success == Some(false) => Priority::High,
            EventKind::Performance
                if self.name == "memory_usage" || self.name.starts_with("cache_hit") =>
            {
                Priority::Low
            }
            _ => Priority::Normal,
        }
    }

    /// [`TrackEvent::validate`], and its window of `window_ms` must fit in an `i64`
    /// (`stats::window::window_bounds`). What the front door admits and, in durable mode, what
    /// a replay admits from the journal: the same check for both.
    pub(crate) fn admit(&mut self, now_ms: i64, window_ms: i64) -> Result<(), TrackError> {
        self.validate(now_ms)?;
        let ts_ms = self.ts_ms.unwrap_or(now_ms);
        match crate::stats::window::window_bounds(ts_ms, window_ms) {
            Some(_) => Ok(()),
            None => Err(TrackError::TimestampOutOfRange { ts_ms, now_ms }),
        }
    }

    /// The tags in key order: as they are after validation (which sorts them), a sorted copy
    /// for an event that reached the caller another way.
    pub(crate) fn sorted_tags(&self) -> std::borrow::Cow<'_, [(Text, Text)]> {
        if self.tags.len() < 2 || self.tags.is_sorted_by(|a, b| a.0.as_str() < b.0.as_str()) {
            return std::borrow::Cow::Borrowed(&self.tags);
        }
        let mut copy = self.tags.clone();
        copy.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        std::borrow::Cow::Owned(copy)
    }

    /// Checks the event against the rules in the contract and fills in its time; `now_ms` is
    /// the pipeline clock.
    pub(crate) fn validate(&mut self, now_ms: i64) -> Result<(), TrackError> {
        self.check_required()?;
        self.check_text()?;
        self.check_numbers()?;
        // in key order from here on (keys are distinct): a metric sample's label set is found
        // without sorting a copy of it for every sample
        if self.tags.len() > 1 {
            self.tags
                .sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        }
        let ts = *self.ts_ms.get_or_insert(now_ms);
        if ts < MIN_TS_MS || ts > now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err(TrackError::TimestampOutOfRange { ts_ms: ts, now_ms });
        }
        Ok(())
    }

    /// The fields the kind needs besides its name (a deserialised event may lack them; the
    /// constructors always set them): a metric sample's value, a datastore operation's latency
    /// and store type.
    fn check_required(&self) -> Result<(), TrackError> {
        let missing = match self.kind {
            EventKind::Performance | EventKind::Gauge if self.value.is_none() => "value",
            EventKind::Counter if self.value.is_none() => "increment",
            EventKind::Datastore if self.value.is_none() => "latency_ms",
            EventKind::Datastore if self.context.is_none() => "store type",
            _ => return Ok(()),
        };
        Err(TrackError::Missing {
            kind: self.kind.as_str(),
            field: missing,
        })
    }

    /// Every text field: present when required, within its length, free of NUL bytes (which
    /// PostgreSQL cannot store in `TEXT`); tags within [`MAX_TAGS`], keys unique.
    fn check_text(&self) -> Result<(), TrackError> {
        let name_field = match self.kind {
            EventKind::Command => "command name",
            EventKind::Performance | EventKind::Counter | EventKind::Gauge => "metric name",
            EventKind::Datastore => "datastore operation",
            EventKind::Error => "error type",
            EventKind::Engagement => "engagement type",
            EventKind::Custom => "event name",
        };
        check_text(name_field, &self.name, true, MAX_NAME_BYTES)?;
        let context_field = match self.kind {
            EventKind::Datastore => "store type",
            EventKind::Error => "error category",
            _ => "context",
        };
        if self.kind == EventKind::Datastore {
            let store_type = self.context.as_deref().unwrap_or("");
            check_text(context_field, store_type, true, MAX_NAME_BYTES)?;
        } else if let Some(c) = &self.context {
            let required = self.kind != EventKind::Error;
            check_text(context_field, c, required, MAX_NAME_BYTES)?;
        }
        for (field, v) in [
            ("user", self.user.as_deref()),
            ("server", self.server.as_deref()),
            ("error_type", self.error_type.as_deref()),
            ("error_hash", self.error_hash.as_deref()),
        ] {
            if let Some(v) = v {
                check_text(field, v, true, MAX_NAME_BYTES)?;
            }
        }
        if let Some(m) = &self.message {
            check_text("message", m, false, MAX_MESSAGE_BYTES)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(TrackError::TooManyTags {
                count: self.tags.len(),
                max: MAX_TAGS,
            });
        }
        for (i, (k, v)) in self.tags.iter().enumerate() {
            check_text("tag key", k, true, MAX_NAME_BYTES)?;
            check_text("tag value", v, false, MAX_NAME_BYTES)?;
            // at most 64 tags: the quadratic scan is cheaper than a set
            if self.tags[..i].iter().any(|(earlier, _)| earlier == k) {
                return Err(TrackError::DuplicateTag {
                    key: k.as_str().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Values finite; durations and latencies not negative.
    fn check_numbers(&self) -> Result<(), TrackError> {
        let value_field = match self.kind {
            EventKind::Datastore => "latency_ms",
            EventKind::Counter => "increment",
            _ => "value",
        };
        let must_be_positive = matches!(self.kind, EventKind::Datastore | EventKind::Counter);
        for (field, v, non_negative) in [
            (value_field, self.value, must_be_positive),
            ("duration_ms", self.duration_ms, true),
        ] {
            let Some(v) = v else { continue };
            if !v.is_finite() {
                return Err(TrackError::NotFinite { field, value: v });
            }
            if non_negative && v < 0.0 {
                return Err(TrackError::Negative { field, value: v });
            }
        }
        Ok(())
    }
}

/// One text field: not empty when `required`, at most `max` bytes, no NUL byte.
fn check_text(field: &'static str, s: &str, required: bool, max: usize) -> Result<(), TrackError> {
    if required && s.is_empty() {
        return Err(TrackError::EmptyName { field });
    }
    if s.len() > max {
        return Err(TrackError::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    if let Some(at) = s.bytes().position(|b| b == 0) {
        return Err(TrackError::NulByte { field, at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    #[test]
    fn default_priorities_follow_the_guide() {
        assert_eq!(
            TrackEvent::command("a").success(false).effective_priority(),
            Priority::High
        );
        assert_eq!(
            TrackEvent::command("a").success(true).effective_priority(),
            Priority::Normal
        );
        assert_eq!(
            TrackEvent::error("t", "c").effective_priority(),
            Priority::High
        );
        assert_eq!(
            TrackEvent::performance("memory_usage", 1.0).effective_priority(),
            Priority::Low
        );
        assert_eq!(
            TrackEvent::performance("cache_hit_rate", 1.0).effective_priority(),
            Priority::Low
        );
        assert_eq!(
            TrackEvent::performance("latency", 1.0).effective_priority(),
            Priority::Normal
        );
        assert_eq!(
            TrackEvent::error("t", "c")
                .priority(Priority::Low)
                .effective_priority(),
            Priority::Low
        );
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        let cases = vec![
            (TrackEvent::command(""), "command name is empty"),
            (TrackEvent::command("x".repeat(257)), "257 bytes"),
            (
                TrackEvent::performance("m", f64::NAN),
                "not a finite number",
            ),
            (
                TrackEvent::performance("m", f64::INFINITY),
                "not a finite number",
            ),
            (
                TrackEvent::custom("c").value(f64::NEG_INFINITY),
                "not a finite number",
            ),
            (
                TrackEvent::command("c").duration_ms(-1.0),
                "duration_ms is negative",
            ),
            (
                TrackEvent::datastore("save", "db", -0.5),
                "latency_ms is negative",
            ),
            (
                TrackEvent::datastore("save", "", 1.0),
                "store type is empty",
            ),
            (TrackEvent::command("c").at(946_684_799_999), "out of range"),
            (
                TrackEvent::command("c").at(NOW + MAX_FUTURE_MS + 1),
                "out of range",
            ),
            (
                TrackEvent::command("c").user("u".repeat(300)),
                "user is 300 bytes",
            ),
        ];
        for (mut e, want) in cases {
            let err = e.validate(NOW).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
    }

    #[test]
    fn a_nul_byte_in_any_text_field_is_rejected_naming_the_field() {
        let nul = "a\0b";
        let cases = vec![
            (TrackEvent::command(nul), "command name"),
            (TrackEvent::performance(nul, 1.0), "metric name"),
            (TrackEvent::performance("m", 1.0).context(nul), "context"),
            (TrackEvent::datastore(nul, "db", 1.0), "datastore operation"),
            (TrackEvent::datastore("save", nul, 1.0), "store type"),
            (TrackEvent::error(nul, "api"), "error type"),
            (TrackEvent::error("t", nul), "error category"),
            (TrackEvent::engagement(nul), "engagement type"),
            (TrackEvent::custom(nul), "event name"),
            (TrackEvent::command("c").user(nul), "user"),
            (TrackEvent::command("c").server(nul), "server"),
            (TrackEvent::command("c").error_type(nul), "error_type"),
            (TrackEvent::error("t", "c").message(nul), "message"),
            (TrackEvent::error("t", "c").error_hash(nul), "error_hash"),
            (TrackEvent::custom("c").tag(nul, "v"), "tag key"),
            (TrackEvent::custom("c").tag("k", nul), "tag value"),
        ];
        for (mut e, field) in cases {
            let err = e.validate(NOW).unwrap_err();
            assert_eq!(err, TrackError::NulByte { field, at: 1 }, "{e:?}");
            assert!(err
                .to_string()
                .starts_with(&format!("{field} contains a NUL")));
        }
    }

    #[test]
    fn validation_puts_tags_in_key_order() {
        let mut e = TrackEvent::performance("lat", 1.0)
            .tag("region", "eu")
            .tag("host", "a-host-name-longer-than-inline")
            .tag("method", "GET");
        e.validate(NOW).unwrap();
        let keys: Vec<&str> = e.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["host", "method", "region"]);
        assert_eq!(e.tags[0].1.as_str(), "a-host-name-longer-than-inline");
    }

    #[test]
    fn sorted_tags_copies_only_tags_out_of_order() {
        let e = TrackEvent::performance("lat", 1.0)
            .tag("b", "2")
            .tag("a", "1");
        let sorted = e.sorted_tags();
        assert!(matches!(sorted, std::borrow::Cow::Owned(_)));
        assert_eq!(sorted[0].0.as_str(), "a");
        let mut e = e;
        e.validate(NOW).unwrap();
        assert!(matches!(e.sorted_tags(), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn tags_beyond_the_limit_or_repeated_are_rejected_not_dropped() {
        let tagged =
            |n: usize| (0..n).fold(TrackEvent::custom("c"), |e, i| e.tag(format!("k{i}"), "v"));
        tagged(MAX_TAGS).validate(NOW).unwrap();
        let err = tagged(MAX_TAGS + 1).validate(NOW).unwrap_err();
        assert_eq!(
            err,
            TrackError::TooManyTags {
                count: MAX_TAGS + 1,
                max: MAX_TAGS
            }
        );
        assert_eq!(err.to_string(), "65 tags; the limit is 64");
        let err = TrackEvent::custom("c")
            .tag("plan", "pro")
            .tag("plan", "free")
            .validate(NOW)
            .unwrap_err();
        assert_eq!(err.to_string(), "tag key \"plan\" is given twice");
    }

    #[test]
    fn lengths_are_bounded_per_field() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        for (mut e, field) in [
            (TrackEvent::custom("c").tag(long.clone(), "v"), "tag key"),
            (TrackEvent::custom("c").tag("k", long.clone()), "tag value"),
            (
                TrackEvent::error("t", "c").error_hash(long.clone()),
                "error_hash",
            ),
            (
                TrackEvent::performance("m", 1.0).context(long.clone()),
                "context",
            ),
            (
                TrackEvent::error("t", "c").message("m".repeat(MAX_MESSAGE_BYTES + 1)),
                "message",
            ),
        ] {
            let err = e.validate(NOW).unwrap_err();
            assert!(
                matches!(err, TrackError::TooLong { field: f, .. } if f == field),
                "{err}"
            );
        }
        let mut longest = TrackEvent::error("t", "c")
            .message("m".repeat(MAX_MESSAGE_BYTES))
            .tag("k".repeat(MAX_NAME_BYTES), "v".repeat(MAX_NAME_BYTES))
            .tag("empty value", "");
        longest.validate(NOW).unwrap();
    }

    #[test]
    fn a_field_the_kind_needs_is_required_naming_it() {
        let json = |v: serde_json::Value| serde_json::from_value::<TrackEvent>(v).unwrap();
        let cases = [
            (
                json(serde_json::json!({"type": "performance", "name": "rt"})),
                "performance",
                "value",
            ),
            (
                json(serde_json::json!({"kind": "Datastore", "name": "save", "context": "db"})),
                "datastore",
                "latency_ms",
            ),
            (
                json(serde_json::json!({"kind": "datastore", "name": "save", "value": 2.0})),
                "datastore",
                "store type",
            ),
        ];
        for (mut e, kind, field) in cases {
            let err = e.validate(NOW).unwrap_err();
            assert_eq!(err, TrackError::Missing { kind, field });
            assert_eq!(
                err.to_string(),
                format!("a {kind} event needs {field}; it has none")
            );
        }
        for v in [
            serde_json::json!({"type": "performance", "name": "rt", "value": 1.0}),
            serde_json::json!({"kind": "Datastore", "name": "s", "value": 1.0, "context": "db"}),
            serde_json::json!({"kind": "command", "name": "help"}),
            serde_json::json!({"kind": "Error", "name": "timeout"}),
            serde_json::json!({"kind": "custom", "name": "c"}),
            serde_json::json!({"kind": "engagement", "name": "e"}),
        ] {
            json(v.clone())
                .validate(NOW)
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        let built = serde_json::to_value(TrackEvent::performance("rt", 1.0)).unwrap();
        assert_eq!(built["kind"], "Performance");
    }

    #[test]
    fn valid_events_get_a_time() {
        let mut e = TrackEvent::command("help");
        e.validate(NOW).unwrap();
        assert_eq!(e.ts_ms, Some(NOW));
        let mut exact = TrackEvent::command("help")
            .at(NOW + MAX_FUTURE_MS)
            .user("x".repeat(256));
        exact.validate(NOW).unwrap();
        let mut neg_metric = TrackEvent::performance("temperature", -5.0);
        neg_metric.validate(NOW).unwrap();
    }
}
