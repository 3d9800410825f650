//! Axes: linear scales, "nice" value ticks (1, 2 or 5 times a power of ten), UTC time ticks
//! on calendar steps, and the labels for both.

use time::OffsetDateTime;

/// Maps a domain `[d0, d1]` linearly onto a range `[r0, r1]` (pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    /// Domain start.
    pub d0: f64,
    /// Domain end (different from `d0`).
    pub d1: f64,
    /// Pixel at `d0`.
    pub r0: f64,
    /// Pixel at `d1`.
    pub r1: f64,
}

impl Linear {
    /// A scale from `[d0, d1]` to `[r0, r1]`; an empty domain is widened by one unit each side
    /// so a single value sits in the middle.
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Linear {
        let (d0, d1) = if d1 > d0 {
            (d0, d1)
        } else {
            (d0 - 1.0, d0 + 1.0)
        };
        Linear { d0, d1, r0, r1 }
    }

    /// The pixel of `v` (outside the domain it extrapolates).
    pub fn map(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// Value ticks: a step of 1, 2 or 5 times a power of ten giving at most `max_ticks` ticks, and
/// the domain widened to whole steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueTicks {
    /// Lowest tick (the domain's new start).
    pub lo: f64,
    /// Highest tick (the domain's new end).
    pub hi: f64,
    /// Distance between ticks.
    pub step: f64,
    /// Every tick from `lo` to `hi`.
    pub ticks: Vec<f64>,
}

/// Nice ticks covering `[lo, hi]` with at most `max_ticks` (at least 2) ticks.
pub fn value_ticks(lo: f64, hi: f64, max_ticks: usize) -> ValueTicks {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) if hi > lo => (lo, hi),
        (true, true) if lo == hi && lo != 0.0 => (lo - lo.abs() * 0.5, hi + hi.abs() * 0.5),
        (true, true) if lo == hi => (0.0, 1.0),
        _ => (0.0, 1.0),
    };
    let max_ticks = max_ticks.max(2);
    let raw = (hi - lo) / (max_ticks - 1) as f64;
    let mut magnitude = 10f64.powf(raw.log10().floor());
    let step = loop {
        if let Some(m) = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| (((hi / s).ceil() - (lo / s).floor()) as usize) < max_ticks)
        {
            break m;
        }
        magnitude *= 10.0;
    };
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let ticks = (0..=(last - first) as i64)
        .map(|i| (first + i as f64) * step)
        .collect();
    ValueTicks {
        lo: first * step,
        hi: last * step,
        step,
        ticks,
    }
}

/// `v` with as many decimals as `step` needs, and a k/M/G suffix from ten thousand up.
pub fn format_value(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into(); // not "-0", nor "0k"
    }
    let (scaled, scaled_step, suffix) = match v.abs().max(step.abs()) {
        a if a >= 1e9 => (v / 1e9, step / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, step / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, step / 1e3, "k"),
        _ => (v, step, ""),
    };
    // the fewest decimals that show the step exactly (2.5 needs one, 0.02 two)
    let decimals = (0..6)
        .find(|&d| {
            let shifted = scaled_step.abs() * 10f64.powi(d);
            (shifted - shifted.round()).abs() < 1e-6 * shifted.max(1.0)
        })
        .unwrap_or(6) as usize;
    format!("{scaled:.decimals$}{suffix}")
}

/// A value for a table or tooltip: four significant digits, thousands as plain digits.
pub fn format_reading(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let decimals = match a {
        a if a == 0.0 || a >= 1000.0 => 0,
        a if a >= 100.0 => 1,
        a if a >= 10.0 => 2,
        a if a >= 1.0 => 3,
        _ => 4,
    };
    format!("{v:.decimals$}")
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Calendar steps for time ticks, finest first (a "month" is 30 days: ticks stay evenly spaced).
const TIME_STEPS: [i64; 20] = [
    1_000,
    5_000,
    15_000,
    30_000,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
];

/// Time ticks in `[t0, t1]` (ms): the finest calendar step (UTC multiples of it) giving at
/// most `max_ticks` ticks. Returns the step and the ticks.
pub fn time_ticks(t0: i64, t1: i64, max_ticks: usize) -> (i64, Vec<i64>) {
    let span = t1.saturating_sub(t0).max(1);
    let max_ticks = max_ticks.max(2) as i64;
    let step = TIME_STEPS
        .into_iter()
        .find(|s| span / s < max_ticks)
        .unwrap_or_else(|| {
            let days = (span / DAY / (max_ticks - 1)).max(1) + 1;
            days * DAY
        });
    let first = t0.div_euclid(step) * step + if t0.rem_euclid(step) == 0 { 0 } else { step };
    let ticks = (0..)
        .map(|i| first.saturating_add(i * step))
        .take_while(|&t| t <= t1)
        .take(max_ticks as usize + 1)
        .collect();
    (step, ticks)
}

/// The label of a time tick: the time of day for steps under a day (and the date under it
/// where the day changes from `previous`, or at the first tick), the date for longer steps.
pub fn time_label(ms: i64, step: i64, previous: Option<i64>) -> (String, Option<String>) {
    let Some(t) = utc(ms) else {
        return (ms.to_string(), None);
    };
    let date =
        |t: OffsetDateTime| format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day());
    let new_day = previous.and_then(utc).is_none_or(|p| p.date() != t.date());
    if step >= DAY {
        return (date(t), None);
    }
    let clock = if step >= MINUTE {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    };
    (clock, new_day.then(|| date(t)))
}

/// `YYYY-MM-DD HH:MM` UTC, for tables and tooltips (seconds when not on a whole minute).
pub fn format_time(ms: i64) -> String {
    match utc(ms) {
        Some(t) if t.second() == 0 && ms.rem_euclid(1000) == 0 => format!(
            "{}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Some(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => ms.to_string(),
    }
}

/// A duration for people: `1 min`, `90 s`, `1 h`, `1 day`.
pub fn format_duration(ms: i64) -> String {
    match ms {
        ms if ms >= DAY && ms % DAY == 0 => plural(ms / DAY, "day"),
        ms if ms >= HOUR && ms % HOUR == 0 => format!("{} h", ms / HOUR),
        ms if ms >= MINUTE && ms % MINUTE == 0 => format!("{} min", ms / MINUTE),
        ms if ms >= 1000 && ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn utc(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ticks_are_round_and_cover_the_data() {
        let t = value_ticks(3.2, 97.0, 6);
        assert_eq!(t.step, 20.0);
        assert_eq!(t.ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let t = value_ticks(0.013, 0.087, 6);
        assert!((t.step - 0.02).abs() < 1e-12, "{t:?}");
        assert!(t.lo <= 0.013 && t.hi >= 0.087 && t.ticks.len() <= 6);
        assert_eq!(value_ticks(0.013, 0.087, 5).step, 0.05);
        let t = value_ticks(-5.0, 5.0, 6);
        assert!(t.ticks.contains(&0.0) && t.lo <= -5.0 && t.hi >= 5.0);
        for (lo, hi) in [(1.0, 1.0), (0.0, 0.0), (f64::NAN, 1.0), (1e300, 1e308)] {
            let t = value_ticks(lo, hi, 6);
            assert!(t.ticks.len() >= 2 && t.ticks.len() <= 6, "{lo} {hi}: {t:?}");
            assert!(t.hi > t.lo);
        }
    }

    #[test]
    fn values_are_labelled_with_the_step_s_precision() {
        assert_eq!(format_value(40.0, 20.0), "40");
        assert_eq!(format_value(0.25, 0.05), "0.25");
        assert_eq!(format_value(-0.0, 1.0), "0");
        assert_eq!(format_value(25_000.0, 5_000.0), "25k");
        assert_eq!(format_value(12_500.0, 2_500.0), "12.5k");
        assert_eq!(format_value(3e6, 1e6), "3M");
        assert_eq!(format_value(1.5e6, 5e5), "1.5M");
        assert_eq!(format_value(0.0, 5e5), "0");
        assert_eq!(format_reading(123.456), "123.5");
        assert_eq!(format_reading(0.123_456), "0.1235");
        assert_eq!(format_reading(12_345.6), "12346");
    }

    #[test]
    fn time_ticks_fall_on_calendar_steps() {
        let t0 = 1_764_000_000_000; // 2025-11-24 16:00 UTC
        let (step, ticks) = time_ticks(t0 + 7 * MINUTE, t0 + 4 * HOUR, 9);
        assert_eq!(step, 30 * MINUTE);
        assert_eq!(ticks.first(), Some(&(t0 + 30 * MINUTE)));
        assert!(ticks.iter().all(|t| t % step == 0) && ticks.len() <= 9);
        let (step, ticks) = time_ticks(t0, t0 + 10 * DAY, 8);
        assert_eq!(step, 2 * DAY);
        assert!(ticks.len() <= 8);
        let (step, _) = time_ticks(t0, t0 + 3000 * DAY, 8);
        assert!(step >= 3000 * DAY / 8, "{step}");
    }

    #[test]
    fn time_labels_show_the_date_where_the_day_changes() {
        let t = 1_764_028_800_000; // 2025-11-25 00:00 UTC
        assert_eq!(
            time_label(t - HOUR, HOUR, None),
            ("23:00".into(), Some("2025-11-24".into()))
        );
        assert_eq!(
            time_label(t - HOUR, HOUR, Some(t - 2 * HOUR)),
            ("23:00".into(), None)
        );
        assert_eq!(
            time_label(t, HOUR, Some(t - HOUR)),
            ("00:00".into(), Some("2025-11-25".into()))
        );
        assert_eq!(time_label(t, DAY, None), ("2025-11-25".into(), None));
        assert_eq!(format_time(t + 90_000), "2025-11-25 00:01:30");
        assert_eq!(format_time(t), "2025-11-25 00:00");
        assert_eq!(format_duration(60_000), "1 min");
        assert_eq!(format_duration(DAY), "1 day");
        assert_eq!(format_duration(1500), "1500 ms");
    }
}
