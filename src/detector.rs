//! The pattern detector's actor: one [`SeriesDetector`] per series, fed each closed window's
//! mean in window order; findings become `patterns` rows.
//!
//! The maths (baselines, tests, confidence, alert hygiene) lives in [`crate::stats::detect`].

use std::collections::HashMap;

use crate::messages::WindowStats;
use crate::model::{ClosedWindow, PatternRecord, SeriesKey};
use crate::stats::detect::{DetectorSettings, Finding, SeriesDetector};
use crate::stats::window::WindowSummary;

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
#[derive(Debug)]
pub(crate) struct Detectors {
    pub(crate) settings: DetectorSettings,
    /// The percentile watched besides the mean (`None`: the mean only).
    tail: Option<u8>,
    /// By series: metric and context.
    series: HashMap<SeriesKey, Tracked>,
    /// Detectors idle for longer than this are dropped by [`Detectors::evict_idle`].
    idle_ms: i64,
}

#[derive(Debug)]
struct Tracked {
    mean: SeriesDetector,
    tail: Option<SeriesDetector>,
    /// Start of the last window fed.
    last_start_ms: i64,
    /// Clock time of the last window fed.
    seen_ms: i64,
}

impl Detectors {
    pub(crate) fn new(settings: DetectorSettings) -> Self {
        Detectors {
            settings,
            tail: Some(99),
            series: HashMap::new(),
            idle_ms: DEFAULT_IDLE_MS,
        }
    }

    /// Watch this percentile (90, 95 or 99) besides the mean, or none.
    pub(crate) fn with_tail(mut self, tail: Option<u8>) -> Self {
        self.tail = tail;
        self
    }

    /// Series with detectors in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// Drops the detectors that have seen no window for the idle time; returns how many.
    pub(crate) fn evict_idle(&mut self, now_ms: i64) -> usize {
        let before = self.series.len();
        let idle = self.idle_ms;
        self.series
            .retain(|_, t| now_ms.saturating_sub(t.seen_ms) <= idle);
        if self.series.len() < before / 2 {
            self.series.shrink_to_fit();
        }
        before - self.series.len()
    }

    /// New settings apply to series seen from now on; running detectors keep their history
    /// and settings.
    pub(crate) fn set_settings(&mut self, settings: DetectorSettings, tail: Option<u8>) {
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

    fn tracked(&mut self, key: &SeriesKey, now_ms: i64) -> &mut Tracked {
        let (settings, tail) = (&self.settings, self.tail);
        self.series.entry(key.clone()).or_insert_with(|| Tracked {
            mean: SeriesDetector::new(settings.clone()),
            tail: tail.map(|_| SeriesDetector::new(settings.clone())),
            last_start_ms: i64::MIN,
            seen_ms: now_ms,
        })
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
        let tail = self.tail;
        let t = self.tracked(key, now_ms);
        for w in history
            .iter()
            .filter(|w| w.window_start_ms < before_ms && w.count > 0)
        {
            if w.window_start_ms <= t.last_start_ms {
                continue;
            }
            t.last_start_ms = w.window_start_ms;
            let _ = t.mean.observe(Watched::Mean.value_of(w));
            if let (Some(d), Some(q)) = (t.tail.as_mut(), tail) {
                let _ = d.observe(Watched::Tail(q).value_of(w));
            }
        }
    }

    /// Feeds closed windows (in closing order) and returns the patterns found.
    pub(crate) fn observe(
        &mut self,
        mut closed: Vec<ClosedWindow>,
        now_ms: i64,
    ) -> Vec<PatternRecord> {
        closed.sort_by(|a, b| a.key.cmp(&b.key).then(a.start_ms.cmp(&b.start_ms)));
        let tail = self.tail;
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
            let mean = t.mean.observe(Watched::Mean.value(&w.summary));
            report(&w, Watched::Mean, mean.findings, now_ms, &mut found);
            if let (Some(d), Some(q)) = (t.tail.as_mut(), tail) {
                let tail = d.observe(Watched::Tail(q).value(&w.summary));
                report(&w, Watched::Tail(q), tail.findings, now_ms, &mut found);
            }
        }
        found
    }
}

/// Turns findings on one window into pattern rows; a tail's description names its percentile.
fn report(
    w: &ClosedWindow,
    watched: Watched,
    findings: Vec<Finding>,
    now_ms: i64,
    found: &mut Vec<PatternRecord>,
) {
    for f in findings {
        let description = match watched {
            Watched::Mean => f.description,
            Watched::Tail(q) => format!("p{q}: {}", f.description),
        };
        log::info!(
            "pattern {} in {} (metric {:?}, context {:?}) at {}: {description}",
            f.kind.as_str(),
            w.key.name(),
            w.key.metric,
            w.key.context,
            w.start_ms,
        );
        found.push(PatternRecord {
            key: w.key.clone(),
            kind: f.kind,
            confidence: f.confidence.clamp(0.0, 1.0),
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            observed: f.observed,
            baseline: f.baseline,
            description,
            detected_at_ms: now_ms,
        });
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
        let window = |start: i64, tail: f64| {
            // 95 values at 100 and 5 at `tail`: the mean barely moves with the tail
            let mut state = WindowState::new();
            for i in 0..100 {
                state.observe(if i < 95 { 100.0 + (i % 3) as f64 } else { tail }, 1.0);
            }
            ClosedWindow {
                key: SeriesKey::new("rt", None),
                start_ms: start,
                end_ms: start + 60_000,
                summary: state.summary(),
            }
        };
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
                .any(|p| p.start_ms == 60 * 60_000 && p.description.starts_with("p99")),
            "{found:?}"
        );
        assert!(
            found.iter().all(|p| p.start_ms >= 60 * 60_000),
            "nothing on the steady part: {found:?}"
        );
    }
}
