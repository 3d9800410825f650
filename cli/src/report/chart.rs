//! One series as an SVG chart: the window mean as a line over the p50-p99 band (a counter: its
//! rate per second; a gauge: its last value over the min-max band), value and time axes, and a
//! marker at each pattern found in the series.
//!
//! Everything is drawn here, on the server side; the page's script only adds the hover
//! tooltip, from the points this module puts in the `data-points` attribute.

use std::fmt::Write as _;

use eventbatch::{Pattern, PatternKind, SeriesKind, WindowStats};

use super::escape::esc;
use super::scale::{format_value, time_label, time_ticks, value_ticks, Linear};

/// The SVG's coordinate system (the page scales it to its width).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 50.0;
/// Mean points are drawn as dots too while there are at most this many windows.
const DOTS_UP_TO: usize = 120;

/// What one chart shows.
#[derive(Debug)]
pub struct Chart<'a> {
    /// Position of the chart on the page (ids, links).
    pub index: usize,
    /// The series' windows (or hour, day or week buckets), by start.
    pub windows: &'a [WindowStats],
    /// The series' patterns, each with its number in the page's pattern table.
    pub markers: Vec<(usize, &'a Pattern)>,
    /// The time axis, shared by every chart of the page: `[t0, t1)` ms.
    pub t0: i64,
    /// End of the time axis, ms.
    pub t1: i64,
    /// Unit of the values (`ms`), if known.
    pub unit: Option<&'a str>,
}

/// What a window draws, by its series' kind: the line's value and the band's low and high
/// edge. A distribution: its mean over p50-p99; a counter: its rate per second (no band); a
/// gauge: its last value over min-max.
pub fn drawn(w: &WindowStats) -> (f64, f64, f64) {
    match w.kind {
        SeriesKind::Counter => {
            let rate = w.rate_per_s.unwrap_or(0.0);
            (rate, rate, rate)
        }
        SeriesKind::Gauge => (w.last.unwrap_or(w.mean), w.min, w.max),
        SeriesKind::Distribution => (w.mean, w.p50, w.p99),
    }
}

/// The hover tooltip's names for a window's values of `kind`, as `Chart::points_json`
/// lists them after start, end and count.
pub fn point_names(kind: SeriesKind) -> &'static str {
    match kind {
        SeriesKind::Counter => "rate/s,sum",
        SeriesKind::Gauge => "last,min,max",
        SeriesKind::Distribution => "mean,p50,p90,p99",
    }
}

/// The SVG path of a pattern's marker symbol around `(x, y)`: a triangle pointing up for a
/// spike or a rising trend, down for a drop or a falling trend, a diamond for an anomaly.
fn symbol(kind: PatternKind, x: f64, y: f64) -> String {
    let r = 7.0;
    match kind {
        PatternKind::Spike | PatternKind::TrendUp => format!(
            "M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z",
            x,
            y - r,
            x + r,
            y + r * 0.75,
            x - r,
            y + r * 0.75
        ),
        PatternKind::Drop | PatternKind::TrendDown => format!(
            "M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z",
            x,
            y + r,
            x + r,
            y - r * 0.75,
            x - r,
            y - r * 0.75
        ),
        PatternKind::Anomaly => format!(
            "M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z",
            x,
            y - r,
            x + r,
            y,
            x,
            y + r,
            x - r,
            y
        ),
    }
}

/// The pattern kind's name as used in CSS classes and the page (`spike`, `trend_up`, ...).
pub fn kind_class(kind: PatternKind) -> &'static str {
    kind.as_str()
}

/// A pattern kind for people.
pub fn kind_label(kind: PatternKind) -> &'static str {
    match kind {
        PatternKind::Spike => "spike",
        PatternKind::Drop => "drop",
        PatternKind::Anomaly => "anomaly",
        PatternKind::TrendUp => "trend up",
        PatternKind::TrendDown => "trend down",
    }
}

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let x = Linear::new(self.t0 as f64, self.t1 as f64, LEFT, WIDTH - RIGHT);
        let (lo, hi) = self.value_range();
        let vt = value_ticks(lo, hi, 6);
        let y = Linear::new(vt.lo, vt.hi, HEIGHT - BOTTOM, TOP);
        let mut svg = String::with_capacity(8 * 1024 + self.windows.len() * 120);
        let _ = write!(
            svg,
            r#"<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="series-{i}-title" data-t0="{t0}" data-t1="{t1}" data-left="{LEFT}" data-right="{right}" data-unit="{unit}" data-names="{names}" data-points="{points}">"#,
            i = self.index,
            t0 = self.t0,
            t1 = self.t1,
            right = WIDTH - RIGHT,
            unit = esc(self.unit.unwrap_or("")),
            names = point_names(self.kind()),
            points = esc(&self.points_json()),
        );
        self.axes(&mut svg, &x, &y, &vt.ticks, vt.step);
        let _ = write!(
            svg,
            r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{w}" height="{h}"/>"#,
            w = WIDTH - LEFT - RIGHT,
            h = HEIGHT - TOP - BOTTOM
        );
        self.series_paths(&mut svg, &x, &y);
        self.markers(&mut svg, &x, &y);
        let _ = write!(
            svg,
            r#"<line class="hover" x1="0" x2="0" y1="{TOP}" y2="{b}" visibility="hidden"/></svg>"#,
            b = HEIGHT - BOTTOM
        );
        svg
    }

    /// The kind of the series drawn (of its first window; a distribution when none).
    fn kind(&self) -> SeriesKind {
        self.windows.first().map(|w| w.kind).unwrap_or_default()
    }

    /// The lowest and highest value the chart must show: what each window draws ([`drawn`])
    /// and the patterns' observed values; zero included when every value is positive and zero
    /// is not far off.
    fn value_range(&self) -> (f64, f64) {
        let values = self
            .windows
            .iter()
            .flat_map(|w| {
                let (line, lo, hi) = drawn(w);
                [lo, line, hi]
            })
            .chain(self.markers.iter().map(|(_, p)| p.observed))
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return (0.0, 1.0);
        }
        if lo >= 0.0 && lo <= hi * 0.5 {
            return (0.0, hi);
        }
        (lo, hi)
    }

    fn axes(&self, svg: &mut String, x: &Linear, y: &Linear, ticks: &[f64], step: f64) {
        svg.push_str(r#"<g class="grid">"#);
        for &v in ticks {
            let py = y.map(v);
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" x2="{r}" y1="{py:.1}" y2="{py:.1}"/>"#,
                r = WIDTH - RIGHT
            );
        }
        let (tstep, tticks) = time_ticks(self.t0, self.t1, 9);
        for &t in &tticks {
            let px = x.map(t as f64);
            let _ = write!(
                svg,
                r#"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{b}"/>"#,
                b = HEIGHT - BOTTOM
            );
        }
        svg.push_str(r#"</g><g class="axis y-axis">"#);
        for &v in ticks {
            let _ = write!(
                svg,
                r#"<text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                tx = LEFT - 8.0,
                ty = y.map(v) + 4.0,
                label = esc(&format_value(v, step))
            );
        }
        let _ = write!(
            svg,
            r#"<text class="axis-title" transform="translate(16 {my:.1}) rotate(-90)" text-anchor="middle">{unit}</text>"#,
            my = (TOP + HEIGHT - BOTTOM) / 2.0,
            unit = esc(self.unit.unwrap_or("value"))
        );
        svg.push_str(r#"</g><g class="axis x-axis">"#);
        let mut previous = None;
        for &t in &tticks {
            let (line1, line2) = time_label(t, tstep, previous);
            previous = Some(t);
            let px = x.map(t as f64);
            let _ = write!(
                svg,
                r#"<text x="{px:.1}" y="{ty}" text-anchor="middle">{l}</text>"#,
                ty = HEIGHT - BOTTOM + 16.0,
                l = esc(&line1)
            );
            if let Some(date) = line2 {
                let _ = write!(
                    svg,
                    r#"<text class="date" x="{px:.1}" y="{ty}" text-anchor="middle">{d}</text>"#,
                    ty = HEIGHT - BOTTOM + 31.0,
                    d = esc(&date)
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text class="axis-title" x="{ax}" y="{ay}" text-anchor="end">UTC</text></g>"#,
            ax = WIDTH - RIGHT,
            ay = HEIGHT - 4.0
        );
    }

    /// Runs of adjacent windows: a missing window breaks the line and the band.
    fn runs(&self) -> Vec<&[WindowStats]> {
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=self.windows.len() {
            let broken = i == self.windows.len()
                || self.windows[i].window_start_ms > self.windows[i - 1].window_end_ms;
            if broken {
                runs.push(&self.windows[start..i]);
                start = i;
            }
        }
        runs
    }

    fn series_paths(&self, svg: &mut String, x: &Linear, y: &Linear) {
        let mid =
            |w: &WindowStats| x.map((w.window_start_ms as f64 + w.window_end_ms as f64) / 2.0);
        let runs = self.runs();
        svg.push_str(r#"<g class="band">"#);
        for run in &runs {
            if let [w] = run {
                let half = ((x.map(w.window_end_ms as f64) - x.map(w.window_start_ms as f64))
                    / 2.0)
                    .max(1.5);
                let _ = write!(
                    svg,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
                    mid(w) - half,
                    y.map(drawn(w).2),
                    2.0 * half,
                    (y.map(drawn(w).1) - y.map(drawn(w).2)).max(0.5)
                );
                continue;
            }
            let mut d = String::new();
            for (i, w) in run.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if i == 0 { 'M' } else { 'L' },
                    mid(w),
                    y.map(drawn(w).2)
                );
            }
            for w in run.iter().rev() {
                let _ = write!(d, "L{:.1} {:.1}", mid(w), y.map(drawn(w).1));
            }
            let _ = write!(svg, r#"<path d="{d}Z"/>"#);
        }
        svg.push_str(r#"</g><g class="mean">"#);
        for run in &runs {
            if run.len() > 1 {
                let mut d = String::new();
                for (i, w) in run.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1}",
                        if i == 0 { 'M' } else { 'L' },
                        mid(w),
                        y.map(drawn(w).0)
                    );
                }
                let _ = write!(svg, r#"<path d="{d}"/>"#);
            }
        }
        if self.windows.len() <= DOTS_UP_TO || runs.iter().any(|r| r.len() == 1) {
            for w in self.windows {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                    mid(w),
                    y.map(drawn(w).0)
                );
            }
        }
        svg.push_str("</g>");
    }

    /// Each pattern: a dashed rule at its window, its symbol at the value that raised it, and
    /// its number in a flag along the top of the plot (flags that would touch stack down).
    fn markers(&self, svg: &mut String, x: &Linear, y: &Linear) {
        let xs: Vec<f64> = self
            .markers
            .iter()
            .map(|(_, p)| {
                let mid = (p.window_start_ms as f64 + p.window_end_ms as f64) / 2.0;
                x.map(mid).clamp(LEFT, WIDTH - RIGHT)
            })
            .collect();
        let rows = flag_rows(&xs, FLAG_GAP);
        svg.push_str(r#"<g class="markers">"#);
        for ((&(n, p), &px), row) in self.markers.iter().zip(&xs).zip(rows) {
            let py = y.map(p.observed).clamp(TOP + 8.0, HEIGHT - BOTTOM - 8.0);
            let class = kind_class(p.kind);
            let _ = write!(
                svg,
                r##"<a class="marker kind-{class}" href="#pattern-{n}" data-pattern="{n}" data-kind="{class}" data-start="{start}" data-series="{series}"{key}><title>#{n} {label} at {time}, confidence {conf:.0}%: {desc}</title><line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{b}"/><path d="{shape}"/><text x="{px:.1}" y="{ty:.1}" text-anchor="middle">{n}</text></a>"##,
                start = p.window_start_ms,
                series = esc(&p.series),
                key = key_attributes(&p.metric, p.context.as_deref()),
                label = kind_label(p.kind),
                time = super::scale::format_time(p.window_start_ms),
                conf = p.confidence * 100.0,
                desc = esc(&p.description),
                b = HEIGHT - BOTTOM,
                shape = symbol(p.kind, px, py),
                ty = TOP + 14.0 + 13.0 * row as f64,
            );
        }
        svg.push_str("</g>");
    }

    /// `[[start, end, count, mean, p50, p90, p99], ...]` for the hover tooltip (a counter's
    /// `[start, end, count, rate/s, sum]`, a gauge's `[start, end, count, last, min, max]`:
    /// [`point_names`]).
    fn points_json(&self) -> String {
        let mut out = String::with_capacity(self.windows.len() * 64 + 2);
        out.push('[');
        for (i, w) in self.windows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let values = match w.kind {
                SeriesKind::Counter => vec![w.rate_per_s.unwrap_or(0.0), w.sum],
                SeriesKind::Gauge => vec![drawn(w).0, w.min, w.max],
                SeriesKind::Distribution => vec![w.mean, w.p50, w.p90, w.p99],
            };
            let _ = write!(
                out,
                "[{},{},{}",
                w.window_start_ms, w.window_end_ms, w.count
            );
            for v in values {
                let _ = write!(out, ",{}", json_number(v));
            }
            out.push(']');
        }
        out.push(']');
        out
    }
}

/// ` data-metric="..."` and, for a series with a context, ` data-context="..."`: what
/// identifies a series (its display name can be shared).
pub fn key_attributes(metric: &str, context: Option<&str>) -> String {
    match context {
        Some(c) => format!(
            r#" data-metric="{}" data-context="{}""#,
            esc(metric),
            esc(c)
        ),
        None => format!(r#" data-metric="{}""#, esc(metric)),
    }
}

/// Horizontal room a marker's number flag needs, in SVG units.
const FLAG_GAP: f64 = 16.0;

/// The row of each flag at `xs`: the first row whose last flag is at least `gap` to the left
/// (flags are placed left to right, so close markers stack instead of overlapping).
fn flag_rows(xs: &[f64], gap: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut last_in_row: Vec<f64> = Vec::new();
    let mut rows = vec![0; xs.len()];
    for i in order {
        let row = match last_in_row.iter().position(|&last| xs[i] - last >= gap) {
            Some(r) => r,
            None => {
                last_in_row.push(f64::NEG_INFINITY);
                last_in_row.len() - 1
            }
        };
        last_in_row[row] = xs[i];
        rows[i] = row;
    }
    rows
}

/// A JSON number (JSON has no NaN or infinity: those become `null`).
fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: i64, mean: f64) -> WindowStats {
        serde_json::from_value(serde_json::json!({
            "series": "lat.api", "metric": "lat", "window_start_ms": start,
            "window_end_ms": start + 60_000, "count": 10, "estimated_count": 10.0,
            "sum": mean * 10.0, "min": mean / 2.0, "max": mean * 3.0, "mean": mean,
            "stddev": 1.0, "p50": mean * 0.9, "p90": mean * 1.5, "p95": mean * 1.8,
            "p99": mean * 2.5
        }))
        .unwrap()
    }

    fn pattern(series: &str, start: i64, kind: PatternKind, description: &str) -> Pattern {
        Pattern {
            series: series.into(),
            metric: series.into(),
            context: None,
            labels: Default::default(),
            kind,
            confidence: 0.9,
            window_start_ms: start,
            window_end_ms: start + 60_000,
            observed: 400.0,
            baseline: 100.0,
            description: description.into(),
            statistics: Vec::new(),
        }
    }

    #[test]
    fn a_gap_breaks_the_line_and_each_pattern_gets_one_marker() {
        let t0 = 1_764_000_000_000;
        let mut windows: Vec<_> = (0..10).map(|i| window(t0 + i * 60_000, 100.0)).collect();
        windows.extend((12..20).map(|i| window(t0 + i * 60_000, 100.0)));
        let hostile = "<script>alert(\"1\")</script> & 'x'";
        let patterns = [
            pattern("lat.api", t0 + 5 * 60_000, PatternKind::Spike, hostile),
            pattern("lat.api", t0 + 15 * 60_000, PatternKind::Drop, "a drop"),
        ];
        let chart = Chart {
            index: 0,
            windows: &windows,
            markers: patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p))
                .collect(),
            t0,
            t1: t0 + 20 * 60_000,
            unit: Some("ms"),
        };
        let svg = chart.render();
        assert_eq!(svg.matches(r#"<a class="marker"#).count(), 2, "{svg}");
        assert_eq!(svg.matches("<g class=\"mean\"><path").count(), 1);
        let (lines, markers) = svg.split_once(r#"<g class="markers">"#).unwrap();
        assert_eq!(
            lines.matches("<path d=\"M").count(),
            2 + 2,
            "two band and two mean runs"
        );
        assert_eq!(
            markers.matches("<path d=\"M").count(),
            2,
            "one symbol per marker"
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &#39;x&#39;"));
        assert!(svg.contains(">ms</text>"));
    }

    #[test]
    fn close_flags_stack_and_distant_ones_share_the_top_row() {
        assert_eq!(
            flag_rows(&[100.0, 300.0, 105.0, 110.0, 130.0], 16.0),
            [0, 0, 1, 2, 0]
        );
        assert!(flag_rows(&[], 16.0).is_empty());
    }

    #[test]
    fn one_window_and_no_windows_still_draw() {
        let t0 = 1_764_000_000_000;
        let windows = [window(t0, 5.0)];
        let svg = Chart {
            index: 3,
            windows: &windows,
            markers: vec![],
            t0,
            t1: t0 + 60_000,
            unit: None,
        }
        .render();
        assert!(svg.contains("<rect x=") && svg.contains("<circle"), "{svg}");
        let svg = Chart {
            index: 4,
            windows: &[],
            markers: vec![],
            t0,
            t1: t0 + 60_000,
            unit: None,
        }
        .render();
        assert!(
            svg.contains("data-points=\"[]\"") && !svg.contains("NaN"),
            "{svg}"
        );
    }
}
