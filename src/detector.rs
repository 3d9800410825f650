//! The pattern detector's actor: one [`SeriesDetector`] per series, fed each closed window's
//! mean in window order; findings become `patterns` rows.
//!
//! The maths (baselines, tests, confidence, alert hygiene) lives in [`crate::stats::detect`].

use std::collections::HashMap;

use crate::model::{ClosedWindow, PatternRecord};
use crate::stats::detect::{DetectorSettings, SeriesDetector};

/// One detector per series, plus the last window each has seen (a window reopened by late
/// events closes again, out of order: it is written but not fed to the detector twice).
#[derive(Debug)]
pub(crate) struct Detectors {
    pub(crate) settings: DetectorSettings,
    series: HashMap<String, (SeriesDetector, i64)>,
}

impl Detectors {
    pub(crate) fn new(settings: DetectorSettings) -> Self {
        Detectors {
            settings,
            series: HashMap::new(),
        }
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
            let (detector, last) = self
                .series
                .entry(w.series.clone())
                .or_insert_with(|| (SeriesDetector::new(settings.clone()), i64::MIN));
            if w.start_ms <= *last {
                continue;
            }
            *last = w.start_ms;
            let detection = detector.observe(w.summary.mean);
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
