//! `eventbatch report` end to end: a real SQLite store written by the real pipeline (with
//! spikes, so patterns exist, and a series named like an attack), the built binary writing the
//! page, and headless Chromium loading it: no console error, one chart per stored series, one
//! marker per stored pattern inside its series' chart, the hostile name shown as text, the
//! hover tooltip working. The expected numbers are read from the store, never written here.
//!
//! Needs `chromium` and `chromium-driver` (see `webdriver/mod.rs`; `.ci/run` installs them).

mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context as _, Result};
use eventbatch::{
    start, Config, QueryPatterns, QueryUsers, Resolution, Shutdown, Store, StoreReader, TrackBatch,
    TrackEvent,
};
use serde_json::{json, Value};

use webdriver::Browser;

/// A metric and context no page should run: markup, both quotes, an ampersand.
const HOSTILE_METRIC: &str = "<script>alert(1)</script>";
const HOSTILE_CONTEXT: &str = "\"quoted\" & 'single' <img src=x onerror=alert(2)>";

fn eventbatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventbatch"))
        .args(args)
        .output()
        .expect("the eventbatch binary runs")
}

fn run_ok(args: &[&str]) -> String {
    let out = eventbatch(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A deterministic noise in [-1, 1) (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Writes six series through the real pipeline into `path`: `api_latency.api` (90 one-minute
/// windows around 100 ms, x5 at window 40 and x0.2 at window 75), the hostile series (40
/// windows, x6 at window 25), a flat `response_time.web`, `datastore.load.conversation`, and
/// two series both shown as `lat.x`: the metric `lat` in context `x` (x8 at window 50) and the
/// flat metric `lat.x` without context.
fn write_store(path: &Path) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let t0 = (now / 3_600_000 - 3) * 3_600_000;
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    actix::System::new().block_on(async move {
        let tracker = start(Config::default(), Store::sqlite(path))?;
        for w in 0..90i64 {
            let at = |i: i64| t0 + w * 60_000 + i * 2_000;
            let mut batch = Vec::new();
            for i in 0..20 {
                let api = 100.0
                    * match w {
                        40 => 5.0,
                        75 => 0.2,
                        _ => 1.0,
                    };
                batch.push(
                    TrackEvent::performance("api_latency", api * (1.0 + 0.1 * noise.next()))
                        .context("api")
                        .at(at(i)),
                );
                batch.push(
                    TrackEvent::performance("response_time", 35.0 + noise.next())
                        .context("web")
                        .at(at(i)),
                );
                batch.push(
                    TrackEvent::datastore("load", "conversation", 8.0 + noise.next()).at(at(i)),
                );
                let lat = if w == 50 { 400.0 } else { 50.0 };
                batch.push(
                    TrackEvent::performance("lat", lat * (1.0 + 0.05 * noise.next()))
                        .context("x")
                        .at(at(i)),
                );
                batch.push(TrackEvent::performance("lat.x", 50.0 + noise.next()).at(at(i)));
                if w < 40 {
                    let v = if w == 25 { 60.0 } else { 10.0 };
                    batch.push(
                        TrackEvent::performance(HOSTILE_METRIC, v * (1.0 + 0.05 * noise.next()))
                            .context(HOSTILE_CONTEXT)
                            .at(at(i)),
                    );
                }
            }
            let ack = tracker.send(TrackBatch(batch)).await??;
            ensure!(ack.rejected == 0, "rejected events: {ack:?}");
        }
        let stats = tracker.send(Shutdown).await?;
        ensure!(
            stats.events_rejected == 0 && stats.events_dropped == 0,
            "{stats:?}"
        );
        Ok(())
    })
}

/// What the page shows, gathered in the browser.
const FACTS: &str = r#"
const plotBox = (fig) => fig.querySelector('svg.plot .frame').getBoundingClientRect();
return {
  charts: Array.from(document.querySelectorAll('figure.chart')).map((fig) => {
    const plot = plotBox(fig);
    return {
      series: fig.getAttribute('data-series'),
      metric: fig.getAttribute('data-metric'),
      context: fig.getAttribute('data-context'),
      title: fig.querySelector('h3').textContent,
      meanMarks: fig.querySelectorAll('svg.plot .mean path, svg.plot .mean circle').length,
      bandMarks: fig.querySelectorAll('svg.plot .band path, svg.plot .band rect').length,
      markers: Array.from(fig.querySelectorAll('.marker')).map((m) => {
        const r = m.querySelector('path').getBoundingClientRect();
        const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
        return {
          series: m.getAttribute('data-series'),
          metric: m.getAttribute('data-metric'),
          context: m.getAttribute('data-context'),
          start: Number(m.getAttribute('data-start')),
          kind: m.getAttribute('data-kind'),
          inside: r.width > 0 && cx >= plot.left - 1 && cx <= plot.right + 1 &&
                  cy >= plot.top - 1 && cy <= plot.bottom + 1,
        };
      }),
    };
  }),
  markersOutsideCharts: document.querySelectorAll('.marker').length -
    document.querySelectorAll('figure.chart .marker').length,
  patternRows: document.querySelectorAll('tr.pattern').length,
  scripts: document.scripts.length,
  resources: performance.getEntriesByType('resource').length,
  text: document.body.innerText,
};
"#;

/// A series: its metric and context (its display name can be shared).
type Key = (String, Option<String>);

/// `(series, window start, kind)` of every stored pattern, counted.
fn stored_patterns(db: &Path) -> Result<BTreeMap<(Key, i64, String), usize>> {
    let reader = StoreReader::open(&Store::sqlite(db))?;
    let mut out = BTreeMap::new();
    for p in reader.patterns(&QueryPatterns::all())? {
        let key = (
            (p.metric, p.context),
            p.window_start_ms,
            p.kind.as_str().to_string(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    Ok(out)
}

/// The stored series, with their display names.
fn stored_series(db: &Path) -> Result<BTreeMap<Key, String>> {
    let reader = StoreReader::open(&Store::sqlite(db))?;
    Ok(reader
        .series()?
        .into_iter()
        .map(|s| ((s.metric, s.context), s.series))
        .collect())
}

/// The `(metric, context)` of a chart or marker, from its data attributes.
fn key_of(v: &Value) -> Key {
    (
        v["metric"].as_str().unwrap_or_default().to_string(),
        v["context"].as_str().map(str::to_string),
    )
}

/// Loads `page` and checks it against the store: no console error, a chart per series, a
/// marker per pattern inside its series' chart, a table row per pattern, nothing fetched.
fn check_page(browser: &Browser, page: &Path, db: &Path) -> Result<Value> {
    browser.console()?; // start from an empty log
    browser.open(page)?;
    let facts = browser.execute(FACTS, json!([]))?;
    let errors = browser.console_errors()?;
    let page_name = page.display();
    ensure!(
        errors.is_empty(),
        "console errors on {page_name}: {errors:#?}"
    );

    let series = stored_series(db)?;
    let patterns = stored_patterns(db)?;
    let charts = facts["charts"].as_array().context("charts")?;
    let charted: BTreeMap<Key, String> = charts
        .iter()
        .map(|c| {
            (
                key_of(c),
                c["title"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        charts.len() == series.len(),
        "{} charts, {series:?}",
        charts.len()
    );
    ensure!(
        charted == series,
        "charts {charted:?} != stored series {series:?}"
    );
    let mut marked = BTreeMap::new();
    for chart in charts {
        ensure!(chart["title"] == chart["series"], "title of {chart}");
        let drawn = |what: &str| chart[what].as_u64().is_some_and(|n| n > 0);
        ensure!(drawn("meanMarks") && drawn("bandMarks"), "{chart}");
        for m in chart["markers"].as_array().context("markers")? {
            ensure!(key_of(m) == key_of(chart), "marker {m} in chart {chart}");
            ensure!(
                m["series"] == chart["series"],
                "marker {m} in chart {chart}"
            );
            ensure!(m["inside"] == json!(true), "marker {m} is outside the plot");
            let start = m["start"].as_i64().context("start")?;
            let kind = m["kind"].as_str().unwrap_or_default().to_string();
            *marked.entry((key_of(m), start, kind)).or_insert(0) += 1;
        }
    }
    ensure!(
        marked == patterns,
        "markers {marked:#?}\n!= stored patterns {patterns:#?}"
    );
    let total: usize = patterns.values().sum();
    let rows = &facts["patternRows"];
    ensure!(
        *rows == json!(total),
        "{rows} table rows for {total} patterns"
    );
    ensure!(facts["markersOutsideCharts"] == json!(0));
    ensure!(
        facts["scripts"] == json!(1),
        "scripts: {}",
        facts["scripts"]
    );
    ensure!(
        facts["resources"] == json!(0),
        "fetched: {}",
        facts["resources"]
    );
    Ok(facts)
}

fn report_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn report_pages_load_clean_with_a_chart_per_series_and_a_marker_per_pattern() -> Result<()> {
    let Some(browser) = Browser::start()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store.db");
    write_store(&db)?;
    let series = stored_series(&db)?;
    let patterns = stored_patterns(&db)?;
    let hostile = format!("{HOSTILE_METRIC}.{HOSTILE_CONTEXT}");
    let key = |m: &str, c: Option<&str>| (m.to_string(), c.map(str::to_string));
    let hostile_key = key(HOSTILE_METRIC, Some(HOSTILE_CONTEXT));
    ensure!(series.len() == 6, "{series:?}");
    ensure!(series.get(&hostile_key) == Some(&hostile), "{series:?}");
    let shared = series.values().filter(|name| *name == "lat.x").count();
    ensure!(shared == 2, "two series shown as lat.x: {series:?}");
    let found = |k: &Key| patterns.keys().any(|(pk, ..)| pk == k);
    ensure!(
        found(&key("api_latency", Some("api")))
            && found(&hostile_key)
            && found(&key("lat", Some("x"))),
        "the spikes were not detected: {patterns:?}"
    );
    ensure!(!found(&key("lat.x", None)), "a flat series: {patterns:?}");

    let db_arg = db.to_str().context("utf-8 path")?;
    for resolution in ["window", "hour", "day", "week"] {
        let page = report_path(dir.path(), &format!("{resolution}.html"));
        let out = run_ok(&[
            "report",
            "--db",
            db_arg,
            "--resolution",
            resolution,
            "--output",
            page.to_str().context("utf-8 path")?,
        ]);
        ensure!(out.contains("6 series"), "{out}");
        let facts = check_page(&browser, &page, &db)?;
        let text = facts["text"].as_str().unwrap_or_default();
        ensure!(
            text.contains(&hostile),
            "the hostile name is not shown as text"
        );
    }

    // The hover tooltip: the script runs on a real pointer move, without an error.
    let page = report_path(dir.path(), "window.html");
    browser.open(&page)?;
    let plot = browser.element("figure.chart svg.plot")?;
    browser.hover(&plot, 0, 0)?;
    let tip = browser.execute(
        "const t = document.querySelector('figure.chart .tip'); return [getComputedStyle(t).display, t.textContent];",
        json!([]),
    )?;
    ensure!(tip[0] == "block", "tooltip not shown: {tip}");
    ensure!(
        tip[1]
            .as_str()
            .is_some_and(|t| t.contains("UTC") && t.contains("p99")),
        "{tip}"
    );
    let errors = browser.console_errors()?;
    ensure!(
        errors.is_empty(),
        "console errors after hovering: {errors:#?}"
    );

    // One metric only.
    let page = report_path(dir.path(), "metric.html");
    run_ok(&[
        "report",
        "--db",
        db_arg,
        "--metric",
        "api_latency",
        "--output",
        page.to_str().context("utf-8 path")?,
    ]);
    browser.open(&page)?;
    let facts = browser.execute(FACTS, json!([]))?;
    ensure!(
        facts["charts"].as_array().map(Vec::len) == Some(1),
        "{}",
        facts["charts"]
    );
    let api_patterns: usize = patterns
        .iter()
        .filter(|((k, ..), _)| k.0 == "api_latency")
        .map(|(_, n)| n)
        .sum();
    ensure!(facts["patternRows"] == json!(api_patterns));
    ensure!(browser.console_errors()?.is_empty());

    // A store with no windows and no patterns: a page that says so, still without errors.
    let empty = dir.path().join("empty.db");
    actix::System::new().block_on(async {
        let tracker = start(Config::default(), Store::sqlite(&empty))?;
        tracker
            .send(TrackEvent::command("help").success(true))
            .await??;
        tracker.send(Shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let page = report_path(dir.path(), "empty.html");
    let out = run_ok(&[
        "report",
        "--db",
        empty.to_str().context("utf-8")?,
        "--output",
        page.to_str().context("utf-8")?,
    ]);
    ensure!(out.contains("0 series"), "{out}");
    let facts = check_page(&browser, &page, &empty)?;
    let text = facts["text"].as_str().unwrap_or_default();
    ensure!(
        text.contains("No windows") && text.contains("No patterns detected"),
        "{text}"
    );
    Ok(())
}

/// The console check itself catches what it is there for: an uncaught exception, a
/// `console.error`, and a fetch the page's policy blocks.
#[test]
fn the_console_check_catches_a_broken_page() -> Result<()> {
    let Some(browser) = Browser::start()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        r#"<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">
</head><body><p>broken</p>
<script>console.error('deliberate console error'); noSuchFunction();</script>
<img src="https://example.invalid/x.png">
</body></html>"#,
    )?;
    browser.open(&page)?;
    let errors = browser.console_errors()?;
    let caught = |text: &str| errors.iter().any(|e| e.message.contains(text));
    ensure!(
        caught("deliberate console error"),
        "console.error not caught: {errors:#?}"
    );
    ensure!(
        caught("noSuchFunction"),
        "uncaught exception not caught: {errors:#?}"
    );
    ensure!(
        caught("Content Security Policy"),
        "blocked fetch not caught: {errors:#?}"
    );

    // And a clean page gives none.
    let clean = dir.path().join("clean.html");
    std::fs::write(&clean, "<!DOCTYPE html><title>ok</title><p>ok</p>")?;
    browser.open(&clean)?;
    let errors = browser.console_errors()?;
    ensure!(errors.is_empty(), "{errors:#?}");
    Ok(())
}

#[test]
fn report_refuses_a_missing_store_and_bad_times() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let out_file = dir.path().join("r.html");
    let out = eventbatch(&[
        "report",
        "--db",
        missing.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such file"), "{err}");
    assert!(!missing.exists(), "the reader created the file");
    assert!(!out_file.exists());

    let out = eventbatch(&[
        "report",
        "--db",
        "x.db",
        "--since",
        "yesterday",
        "-o",
        "r.html",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");

    let out = eventbatch(&["report", "--output", "r.html"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--db") && err.contains("--url"), "{err}");
}

/// The page's "Distinct users" table: each command's distinct users per window and per day, as
/// the store's sketches count them (200 users of `help`, sampled at 5%: still 200).
#[test]
fn report_shows_each_commands_distinct_users() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("users.db");
    let t0 = 1_764_000_000_000i64;
    actix::System::new().block_on({
        let db = db.clone();
        async move {
            let config = Config {
                sampling_rates: [("help".to_string(), 0.05)].into(),
                ..Config::default()
            };
            let tracker = start(config, Store::sqlite(&db))?;
            let batch = (0..400)
                .map(|i| {
                    TrackEvent::command("help")
                        .user(format!("user-{}", i % 200))
                        .at(t0 + i)
                })
                .collect();
            tracker.send(TrackBatch(batch)).await??;
            tracker.send(Shutdown).await?;
            anyhow::Ok(())
        }
    })?;
    let db_arg = db.to_str().context("utf-8 path")?;
    for resolution in ["window", "day"] {
        let page = report_path(dir.path(), &format!("users-{resolution}.html"));
        let page_arg = page.to_str().context("utf-8 path")?;
        run_ok(&[
            "report",
            "--db",
            db_arg,
            "--resolution",
            resolution,
            "-o",
            page_arg,
        ]);
        let html = std::fs::read_to_string(&page)?;
        ensure!(html.contains("<h2>Distinct users</h2>"), "no users section");
        let res = if resolution == "day" {
            Resolution::Day
        } else {
            Resolution::Window
        };
        let stored = StoreReader::open(&Store::sqlite(&db))?
            .users(&QueryUsers::command("help").resolution(res))?;
        ensure!(stored.len() == 1, "{stored:?}");
        let n = stored[0].users;
        ensure!((196..=204).contains(&n), "{n} distinct users for 200");
        ensure!(
            html.contains("<td>help</td>") && html.contains(&format!("<td class=\"num\">{n}</td>")),
            "help's {n} users not shown at {resolution}"
        );
    }
    Ok(())
}
