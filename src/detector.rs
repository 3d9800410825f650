//! The pattern detector's actor: one [`SeriesDetector`] per series, fed each closed window's
//! mean in window order; findings become `patterns` rows.
//!
//! The maths (baselines, tests, confidence, alert hygiene) lives in [`crate::stats::detect`].

use std::collections::HashMap;

use crate::model::{ClosedWindow, PatternRecord};
use crate::stats::detect::{DetectorSettings, SeriesDetector};

/// How long (pipeline clock) a series' detector is kept without a closed window before it is
/// dropped, so memory does not grow with every series ever seen.
pub(crate) const DEFAULT_IDLE_MS: i64 = 6 * 3_600_000;

/// One detector per series, plus the last window each has seen (a window reopened by late
/// events closes again, out of order: it is written but not fed to the detector twice) and
/// when it last saw one.
#[derive(Debug)]
pub(crate) struct Detectors {
    pub(crate) settings: DetectorSettings,
    series: HashMap<String, Tracked>,
    /// Detectors idle for longer than this are dropped by [`Detectors::evict_idle`].
    idle_ms: i64,
}

#[derive(Debug)]
struct Tracked {
    detector: SeriesDetector,
    /// Start of the last window fed.
    last_start_ms: i64,
    /// Clock time of the last window fed.
    seen_ms: i64,
}

impl Detectors {
    pub(crate) fn new(settings: DetectorSettings) -> Self {
        Detectors {
            settings,
            series: HashMap::new(),
            idle_ms: DEFAULT_IDLE_MS,
        }
    }

    /// Series with a detector in memory.
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
    pub(crate) fn set_settings(&mut self, settings: DetectorSettings) {
        self.settings = settings;
    }

    /// Feeds closed windows (in closing order) and returns the patterns found.
    pub(crate) fn observe(
        &mut self,
        mut closed: Vec<ClosedWindow>,
        now_ms: i64,
    ) -> Vec<PatternRecord> {
        closed.sort_by(|a, b| a.series.cmp(&b.series).then(a.start_ms.cmp(&b.start_ms)));
        let mut found = Vec::new();
        for w in closed {
            if w.summary.count == 0 {
                continue;
            }
            let settings = &self.settings;
            let tracked = self
                .series
                .entry(w.series.clone())
                .or_insert_with(|| Tracked {
                    detector: SeriesDetector::new(settings.clone()),
                    last_start_ms: i64::MIN,
                    seen_ms: now_ms,
                });
            if w.start_ms <= tracked.last_start_ms {
                continue;
            }
            tracked.last_start_ms = w.start_ms;
            tracked.seen_ms = now_ms;
            let detection = tracked.detector.observe(w.summary.mean);
            for f in detection.findings {
                log::info!(
                    "pattern {} in {} at {}: {}",
                    f.kind.as_str(),
                    w.series,
                    w.start_ms,
                    f.description
                );
                found.push(PatternRecord {
                    series: w.series.clone(),
                    kind: f.kind,
                    confidence: f.confidence.clamp(0.0, 1.0),
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    observed: f.observed,
                    baseline: f.baseline,
                    description: f.description,
                    detected_at_ms: now_ms,
                });
            }
        }
        found
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
            series: series.into(),
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
    fn a_window_seen_again_is_not_fed_twice() {
        let mut d = Detectors::new(DetectorSettings::default());
        d.observe(vec![closed("s", 60_000, 1.0)], 0);
        d.observe(vec![closed("s", 0, 1.0), closed("s", 60_000, 1.0)], 0);
        assert_eq!(d.series["s"].last_start_ms, 60_000);
    }
}
