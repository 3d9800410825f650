//! The data that moves between stages: packed records, window and error-count snapshots,
//! patterns, and the write batches that carry them to the store.

use crate::event::{EventKind, Priority, TrackEvent};
use crate::stats::detect::{Evidence, PatternKind};
use crate::stats::window::{SeriesKind, WindowState, WindowSummary};
use crate::text::Text;

/// The series of a metric in a context: `metric` or `metric.context`.
pub(crate) fn series_name(metric: &str, context: Option<&str>) -> String {
    match context {
        Some(c) => format!("{metric}.{c}"),
        None => metric.to_string(),
    }
}

/// A label set: the tags of a metric sample, by key (a `BTreeMap`, so sorted and without a
/// key twice). Part of the series: `lat{region=eu}` and `lat{region=us}` are two series.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The label a sample of a new label set carries when its metric already has
/// `max_series_per_metric` label sets open: its samples fold into one overflow series per
/// metric and context, `{otel.metric.overflow="true"}` (OpenTelemetry's SDK's name).
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";

/// The canonical encoding of a label set, as the `labels` columns hold it: a JSON object with
/// its keys in order, `{}` for none.
pub(crate) fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "{}".to_string();
    }
    serde_json::to_string(labels).expect("a map of strings serialises")
}

/// The stable hash of a label set the store keys it by (the `labels_key` columns): XXH3-64 of
/// [`labels_text`] as a signed integer, 0 for the empty set only (rows written before labels
/// existed hold 0).
pub(crate) fn labels_key(labels: &Labels) -> i64 {
    if labels.is_empty() {
        return 0;
    }
    match xxhash_rust::xxh3::xxh3_64(labels_text(labels).as_bytes()) as i64 {
        0 => 1,
        h => h,
    }
}

/// The label set a `labels` column holds (an unreadable one, never written by this crate, is
/// logged and read as the empty set).
pub(crate) fn parse_labels(text: &str) -> Labels {
    if text.is_empty() || text == "{}" {
        return Labels::new();
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        log::warn!("unreadable label set {text:?} in the store ({e}); reading it as none");
        Labels::new()
    })
}

/// The series kind a `kind` column holds; a name this version does not know reads as a
/// distribution, with a warning (the window state's bytes, which queries merge, carry the
/// kind themselves).
pub(crate) fn parse_kind(text: &str) -> SeriesKind {
    SeriesKind::parse(text).unwrap_or_else(|| {
        log::warn!("unknown series kind {text:?} in the store; reading it as a distribution");
        SeriesKind::Distribution
    })
}

/// `name{k="v",k2="v2"}` (Prometheus' notation), or `name` for the empty set: how the report
/// and the logs show a series with its labels.
pub fn labelled_name(name: &str, labels: &Labels) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Which series a window belongs to: its metric, its context and its label set, kept apart
/// everywhere (in memory, in the store's keys, in queries). `("a.b", None)` and
/// `("a", Some("b"))` are two series, although both are shown as `a.b` ([`SeriesKey::name`],
/// the `series` column).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SeriesKey {
    /// The metric name (for datastore events `datastore.<operation>`).
    pub metric: String,
    /// The context (for datastore events the store type); never empty (intake refuses an
    /// empty context), so `None` and every `Some` differ in [`SeriesKey::context_key`] too.
    pub context: Option<String>,
    /// The label set (the sample's tags); empty for a series without tags.
    pub labels: Labels,
    /// What the series measures: a distribution (performance and datastore samples), a
    /// counter or a gauge. Part of the key: `x` as a counter and `x` as a distribution are two
    /// series (the store's `kind` columns join the uniqueness keys).
    pub kind: SeriesKind,
}

impl SeriesKey {
    pub(crate) fn new(metric: impl Into<String>, context: Option<&str>) -> SeriesKey {
        SeriesKey {
            metric: metric.into(),
            context: context.map(str::to_string),
            labels: Labels::new(),
            kind: SeriesKind::Distribution,
        }
    }

    /// This key with the kind `kind`.
    pub(crate) fn with_kind(mut self, kind: SeriesKind) -> SeriesKey {
        self.kind = kind;
        self
    }

    /// This key with the label set `labels`.
    pub(crate) fn with_labels(mut self, labels: Labels) -> SeriesKey {
        self.labels = labels;
        self
    }

    /// The display name, `metric` or `metric.context`: what the `series` columns and
    /// `WindowStats::series` hold. Not an identity (two keys can share a name, and the label
    /// set is apart).
    pub(crate) fn name(&self) -> String {
        series_name(&self.metric, self.context.as_deref())
    }

    /// The context as the store keys it (the non-null `context_key` columns): `""` for none.
    pub(crate) fn context_key(&self) -> &str {
        self.context.as_deref().unwrap_or("")
    }

    /// The label set's hash as the store keys it (the `labels_key` columns): 0 for none.
    pub(crate) fn labels_key(&self) -> i64 {
        labels_key(&self.labels)
    }

    /// The label set as the `labels` columns hold it.
    pub(crate) fn labels_text(&self) -> String {
        labels_text(&self.labels)
    }

    /// The key whose `context_key` column holds `context_key` (`""`: no context), whose
    /// `labels` column holds `labels` and whose `kind` column holds `kind`.
    pub(crate) fn from_columns(
        metric: String,
        context_key: String,
        labels: &str,
        kind: &str,
    ) -> SeriesKey {
        SeriesKey {
            metric,
            context: Some(context_key).filter(|c| !c.is_empty()),
            labels: parse_labels(labels),
            kind: parse_kind(kind),
        }
    }
}

/// A closed window, on its way to the detector.
#[derive(Debug, Clone)]
pub(crate) struct ClosedWindow {
    pub key: SeriesKey,
    pub start_ms: i64,
    pub end_ms: i64,
    pub summary: WindowSummary,
}

/// Index of each text field inside [`Record::text`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Name = 0,
    User,
    Server,
    ErrorType,
    ErrorCategory,
    Tags,
    Payload,
}
pub(crate) const FIELDS: usize = 7;
pub(crate) const ABSENT: u32 = u32::MAX;

/// One `events` row waiting to be written, packed for memory: every text field lives in one
/// [`Text`], inline up to [`Text::INLINE`] bytes (a command with a short name and user: no
/// allocation), so a queued record costs `size_of::<Record>()` (88 bytes) plus its text when
/// longer, instead of ~250 bytes for the `TrackEvent` it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Event time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Keep probability the sampler applied (1.0 when not sampled).
    pub sample_rate: f64,
    /// `duration_ms`, NaN when absent (NaN is never a valid input, so it cannot collide).
    duration_ms: f64,
    /// `value`, NaN when absent.
    value: f64,
    /// All text fields, concatenated (inline when short: no allocation per record).
    text: Text,
    /// Byte length of each field in `text`, in [`Field`] order; `ABSENT` for `None`.
    lens: [u32; FIELDS],
    /// `events.kind`.
    pub kind: EventKind,
    /// Write priority.
    pub priority: Priority,
    /// Whether a command succeeded.
    pub success: Option<bool>,
}

impl Record {
    /// Packs a validated event (every tag kept: validation refused more than
    /// [`crate::MAX_TAGS`] and repeated keys). `user`/`server` are the raw ids here; the store
    /// hashes them when an identity key is set.
    pub(crate) fn from_event(e: &TrackEvent, sample_rate: f64) -> Record {
        let tags = if e.tags.is_empty() {
            None
        } else {
            let map: serde_json::Map<String, serde_json::Value> = e
                .tags
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        serde_json::Value::String(v.as_str().to_owned()),
                    )
                })
                .collect();
            Some(serde_json::Value::Object(map).to_string())
        };
        let payload = match (e.kind, &e.message, &e.error_hash) {
            (_, None, None) => None,
            (_, message, hash) => {
                let mut map = serde_json::Map::new();
                if let Some(m) = message {
                    map.insert("message".into(), m.clone().into());
                }
                if let Some(h) = hash {
                    map.insert("error_hash".into(), h.clone().into());
                }
                Some(serde_json::Value::Object(map).to_string())
            }
        };
        let (error_type, error_category) = match e.kind {
            EventKind::Error => (e.error_type.as_deref(), e.context.as_deref()),
            _ => (e.error_type.as_deref(), None),
        };
        let parts: [Option<&str>; FIELDS] = [
            Some(&e.name),
            e.user.as_deref(),
            e.server.as_deref(),
            error_type,
            error_category,
            tags.as_deref(),
            payload.as_deref(),
        ];
        let mut lens = [ABSENT; FIELDS];
        for (len, part) in lens.iter_mut().zip(parts) {
            if let Some(p) = part {
                *len = p.len() as u32;
            }
        }
        let text = Text::concat(parts.into_iter().flatten());
        Record {
            ts_ms: e.ts_ms.unwrap_or(0),
            sample_rate,
            duration_ms: e.duration_ms.unwrap_or(f64::NAN),
            value: e.value.unwrap_or(f64::NAN),
            text,
            lens,
            kind: e.kind,
            priority: e.effective_priority(),
            success: e.success,
        }
    }

    /// A text field, `None` when absent.
    pub(crate) fn field(&self, f: Field) -> Option<&str> {
        let i = f as usize;
        if self.lens[i] == ABSENT {
            return None;
        }
        self.field_at(i)
    }

    /// `events.name`.
    pub(crate) fn name(&self) -> &str {
        self.field(Field::Name).unwrap_or("")
    }

    /// The fields the wire format (`crate::forward::wire`) carries besides the public ones:
    /// duration and value (NaN when absent), the text fields' lengths (`u32::MAX` absent) and
    /// their concatenated text.
    pub(crate) fn wire_parts(&self) -> (f64, f64, &[u32; FIELDS], &str) {
        (self.duration_ms, self.value, &self.lens, self.text.as_str())
    }

    /// The inverse of [`Record::wire_parts`]; `None` when the lengths do not fit the text.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_wire_parts(
        ts_ms: i64,
        sample_rate: f64,
        duration_ms: f64,
        value: f64,
        lens: [u32; FIELDS],
        text: &str,
        kind: EventKind,
        priority: Priority,
        success: Option<bool>,
    ) -> Option<Record> {
        let total: usize = lens
            .iter()
            .filter(|&&l| l != ABSENT)
            .map(|&l| l as usize)
            .sum();
        if total != text.len() {
            return None;
        }
        let record = Record {
            ts_ms,
            sample_rate,
            duration_ms,
            value,
            text: Text::concat(std::iter::once(text)),
            lens,
            kind,
            priority,
            success,
        };
        // every field must start and end on a character boundary
        (0..FIELDS)
            .all(|i| lens[i] == ABSENT || record.field_at(i).is_some())
            .then_some(record)
    }

    /// The text of field `i` (its length read as is: the caller knows it is present).
    fn field_at(&self, i: usize) -> Option<&str> {
        let start: usize = self.lens[..i]
            .iter()
            .filter(|&&l| l != ABSENT)
            .map(|&l| l as usize)
            .sum();
        self.text.get(start..start + self.lens[i] as usize)
    }

    /// `events.duration_ms`.
    pub(crate) fn duration_ms(&self) -> Option<f64> {
        Some(self.duration_ms).filter(|v| !v.is_nan())
    }

    /// `events.value`.
    pub(crate) fn value(&self) -> Option<f64> {
        Some(self.value).filter(|v| !v.is_nan())
    }

    /// Heap bytes beyond the struct itself (the text).
    #[cfg(test)]
    pub(crate) fn text_bytes(&self) -> usize {
        self.text.heap_bytes()
    }
}

/// One metric series' window, on its way to the store: a snapshot (the window stays open) or
/// its final state.
#[derive(Debug, Clone)]
pub(crate) struct WindowSnapshot {
    /// The series: metric and context.
    pub key: SeriesKey,
    /// Window start, ms.
    pub start_ms: i64,
    /// Window end (exclusive), ms.
    pub end_ms: i64,
    /// Identifies this in-memory incarnation of the window. The writer reads what the store
    /// already holds for the window (an earlier run, or a window closed before a late event
    /// reopened it) once per epoch and merges the epoch's state onto it, so snapshots replace
    /// each other instead of adding up.
    pub epoch: u64,
    /// Everything observed in this epoch.
    pub state: WindowState,
    /// The window closed (no more snapshots of this epoch follow).
    pub is_final: bool,
}

/// One error hash's count in one window, on its way to `error_counts` (same epoch rules as
/// [`WindowSnapshot`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorCountSnapshot {
    pub error_hash: String,
    pub error_type: String,
    pub error_category: Option<String>,
    pub start_ms: i64,
    pub epoch: u64,
    pub count: u64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    pub is_final: bool,
}

/// A detected pattern, on its way to `patterns`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatternRecord {
    pub key: SeriesKey,
    pub kind: PatternKind,
    pub confidence: f64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub observed: f64,
    pub baseline: f64,
    pub description: String,
    pub detected_at_ms: i64,
    /// The statistics that moved, the headline's first.
    pub statistics: Vec<PatternStatistic>,
}

/// What the writer commits in one transaction.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteBatch {
    /// `events` rows, in write order (High before Normal before Low).
    pub records: Vec<Record>,
    pub windows: Vec<WindowSnapshot>,
    pub errors: Vec<ErrorCountSnapshot>,
    pub patterns: Vec<PatternRecord>,
    /// Distinct-user sketches of command windows (`command_users`), merged into their rows.
    pub users: Vec<crate::cores::users::UserWindow>,
    /// Came from the queues (counts against `max_in_flight_batches` until committed).
    pub from_queue: bool,
    /// Written in a transaction of its own, never coalesced with other batches (a record
    /// handed over with batching off, `Config::batching`).
    pub own_transaction: bool,
}

impl WriteBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.windows.is_empty()
            && self.errors.is_empty()
            && self.patterns.is_empty()
            && self.users.is_empty()
    }

    pub(crate) fn rows(&self) -> usize {
        self.records.len()
            + self.windows.len()
            + self.errors.len()
            + self.patterns.len()
            + self.users.len()
    }

    /// Kept events folded into this batch's final rows (counted in `events_aggregated` when
    /// they were folded): every event of a final window, and every occurrence but the first of
    /// a final error count (the first of each hash in a window is a record). Snapshots count
    /// nothing: their events are counted once, by the final row.
    pub(crate) fn folded(&self) -> u64 {
        let windows: u64 = self
            .windows
            .iter()
            .filter(|w| w.is_final)
            .map(|w| w.state.count())
            .sum();
        let errors: u64 = self
            .errors
            .iter()
            .filter(|e| e.is_final)
            .map(|e| e.count.saturating_sub(1))
            .sum();
        windows + errors
    }

    /// Splits the rows in two halves, in order (records, windows, error counts, patterns, user
    /// sketches), each with at least one row when the batch has two or more.
    pub(crate) fn split(self) -> (WriteBatch, WriteBatch) {
        let WriteBatch {
            mut records,
            mut windows,
            mut errors,
            mut patterns,
            mut users,
            from_queue,
            own_transaction,
        } = self;
        let mut take =
            (records.len() + windows.len() + errors.len() + patterns.len() + users.len()) / 2;
        let mut first = WriteBatch {
            from_queue: false,
            own_transaction,
            ..WriteBatch::default()
        };
        fn front<T>(v: &mut Vec<T>, take: &mut usize) -> Vec<T> {
            let n = (*take).min(v.len());
            *take -= n;
            let rest = v.split_off(n);
            std::mem::replace(v, rest)
        }
        first.records = front(&mut records, &mut take);
        first.windows = front(&mut windows, &mut take);
        first.errors = front(&mut errors, &mut take);
        first.patterns = front(&mut patterns, &mut take);
        first.users = front(&mut users, &mut take);
        let second = WriteBatch {
            records,
            windows,
            errors,
            patterns,
            users,
            from_queue,
            own_transaction,
        };
        (first, second)
    }
}

/// One statistic of a window that moved, as part of a [`Pattern`](crate::Pattern).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PatternStatistic {
    /// The statistic watched: `mean`, `p90`, `p95` or `p99`.
    pub statistic: String,
    /// What its detector found.
    pub kind: PatternKind,
    /// How sure its detector is, in `[0, 1]`.
    pub confidence: f64,
    /// Its value in the window.
    pub observed: f64,
    /// What was expected of it.
    pub baseline: f64,
    /// The numbers behind the finding (z-score, surprises in decades, view, period).
    #[serde(flatten)]
    pub evidence: Evidence,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_packs_and_unpacks_every_field() {
        let mut e = TrackEvent::error("timeout", "api")
            .message("upstream \"timed\" out")
            .user("u1")
            .tag("plan", "pro");
        e.ts_ms = Some(1_764_000_000_000);
        let r = Record::from_event(&e, 0.5);
        assert_eq!(r.name(), "timeout");
        assert_eq!(r.field(Field::User), Some("u1"));
        assert_eq!(r.field(Field::Server), None);
        assert_eq!(r.field(Field::ErrorType), Some("timeout"));
        assert_eq!(r.field(Field::ErrorCategory), Some("api"));
        assert_eq!(r.field(Field::Tags), Some(r#"{"plan":"pro"}"#));
        let payload: serde_json::Value =
            serde_json::from_str(r.field(Field::Payload).unwrap()).unwrap();
        assert_eq!(payload["message"], "upstream \"timed\" out");
        assert_eq!(r.priority, Priority::High);
        assert_eq!(r.value(), None);
        assert_eq!(r.sample_rate, 0.5);
    }

    #[test]
    fn queued_record_is_under_100_bytes_beyond_its_strings() {
        assert!(
            std::mem::size_of::<Record>() <= 88,
            "{}",
            std::mem::size_of::<Record>()
        );
        let r = Record::from_event(
            &TrackEvent::command("help").user("user123").success(true),
            1.0,
        );
        assert_eq!(r.text_bytes(), 0, "short texts are inline");
        let long = Record::from_event(
            &TrackEvent::command("help").user("a-user-id-of-some-length"),
            1.0,
        );
        assert_eq!(
            long.text_bytes(),
            "help".len() + "a-user-id-of-some-length".len()
        );
        assert_eq!(r.duration_ms(), None);
        assert_eq!(r.success, Some(true));
    }
}
