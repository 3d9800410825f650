//! The aggregator: event-time windows per metric series, and error counts per hash and window.
//!
//! [`Aggregator`] is the logic. Windows are `[k*w, (k+1)*w)` in event time. A window closes
//! when its series' watermark (its newest event time, which a lone event far ahead does not
//! move: see [`Watermark`]) passes its end plus the allowed lateness, or when it has been idle
//! (no event) on the clock for the lateness (at least a second) after its end, or at
//! shutdown. A closed window is written (final) and handed to the detector; an event for it
//! that comes later opens a new *epoch* of the same window, which the writer merges onto the
//! stored one, so nothing is dropped and queries see one window.
//!
//! Errors: per `(hash, window)` the first occurrence becomes a High record, every occurrence
//! is counted into `error_counts`. At most `max_error_messages_per_window` hashes per window:
//! the errors of further hashes are counted in the window's [`OVERFLOW_HASH`] row.

use std::collections::HashMap;

use super::watermark::Watermark;
use crate::config::{
    DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW, DEFAULT_MAX_OPEN_SERIES, DEFAULT_MAX_SERIES_PER_METRIC,
};
use crate::event::{EventKind, TrackEvent};
use crate::messages::QueryWindows;
use crate::model::{
    ClosedWindow, ErrorCountSnapshot, Labels, Record, SeriesKey, WindowSnapshot, OVERFLOW_LABEL,
};
use crate::settings::Settings;
use crate::stats::window::{SeriesKind, WindowState};
use crate::text::Text;
use crate::util::stable_hash_hex;

/// Shortest idle time (ms) after which the clock closes a window.
const MIN_IDLE_CLOSE_MS: i64 = 1_000;

#[derive(Debug)]
struct OpenWindow {
    state: WindowState,
    epoch: u64,
    /// Clock time of the last event folded in.
    touched_ms: i64,
    /// Changed since the last [`Aggregator::snapshot_changed`].
    dirty: bool,
}

impl OpenWindow {
    /// A snapshot of this window (of `key`, starting at `start`, `window_ms` wide); it stays
    /// open.
    fn copy(&self, key: &SeriesKey, start: i64, window_ms: i64) -> WindowSnapshot {
        WindowSnapshot {
            key: key.clone(),
            start_ms: start,
            end_ms: start + window_ms,
            epoch: self.epoch,
            state: self.state.clone(),
            is_final: false,
        }
    }
}

#[derive(Debug)]
struct Series {
    key: SeriesKey,
    /// This series' event time, which closes its windows.
    watermark: Watermark,
    windows: OpenWindows,
}

/// One series' open windows by start, ascending: a sorted vector, grown one slot at a time
/// while short. A series usually has one or two windows open, and a `BTreeMap` allocates a
/// whole node of 11 slots (2.2 KB here) for its first; one slot costs `size_of::<OpenWindow>()`
/// plus the start (test `one_open_window_costs_one_slot`).
#[derive(Debug, Default)]
struct OpenWindows(Vec<(i64, OpenWindow)>);

impl OpenWindows {
    /// Slots grown one at a time up to this many; beyond, the vector's usual doubling.
    const TIGHT: usize = 4;

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The window at `start`, made by `open` when absent.
    fn entry(&mut self, start: i64, open: impl FnOnce() -> OpenWindow) -> &mut OpenWindow {
        let at = match self.0.binary_search_by_key(&start, |(s, _)| *s) {
            Ok(at) => at,
            Err(at) => {
                if self.0.len() == self.0.capacity() && self.0.len() < Self::TIGHT {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, (start, open()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// Removes and returns the windows for which `due` holds, oldest first.
    fn take(&mut self, mut due: impl FnMut(i64, &OpenWindow) -> bool) -> Vec<(i64, OpenWindow)> {
        if !self.0.iter().any(|(start, win)| due(*start, win)) {
            return Vec::new();
        }
        let (taken, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(start, win)| due(*start, win));
        self.0 = kept;
        self.0.shrink_to_fit();
        taken
    }

    /// The windows starting in `[from, to)`.
    fn range(&self, from: i64, to: i64) -> &[(i64, OpenWindow)] {
        let lo = self.0.partition_point(|(s, _)| *s < from);
        let hi = self.0.partition_point(|(s, _)| *s < to).max(lo);
        &self.0[lo..hi]
    }

    fn iter(&self) -> impl Iterator<Item = &(i64, OpenWindow)> {
        self.0.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut (i64, OpenWindow)> {
        self.0.iter_mut()
    }

    /// The earliest start.
    fn first_start(&self) -> Option<i64> {
        self.0.first().map(|(s, _)| *s)
    }
}

#[derive(Debug)]
struct ErrorWindow {
    error_type: String,
    category: Option<String>,
    count: u64,
    first_ts: i64,
    last_ts: i64,
    epoch: u64,
    touched_ms: i64,
    /// Changed since the last [`Aggregator::snapshot_changed`].
    dirty: bool,
}

/// What one call produced.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Window rows to write (snapshots or final).
    pub windows: Vec<WindowSnapshot>,
    /// Error-count rows to write.
    pub errors: Vec<ErrorCountSnapshot>,
    /// First-of-hash error records, for the queues.
    pub records: Vec<Record>,
    /// Closed windows, for the detector.
    pub closed: Vec<ClosedWindow>,
    /// Events folded into windows or counts (not written as records).
    pub aggregated: u64,
    /// Samples of new series refused because `max_open_series` series were open (counted
    /// in `events_dropped`).
    pub dropped: u64,
    /// Errors counted in their window's overflow row because `max_error_messages_per_window`
    /// distinct hashes were open in it (also in `aggregated`).
    pub overflowed: u64,
    /// Samples of a new label set folded into their metric's overflow series because
    /// `max_series_per_metric` label sets of it were open (also in `aggregated`).
    pub series_overflowed: u64,
}

/// Per-series event-time windows and per-hash error counts.
#[derive(Debug)]
pub(crate) struct Aggregator {
    pub(crate) window_ms: i64,
    pub(crate) lateness_ms: i64,
    /// Newest event time seen in any series or error count.
    newest_any_ts: i64,
    /// No window closes by event time before some series' newest event reaches this: the
    /// earliest `end + lateness` of the open windows (a lower bound). Lets a batch of samples
    /// skip the scan of every open window when nothing can be due.
    next_close_ts: i64,
    /// Open series by [`lookup_key`] of their metric and context.
    series: HashMap<String, Series>,
    errors: HashMap<(Text, i64), ErrorWindow>,
    /// The error counts' watermark (all error hashes share it).
    error_watermark: Watermark,
    /// Open error counts per window start, the overflow row aside: at most
    /// `max_error_messages` each.
    error_hashes: HashMap<i64, usize>,
    /// Most distinct error hashes counted in one window; beyond, an error is counted in the
    /// window's overflow row ([`OVERFLOW_HASH`]).
    max_error_messages: usize,
    /// Whether the first overflow was logged (it is logged once).
    overflow_logged: bool,
    next_epoch: u64,
    key_buf: String,
    open: usize,
    /// Most series with open windows; a sample of a new series beyond it is dropped.
    max_series: usize,
    /// Open series per metric (its label sets and contexts, the overflow series aside).
    per_metric: HashMap<String, usize>,
    /// Most open series per metric; a sample of a new label set beyond it folds into the
    /// metric's overflow series (`{otel.metric.overflow="true"}`).
    max_series_per_metric: usize,
    /// Metrics whose first overflow was logged (each is logged once).
    overflow_logged_metrics: std::collections::HashSet<String>,
}

/// The `error_hash` (and `error_type`) of a window's overflow row: the errors of new hashes
/// that came once `max_error_messages_per_window` distinct hashes were counted in the window.
/// Reserved: an application's own hash `(other)` is counted in the same row.
pub(crate) const OVERFLOW_HASH: &str = "(other)";

impl Aggregator {
    pub(crate) fn new(window_ms: i64, lateness_ms: i64) -> Self {
        Aggregator {
            window_ms,
            lateness_ms,
            newest_any_ts: i64::MIN,
            next_close_ts: i64::MAX,
            series: HashMap::new(),
            errors: HashMap::new(),
            error_watermark: Watermark::NONE,
            error_hashes: HashMap::new(),
            max_error_messages: DEFAULT_MAX_ERROR_MESSAGES_PER_WINDOW,
            overflow_logged: false,
            next_epoch: 1,
            key_buf: String::new(),
            open: 0,
            max_series: DEFAULT_MAX_OPEN_SERIES,
            per_metric: HashMap::new(),
            max_series_per_metric: DEFAULT_MAX_SERIES_PER_METRIC,
            overflow_logged_metrics: std::collections::HashSet::new(),
        }
    }

    /// At most this many open series (label sets) per metric (see [`Output::series_overflowed`]).
    pub(crate) fn set_max_series_per_metric(&mut self, max: usize) {
        self.max_series_per_metric = max;
    }

    pub(crate) fn set_max_series(&mut self, max_series: usize) {
        self.max_series = max_series;
    }

    /// Series with open windows.
    pub(crate) fn open_series(&self) -> usize {
        self.series.len()
    }

    /// At most this many series with open windows (see [`Output::dropped`]).
    pub(crate) fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    pub(crate) fn from_settings(s: &Settings) -> Self {
        let mut a =
            Aggregator::new(s.window_ms, s.allowed_lateness_ms).with_max_series(s.max_open_series);
        a.set_max_error_messages(s.max_error_messages_per_window);
        a.set_max_series_per_metric(s.max_series_per_metric);
        a
    }

    /// At most this many distinct error hashes counted per window (see [`Output::overflowed`]).
    pub(crate) fn set_max_error_messages(&mut self, max: usize) {
        self.max_error_messages = max;
    }

    pub(crate) fn set_lateness(&mut self, lateness_ms: i64) {
        self.lateness_ms = lateness_ms;
        self.next_close_ts = i64::MIN;
    }

    /// Closes the windows that event time has passed, scanning them only when some may be.
    pub(crate) fn close_passed(&mut self, now_ms: i64, out: &mut Output) {
        if self.newest_any_ts >= self.next_close_ts {
            self.close_due(now_ms, false, out);
        }
    }

    /// Copies of the open windows of the series `key` starting in `[from_ms, to_ms)`.
    pub(crate) fn open_copies(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<WindowSnapshot> {
        let mut lookup = String::new();
        let labels = key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let context = key.context.as_deref();
        lookup_key(&mut lookup, &[&key.metric], context, labels, key.kind);
        let Some(s) = self.series.get(&lookup) else {
            return Vec::new();
        };
        self.copies(s, from_ms, to_ms)
    }

    /// Copies of the open windows of every series `q` reads (with
    /// [`QueryWindows::any_labels`], every label set that holds the labels asked for).
    pub(crate) fn open_matching(&self, q: &QueryWindows) -> Vec<WindowSnapshot> {
        if !q.any_labels {
            return self.open_copies(&q.key(), q.from_ms, q.to_ms);
        }
        let mut series: Vec<&Series> = self.series.values().filter(|s| q.reads(&s.key)).collect();
        series.sort_by(|a, b| a.key.cmp(&b.key));
        series
            .into_iter()
            .flat_map(|s| self.copies(s, q.from_ms, q.to_ms))
            .collect()
    }

    /// Copies of the open windows of `s` starting in `[from_ms, to_ms)`.
    fn copies(&self, s: &Series, from_ms: i64, to_ms: i64) -> Vec<WindowSnapshot> {
        s.windows
            .range(from_ms, to_ms)
            .iter()
            .map(|(start, win)| win.copy(&s.key, *start, self.window_ms))
            .collect()
    }

    /// Windows and error counts open in memory.
    pub(crate) fn open_windows(&self) -> usize {
        self.open
    }

    fn window_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.window_ms) * self.window_ms
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Folds a metric sample or error, kept at `rate`, into its window.
    pub(crate) fn observe(&mut self, e: &TrackEvent, rate: f64, now_ms: i64, out: &mut Output) {
        let ts = e.ts_ms.unwrap_or(now_ms);
        let start = self.window_start(ts);
        let closes_at = (start + self.window_ms).saturating_add(self.lateness_ms);
        self.next_close_ts = self.next_close_ts.min(closes_at);
        match e.kind {
            EventKind::Performance
            | EventKind::Datastore
            | EventKind::Counter
            | EventKind::Gauge => self.observe_sample(e, 1.0 / rate, (ts, start), now_ms, out),
            EventKind::Error => self.observe_error(e, rate, ts, start, now_ms, out),
            // Records never reach the aggregator (the sampler routes them to the queues).
            EventKind::Command | EventKind::Engagement | EventKind::Custom => {}
        }
    }

    /// How far ahead of a watermark an event moves it on its own (see [`Watermark`]).
    fn jump(&self) -> i64 {
        self.window_ms.saturating_add(self.lateness_ms)
    }

    /// Folds a metric sample of `weight` (1 / its rate) at event time `ts` into its series'
    /// window starting at `start` (a new series only below the cap). An open series costs one
    /// lookup.
    fn observe_sample(
        &mut self,
        e: &TrackEvent,
        weight: f64,
        (ts, start): (i64, i64),
        now_ms: i64,
        out: &mut Output,
    ) {
        let jump = self.jump();
        let kind = e.kind.series_kind().unwrap_or_default();
        let prefix = match e.kind {
            EventKind::Datastore => "datastore.",
            _ => "",
        };
        // the label set in key order
        let tags = e.sorted_tags();
        let labels = tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let (context, metric_len) = (e.context.as_deref(), prefix.len() + e.name.len());
        lookup_key(
            &mut self.key_buf,
            &[prefix, &e.name],
            context,
            labels.clone(),
            kind,
        );
        let series = match self.series.get_mut(self.key_buf.as_str()) {
            Some(series) => series,
            None => {
                if !self.new_series(e, metric_len, labels, kind, out) {
                    return;
                }
                match self.series.get_mut(self.key_buf.as_str()) {
                    Some(series) => series,
                    None => return,
                }
            }
        };
        let epoch = self.next_epoch + 1;
        let watermark = series.watermark.see(ts, jump);
        self.newest_any_ts = self.newest_any_ts.max(watermark);
        let window = series.windows.entry(start, || OpenWindow {
            state: WindowState::of_kind(kind),
            epoch,
            touched_ms: now_ms,
            dirty: true,
        });
        if window.epoch == epoch {
            self.next_epoch = epoch;
            self.open += 1;
        }
        window.state.observe_at(e.value.unwrap_or(0.0), weight, ts);
        window.touched_ms = now_ms;
        window.dirty = true;
        out.aggregated += 1;
    }

    /// Opens the series `key_buf` names (its metric the first `metric_len` bytes), or, beyond
    /// `max_series_per_metric` label sets of its metric, finds or opens the metric's overflow
    /// series (`key_buf` then names that); false when `max_open_series` are open.
    fn new_series<'a>(
        &mut self,
        e: &TrackEvent,
        metric_len: usize,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        kind: SeriesKind,
        out: &mut Output,
    ) -> bool {
        let metric = &self.key_buf[..metric_len];
        let mut set: Labels = labels
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let of_metric = self.per_metric.get(metric).copied().unwrap_or(0);
        let overflow = of_metric >= self.max_series_per_metric;
        if overflow {
            // the metric's overflow series (in the sample's context) takes the sample
            set = Labels::from([(OVERFLOW_LABEL.to_string(), "true".to_string())]);
            let metric = metric.to_string();
            if self.overflow_logged_metrics.len() < self.max_series
                && self.overflow_logged_metrics.insert(metric.clone())
            {
                log::warn!(
                    "metric {metric:?} has {of_metric} label sets open \
                     (max_series_per_metric): samples of further label sets fold into its \
                     {OVERFLOW_LABEL}=\"true\" series (counted in \
                     Stats::series_overflowed, logged once per metric)"
                );
            }
            let overflow_set = [(OVERFLOW_LABEL, "true")];
            lookup_key(
                &mut self.key_buf,
                &[&metric],
                e.context.as_deref(),
                overflow_set,
                kind,
            );
        }
        if !self.series.contains_key(self.key_buf.as_str()) {
            if self.series.len() >= self.max_series {
                out.dropped += 1;
                return false;
            }
            let metric = &self.key_buf[..metric_len];
            if !overflow {
                *self.per_metric.entry(metric.to_string()).or_insert(0) += 1;
            }
            let series = Series {
                key: SeriesKey::new(metric, e.context.as_deref())
                    .with_labels(set)
                    .with_kind(kind),
                watermark: Watermark::NONE,
                windows: OpenWindows::default(),
            };
            self.series.insert(self.key_buf.clone(), series);
        }
        out.series_overflowed += u64::from(overflow);
        true
    }

    /// Counts an error under its hash in its window: the first of a hash becomes a record;
    /// a new hash beyond the window's cap is counted in the window's overflow row.
    fn observe_error(
        &mut self,
        e: &TrackEvent,
        rate: f64,
        ts: i64,
        start: i64,
        now_ms: i64,
        out: &mut Output,
    ) {
        let error_type = e.error_type.as_ref().unwrap_or(&e.name);
        let hash = match &e.error_hash {
            Some(h) => Text::from(h.as_str()),
            None => stable_hash_hex(&[error_type, e.message.as_deref().unwrap_or("")]),
        };
        let watermark = self.error_watermark.see(ts, self.jump());
        self.newest_any_ts = self.newest_any_ts.max(watermark);
        let mut key = (hash, start);
        if self.count_error(&key, ts, now_ms) {
            out.aggregated += 1;
            return;
        }
        // an application's own hash `(other)` is the overflow row's, outside the cap
        if key.0 != OVERFLOW_HASH {
            let distinct = self.error_hashes.entry(start).or_insert(0);
            if *distinct >= self.max_error_messages {
                key.0 = Text::from(OVERFLOW_HASH);
                self.overflow(key, ts, now_ms, out);
                return;
            }
            *distinct += 1;
        }
        let error_type = error_type.as_str().to_owned();
        let category = e.context.as_deref().map(str::to_owned);
        let record = match e.error_hash {
            Some(_) => Record::from_event(e, rate),
            // the record carries the hash it is counted under (a copy of the event, once per
            // hash and window)
            None => Record::from_event(
                &TrackEvent {
                    error_hash: Some(key.0.as_str().to_owned()),
                    ..e.clone()
                },
                rate,
            ),
        };
        self.open_error(key, error_type, category, ts, now_ms);
        out.records.push(record);
    }

    /// Counts an error in the open count of `key`, if there is one.
    fn count_error(&mut self, key: &(Text, i64), ts: i64, now_ms: i64) -> bool {
        let Some(w) = self.errors.get_mut(key) else {
            return false;
        };
        w.count += 1;
        w.first_ts = w.first_ts.min(ts);
        w.last_ts = w.last_ts.max(ts);
        w.touched_ms = now_ms;
        w.dirty = true;
        true
    }

    /// Opens the count of `key` with its first error.
    fn open_error(
        &mut self,
        key: (Text, i64),
        error_type: String,
        category: Option<String>,
        ts: i64,
        now_ms: i64,
    ) {
        let epoch = self.epoch();
        let window = ErrorWindow {
            error_type,
            category,
            count: 1,
            first_ts: ts,
            last_ts: ts,
            epoch,
            touched_ms: now_ms,
            dirty: true,
        };
        self.errors.insert(key, window);
        self.open += 1;
    }

    /// Counts an error of a new hash in its window's overflow row ([`OVERFLOW_HASH`]; `key`
    /// holds it), logged the first time.
    fn overflow(&mut self, key: (Text, i64), ts: i64, now_ms: i64, out: &mut Output) {
        out.aggregated += 1;
        out.overflowed += 1;
        if !self.overflow_logged {
            self.overflow_logged = true;
            log::warn!(
                "more than {} distinct error hashes in the window at {}: the errors of further \
                 hashes are counted in its '{OVERFLOW_HASH}' row (max_error_messages_per_window; \
                 counted in Stats::error_messages_overflowed, logged once)",
                self.max_error_messages,
                key.1
            );
        }
        if !self.count_error(&key, ts, now_ms) {
            let error_type = OVERFLOW_HASH.to_string();
            self.open_error(key, error_type, None, ts, now_ms);
        }
    }

    /// Closes the windows whose time has come (all of them with `all`), oldest first per series.
    pub(crate) fn close_due(&mut self, now_ms: i64, all: bool, out: &mut Output) {
        let w = self.window_ms;
        let mut closed = 0;
        for series in self.series.values_mut() {
            let watermark = series.watermark.ts;
            let due = series.windows.take(|start, win| {
                all || window_due(
                    start + w,
                    self.lateness_ms,
                    watermark,
                    win.touched_ms,
                    now_ms,
                )
            });
            for (start, win) in due {
                closed += 1;
                // the detectors watch distributions: a pattern has no kind yet, so one found in
                // a counter `x` would read as one of the distribution `x`
                if series.key.kind == SeriesKind::Distribution {
                    out.closed.push(ClosedWindow {
                        key: series.key.clone(),
                        start_ms: start,
                        end_ms: start + w,
                        summary: win.state.summary(),
                    });
                }
                out.windows.push(WindowSnapshot {
                    key: series.key.clone(),
                    start_ms: start,
                    end_ms: start + w,
                    epoch: win.epoch,
                    state: win.state,
                    is_final: true,
                });
            }
        }
        let per_metric = &mut self.per_metric;
        self.series.retain(|_, s| {
            let keep = !s.windows.is_empty();
            if !keep && !s.key.labels.contains_key(OVERFLOW_LABEL) {
                if let Some(n) = per_metric.get_mut(&s.key.metric) {
                    *n -= 1;
                    if *n == 0 {
                        per_metric.remove(&s.key.metric);
                    }
                }
            }
            keep
        });
        if self.series.len() < self.series.capacity() / 4 {
            self.series.shrink_to_fit();
        }
        let newest = self.error_watermark.ts;
        let due: Vec<(Text, i64)> = self
            .errors
            .iter()
            .filter(|((_, start), e)| {
                all || window_due(start + w, self.lateness_ms, newest, e.touched_ms, now_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(e) = self.errors.remove(&key) {
                closed += 1;
                if key.0 != OVERFLOW_HASH {
                    self.forget_error_hash(key.1);
                }
                out.errors
                    .push(error_snapshot(key.0.into(), key.1, e, true));
            }
        }
        self.open -= closed;
        let closes_at = |start: i64| (start + w).saturating_add(self.lateness_ms);
        let windows = self.series.values().filter_map(|s| s.windows.first_start());
        let errors = self.errors.keys().map(|&(_, start)| start);
        self.next_close_ts = windows
            .chain(errors)
            .map(closes_at)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// One error count of the window at `start` closed: room for another hash in it.
    fn forget_error_hash(&mut self, start: i64) {
        if let Some(n) = self.error_hashes.get_mut(&start) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.error_hashes.remove(&start);
            }
        }
    }

    /// Snapshots of the open windows and error counts that changed since the last call (all
    /// of them the first time); they stay open. Durable mode's checkpoints: the store then
    /// holds every open window as of now (the unchanged ones from an earlier checkpoint).
    pub(crate) fn snapshot_changed(&mut self, out: &mut Output) {
        let w = self.window_ms;
        for series in self.series.values_mut() {
            for (start, win) in series.windows.iter_mut().filter(|(_, win)| win.dirty) {
                let start = *start;
                win.dirty = false;
                out.windows.push(win.copy(&series.key, start, w));
            }
        }
        for ((hash, start), e) in self.errors.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            out.errors.push(error_snapshot(
                hash.as_str().to_owned(),
                *start,
                e.clone(),
                false,
            ));
        }
    }

    /// Snapshots of every open window and error count; they stay open.
    pub(crate) fn snapshot(&self, out: &mut Output) {
        let w = self.window_ms;
        for series in self.series.values() {
            for (start, win) in series.windows.iter() {
                out.windows.push(win.copy(&series.key, *start, w));
            }
        }
        for ((hash, start), e) in &self.errors {
            let copy = ErrorWindow {
                error_type: e.error_type.clone(),
                category: e.category.clone(),
                ..*e
            };
            out.errors.push(error_snapshot(
                hash.as_str().to_owned(),
                *start,
                copy,
                false,
            ));
        }
    }
}

/// Writes into `buf` the key an open series is found by: the metric (given in parts, which are
/// concatenated) alone, or the metric, a NUL byte and the context; then for each label (in key
/// order) two NUL bytes, its key, a NUL byte and its value. Intake refuses NUL bytes in all of
/// them and empty contexts, so two different (metric, context, labels) never share a key
/// (`"a.b"` and `"a\0b"`; after the metric a context starts with a non-NUL byte, a label with
/// a NUL), and a lookup allocates nothing once the buffer has grown. A counter's or a gauge's
/// key ends in three NUL bytes and `c` or `g` (a label's key is never empty, so no label
/// ends a key so): the kind is part of the series, a distribution's key is as before.
fn lookup_key<'a>(
    buf: &mut String,
    metric: &[&str],
    context: Option<&str>,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    kind: SeriesKind,
) {
    buf.clear();
    for part in metric {
        buf.push_str(part);
    }
    if let Some(c) = context {
        buf.push('\0');
        buf.push_str(c);
    }
    for (k, v) in labels {
        buf.push_str("\0\0");
        buf.push_str(k);
        buf.push('\0');
        buf.push_str(v);
    }
    match kind {
        SeriesKind::Distribution => {}
        SeriesKind::Counter => buf.push_str("\0\0\0c"),
        SeriesKind::Gauge => buf.push_str("\0\0\0g"),
    }
}

/// Whether a window ending at `end` closes: its series' newest event time has passed the end
/// plus the lateness, or the clock has, and the window has been idle for the lateness (at least
/// [`MIN_IDLE_CLOSE_MS`]).
fn window_due(end: i64, lateness_ms: i64, newest_ts: i64, touched_ms: i64, now_ms: i64) -> bool {
    let closes_at = end.saturating_add(lateness_ms);
    newest_ts >= closes_at
        || (now_ms >= closes_at && now_ms - touched_ms >= lateness_ms.max(MIN_IDLE_CLOSE_MS))
}

fn error_snapshot(hash: String, start: i64, e: ErrorWindow, is_final: bool) -> ErrorCountSnapshot {
    ErrorCountSnapshot {
        error_hash: hash,
        error_type: e.error_type,
        error_category: e.category,
        start_ms: start,
        epoch: e.epoch,
        count: e.count,
        first_ts_ms: e.first_ts,
        last_ts_ms: e.last_ts,
        is_final,
    }
}

impl Clone for ErrorWindow {
    fn clone(&self) -> Self {
        ErrorWindow {
            error_type: self.error_type.clone(),
            category: self.category.clone(),
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TrackEvent;

    const T0: i64 = 1_764_000_000_000; // a multiple of 60 s

    /// An event and the rate the sampler kept it at.
    struct Kept {
        event: TrackEvent,
        rate: f64,
    }

    fn kept(e: TrackEvent, rate: f64) -> Kept {
        Kept { event: e, rate }
    }

    impl Aggregator {
        /// [`Aggregator::observe`] of a kept event.
        fn observe_kept(&mut self, k: Kept, now_ms: i64, out: &mut Output) {
            self.observe(&k.event, k.rate, now_ms, out)
        }
    }

    /// An aggregator of 60 s windows (5 s lateness) holding one `rt` sample at `T0`.
    fn one_sample_at_t0() -> (Aggregator, Output) {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        a.observe_kept(
            kept(TrackEvent::performance("rt", 1.0).at(T0), 1.0),
            T0,
            &mut out,
        );
        (a, out)
    }

    #[test]
    fn one_open_window_costs_one_slot() {
        let (a, _) = one_sample_at_t0();
        let series = a.series.values().next().unwrap();
        assert_eq!(series.windows.0.capacity(), 1, "no node of 11 slots");
        // what a series with one open window holds beyond its keys, the window's values aside
        let slot = std::mem::size_of::<(i64, OpenWindow)>();
        assert!(slot <= 256, "{slot} bytes");
    }

    #[test]
    fn open_windows_stay_sorted_and_close_oldest_first() {
        let mut w = OpenWindows::default();
        let open = |epoch| OpenWindow {
            state: WindowState::new(),
            epoch,
            touched_ms: 0,
            dirty: false,
        };
        for start in [300, 100, 200, 100, 0, 500] {
            w.entry(start, || open(start as u64))
                .state
                .observe(1.0, 1.0);
        }
        let starts: Vec<i64> = w.iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, [0, 100, 200, 300, 500]);
        assert_eq!(
            w.entry(100, || open(9)).state.count(),
            2,
            "found, not reopened"
        );
        let in_range: Vec<i64> = w.range(100, 300).iter().map(|(s, _)| *s).collect();
        assert_eq!(in_range, [100, 200]);
        assert!(w.range(300, 100).is_empty());
        assert!(w.take(|s, _| s > 1_000).is_empty());
        let taken: Vec<i64> = w
            .take(|s, _| s % 200 == 0)
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(taken, [0, 200]);
        assert_eq!(w.first_start(), Some(100));
        assert_eq!(w.take(|_, _| true).len(), 3);
        assert!(w.is_empty() && w.first_start().is_none());
    }

    #[test]
    fn folds_samples_into_event_time_windows() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        for (i, v) in [100.0, 200.0, 300.0].into_iter().enumerate() {
            let e = TrackEvent::performance("rt", v)
                .context("api")
                .at(T0 + i as i64 * 1000);
            a.observe_kept(kept(e, 0.5), T0, &mut out);
        }
        a.observe_kept(
            kept(
                TrackEvent::performance("rt", 5.0)
                    .context("api")
                    .at(T0 + 60_000),
                1.0,
            ),
            T0,
            &mut out,
        );
        assert_eq!(out.aggregated, 4);
        assert_eq!(a.open_windows(), 2);
        a.snapshot(&mut out);
        let first = out.windows.iter().find(|w| w.start_ms == T0).unwrap();
        assert_eq!(first.key.name(), "rt.api");
        assert_eq!(first.key, SeriesKey::new("rt", Some("api")));
        assert_eq!(first.state.count(), 3);
        assert_eq!(first.state.weighted_count(), 6.0);
        assert!(!first.is_final);
    }

    /// A counter, a gauge and a distribution of one name: three series, three windows of their
    /// own kind written; only the distribution's goes to the detectors.
    #[test]
    fn a_name_of_three_kinds_is_three_series() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        for e in [
            TrackEvent::counter("x", 2.0),
            TrackEvent::counter("x", 3.0),
            TrackEvent::gauge("x", 9.0).at(T0 + 5),
            TrackEvent::gauge("x", 4.0),
            TrackEvent::performance("x", 1.0),
        ] {
            let ts = e.ts_ms.unwrap_or(T0 + 1);
            a.observe_kept(kept(e.at(ts), 0.5), T0, &mut out);
        }
        assert_eq!((out.aggregated, a.open_windows()), (5, 3));
        a.close_due(T0, true, &mut out);
        let kinds: std::collections::BTreeMap<SeriesKind, &WindowState> =
            out.windows.iter().map(|w| (w.key.kind, &w.state)).collect();
        assert_eq!(kinds.len(), 3);
        assert!(out.windows.iter().all(|w| w.key.metric == "x"));
        assert_eq!(kinds[&SeriesKind::Counter].corrected_sum(), Some(10.0));
        let last = kinds[&SeriesKind::Gauge].last().unwrap();
        assert_eq!((last.ts_ms, last.value), (T0 + 5, 9.0));
        assert_eq!(kinds[&SeriesKind::Distribution].count(), 1);
        assert_eq!(out.closed.len(), 1);
        assert_eq!(out.closed[0].key.kind, SeriesKind::Distribution);
    }

    #[test]
    fn windows_close_by_watermark_plus_lateness_then_late_events_reopen_them() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        a.observe_kept(
            kept(TrackEvent::performance("rt", 1.0).at(T0 + 10), 1.0),
            T0,
            &mut out,
        );
        a.observe_kept(
            kept(TrackEvent::performance("rt", 1.0).at(T0 + 64_999), 1.0),
            T0,
            &mut out,
        );
        a.close_due(T0, false, &mut out);
        assert!(out.windows.is_empty());
        a.observe_kept(
            kept(TrackEvent::performance("rt", 1.0).at(T0 + 65_000), 1.0),
            T0,
            &mut out,
        );
        a.close_due(T0, false, &mut out);
        assert_eq!(out.windows.len(), 1);
        assert!(out.windows[0].is_final);
        assert_eq!(out.closed.len(), 1);
        let first_epoch = out.windows[0].epoch;
        // a late event for the closed window opens a new epoch of it
        a.observe_kept(
            kept(TrackEvent::performance("rt", 7.0).at(T0 + 1), 1.0),
            T0,
            &mut out,
        );
        a.close_due(T0, true, &mut out);
        let reopened = out
            .windows
            .iter()
            .find(|w| w.start_ms == T0 && w.epoch != first_epoch)
            .unwrap();
        assert_eq!(reopened.state.count(), 1);
        assert_eq!(a.open_windows(), 0);
    }

    #[test]
    fn idle_windows_close_by_the_clock() {
        let (mut a, mut out) = one_sample_at_t0();
        a.close_due(T0 + 64_999, false, &mut out);
        assert!(out.windows.is_empty());
        a.close_due(T0 + 65_000, false, &mut out);
        assert_eq!(out.windows.len(), 1);
    }

    #[test]
    fn errors_first_of_hash_is_a_record_rest_are_counted() {
        let mut a = Aggregator::new(60_000, 0);
        let mut out = Output::default();
        for i in 0..5 {
            let e = TrackEvent::error("timeout", "api")
                .message("upstream")
                .at(T0 + i);
            a.observe_kept(kept(e, 1.0), T0, &mut out);
        }
        a.observe_kept(
            kept(
                TrackEvent::error("timeout", "api").message("other").at(T0),
                1.0,
            ),
            T0,
            &mut out,
        );
        a.observe_kept(
            kept(TrackEvent::error("x", "api").error_hash("h1").at(T0), 1.0),
            T0,
            &mut out,
        );
        a.observe_kept(
            kept(TrackEvent::error("y", "api").error_hash("h1").at(T0), 1.0),
            T0,
            &mut out,
        );
        assert_eq!(out.records.len(), 3);
        assert_eq!(out.aggregated, 5);
        a.close_due(T0, true, &mut out);
        let mut counts: Vec<u64> = out.errors.iter().map(|e| e.count).collect();
        counts.sort();
        assert_eq!(counts, [1, 2, 5]);
        let five = out.errors.iter().find(|e| e.count == 5).unwrap();
        assert_eq!((five.first_ts_ms, five.last_ts_ms), (T0, T0 + 4));
        assert_eq!(five.error_category.as_deref(), Some("api"));
    }

    #[test]
    fn datastore_series_names() {
        let mut a = Aggregator::new(60_000, 0);
        let mut out = Output::default();
        a.observe_kept(
            kept(
                TrackEvent::datastore("save", "conversation", 12.5).at(T0),
                1.0,
            ),
            T0,
            &mut out,
        );
        a.snapshot(&mut out);
        assert_eq!(out.windows[0].key.name(), "datastore.save.conversation");
        assert_eq!(
            out.windows[0].key,
            SeriesKey::new("datastore.save", Some("conversation"))
        );
    }

    #[test]
    fn a_dotted_metric_and_a_metric_with_a_context_are_two_series() {
        let mut a = Aggregator::new(60_000, 0);
        let mut out = Output::default();
        for i in 1..=10 {
            for e in [
                TrackEvent::performance("a.b", i as f64),
                TrackEvent::performance("a", 100.0 + i as f64).context("b"),
            ] {
                a.observe_kept(kept(e.at(T0), 1.0), T0, &mut out);
            }
        }
        assert_eq!((a.open_series(), out.aggregated), (2, 20));
        let dotted = SeriesKey::new("a.b", None);
        let with_context = SeriesKey::new("a", Some("b"));
        assert_eq!(dotted.name(), with_context.name(), "shown alike");
        for (key, mean) in [(&dotted, 5.5), (&with_context, 105.5)] {
            let open = a.open_copies(key, T0, T0 + 60_000);
            assert_eq!(open.len(), 1);
            assert_eq!(&open[0].key, key);
            let s = open[0].state.summary();
            assert_eq!((s.count, s.mean), (10, mean));
        }
        a.close_due(T0, true, &mut out);
        let mut closed: Vec<_> = out.closed.iter().map(|c| c.key.clone()).collect();
        closed.sort();
        assert_eq!(closed, [with_context, dotted]);
    }

    #[test]
    fn samples_of_new_series_beyond_the_cap_are_dropped_and_counted() {
        let mut a = Aggregator::new(60_000, 0).with_max_series(2);
        let mut out = Output::default();
        for name in ["a", "b", "c", "a"] {
            a.observe_kept(
                kept(TrackEvent::performance(name, 1.0).at(T0), 1.0),
                T0,
                &mut out,
            );
        }
        assert_eq!((out.aggregated, out.dropped), (3, 1));
        assert_eq!(a.open_series(), 2);
        a.close_due(T0, true, &mut out);
        a.observe_kept(
            kept(TrackEvent::performance("c", 1.0).at(T0), 1.0),
            T0,
            &mut out,
        );
        assert_eq!(out.dropped, 1, "closed series leave room");
    }

    #[test]
    fn a_checkpoint_snapshots_only_what_changed_since_the_last() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        let obs = |a: &mut Aggregator, e: TrackEvent, out: &mut Output| {
            a.observe_kept(kept(e, 1.0), T0, out)
        };
        obs(&mut a, TrackEvent::performance("a", 1.0).at(T0), &mut out);
        obs(&mut a, TrackEvent::performance("b", 1.0).at(T0), &mut out);
        obs(&mut a, TrackEvent::error("timeout", "api").at(T0), &mut out);
        let mut snap = Output::default();
        a.snapshot_changed(&mut snap);
        assert_eq!((snap.windows.len(), snap.errors.len()), (2, 1));
        let mut snap = Output::default();
        a.snapshot_changed(&mut snap);
        assert!(
            snap.windows.is_empty() && snap.errors.is_empty(),
            "nothing changed"
        );
        obs(
            &mut a,
            TrackEvent::performance("b", 2.0).at(T0 + 1),
            &mut out,
        );
        obs(
            &mut a,
            TrackEvent::error("timeout", "api").at(T0 + 2),
            &mut out,
        );
        a.snapshot_changed(&mut snap);
        assert_eq!(snap.windows.len(), 1);
        assert_eq!(
            (
                snap.windows[0].key.name().as_str(),
                snap.windows[0].state.count()
            ),
            ("b", 2)
        );
        assert_eq!((snap.errors.len(), snap.errors[0].count), (1, 2));
        // a full snapshot (Flush without durable mode) still has everything
        let mut all = Output::default();
        a.snapshot(&mut all);
        assert_eq!((all.windows.len(), all.errors.len()), (2, 1));
    }

    #[test]
    fn windows_behind_a_lone_outlier_close_as_before() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        let obs = |a: &mut Aggregator, ts: i64, out: &mut Output| {
            a.observe_kept(
                kept(TrackEvent::performance("rt", 1.0).at(ts), 1.0),
                T0,
                out,
            );
            a.close_passed(T0, out);
        };
        obs(&mut a, T0, &mut out);
        obs(&mut a, T0 + 1, &mut out);
        obs(&mut a, T0 + 23 * 3_600_000, &mut out);
        for i in 2..50 {
            obs(&mut a, T0 + i * 100, &mut out);
        }
        assert!(out.windows.is_empty(), "nothing is late: {:?}", out.windows);
        obs(&mut a, T0 + 65_000, &mut out);
        assert_eq!(out.windows.len(), 1);
        assert_eq!(out.windows[0].state.count(), 50);
        assert_eq!(a.open_windows(), 2, "the next window and the outlier's");
    }

    #[test]
    fn distinct_error_hashes_beyond_the_cap_are_counted_in_one_overflow_row() {
        let mut a = Aggregator::new(60_000, 0);
        a.set_max_error_messages(3);
        let mut out = Output::default();
        for i in 0..10 {
            for window in [T0, T0 + 60_000] {
                let e = TrackEvent::error("timeout", "api")
                    .message(format!("m{i}"))
                    .at(window + i);
                a.observe_kept(kept(e, 1.0), T0, &mut out);
            }
        }
        // the first three hashes of each window are records, the rest overflow
        assert_eq!(
            (out.records.len(), out.overflowed, out.aggregated),
            (6, 14, 14)
        );
        assert_eq!(a.open_windows(), 8);
        a.close_due(T0, true, &mut out);
        for window in [T0, T0 + 60_000] {
            let rows: Vec<_> = out.errors.iter().filter(|e| e.start_ms == window).collect();
            assert_eq!(rows.len(), 4);
            assert_eq!(rows.iter().map(|e| e.count).sum::<u64>(), 10);
            let other = rows.iter().find(|e| e.error_hash == OVERFLOW_HASH).unwrap();
            assert_eq!((other.count, other.error_type.as_str()), (7, OVERFLOW_HASH));
            assert_eq!(
                (other.first_ts_ms, other.last_ts_ms),
                (window + 3, window + 9)
            );
        }
        // closed windows leave room
        assert!(a.error_hashes.is_empty());
        let e = TrackEvent::error("timeout", "api")
            .message("new")
            .at(T0 + 120_000);
        a.observe_kept(kept(e, 1.0), T0, &mut out);
        assert_eq!(out.records.len(), 7);
    }

    #[test]
    fn tags_are_the_label_set_of_the_series_in_any_order() {
        let mut a = Aggregator::new(60_000, 5_000);
        let mut out = Output::default();
        let sample = |v: f64, tags: &[(&str, &str)]| {
            let mut e = TrackEvent::performance("lat", v).context("api").at(T0 + 1);
            for (k, val) in tags {
                e = e.tag(*k, *val);
            }
            kept(e, 1.0)
        };
        a.observe_kept(
            sample(1.0, &[("region", "eu"), ("host", "a")]),
            T0,
            &mut out,
        );
        a.observe_kept(
            sample(2.0, &[("host", "a"), ("region", "eu")]),
            T0,
            &mut out,
        );
        a.observe_kept(
            sample(3.0, &[("host", "a"), ("region", "us")]),
            T0,
            &mut out,
        );
        a.observe_kept(sample(4.0, &[]), T0, &mut out);
        assert_eq!(a.open_series(), 3);
        a.close_due(T0, true, &mut out);
        let mut got: Vec<(String, u64)> = out
            .windows
            .iter()
            .map(|w| {
                (
                    crate::model::labelled_name(&w.key.name(), &w.key.labels),
                    w.state.count(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("lat.api".to_string(), 1),
                ("lat.api{host=\"a\",region=\"eu\"}".to_string(), 2),
                ("lat.api{host=\"a\",region=\"us\"}".to_string(), 1),
            ]
        );
    }

    #[test]
    fn label_sets_beyond_the_cap_fold_into_one_overflow_series() {
        let mut a = Aggregator::new(60_000, 5_000);
        a.set_max_series_per_metric(2);
        let mut out = Output::default();
        for i in 0..5 {
            for metric in ["lat", "other"] {
                let e = TrackEvent::performance(metric, 1.0)
                    .tag("user", format!("u{i}"))
                    .at(T0 + 1);
                a.observe_kept(kept(e, 1.0), T0, &mut out);
            }
        }
        assert_eq!(out.series_overflowed, 6, "3 per metric");
        assert_eq!(out.aggregated, 10, "nothing lost");
        assert_eq!(
            a.open_series(),
            6,
            "2 label sets and an overflow series per metric"
        );
        a.close_due(T0, true, &mut out);
        let overflow: Vec<_> = out
            .windows
            .iter()
            .filter(|w| w.key.labels.get(OVERFLOW_LABEL).map(String::as_str) == Some("true"))
            .collect();
        assert_eq!(overflow.len(), 2);
        assert!(overflow.iter().all(|w| w.state.count() == 3));
        // closed windows leave room for new label sets
        assert!(a.per_metric.is_empty());
        let e = TrackEvent::performance("lat", 1.0)
            .tag("user", "new")
            .at(T0 + 60_001);
        a.observe_kept(kept(e, 1.0), T0, &mut out);
        assert_eq!(out.series_overflowed, 6);
    }
}
