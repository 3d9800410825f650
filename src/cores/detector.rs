//! The pattern detector's actor: one [`SeriesDetector`] per series, fed each closed window's
//! mean in window order; findings become `patterns` rows.
//!
//! The maths (baselines, tests, confidence, alert hygiene) lives in [`crate::stats::detect`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::DEFAULT_MAX_DETECTOR_SERIES;
use crate::messages::Pattern;
use crate::model::{ClosedWindow, PatternRecord, PatternStatistic, SeriesKey};
use crate::settings::Settings;
use crate::stats::detect::{
    finite, Detection, DetectorSettings, Finding, PatternKind, SeriesDetector,
};
use crate::stats::window::WindowSummary;
use crate::window_stats::WindowStats;

/// How long (pipeline clock) a series' detector is kept without a closed window before it is
/// dropped, so memory does not grow with every series ever seen. A series that returns is
/// warmed again from its stored windows.
pub(crate) const DEFAULT_IDLE_MS: i64 = 6 * 3_600_000;

/// How many of a series' latest stored windows warm its detectors when the series is first
/// seen (after a start, or after its detectors were dropped as idle).
pub(crate) const HISTORY_WINDOWS: i64 = 240;

/// Which value of a window a detector watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The window mean.
    Mean,
    /// A tail percentile of the window: 90, 95 or 99.
    Tail(u8),
}

impl Watched {
    fn value(self, w: &WindowSummary) -> f64 {
        match self {
            Watched::Mean => w.mean,
            Watched::Tail(90) => w.p90,
            Watched::Tail(95) => w.p95,
            Watched::Tail(_) => w.p99,
        }
    }

    fn value_of(self, w: &WindowStats) -> f64 {
        match self {
            Watched::Mean => w.mean,
            Watched::Tail(90) => w.p90,
            Watched::Tail(95) => w.p95,
            Watched::Tail(_) => w.p99,
        }
    }
}

/// Per series: a detector on the window mean and, when configured, one on a tail percentile
/// (a latency tail that triples while the mean barely moves is a finding of its own), plus
/// the last window fed (a window reopened by late events closes again, out of order: it is
/// written but not fed twice) and when it was fed.
///
/// # Memory
///
/// At most `max_series` series ([`crate::Config::max_detector_series`]): a new series beyond
/// it evicts the least recently used sixteenth of them at once (an `O(max_series)` selection
/// every `max_series / 16` new series: constant per series on average), counted
/// ([`Detectors::take_evicted`]) and logged once. A series whose detectors were evicted, or
/// dropped after [`DEFAULT_IDLE_MS`] idle, is warmed again from the store when it returns. Each
/// series' detectors sit in a box of their own, so the map's spare slots cost a pointer, not a
/// detector; a detector's buffers grow with its history (see [`SeriesDetector`]).
#[derive(Debug)]
pub(crate) struct Detectors {
    pub(crate) settings: DetectorSettings,
    /// The same, shared by every new series' detectors.
    shared: Arc<DetectorSettings>,
    /// The percentile watched besides the mean (`None`: the mean only).
    tail: Option<u8>,
    /// By series: metric and context.
    series: HashMap<SeriesKey, Box<Tracked>>,
    /// Detectors idle for longer than this are dropped by [`Detectors::evict_idle`].
    idle_ms: i64,
    /// Most series with detectors.
    max_series: usize,
    /// Uses so far: each series is stamped with the count at its last use (least recently
    /// used = smallest stamp).
    uses: u64,
    /// Series evicted by the cap since [`Detectors::take_evicted`].
    evicted: u64,
    /// Whether the first eviction by the cap was logged.
    eviction_logged: bool,
    /// Stamp of the current batch's first use (`u64::MAX` outside a batch): series used
    /// since are not evicted until it ends.
    batch_from: u64,
}

/// A series' detectors.
#[derive(Debug)]
enum Watchers {
    /// Fewer than `early_min_history` windows: nothing can be judged yet, so no detector is
    /// built; the watched values wait here, `[mean, tail]` per window (the tail NaN when none
    /// is watched), in a vector grown as vectors grow (amortised `O(1)` a window, however
    /// large `early_min_history`) and shrunk to its length when the series turns idle
    /// ([`Detectors::evict_idle`]). A series that closes one window and goes idle (a
    /// hostile or one-off name) costs 16 bytes here, not two detectors.
    Young(Vec<[f64; 2]>),
    /// The detectors of the mean and of the tail, warmed with the young values.
    Grown(Box<(SeriesDetector, Option<SeriesDetector>)>),
}

impl Watchers {
    /// Feeds one window's `[mean, tail]`: the findings of the mean's and the tail's
    /// detectors. A young series grows its detectors (warmed with the values so far, which
    /// they could not have judged) when the values reach `early_min_history`.
    fn feed(
        &mut self,
        values: [f64; 2],
        tail: Option<u8>,
        settings: &Arc<DetectorSettings>,
    ) -> (Detection, Detection) {
        if let Watchers::Young(young) = self {
            if young.len() < settings.early_min_history {
                young.push(values);
                return (Detection::default(), Detection::default());
            }
            let mut mean = SeriesDetector::with_shared_settings(settings);
            mean.warm_up(young.iter().map(|v| v[0]));
            let tail = tail.map(|_| {
                let mut d = SeriesDetector::with_shared_settings(settings);
                d.warm_up(young.iter().map(|v| v[1]));
                d
            });
            *self = Watchers::Grown(Box::new((mean, tail)));
        }
        let Watchers::Grown(d) = self else {
            unreachable!("grown above")
        };
        let mean = d.0.observe(values[0]);
        let tail = match (d.1.as_mut(), tail) {
            (Some(t), Some(_)) => t.observe(values[1]),
            _ => Detection::default(),
        };
        (mean, tail)
    }
}

#[derive(Debug)]
struct Tracked {
    watchers: Watchers,
    /// Start of the last window fed.
    last_start_ms: i64,
    /// Clock time of the last window fed.
    seen_ms: i64,
    /// [`Detectors::uses`] at the last use.
    used: u64,
}

impl Detectors {
    pub(crate) fn new(settings: DetectorSettings) -> Self {
        Detectors {
            shared: Arc::new(settings.clone()),
            settings,
            tail: Some(99),
            series: HashMap::new(),
            idle_ms: DEFAULT_IDLE_MS,
            max_series: DEFAULT_MAX_DETECTOR_SERIES,
            uses: 0,
            evicted: 0,
            eviction_logged: false,
            batch_from: u64::MAX,
        }
    }

    /// Detectors as `s` configures them: detection settings, tail, cap.
    pub(crate) fn from_settings(s: &Settings) -> Self {
        let mut d = Detectors::new(s.detection.clone()).with_tail(s.watch_percentile);
        d.set_max_series(s.max_detector_series);
        d
    }

    /// At most this many series with detectors (fewer at once if more are in memory).
    pub(crate) fn set_max_series(&mut self, max_series: usize) {
        self.max_series = max_series.max(1);
        self.end_batch();
    }

    /// Series evicted by the cap since the last call.
    pub(crate) fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Watch this percentile (90, 95 or 99) besides the mean, or none.
    pub(crate) fn with_tail(mut self, tail: Option<u8>) -> Self {
        self.tail = tail;
        self
    }

    /// Series with detectors in memory.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// Starts a batch of closed windows: until it ends ([`Detectors::observe`]), the series
    /// it warms or feeds are not evicted to make room for each other (a batch with more new
    /// series than the cap grows past it, and the batch's end trims it back).
    pub(crate) fn begin_batch(&mut self) {
        self.batch_from = self.uses + 1;
    }

    /// Makes room for one more series: at the cap, evicts the least recently used sixteenth
    /// (not the current batch's).
    fn make_room(&mut self) {
        if self.series.len() < self.max_series {
            return;
        }
        let keep = self.max_series - (self.max_series / 16).max(1);
        self.evict_least_recent(self.series.len() - keep, self.batch_from);
    }

    /// Evicts the `n` least recently used series among those last used before the stamp
    /// `before` (exactly: stamps are unique); fewer if there are fewer.
    fn evict_least_recent(&mut self, n: usize, before: u64) {
        let mut stamps: Vec<u64> = self
            .series
            .values()
            .map(|t| t.used)
            .filter(|&u| u < before)
            .collect();
        let n = n.min(stamps.len());
        if n == 0 {
            return;
        }
        if !self.eviction_logged {
            self.eviction_logged = true;
            log::warn!(
                "{} series have pattern detectors (max_detector_series {}): evicting the least \
                 recently used (counted in Stats::detectors_evicted, logged once; they are \
                 warmed from the store if they return)",
                self.series.len(),
                self.max_series
            );
        }
        let (_, &mut last, _) = stamps.select_nth_unstable(n - 1);
        let len = self.series.len();
        self.series.retain(|_, t| t.used > last);
        self.evicted += (len - self.series.len()) as u64;
    }

    /// Ends a batch: back within the cap.
    fn end_batch(&mut self) {
        self.batch_from = u64::MAX;
        if self.series.len() > self.max_series {
            self.evict_least_recent(self.series.len() - self.max_series, u64::MAX);
        }
    }

    /// Drops the detectors that have seen no window for the idle time; returns how many.
    pub(crate) fn evict_idle(&mut self, now_ms: i64) -> usize {
        let before = self.series.len();
        let idle = self.idle_ms;
        self.series.retain(|_, t| {
            let keep = now_ms.saturating_sub(t.seen_ms) <= idle;
            if let (true, Watchers::Young(young)) = (keep, &mut t.watchers) {
                // a young series quiet for a quarter of the idle time holds exactly its
                // values (once per pause: a series fed between ticks is not shrunk each time)
                if now_ms.saturating_sub(t.seen_ms) > idle / 4 {
                    young.shrink_to_fit();
                }
            }
            keep
        });
        if self.series.len() < before / 2 {
            self.series.shrink_to_fit();
        }
        before - self.series.len()
    }

    /// New settings apply to the detectors built from now on: those of series seen from now
    /// on, and those a young series (fewer than `early_min_history` windows, no detectors
    /// yet) grows when it has enough windows. Grown detectors keep their history and
    /// settings. A young series' values wait for a tail even when none is watched (NaN), so
    /// a tail watched from now on grows with the series' young windows, ignoring the NaN.
    pub(crate) fn set_settings(&mut self, settings: DetectorSettings, tail: Option<u8>) {
        if settings != self.settings {
            self.shared = Arc::new(settings.clone());
        }
        self.settings = settings;
        self.tail = tail;
    }

    /// The series among `closed` that have no detectors yet, with the start of the first
    /// window of each (history is what the store holds before it).
    pub(crate) fn unknown(&self, closed: &[ClosedWindow]) -> Vec<(SeriesKey, i64)> {
        let mut first: HashMap<&SeriesKey, i64> = HashMap::new();
        for w in closed.iter().filter(|w| !self.series.contains_key(&w.key)) {
            let start = first.entry(&w.key).or_insert(w.start_ms);
            *start = (*start).min(w.start_ms);
        }
        first.into_iter().map(|(k, t)| (k.clone(), t)).collect()
    }

    /// The detectors of `key`, new ones if it has none (making room for them), stamped as
    /// used now.
    fn tracked(&mut self, key: &SeriesKey, now_ms: i64) -> &mut Tracked {
        self.uses += 1;
        if !self.series.contains_key(key) {
            self.make_room();
        }
        let used = self.uses;
        let t = self.series.entry(key.clone()).or_insert_with(|| {
            Box::new(Tracked {
                watchers: Watchers::Young(Vec::new()),
                last_start_ms: i64::MIN,
                seen_ms: now_ms,
                used,
            })
        });
        t.used = used;
        t
    }

    /// Warms the detectors of a series from its stored windows (in window order, each before
    /// `before_ms`): they are fed as if they had just closed, and what they would have found
    /// then is not reported again.
    pub(crate) fn warm(
        &mut self,
        key: &SeriesKey,
        history: &[WindowStats],
        before_ms: i64,
        now_ms: i64,
    ) {
        let (tail, settings) = (self.tail, Arc::clone(&self.shared));
        let t = self.tracked(key, now_ms);
        for w in history
            .iter()
            .filter(|w| w.window_start_ms < before_ms && w.count > 0)
        {
            if w.window_start_ms <= t.last_start_ms {
                continue;
            }
            t.last_start_ms = w.window_start_ms;
            let values = [
                Watched::Mean.value_of(w),
                tail.map_or(f64::NAN, |q| Watched::Tail(q).value_of(w)),
            ];
            let _ = t.watchers.feed(values, tail, &settings);
        }
    }

    /// Feeds closed windows (in closing order) and returns the patterns found.
    pub(crate) fn observe(
        &mut self,
        mut closed: Vec<ClosedWindow>,
        now_ms: i64,
    ) -> Vec<PatternRecord> {
        closed.sort_by(|a, b| a.key.cmp(&b.key).then(a.start_ms.cmp(&b.start_ms)));
        let (tail, settings) = (self.tail, Arc::clone(&self.shared));
        let mut found = Vec::new();
        for w in closed {
            if w.summary.count == 0 {
                continue;
            }
            let t = self.tracked(&w.key, now_ms);
            if w.start_ms <= t.last_start_ms {
                continue;
            }
            t.last_start_ms = w.start_ms;
            t.seen_ms = now_ms;
            let values = [
                Watched::Mean.value(&w.summary),
                tail.map_or(f64::NAN, |q| Watched::Tail(q).value(&w.summary)),
            ];
            let (mean, of_tail) = t.watchers.feed(values, tail, &settings);
            let mut findings: Vec<(Watched, Finding)> = mean
                .findings
                .into_iter()
                .map(|f| (Watched::Mean, f))
                .collect();
            if let Some(q) = tail {
                findings.extend(of_tail.findings.into_iter().map(|f| (Watched::Tail(q), f)));
            }
            if !findings.is_empty() {
                report(&w, findings, now_ms, &mut found);
            }
        }
        self.end_batch();
        found
    }
}

/// The name of a watched statistic: `mean`, `p90`, `p95` or `p99`.
fn statistic_name(watched: Watched) -> String {
    match watched {
        Watched::Mean => "mean".to_string(),
        Watched::Tail(q) => format!("p{q}"),
    }
}

/// `HH:MM UTC` of a time in ms since the epoch.
fn clock_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// Turns the findings on one window (of the mean and of the tail) into pattern rows: one per
/// event, not one per statistic. The alarms (spike, drop, anomaly) of the window are one
/// pattern, each trend direction another; the headline is the most confident statistic
/// (the mean on a tie), and every statistic that moved is listed in `statistics`.
fn report(
    w: &ClosedWindow,
    findings: Vec<(Watched, Finding)>,
    now_ms: i64,
    found: &mut Vec<PatternRecord>,
) {
    let group = |k: PatternKind| match k {
        PatternKind::TrendUp => 1,
        PatternKind::TrendDown => 2,
        _ => 0,
    };
    for g in 0..3 {
        let mut moved: Vec<&(Watched, Finding)> = findings
            .iter()
            .filter(|(_, f)| group(f.kind) == g)
            .collect();
        if moved.is_empty() {
            continue;
        }
        // stable: the mean stays first among equals
        moved.sort_by(|a, b| b.1.confidence.total_cmp(&a.1.confidence));
        let (watched, head) = moved[0];
        let shown = crate::model::labelled_name(&w.key.name(), &w.key.labels);
        let mut description = format!(
            "{} {} {}, from {}",
            shown,
            statistic_name(*watched),
            head.description,
            clock_time(w.start_ms)
        );
        for (other, f) in &moved[1..] {
            description.push_str(&format!("; {} {}", statistic_name(*other), f.description));
        }
        log::info!(
            "pattern {} in {} (metric {:?}, context {:?}) at {}: {description}",
            head.kind.as_str(),
            shown,
            w.key.metric,
            w.key.context,
            w.start_ms,
        );
        let statistics = moved
            .iter()
            .map(|(watched, f)| PatternStatistic {
                statistic: statistic_name(*watched),
                kind: f.kind,
                confidence: f.confidence.clamp(0.0, 1.0),
                observed: finite(f.observed),
                baseline: finite(f.baseline),
                // the statistics are stored as JSON, which has no infinity
                evidence: f.evidence.finite(),
            })
            .collect();
        found.push(PatternRecord {
            key: w.key.clone(),
            kind: head.kind,
            confidence: head.confidence.clamp(0.0, 1.0),
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            observed: finite(head.observed),
            baseline: finite(head.baseline),
            description,
            detected_at_ms: now_ms,
            statistics,
        });
    }
}

impl PatternRecord {
    /// The pattern as the application sees it (as [`crate::QueryPatterns`] returns it).
    pub(crate) fn to_pattern(&self) -> Pattern {
        Pattern {
            series: self.key.name(),
            metric: self.key.metric.clone(),
            context: self.key.context.clone(),
            labels: self.key.labels.clone(),
            kind: self.kind,
            confidence: self.confidence,
            window_start_ms: self.start_ms,
            window_end_ms: self.end_ms,
            observed: self.observed,
            baseline: self.baseline,
            description: self.description.clone(),
            statistics: self.statistics.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::window::WindowState;

    fn closed(series: &str, start_ms: i64, v: f64) -> ClosedWindow {
        let mut state = WindowState::new();
        state.observe(v, 1.0);
        ClosedWindow {
            key: SeriesKey::new(series, None),
            start_ms,
            end_ms: start_ms + 60_000,
            summary: state.summary(),
        }
    }

    /// A window of series `rt`: 95 values around `level` and 5 at `tail`.
    fn tail_window(start_ms: i64, level: f64, tail: f64) -> ClosedWindow {
        let mut state = WindowState::new();
        for i in 0..100 {
            let v = if i < 95 { level + (i % 3) as f64 } else { tail };
            state.observe(v, 1.0);
        }
        ClosedWindow {
            key: SeriesKey::new("rt", None),
            start_ms,
            end_ms: start_ms + 60_000,
            summary: state.summary(),
        }
    }

    #[test]
    fn idle_series_are_dropped_and_active_ones_kept() {
        let mut d = Detectors::new(DetectorSettings::default());
        let windows = (0..1000)
            .map(|i| closed(&format!("s{i}"), 0, 1.0))
            .collect();
        d.observe(windows, 0);
        d.observe(vec![closed("s0", 60_000, 1.0)], DEFAULT_IDLE_MS);
        assert_eq!(
            d.evict_idle(DEFAULT_IDLE_MS),
            0,
            "idle exactly the limit: kept"
        );
        assert_eq!(d.evict_idle(DEFAULT_IDLE_MS + 1), 999);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn two_series_shown_alike_have_detectors_of_their_own() {
        let mut d = Detectors::new(DetectorSettings::default());
        let mut other = closed("a", 0, 100.0);
        other.key.context = Some("b".into());
        let dotted = closed("a.b", 0, 10.0);
        assert_eq!(dotted.key.name(), other.key.name());
        d.observe(vec![dotted, other], 0);
        assert_eq!(d.len(), 2);
        assert_eq!(d.unknown(&[closed("a.b", 60_000, 1.0)]), vec![]);
        assert_eq!(d.unknown(&[closed("a", 60_000, 1.0)]).len(), 1);
    }

    #[test]
    fn a_window_seen_again_is_not_fed_twice() {
        let mut d = Detectors::new(DetectorSettings::default());
        d.observe(vec![closed("s", 60_000, 1.0)], 0);
        d.observe(vec![closed("s", 0, 1.0), closed("s", 60_000, 1.0)], 0);
        assert_eq!(d.series[&SeriesKey::new("s", None)].last_start_ms, 60_000);
    }

    #[test]
    fn the_tail_is_watched_on_its_own_and_named() {
        let mut d = Detectors::new(DetectorSettings::default());
        // 95 values at 100 and 5 at `tail`: the mean barely moves with the tail
        let window = |start: i64, tail: f64| tail_window(start, 100.0, tail);
        let mut found = Vec::new();
        for k in 0..80 {
            let tail = if k == 60 {
                900.0
            } else {
                300.0 + (k % 7) as f64 * 3.0
            };
            found.extend(d.observe(vec![window(k * 60_000, tail)], 0));
        }
        assert!(
            found
                .iter()
                .any(|p| p.start_ms == 60 * 60_000
                    && p.statistics.iter().any(|s| s.statistic == "p99")),
            "{found:?}"
        );
        assert!(
            found.iter().all(|p| p.start_ms >= 60 * 60_000),
            "nothing on the steady part: {found:?}"
        );
    }

    /// A known limit, pinned: an incident whose tail moves one window before its mean is two
    /// patterns (the p99's, then the mean's), not one; events are per statistic and per
    /// window (docs/detection.md, "Limits").
    #[test]
    fn a_tail_that_moves_a_window_before_the_mean_is_two_patterns_today() {
        let mut d = Detectors::new(DetectorSettings::default());
        let window = tail_window;
        let mut found = Vec::new();
        for k in 0..80 {
            let (level, tail) = match k {
                60 => (100.0, 900.0),
                61 => (500.0, 1_500.0),
                _ => (100.0, 300.0 + (k % 7) as f64 * 3.0),
            };
            found.extend(d.observe(vec![window(k * 60_000, level, tail)], 0));
        }
        let at = |k: i64| -> Vec<&PatternRecord> {
            found.iter().filter(|p| p.start_ms == k * 60_000).collect()
        };
        assert_eq!(at(60).len(), 1, "{found:#?}");
        assert_eq!(at(60)[0].statistics[0].statistic, "p99");
        assert_eq!(at(61).len(), 1, "{found:#?}");
        assert!(at(61)[0].statistics.iter().any(|s| s.statistic == "mean"));
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    #[test]
    fn beyond_the_cap_the_least_recently_used_are_evicted_and_counted() {
        let mut d = Detectors::new(DetectorSettings::default());
        d.set_max_series(32);
        let key = |i: usize| format!("s{i}");
        for i in 0..32 {
            d.observe(vec![closed(&key(i), 0, 1.0)], 0);
        }
        assert_eq!((d.len(), d.take_evicted()), (32, 0));
        // s0 and s1 are used again: the least recently used are now s2, s3, ...
        d.observe(
            vec![closed("s0", 60_000, 1.0), closed("s1", 60_000, 1.0)],
            0,
        );
        d.observe(vec![closed("new", 0, 1.0)], 0);
        // a sixteenth of the cap (two series) made room for the new one
        assert_eq!((d.len(), d.take_evicted()), (31, 2));
        for gone in ["s2", "s3"] {
            assert!(!d.series.contains_key(&SeriesKey::new(gone, None)));
        }
        for kept in ["s0", "s1", "s4", "new"] {
            assert!(d.series.contains_key(&SeriesKey::new(kept, None)));
        }
        // many new series: never more than the cap, every eviction counted
        for i in 100..1_100 {
            d.observe(vec![closed(&key(i), 0, 1.0)], 0);
            assert!(d.len() <= 32);
        }
        assert_eq!(d.take_evicted() + d.len() as u64, 31 + 1_000);
        // one batch of more new series than the cap: none is evicted for another of the
        // batch (each is fed), and its end trims back to the cap
        let live = d.len() as u64;
        d.begin_batch();
        d.observe(
            (0..100).map(|i| closed(&format!("b{i}"), 0, 1.0)).collect(),
            0,
        );
        assert_eq!((d.len(), d.take_evicted()), (32, live + 100 - 32));
        assert!(d.series.keys().all(|k| k.metric.starts_with('b')));
        // a lower cap applies at once
        d.set_max_series(4);
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn detectors_share_their_settings() {
        let mut d = Detectors::new(DetectorSettings::default());
        let windows = (0..100)
            .map(|k| closed("s", k * 60_000, (k % 7) as f64))
            .collect();
        d.observe(windows, 0);
        d.observe(vec![closed("t", 0, 1.0)], 0);
        d.observe((0..10).map(|k| closed("t", k * 60_000, 1.0)).collect(), 0);
        let [s, t] = [SeriesKey::new("s", None), SeriesKey::new("t", None)].map(|k| &d.series[&k]);
        let settings = |t: &Tracked| match &t.watchers {
            Watchers::Grown(g) => g.0.shared_settings(),
            Watchers::Young(_) => panic!("grown after 10 windows"),
        };
        assert!(Arc::ptr_eq(&settings(s), &settings(t)));
        // a series with one window holds its values only
        d.observe(vec![closed("u", 0, 1.0)], 0);
        assert!(matches!(
            &d.series[&SeriesKey::new("u", None)].watchers,
            Watchers::Young(v) if v.len() == 1
        ));
    }

    #[test]
    fn a_young_series_grows_its_values_as_vectors_grow_and_is_shrunk_when_idle() {
        let settings = DetectorSettings {
            warmup: 5_000,
            early_min_history: 5_000,
            ..DetectorSettings::default()
        };
        settings.validate().unwrap();
        let mut d = Detectors::new(settings);
        let key = SeriesKey::new("s", None);
        let young = |d: &Detectors| match &d.series[&key].watchers {
            Watchers::Young(v) => (v.len(), v.capacity()),
            Watchers::Grown(_) => panic!("young below early_min_history"),
        };
        let mut reallocations = 0;
        let mut capacity = 0;
        for k in 0..4_000 {
            d.observe(vec![closed("s", k * 60_000, 1.0)], 0);
            let (_, c) = young(&d);
            reallocations += usize::from(c != capacity);
            capacity = c;
        }
        // amortised: a few dozen reallocations for 4,000 windows, not one per window
        assert!(reallocations <= 20, "{reallocations} reallocations");
        assert!(young(&d).1 > 4_000, "spare room while fed");
        // fed recently: kept as is
        d.evict_idle(DEFAULT_IDLE_MS / 4);
        assert!(young(&d).1 > 4_000);
        // quiet for a while: exactly its values
        assert_eq!(d.evict_idle(DEFAULT_IDLE_MS / 4 + 1), 0);
        assert_eq!(young(&d), (4_000, 4_000));
    }

    #[test]
    fn a_young_series_grows_with_the_settings_of_when_it_grows() {
        let mut d = Detectors::new(DetectorSettings::default());
        d.observe(vec![closed("s", 0, 1.0)], 0);
        let changed = DetectorSettings {
            anomaly_sigma: 4.0,
            ..DetectorSettings::default()
        };
        d.set_settings(changed.clone(), Some(99));
        d.observe((1..10).map(|k| closed("s", k * 60_000, 1.0)).collect(), 0);
        match &d.series[&SeriesKey::new("s", None)].watchers {
            Watchers::Grown(g) => assert_eq!(*g.0.shared_settings(), changed),
            Watchers::Young(_) => panic!("grown after 10 windows"),
        }
    }
}
