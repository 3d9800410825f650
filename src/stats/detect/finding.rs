//! What the detector answers: a [`Detection`] per value, with its [`Finding`]s, each told in
//! plain words and carrying the numbers behind it ([`Evidence`]) in fields.

use serde::{Deserialize, Serialize};

use super::detector_settings::PatternKind;
use super::math::{plain_number, plain_ratio};

/// Which part of the detector judged a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The short-history rules (fewer than `warmup` values): a Student-t test against the
    /// average of the values so far.
    Early,
    /// The level view: robust z-score against the median of recent values.
    #[default]
    Level,
    /// The seasonal view: the same phase of earlier cycles.
    Seasonal,
    /// The Mann-Kendall trend test.
    Trend,
    /// The change view: the median of the last `change_window` values against the levels
    /// of earlier blocks (`z` is that median's robust z-score).
    Change,
}

/// The statistics behind a finding, kept as numbers (the description says it in words).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Which view judged the value.
    pub view: View,
    /// How many standard deviations the value lies from what was expected (signed): the
    /// robust z-score (level view), the seasonal z-score, the Student t (early rules), the
    /// Mann-Kendall z (trends), or the recent level's z-score among the earlier blocks'
    /// levels (change view).
    pub z: f64,
    /// Point surprise, `-log10 p` of the value on its own (for trends, of the test).
    pub surprise_decades: f64,
    /// Anomaly likelihood of the recent surprises, `-log10 p` (0 for the early rules,
    /// trends and the change view).
    pub likelihood_decades: f64,
    /// The period (in values) of the seasonal view, when it judged.
    pub period: Option<u32>,
}

impl Evidence {
    /// The same with every number finite (NaN as 0, an infinity as the largest finite
    /// number of its sign), so that it survives JSON: `serde_json` writes a non-finite
    /// float as `null`, which does not read back as a number.
    pub fn finite(self) -> Self {
        Evidence {
            z: finite(self.z),
            surprise_decades: finite(self.surprise_decades),
            likelihood_decades: finite(self.likelihood_decades),
            ..self
        }
    }
}

/// `v` if finite; NaN as 0, an infinity as the largest finite number of its sign.
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(f64::MIN, f64::MAX)
    }
}

/// One pattern found on one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub kind: PatternKind,
    /// How sure the detector is, in `[0, 1]`: the anomaly score for spike, drop and
    /// anomaly; `1 - p` of the trend test for trends.
    pub confidence: f64,
    /// The value that triggered the finding (for trends, the latest value; for the change
    /// view, the recent level: the median of the last `change_window` values).
    pub observed: f64,
    /// What was expected: the baseline (median, recent average in the first values, or the
    /// seasonal expectation; for trends, the value the fitted line had at the start of the
    /// trend window; for the change view, the median of the earlier blocks' medians).
    pub baseline: f64,
    /// The finding in plain words, without the series' name: `1,032, 4.0x its usual 258`.
    pub description: String,
    /// The numbers behind it.
    pub evidence: Evidence,
}

impl Finding {
    /// A spike, drop or anomaly of `observed` against `expected`, described in words.
    pub(super) fn alarm(
        kind: PatternKind,
        confidence: f64,
        observed: f64,
        expected: f64,
        evidence: Evidence,
    ) -> Self {
        Finding {
            kind,
            confidence,
            observed,
            baseline: expected,
            description: describe_alarm(kind, observed, expected, &evidence),
            evidence,
        }
    }
}

/// `1,032, 4.0x its usual 258` (spike, drop), `112, 6.1 standard deviations above its usual
/// 100` (anomaly); the seasonal view says `for this point of its cycle`.
fn describe_alarm(kind: PatternKind, observed: f64, expected: f64, e: &Evidence) -> String {
    let usual = match (e.view, e.period) {
        (View::Seasonal, Some(p)) => format!(
            "its usual {} at this point of its {p}-value cycle",
            plain_number(expected)
        ),
        (View::Early, _) => format!("its usual {} so far", plain_number(expected)),
        (View::Change, _) => format!("its usual level {}", plain_number(expected)),
        _ => format!("its usual {}", plain_number(expected)),
    };
    let side = if observed >= expected {
        "above"
    } else {
        "below"
    };
    match kind {
        PatternKind::Spike | PatternKind::Drop if expected > 0.0 => format!(
            "{}, {} {usual}",
            plain_number(observed),
            plain_ratio(observed / expected)
        ),
        // A series steady at 0 has no spread: any other value is "3e154 standard
        // deviations" out, which says nothing a reader can use.
        _ if expected == 0.0 => format!(
            "{}, {} from {usual}",
            plain_number(observed),
            if observed >= 0.0 { "up" } else { "down" }
        ),
        _ if e.z.abs() >= MANY_SD => format!(
            "{}, more than {} standard deviations {side} {usual}",
            plain_number(observed),
            plain_number(MANY_SD)
        ),
        _ => format!(
            "{}, {:.1} standard deviations {side} {usual}",
            plain_number(observed),
            e.z.abs(),
        ),
    }
}

/// Beyond this many standard deviations the description says "more than" it (the
/// z-score itself stays in [`Evidence::z`]): a spread near 0 makes z astronomical.
const MANY_SD: f64 = 10_000.0;

/// `rising from 100 to 140 over the last 24 values`.
pub(super) fn describe_trend(kind: PatternKind, from: f64, to: f64, n: usize) -> String {
    let verb = if kind == PatternKind::TrendUp {
        "rising"
    } else {
        "falling"
    };
    format!(
        "{verb} from {} to {} over the last {n} values",
        plain_number(from),
        plain_number(to)
    )
}

/// The detector's answer for one observation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    /// Anomaly score in `[0, 1]`, monotone in how surprising the value is (0 before
    /// `early_min_history` values and for non-finite input).
    pub score: f64,
    /// Patterns found on this observation (usually none).
    pub findings: Vec<Finding>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_told_in_plain_words() {
        let e = Evidence {
            z: 113.4,
            surprise_decades: 300.0,
            likelihood_decades: 300.0,
            ..Evidence::default()
        };
        let f = Finding::alarm(PatternKind::Spike, 0.99, 1032.0, 258.0, e);
        assert_eq!(f.description, "1,032, 4.0x its usual 258");
        assert_eq!(f.evidence.z, 113.4);
        let f = Finding::alarm(PatternKind::Anomaly, 0.7, 112.0, 100.0, e);
        assert_eq!(
            f.description,
            "112, 113.4 standard deviations above its usual 100"
        );
        let seasonal = Evidence {
            view: View::Seasonal,
            period: Some(288),
            ..e
        };
        let f = Finding::alarm(PatternKind::Drop, 0.7, 20.0, 80.0, seasonal);
        assert_eq!(
            f.description,
            "20, 0.25x its usual 80 at this point of its 288-value cycle"
        );
        let huge = Evidence { z: 3e154, ..e };
        let f = Finding::alarm(PatternKind::Anomaly, 0.9, 5.0, 1.0, huge);
        assert_eq!(
            f.description,
            "5, more than 10,000 standard deviations above its usual 1"
        );
        assert_eq!(f.evidence.z, 3e154, "the number stays in Evidence");
        assert_eq!(
            describe_trend(PatternKind::TrendUp, 100.0, 140.0, 24),
            "rising from 100 to 140 over the last 24 values"
        );
    }

    #[test]
    fn evidence_is_made_finite_for_json() {
        let e = Evidence {
            z: f64::NEG_INFINITY,
            surprise_decades: f64::INFINITY,
            likelihood_decades: f64::NAN,
            ..Evidence::default()
        }
        .finite();
        assert_eq!(
            (e.z, e.surprise_decades, e.likelihood_decades),
            (f64::MIN, f64::MAX, 0.0)
        );
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), e);
    }

    #[test]
    fn a_series_steady_at_zero_is_told_without_its_huge_z() {
        let mut d = super::super::SeriesDetector::new(Default::default());
        let mut findings = Vec::new();
        for v in std::iter::repeat_n(0.0, 40).chain([5.0]) {
            findings.extend(d.observe(v).findings);
        }
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!(f.description, "5, up from its usual 0");
        assert!(f.evidence.z.abs() > 1e6, "the number stays: {f:#?}");
    }
}
