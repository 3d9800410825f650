//! The report as one HTML page: a header saying what it covers, the patterns as a table, then
//! a chart per series (see [`super::chart`]), with styles and the hover script inline.

use std::fmt::Write as _;

use eventbatch::{Pattern, PatternKind, Resolution, SeriesKind, StoredSeries, WindowStats};

use super::chart::{key_attributes, kind_class, kind_label, Chart};
use super::escape::esc;
use super::scale::{format_duration, format_reading, format_time};
use super::{belongs_to, Report};

/// The page's styles.
const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #5b6472; --line: #d9dee5; --panel: #ffffff; --bg: #f4f6f9;
  --mean: #1f4e9c; --band: #6f9ce8; --spike: #d62728; --drop: #e8710a; --anomaly: #8e44ad;
  --trend_up: #2e8b3a; --trend_down: #138a9e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--bg); }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 12px; }
h3 { font-size: 15px; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 0; padding: 0; list-style: none; }
.summary li { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; }
.summary b { font-size: 18px; display: block; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.empty { color: var(--muted); }
table { width: 100%; border-collapse: collapse; background: var(--panel); border: 1px solid var(--line);
  border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.series { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; min-width: 12em; overflow-wrap: anywhere; }
tr:target { background: #fff6d6; }
tr:last-child td { border-bottom: 0; }
.kind { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; white-space: nowrap; }
.kind.spike { background: var(--spike); } .kind.drop { background: var(--drop); }
.kind.anomaly { background: var(--anomaly); } .kind.trend_up { background: var(--trend_up); }
.kind.trend_down { background: var(--trend_down); }
.conf { display: inline-block; width: 48px; height: 6px; background: #e3e7ed; border-radius: 3px;
  vertical-align: middle; margin-left: 6px; overflow: hidden; }
.conf span { display: block; height: 100%; background: var(--ink); }
figure.chart { margin: 0 0 18px; background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px 6px; position: relative; }
figure.chart:target { outline: 2px solid #f2c94c; }
figcaption { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; margin-bottom: 4px; }
figcaption .stats, .key { color: var(--muted); font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted); margin-left: auto; }
.legend i { display: inline-block; width: 18px; height: 10px; margin-right: 5px; vertical-align: -1px; }
.legend .l-mean { height: 0; border-top: 2px solid var(--mean); vertical-align: 3px; }
.legend .l-band { background: var(--band); opacity: .35; }
svg.plot { width: 100%; height: auto; display: block; font: 12px system-ui, "DejaVu Sans", sans-serif; }
svg.plot .frame { fill: none; stroke: #b9c0ca; }
svg.plot .grid line { stroke: #edf0f4; }
svg.plot .axis text { fill: var(--muted); }
svg.plot .axis text.date { fill: var(--ink); font-weight: 600; }
svg.plot .axis-title { fill: var(--muted); font-size: 12px; }
svg.plot .band path, svg.plot .band rect { fill: var(--band); fill-opacity: .3; stroke: var(--band); stroke-opacity: .6; stroke-width: .8; }
svg.plot .mean path { fill: none; stroke: var(--mean); stroke-width: 1.8; stroke-linejoin: round; }
svg.plot .mean circle { fill: var(--mean); }
svg.plot .marker line { stroke-width: 1.2; stroke-dasharray: 3 3; }
svg.plot .marker path { stroke: #fff; stroke-width: 1.2; }
svg.plot .marker text { font-size: 11px; font-weight: 700; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg.plot .marker:hover path { stroke: var(--ink); stroke-width: 2; }
svg.plot .kind-spike line { stroke: var(--spike); } svg.plot .kind-spike path, svg.plot .kind-spike text { fill: var(--spike); }
svg.plot .kind-drop line { stroke: var(--drop); } svg.plot .kind-drop path, svg.plot .kind-drop text { fill: var(--drop); }
svg.plot .kind-anomaly line { stroke: var(--anomaly); } svg.plot .kind-anomaly path, svg.plot .kind-anomaly text { fill: var(--anomaly); }
svg.plot .kind-trend_up line { stroke: var(--trend_up); } svg.plot .kind-trend_up path, svg.plot .kind-trend_up text { fill: var(--trend_up); }
svg.plot .kind-trend_down line { stroke: var(--trend_down); } svg.plot .kind-trend_down path, svg.plot .kind-trend_down text { fill: var(--trend_down); }
svg.plot .hover { stroke: var(--ink); stroke-opacity: .35; }
.tip { position: absolute; pointer-events: none; background: rgba(29, 36, 48, .94); color: #fff; font-size: 12px;
  padding: 6px 9px; border-radius: 6px; white-space: pre; font-variant-numeric: tabular-nums; display: none; z-index: 2; }
footer { color: var(--muted); font-size: 13px; margin-top: 32px; }
"#;

/// The hover tooltip: the window nearest the pointer, from the chart's `data-points`. Text is
/// set with `textContent` only.
const SCRIPT: &str = r#"
(function () {
  'use strict';
  function fmt(v) {
    if (v === null) return '-';
    var a = Math.abs(v);
    return v.toFixed(a >= 1000 || a === 0 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : a >= 1 ? 3 : 4);
  }
  function utc(ms) { return new Date(ms).toISOString().slice(0, 16).replace('T', ' '); }
  document.querySelectorAll('figure.chart').forEach(function (fig) {
    var svg = fig.querySelector('svg.plot');
    var tip = fig.querySelector('.tip');
    var hover = svg.querySelector('line.hover');
    var points = JSON.parse(svg.getAttribute('data-points'));
    var t0 = Number(svg.getAttribute('data-t0')), t1 = Number(svg.getAttribute('data-t1'));
    var left = Number(svg.getAttribute('data-left')), right = Number(svg.getAttribute('data-right'));
    var unit = svg.getAttribute('data-unit');
    var names = svg.getAttribute('data-names').split(',');
    if (!points.length || t1 <= t0) return;
    function hide() { tip.style.display = 'none'; hover.setAttribute('visibility', 'hidden'); }
    svg.addEventListener('pointerleave', hide);
    svg.addEventListener('pointermove', function (ev) {
      var ctm = svg.getScreenCTM();
      if (!ctm) return;
      var p = svg.createSVGPoint();
      p.x = ev.clientX; p.y = ev.clientY;
      var x = p.matrixTransform(ctm.inverse()).x;
      if (x < left || x > right) { hide(); return; }
      var t = t0 + (x - left) / (right - left) * (t1 - t0);
      var lo = 0, hi = points.length - 1;
      while (lo < hi) {
        var mid = (lo + hi) >> 1;
        if ((points[mid][0] + points[mid][1]) / 2 < t) lo = mid + 1; else hi = mid;
      }
      if (lo > 0 && Math.abs((points[lo - 1][0] + points[lo - 1][1]) / 2 - t) <
          Math.abs((points[lo][0] + points[lo][1]) / 2 - t)) lo -= 1;
      var w = points[lo];
      var wx = left + ((w[0] + w[1]) / 2 - t0) / (t1 - t0) * (right - left);
      hover.setAttribute('x1', wx); hover.setAttribute('x2', wx);
      hover.setAttribute('visibility', 'visible');
      var u = unit ? ' ' + unit : '';
      var text = utc(w[0]) + ' UTC\ncount ' + w[2];
      names.forEach(function (n, i) { text += '\n' + (n + '      ').slice(0, 6) + fmt(w[3 + i]) + u; });
      tip.textContent = text;
      var box = fig.getBoundingClientRect();
      tip.style.display = 'block';
      var tx = ev.clientX - box.left + 14;
      if (tx + tip.offsetWidth > box.width - 4) tx = ev.clientX - box.left - tip.offsetWidth - 14;
      tip.style.left = tx + 'px';
      tip.style.top = (ev.clientY - box.top + 12) + 'px';
    });
  });
})();
"#;

/// The report as HTML. `nonce` (letters and digits, unpredictable) is the only script the
/// page's Content-Security-Policy lets run: even a string that escaped [`esc`] could not run.
pub fn render(report: &Report, nonce: &str) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = match &report.options.metric {
        Some(m) => format!("{m}: eventbatch report"),
        None => "eventbatch report".to_string(),
    };
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; img-src data:">
<meta name="generator" content="eventbatch {version}">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
"#,
        nonce = esc(nonce),
        version = env!("CARGO_PKG_VERSION"),
        title = esc(&title),
    );
    header(&mut html, report, &title);
    patterns_table(&mut html, report);
    charts(&mut html, report);
    super::users::section(&mut html, &report.users, report.options.resolution);
    footer(&mut html);
    let _ = write!(
        html,
        "</main>\n<script nonce=\"{}\">{SCRIPT}</script>\n</body>\n</html>\n",
        esc(nonce)
    );
    html
}

fn resolution_label(report: &Report) -> String {
    match report.options.resolution {
        Resolution::Hour => "hourly buckets".into(),
        Resolution::Day => "daily buckets".into(),
        Resolution::Week => "weekly buckets (ISO weeks, from Monday)".into(),
        _ => match report.series.first().and_then(|s| s.windows.first()) {
            Some(w) => format!(
                "{} windows",
                format_duration(w.window_end_ms - w.window_start_ms)
            ),
            None => "windows".into(),
        },
    }
}

fn header(html: &mut String, report: &Report, title: &str) {
    let _ = write!(html, "<header>\n<h1>{}</h1>\n", esc(title));
    let range = match report.time_range() {
        Some((lo, hi)) => format!("{} to {} UTC", format_time(lo), format_time(hi)),
        None => "no data".into(),
    };
    let asked = match (report.options.since_ms, report.options.until_ms) {
        (None, None) => String::new(),
        (Some(s), None) => format!(" (asked: since {} UTC)", format_time(s)),
        (None, Some(u)) => format!(" (asked: until {} UTC)", format_time(u)),
        (Some(s), Some(u)) => format!(" (asked: {} to {} UTC)", format_time(s), format_time(u)),
    };
    let _ = writeln!(
        html,
        "<p class=\"meta\">Store <code>{}</code> · {} · {}{} · generated {} UTC</p>",
        esc(&report.source),
        esc(&resolution_label(report)),
        esc(&range),
        esc(&asked),
        format_time(report.generated_ms)
    );
    let count = |kind: PatternKind| report.patterns.iter().filter(|p| p.kind == kind).count();
    let kinds: Vec<String> = [
        PatternKind::Spike,
        PatternKind::Drop,
        PatternKind::Anomaly,
        PatternKind::TrendUp,
        PatternKind::TrendDown,
    ]
    .into_iter()
    .filter(|&k| count(k) > 0)
    .map(|k| format!("{} {}", count(k), kind_label(k)))
    .collect();
    let _ = writeln!(
        html,
        "<ul class=\"summary\"><li><b>{}</b>series</li><li><b>{}</b>{}</li><li><b>{}</b>patterns{}</li></ul>\n</header>",
        report.series.len(),
        report.window_count(),
        report.window_noun(),
        report.patterns.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(": {}", kinds.join(", "))
        }
    );
}

/// For a display name two series share (the metric `a.b`, and the metric `a` in context `b`):
/// which of them this is. Empty for a name that is unique on the page.
fn key_note(report: &Report, name: &str, metric: &str, context: Option<&str>) -> String {
    let series = report.series.iter().map(|s| {
        let s = &s.series;
        (s.series.as_str(), s.metric.as_str(), s.context.as_deref())
    });
    let patterns = report
        .patterns
        .iter()
        .map(|p| (p.series.as_str(), p.metric.as_str(), p.context.as_deref()));
    let shared = series
        .chain(patterns)
        .any(|(n, m, c)| n == name && (m, c) != (metric, context));
    if !shared {
        return String::new();
    }
    match context {
        Some(c) => format!(
            " <span class=\"key\">(metric <code>{}</code> in context <code>{}</code>)</span>",
            esc(metric),
            esc(c)
        ),
        None => format!(
            " <span class=\"key\">(metric <code>{}</code>, no context)</span>",
            esc(metric)
        ),
    }
}

/// The index of the chart of `pattern`'s series on the page.
fn chart_of(report: &Report, pattern: &Pattern) -> Option<usize> {
    report
        .series
        .iter()
        .position(|s| belongs_to(pattern, &s.series))
}

fn patterns_table(html: &mut String, report: &Report) {
    html.push_str("<section id=\"patterns\">\n<h2>Patterns</h2>\n");
    if report.patterns.is_empty() {
        let _ = writeln!(
            html,
            "<p class=\"panel empty\">No patterns detected{}. The detector checks every closed window's mean and p99 for spikes, drops, anomalies and trends.</p>\n</section>",
            if report.options.since_ms.is_some() || report.options.until_ms.is_some() {
                " in this range"
            } else {
                ""
            }
        );
        return;
    }
    html.push_str(
        "<table>\n<thead><tr><th class=\"num\">#</th><th>window (UTC)</th><th>series</th><th>kind</th><th class=\"num\">confidence</th><th class=\"num\">observed</th><th class=\"num\">baseline</th><th>description</th></tr></thead>\n<tbody>\n",
    );
    for (i, p) in report.patterns.iter().enumerate() {
        let n = i + 1;
        let note = key_note(report, &p.series, &p.metric, p.context.as_deref());
        let series = match chart_of(report, p) {
            Some(c) => format!(
                "<a href=\"#series-{c}\">{}</a>{note}",
                esc(&eventbatch::labelled_name(&p.series, &p.labels))
            ),
            None => format!(
                "{}{note} <small>(no windows in range)</small>",
                esc(&eventbatch::labelled_name(&p.series, &p.labels))
            ),
        };
        let conf = (p.confidence * 100.0).clamp(0.0, 100.0);
        let _ = writeln!(
            html,
            "<tr id=\"pattern-{n}\" class=\"pattern\"><td class=\"num\">{n}</td><td class=\"num\">{}</td><td class=\"series\">{series}</td><td><span class=\"kind {}\">{}</span></td><td class=\"num\">{conf:.0}%<span class=\"conf\"><span style=\"width:{conf:.0}%\"></span></span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            format_time(p.window_start_ms),
            kind_class(p.kind),
            kind_label(p.kind),
            format_reading(p.observed),
            format_reading(p.baseline),
            esc(&p.description)
        );
    }
    html.push_str("</tbody>\n</table>\n</section>\n");
}

fn charts(html: &mut String, report: &Report) {
    html.push_str("<section id=\"series\">\n<h2>Series</h2>\n");
    let Some((t0, t1)) = report.time_range().filter(|_| !report.series.is_empty()) else {
        let metric = match &report.options.metric {
            Some(m) => format!(" of metric <code>{}</code>", esc(m)),
            None => String::new(),
        };
        let range = if report.options.since_ms.is_some() || report.options.until_ms.is_some() {
            " in this time range"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<p class=\"panel empty\">No windows{metric}{range}. Metric windows are stored when a pipeline closes or flushes them; <code>eventbatch demo</code> writes a store to try this on.</p>"
        );
        without_windows(html, report);
        html.push_str("</section>\n");
        return;
    };
    for (i, s) in report.series.iter().enumerate() {
        let markers: Vec<(usize, &Pattern)> = report
            .patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| belongs_to(p, &s.series))
            .map(|(n, p)| (n + 1, p))
            .collect();
        let unit = s
            .unit
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        let (stats, legend) = caption(&s.windows, &esc(&unit));
        let chart = Chart {
            index: i,
            windows: &s.windows,
            markers,
            t0,
            t1,
            unit: s.unit.as_deref(),
        };
        let _ = writeln!(
            html,
            "<figure class=\"chart\" id=\"series-{i}\" data-series=\"{name}\"{key}>\n<figcaption><h3 id=\"series-{i}-title\">{name}</h3>{note}<span class=\"stats\">{stats} · {} patterns</span><span class=\"legend\">{legend}<span>▲ spike / trend up · ▼ drop / trend down · ◆ anomaly</span></span></figcaption>\n{}\n<div class=\"tip\"></div>\n</figure>",
            chart.markers.len(),
            chart.render(),
            name = esc(&titled(&s.series)),
            key = key_attributes(&s.series.metric, s.series.context.as_deref()),
            note = key_note(report, &s.series.series, &s.series.metric, s.series.context.as_deref()),
        );
    }
    without_windows(html, report);
    html.push_str("</section>\n");
}

/// A chart's title: the series with its labels, and its kind unless a distribution (the
/// counter `x` and the distribution `x` are two charts).
fn titled(s: &StoredSeries) -> String {
    match s.kind {
        SeriesKind::Distribution => s.labelled_name(),
        kind => format!("{} ({})", s.labelled_name(), kind.as_str()),
    }
}

/// A chart's figures and legend (`u`: the unit, escaped, with its leading space), by the
/// series' kind: a distribution's values, mean and highest p99; a counter's increments, total
/// and highest rate; a gauge's readings, last, lowest and highest.
fn caption(windows: &[WindowStats], u: &str) -> (String, String) {
    let events: u64 = windows.iter().map(|w| w.count).sum();
    let highest = |f: fn(&WindowStats) -> f64| windows.iter().map(f).fold(f64::NAN, f64::max);
    match windows.first().map(|w| w.kind).unwrap_or_default() {
        SeriesKind::Counter => (
            format!(
                "{events} increments · total {}{u} · highest rate {}{u}/s",
                format_reading(windows.iter().map(|w| w.sum).sum()),
                format_reading(highest(|w| w.rate_per_s.unwrap_or(0.0))),
            ),
            "<span><i class=\"l-mean\"></i>rate per second</span>".to_string(),
        ),
        SeriesKind::Gauge => (
            format!(
                "{events} readings · last {}{u} · lowest {}{u} · highest {}{u}",
                format_reading(windows.last().and_then(|w| w.last).unwrap_or(f64::NAN)),
                format_reading(windows.iter().map(|w| w.min).fold(f64::NAN, f64::min)),
                format_reading(highest(|w| w.max)),
            ),
            "<span><i class=\"l-mean\"></i>last</span><span><i class=\"l-band\"></i>min–max</span>"
                .to_string(),
        ),
        SeriesKind::Distribution => (
            format!(
                "{events} values · mean {}{u} · highest p99 {}{u}",
                format_reading(windows.iter().map(|w| w.sum).sum::<f64>() / events.max(1) as f64),
                format_reading(highest(|w| w.p99)),
            ),
            "<span><i class=\"l-mean\"></i>mean</span><span><i class=\"l-band\"></i>p50–p99</span>"
                .to_string(),
        ),
    }
}

fn without_windows(html: &mut String, report: &Report) {
    if report.series_without_windows.is_empty() {
        return;
    }
    let names: Vec<String> = report
        .series_without_windows
        .iter()
        .map(|s| format!("<code>{}</code>", esc(s)))
        .collect();
    let _ = writeln!(
        html,
        "<p class=\"empty\">No windows in this range for {}.</p>",
        names.join(", ")
    );
}

fn footer(html: &mut String) {
    html.push_str(
        "<footer>How to read it: each chart is one series. The line is the mean of each window (or hour, day or week), \
the band spans its median (p50) to its 99th percentile, within 1% (the windows' DDSketch); \
a counter's line is its rate per second, a gauge's its last value over its min-max band. \
A gap is a time without values. Each numbered marker is a detected pattern at the window it was found in, \
drawn at the value that raised it (the mean, or the p99 when its description starts with p99); \
the table above lists them. Hover a chart for a window's values. Times are UTC.</footer>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::super::{ReportOptions, SeriesData};
    use super::*;
    use eventbatch::{StoredSeries, WindowStats};

    fn report(series: Vec<SeriesData>, patterns: Vec<Pattern>) -> Report {
        Report {
            source: "sqlite://x.db".into(),
            generated_ms: 1_764_000_000_000,
            options: ReportOptions::default(),
            series,
            series_without_windows: vec![],
            patterns,
            users: vec![],
        }
    }

    fn series(name: &str, t0: i64, n: i64) -> SeriesData {
        let windows = (0..n)
            .map(|i| {
                serde_json::from_value::<WindowStats>(serde_json::json!({
                    "series": name, "metric": name, "window_start_ms": t0 + i * 60_000,
                    "window_end_ms": t0 + (i + 1) * 60_000, "count": 5, "estimated_count": 5.0,
                    "sum": 500.0, "min": 50.0, "max": 300.0, "mean": 100.0, "stddev": 10.0,
                    "p50": 95.0, "p90": 150.0, "p95": 200.0, "p99": 290.0
                }))
                .unwrap()
            })
            .collect();
        SeriesData {
            series: StoredSeries {
                series: name.into(),
                metric: name.into(),
                context: None,
                labels: Default::default(),
                kind: Default::default(),
            },
            unit: Some("ms".into()),
            windows,
        }
    }

    #[test]
    fn hostile_names_and_descriptions_are_text() {
        let hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
        let t0 = 1_764_000_000_000;
        let p = Pattern {
            series: hostile.into(),
            metric: hostile.into(),
            context: None,
            labels: Default::default(),
            kind: PatternKind::Spike,
            confidence: 0.8,
            window_start_ms: t0 + 60_000,
            window_end_ms: t0 + 120_000,
            observed: 300.0,
            baseline: 100.0,
            description: hostile.into(),
            statistics: Vec::new(),
        };
        let html = render(&report(vec![series(hostile, t0, 5)], vec![p]), "abc123");
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img"));
        assert_eq!(html.matches("class=\"marker ").count(), 1);
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 1);
        assert!(html.contains("script-src 'nonce-abc123'"));
    }

    #[test]
    fn series_that_share_a_name_say_which_they_are() {
        let t0 = 1_764_000_000_000;
        let mut with_context = series("a.b", t0, 3);
        with_context.series.metric = "a".into();
        with_context.series.context = Some("b".into());
        let html = render(
            &report(
                vec![series("a.b", t0, 3), with_context, series("c", t0, 3)],
                vec![],
            ),
            "n",
        );
        assert_eq!(
            html.matches("(metric <code>a.b</code>, no context)")
                .count(),
            1
        );
        assert_eq!(
            html.matches("(metric <code>a</code> in context <code>b</code>)")
                .count(),
            1
        );
        assert_eq!(
            html.matches("class=\"key\"").count(),
            2,
            "not for the unique name"
        );
    }

    #[test]
    fn each_label_set_is_a_chart_titled_with_its_labels() {
        let t0 = 1_764_000_000_000;
        let mut eu = series("lat", t0, 3);
        eu.series.labels.insert("region".into(), "eu".into());
        let mut us = series("lat", t0, 3);
        us.series.labels.insert("region".into(), "us".into());
        let html = render(&report(vec![series("lat", t0, 3), eu, us], vec![]), "n");
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 3);
        assert!(
            html.contains("<h3 id=\"series-0-title\">lat</h3>"),
            "{html}"
        );
        assert!(html.contains("<h3 id=\"series-1-title\">lat{region=&quot;eu&quot;}</h3>"));
        assert!(html.contains("<h3 id=\"series-2-title\">lat{region=&quot;us&quot;}</h3>"));
    }

    /// `n` windows of `name` of `kind`, with the fields that kind has set on top of
    /// [`series`]'s.
    fn series_of(
        name: &str,
        t0: i64,
        n: i64,
        kind: SeriesKind,
        extra: serde_json::Value,
    ) -> SeriesData {
        let mut s = series(name, t0, n);
        s.series.kind = kind;
        for w in &mut s.windows {
            let mut v = serde_json::to_value(&*w).unwrap();
            v["kind"] = serde_json::json!(kind);
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            *w = serde_json::from_value(v).unwrap();
        }
        s
    }

    #[test]
    fn counters_draw_their_rate_and_gauges_their_last_value() {
        let t0 = 1_764_000_000_000;
        let counter = series_of(
            "requests",
            t0,
            3,
            SeriesKind::Counter,
            serde_json::json!({"sum": 120.0, "rate_per_s": 2.0}),
        );
        let gauge = series_of(
            "queue_depth",
            t0,
            3,
            SeriesKind::Gauge,
            serde_json::json!({"last": 7.0, "last_ts_ms": t0, "min": 1.0, "max": 9.0}),
        );
        let html = render(
            &report(vec![series("requests", t0, 3), counter, gauge], vec![]),
            "n",
        );
        assert!(
            html.contains("<h3 id=\"series-0-title\">requests</h3>"),
            "{html}"
        );
        assert!(html.contains("<h3 id=\"series-1-title\">requests (counter)</h3>"));
        assert!(html.contains("<h3 id=\"series-2-title\">queue_depth (gauge)</h3>"));
        assert!(
            html.contains("15 increments · total 360.0 ms · highest rate 2.000 ms/s"),
            "{html}"
        );
        assert!(
            html.contains("15 readings · last 7.000 ms · lowest 1.000 ms · highest 9.000 ms"),
            "{html}"
        );
        assert!(html.contains("data-names=\"rate/s,sum\""));
        assert!(html.contains("data-names=\"last,min,max\""));
        assert!(html.contains("data-names=\"mean,p50,p90,p99\""));
        // the counter's line at its rate: the chart's values span 0..2, not the mean's 100
        let counter_chart = &html[html.find("id=\"series-1\"").unwrap()..];
        let counter_chart = &counter_chart[..counter_chart.find("</figure>").unwrap()];
        assert!(!counter_chart.contains(">100<"), "{counter_chart}");
    }

    #[test]
    fn empty_stores_and_quiet_series_say_so() {
        let html = render(&report(vec![], vec![]), "n");
        assert!(html.contains("No windows."), "{html}");
        assert!(html.contains("No patterns detected."));
        assert!(!html.contains("<figure"));
        let html = render(
            &report(vec![series("lat", 1_764_000_000_000, 3)], vec![]),
            "n",
        );
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 1);
        assert!(html.contains("No patterns detected."));
        assert!(html.contains("1 min windows"));
    }
}
