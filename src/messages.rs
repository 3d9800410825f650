//! Every message in the pipeline. The public ones are the contract (`API.md`) and are all
//! handled by [`crate::Tracker`]; the crate-private ones connect the internal actors.

use actix::Message;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::config::{Config, ConfigPatch};
use crate::counters::Stats;
use crate::error::{ConfigError, PipelineError, TrackError};
use crate::event::TrackEvent;
use crate::model::PatternStatistic;
use crate::model::{SeriesKey, WindowSnapshot};
use crate::rollup::Resolution;
use crate::settings::Settings;
use crate::stats::detect::PatternKind;
use crate::stats::window::SeriesKind;
use crate::users::UserCount;
use crate::window_stats::WindowStats;

/// Accept many events at once. Invalid ones are rejected (and counted) individually; the batch
/// fails as a whole only when the pipeline is shut down.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<BatchAck, TrackError>")]
pub struct TrackBatch(pub Vec<TrackEvent>);

/// How a [`TrackBatch`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// Valid events accepted into the pipeline (sampling happens after acceptance).
    pub accepted: usize,
    /// Invalid events rejected.
    pub rejected: usize,
    /// Records the overflow policy (`max_queued_events`) dropped while this batch was queued:
    /// its own, or older Low and Normal ones its records displaced (counted in
    /// `Stats::events_dropped` too). 0 when everything fits.
    pub dropped: usize,
}

/// Barrier: when it resolves, everything accepted before it is durable in the store, open
/// windows included (as snapshots a later write replaces). Resolves with the counters then.
/// Durable mode: the replay of an earlier run's journal included (it resolves once the replay
/// is through, or with the store's error when the store fails meanwhile).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Result<Stats, PipelineError>")]
pub struct Flush;

/// The pipeline counters, read without touching the store.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// The configuration in force.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Config")]
pub struct GetConfig;

/// Change the configuration at run time; validated like `start` validates. Resolves with the
/// configuration now in force.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Config, ConfigError>")]
pub struct Configure(pub ConfigPatch);

/// Flush everything and stop the pipeline's actors; resolves with the final counters.
/// Durable mode: lets a replay of an earlier run through first while the store takes it; on a
/// failing store (after the retry budget) it stops the replay (what was not replayed stays in
/// the journal for the next start; events waiting behind it are refused,
/// `TrackError::ShutDown`).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Stats")]
pub struct Shutdown;

/// Runs the time-driven work now, as the internal timer does every `batch_interval_ms`: writes
/// queues whose interval has elapsed on the pipeline clock and closes windows the clock has
/// passed. For tests driving a [`crate::ManualClock`]. Feature `testing`.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Aggregates of one metric series over a time range: every window that starts in
/// `[from_ms, to_ms)`, persisted or still open, merged across snapshots, runs and instances.
///
/// ```
/// let q = eventbatch::QueryWindows::metric("response_time").context("api").between(0, i64::MAX);
/// assert_eq!(q.series(), "response_time.api");
/// ```
#[derive(Debug, Clone, PartialEq, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<WindowStats>, PipelineError>")]
pub struct QueryWindows {
    /// The metric name (`response_time`; for datastore events `datastore.<operation>`).
    pub metric: String,
    /// The context (for datastore events the store type); `None` for the series without one.
    pub context: Option<String>,
    /// Earliest window start, ms (inclusive).
    pub from_ms: i64,
    /// Latest window start, ms (exclusive).
    pub to_ms: i64,
    /// The windows themselves (default), or hour, day or week (ISO, from Monday 00:00 UTC)
    /// roll-ups of them.
    #[serde(default)]
    pub resolution: Resolution,
    /// The label set asked for ([`QueryWindows::label`]): exactly this one (empty: the series
    /// without tags), or with [`QueryWindows::any_labels`] every label set that holds it.
    #[serde(default)]
    pub labels: crate::model::Labels,
    /// Read every label set that holds `labels` (a subset match), merged per window (sketches
    /// merged: counts exact, quantiles within the sketch's bound); false (default): exactly
    /// the label set `labels`.
    #[serde(default)]
    pub any_labels: bool,
    /// The kind of series read (default: distribution, the series of performance and
    /// datastore samples): [`QueryWindows::kind`]. A counter and a distribution of one name
    /// are two series.
    #[serde(default)]
    pub kind: SeriesKind,
}

impl QueryWindows {
    /// All windows of `metric` (without context) so far.
    pub fn metric(metric: impl Into<String>) -> Self {
        QueryWindows {
            metric: metric.into(),
            context: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            resolution: Resolution::Window,
            labels: crate::model::Labels::new(),
            any_labels: false,
            kind: SeriesKind::Distribution,
        }
    }

    /// Reads the series of `kind`: `QueryWindows::metric("requests").kind(SeriesKind::Counter)`
    /// reads the counter `requests` (of [`TrackEvent::counter`](crate::TrackEvent::counter)).
    pub fn kind(mut self, kind: SeriesKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds `key = value` to the label set asked for (a later value of the same key replaces
    /// an earlier one). Without [`QueryWindows::any_labels`], the query reads the series of
    /// exactly this label set.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Reads every label set that holds the labels asked for (`metric("lat").label("region",
    /// "eu").any_labels()`: every `lat` series with `region=eu`, whatever its other labels;
    /// with no label asked for, every label set of the metric), merged per window start: one
    /// element per window (or bucket), `labels` holding the labels asked for.
    pub fn any_labels(mut self) -> Self {
        self.any_labels = true;
        self
    }

    /// Answer in buckets of `resolution`: each hour (day, week) bucket starting in the range is
    /// one element, the exact merge of every window starting in it, over every instance.
    /// Closed buckets are read from the stored roll-ups; the others are merged on the fly.
    pub fn resolution(mut self, resolution: Resolution) -> Self {
        self.resolution = resolution;
        self
    }

    /// The series of `metric` in this context.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Elements starting in `[from_ms, to_ms)`: windows, or at hour, day or week resolution whole
    /// buckets, selected by their start (an hour bucket starting before `from_ms` is left out
    /// and one starting before `to_ms` is whole, so align the range to the resolution for
    /// exactly the windows in it).
    pub fn between(mut self, from_ms: i64, to_ms: i64) -> Self {
        self.from_ms = from_ms;
        self.to_ms = to_ms;
        self
    }

    /// The display name of the series this query reads: `metric`, or `metric.context`. The
    /// query reads the windows of exactly this metric in exactly this context: `metric("a.b")`
    /// and `metric("a").context("b")` share this name and read two different series.
    pub fn series(&self) -> String {
        crate::model::series_name(&self.metric, self.context.as_deref())
    }

    /// The series this query reads (with [`QueryWindows::any_labels`]: the label set asked
    /// for, which the series read hold).
    pub(crate) fn key(&self) -> SeriesKey {
        SeriesKey::new(self.metric.as_str(), self.context.as_deref())
            .with_labels(self.labels.clone())
            .with_kind(self.kind)
    }

    /// Whether the query reads the series `key`.
    pub(crate) fn reads(&self, key: &SeriesKey) -> bool {
        key.metric == self.metric
            && key.context == self.context
            && key.kind == self.kind
            && if self.any_labels {
                self.labels
                    .iter()
                    .all(|(k, v)| key.labels.get(k) == Some(v))
            } else {
                key.labels == self.labels
            }
    }

    /// The same query for the one series `key` (exactly its label set).
    pub(crate) fn exactly(&self, key: &SeriesKey) -> QueryWindows {
        QueryWindows {
            labels: key.labels.clone(),
            any_labels: false,
            ..self.clone()
        }
    }
}

/// The number of distinct users of a command per window, or per hour, day or week
/// ([`Resolution`]), over every instance writing to the store: each answer's count comes from
/// a HyperLogLog sketch (0.81% standard error, within 2% at 1,000,000 users), merged over the
/// instances, the command's contexts (unless one is asked for) and, at the open windows of
/// this instance, what is not yet written. Counted from every accepted command that names a
/// user, before sampling; with `Config::identity_key`, the pseudonyms. See docs/metrics.md.
///
/// ```
/// use eventbatch::{QueryUsers, Resolution};
/// let q = QueryUsers::command("help").between(0, i64::MAX).resolution(Resolution::Day);
/// assert_eq!(q.command, "help");
/// ```
#[derive(Debug, Clone, PartialEq, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<UserCount>, PipelineError>")]
pub struct QueryUsers {
    /// The command's name.
    pub command: String,
    /// Only this context (`Some("")`: the command without one); `None`: every context, merged.
    #[serde(default)]
    pub context: Option<String>,
    /// Windows (or buckets) starting at or after this time, ms.
    pub from_ms: i64,
    /// Windows (or buckets) starting before this time, ms.
    pub to_ms: i64,
    /// Aggregation windows, or hour, day or week buckets.
    #[serde(default)]
    pub resolution: Resolution,
}

impl QueryUsers {
    /// Every window of `command` (every context), at the aggregation windows' resolution.
    pub fn command(command: impl Into<String>) -> Self {
        QueryUsers {
            command: command.into(),
            context: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            resolution: Resolution::Window,
        }
    }

    /// Only this context of the command.
    pub fn context(self, context: impl Into<String>) -> Self {
        let context = Some(context.into());
        QueryUsers { context, ..self }
    }

    /// Windows (or buckets) starting in `[from_ms, to_ms)`.
    pub fn between(self, from_ms: i64, to_ms: i64) -> Self {
        QueryUsers {
            from_ms,
            to_ms,
            ..self
        }
    }

    /// At this resolution.
    pub fn resolution(self, resolution: Resolution) -> Self {
        QueryUsers { resolution, ..self }
    }
}

/// Detected patterns, filtered by series and time.
///
/// ```
/// let q = eventbatch::QueryPatterns::all().metric("api_latency").since(0);
/// assert_eq!(q.metric.as_deref(), Some("api_latency"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<Pattern>, PipelineError>")]
pub struct QueryPatterns {
    /// Only this metric's series (every context of it, or the one in `context`).
    pub metric: Option<String>,
    /// Only series in this context (for datastore events the store type).
    #[serde(default)]
    pub context: Option<String>,
    /// Only patterns whose window starts at or after this time, ms.
    pub since_ms: Option<i64>,
    /// Only this kind.
    pub kind: Option<PatternKind>,
    /// Only series of exactly this label set (`Some` of an empty set: the series without
    /// labels); `None`: every label set.
    #[serde(default)]
    pub labels: Option<crate::model::Labels>,
}

impl QueryPatterns {
    /// Every pattern.
    pub fn all() -> Self {
        QueryPatterns::default()
    }

    /// Only the series of exactly this metric (with or without context): `metric("a")`
    /// never returns the patterns of a metric named `a.b`.
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = Some(metric.into());
        self
    }

    /// Only series in this context: with [`QueryPatterns::metric`], exactly one series.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Only series whose label set is exactly the labels given this way
    /// (`.label("region", "eu").label("host", "a")`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// Only patterns whose window starts at or after `ms`.
    pub fn since(mut self, ms: i64) -> Self {
        self.since_ms = Some(ms);
        self
    }

    /// Only patterns of this kind.
    pub fn kind(mut self, kind: PatternKind) -> Self {
        self.kind = Some(kind);
        self
    }
}

/// A detected pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// The series it was found in, for display (`metric` or `metric.context`).
    pub series: String,
    /// The metric of that series.
    #[serde(default)]
    pub metric: String,
    /// The context of that series; `None` for a series without one.
    #[serde(default)]
    pub context: Option<String>,
    /// The label set of that series (empty for a series without tags).
    #[serde(default)]
    pub labels: crate::model::Labels,
    /// Spike, drop, anomaly, trend up or trend down.
    pub kind: PatternKind,
    /// How sure the detector is, in `[0, 1]`.
    pub confidence: f64,
    /// The window (or, for a trend, the last window) it was found in: start, ms.
    pub window_start_ms: i64,
    /// End of that window, ms.
    pub window_end_ms: i64,
    /// The value that raised it (the window mean).
    pub observed: f64,
    /// What was expected (the robust baseline).
    pub baseline: f64,
    /// The pattern in plain words: `api_latency p99 1,032, 4.0x its usual 258, from 18:04
    /// UTC`.
    pub description: String,
    /// Which statistics of the window moved, the headline's first (`observed`, `baseline`,
    /// `kind` and `confidence` are its), each with the numbers behind it. One pattern per
    /// event: a spike of the mean and of the p99 in the same window is one pattern with two
    /// statistics. Empty for patterns stored before this field existed.
    #[serde(default)]
    pub statistics: Vec<PatternStatistic>,
}

/// Subscribes a recipient to the patterns as they are found: each new pattern is sent to it
/// as a [`PatternFound`] the moment the detector finds it (before it is written), so the
/// application need not poll [`QueryPatterns`]. Answers the subscription's id, for
/// [`UnsubscribePatterns`], or, once the pipeline is stopping or stopped (after
/// [`Shutdown`]), [`PipelineError::Unavailable`]: no pattern would ever arrive. A recipient
/// that is gone (its actor stopped) is dropped at the next pattern; nothing is kept for it.
#[derive(Debug, Message)]
#[rtype(result = "Result<SubscriptionId, PipelineError>")]
pub struct SubscribePatterns(pub actix::Recipient<PatternFound>);

/// Ends a subscription made with [`SubscribePatterns`] (an unknown id is ignored). Patterns
/// already on their way may still arrive.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UnsubscribePatterns(pub SubscriptionId);

/// The id of a pattern subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, actix::MessageResponse)]
pub struct SubscriptionId(pub u64);

/// A pattern just found, sent to each subscriber ([`SubscribePatterns`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PatternFound(pub Pattern);

/// Tracker -> detector: a subscription starts or ends.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum Subscription {
    /// Send every pattern found from now on to this recipient.
    Add(SubscriptionId, actix::Recipient<PatternFound>),
    /// Stop sending to the subscription with this id.
    Remove(SubscriptionId),
}

// ---- internal messages ----------------------------------------------------------------------
//
// What the chain carries besides its data (`crate::pipeline::stage::Item`: a batch of the
// link's data, or one of these markers behind it), and the writer's confirmations upstream.
// `crate::pipeline` draws the chain.

/// Writer -> queue: record batches that came from the queue are committed, which makes room
/// under `max_in_flight_batches` and `max_queued_events`.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub(crate) struct Committed {
    /// Queue batches committed.
    pub batches: usize,
    /// Records in them.
    pub records: usize,
}

/// A control marker. It travels the data path (tracker -> sampler -> aggregator -> detector
/// -> queue -> writer) behind everything sent before it: each actor's mailbox is FIFO and
/// each forwards the marker only after what the marker follows, so when it reaches a stage,
/// everything accepted before it has too.
#[derive(Debug)]
pub(crate) enum Control {
    /// The timer: time-driven work (close windows the clock passed, write queues whose
    /// interval elapsed, roll up).
    Tick,
    /// Snapshot the open windows, write everything; the writer answers.
    Flush(Reply<()>),
    /// Close every window, write everything, and stop, upstream first; the writer answers
    /// from its `stopped()`, so every internal actor has stopped when the answer arrives.
    Shutdown(Reply<()>),
    /// A windows query: the aggregator adds copies of the open windows asked for, the
    /// writer reads the store and merges them.
    Windows(Box<WindowsQuery>),
    /// A patterns query, answered by the writer.
    Patterns(QueryPatterns, Reply<Vec<Pattern>>),
    /// A distinct-users query: the sampler adds copies of the open user sketches asked for,
    /// the writer reads the store and merges them.
    Users(Box<UsersQuery>),
    /// New settings, applied by each actor as the marker passes.
    Settings(Arc<Settings>),
    /// Follows a `TrackBatch`: the queue answers how many records its overflow policy
    /// dropped since the previous such marker, and does not pass it on.
    Admitted(Reply<usize>),
    /// Durable mode: every event up to this journal position has been sent ahead of the
    /// marker, and the supervisor sends another marker right behind it, before any later
    /// event. The aggregator snapshots the windows and error counts that changed since its
    /// last snapshot, the queue sends everything, and the writer commits everything it holds
    /// with the checkpoint, and again at the next marker (what that marker produces, such as
    /// the windows `Shutdown` closes, still derives from events up to this position).
    Checkpoint(u64),
}

/// The answer channel a control marker carries to the writer.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, PipelineError>>;

/// A [`QueryWindows`] on its way through the pipeline.
#[derive(Debug)]
pub(crate) struct WindowsQuery {
    pub query: QueryWindows,
    /// Copies of the asked series' open windows (added by the aggregator).
    pub open: Vec<WindowSnapshot>,
    pub reply: Reply<Vec<WindowStats>>,
}

/// A [`QueryUsers`] on its way through the pipeline.
#[derive(Debug)]
pub(crate) struct UsersQuery {
    pub query: QueryUsers,
    /// Copies of the command's open user sketches (added by the sampler stage).
    pub open: Vec<crate::cores::users::UserWindow>,
    pub reply: Reply<Vec<UserCount>>,
}
