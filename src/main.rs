//! The `eventbatch` command: try the pipeline and its detector without writing an application.
//!
//! - `eventbatch demo [--db PATH] [--events N]`: a synthetic workload through the real pipeline
//!   into an SQLite file, with a summary of what it did.
//! - `eventbatch detect INPUT.csv --output OUT.csv`: the pattern detector over a
//!   `timestamp,value` CSV.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use eventbatch::{
    start, Config, DetectorSettings, Flush, GetStats, PatternKind, QueryPatterns, QueryWindows,
    Resolution, Shutdown, Store, TrackBatch, TrackEvent,
};

const USAGE: &str = "usage:
  eventbatch demo [--db PATH] [--events N]
  eventbatch detect INPUT.csv --output OUT.csv";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => parse_demo(&args[1..]).and_then(run_demo),
        Some("detect") => run_detect(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct DemoArgs {
    db: PathBuf,
    events: usize,
}

fn parse_demo(args: &[String]) -> Result<DemoArgs, String> {
    let mut out = DemoArgs {
        db: PathBuf::from("eventbatch-demo.db"),
        events: 1_000_000,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--db" => out.db = PathBuf::from(value),
            "--events" => {
                out.events = value
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("--events: not a count: {value:?}"))?;
                if out.events == 0 {
                    return Err("--events must be at least 1".into());
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(out)
}

fn run_detect(args: &[String]) -> Result<(), String> {
    let (mut input, mut output) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--output" | "-o" => {
                output = Some(PathBuf::from(it.next().ok_or("--output needs a path")?))
            }
            _ if input.is_none() => input = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    let (Some(input), Some(output)) = (input, output) else {
        return Err(USAGE.to_string());
    };
    let report = eventbatch::csv_detect::detect_csv(&input, &output, &DetectorSettings::default())
        .map_err(|e| e.to_string())?;
    println!(
        "{} rows scored -> {} (max score {:.3}; findings: {} spike, {} drop, {} anomaly, {} trend up, {} trend down)",
        report.rows,
        output.display(),
        report.max_score,
        report.count(PatternKind::Spike),
        report.count(PatternKind::Drop),
        report.count(PatternKind::Anomaly),
        report.count(PatternKind::TrendUp),
        report.count(PatternKind::TrendDown)
    );
    Ok(())
}

/// A small deterministic PRNG for the workload (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal-ish latency around `median` ms.
    fn latency(&mut self, median: f64) -> f64 {
        let z = (self.next() + self.next() + self.next() - 1.5) * 2.0;
        median * (0.35 * z).exp()
    }
}

const WINDOW_MS: i64 = 60_000;
const SIM_WINDOWS: i64 = 240; // four hours of simulated event time

/// The workload: event `i` of `n`, at simulated time spread over `SIM_WINDOWS` windows.
/// `api_latency` gets a spike (window 60), a drop (window 170: after the detector's 100-window
/// cooldown) and a rising trend (from 200).
fn make_event(i: usize, n: usize, t0: i64, rng: &mut Rng) -> TrackEvent {
    let ts = t0 + (i as i128 * (SIM_WINDOWS * WINDOW_MS) as i128 / n as i128) as i64;
    let w = (ts - t0) / WINDOW_MS;
    let r = rng.next();
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let user = users[(rng.next() * users.len() as f64) as usize % users.len()];
    if r < 0.45 {
        let base = 120.0
            * match w {
                60 | 61 => 4.0,
                170 | 171 => 0.25,
                w if w >= 200 => 1.0 + (w - 200) as f64 * 0.04,
                _ => 1.0,
            };
        TrackEvent::performance("api_latency", rng.latency(base))
            .context("api")
            .at(ts)
    } else if r < 0.65 {
        TrackEvent::performance("response_time", rng.latency(35.0))
            .context("web")
            .at(ts)
    } else if r < 0.75 {
        TrackEvent::performance("cache_hit_rate", rng.next()).at(ts)
    } else if r < 0.85 {
        let op = if rng.next() < 0.7 { "load" } else { "save" };
        TrackEvent::datastore(op, "conversation", rng.latency(8.0)).at(ts)
    } else if r < 0.93 {
        let names = ["help", "ask", "play", "stats"];
        let name = names[(rng.next() * 4.0) as usize % 4];
        let ok = rng.next() > 0.03;
        let e = TrackEvent::command(name)
            .user(user)
            .server("guild-1")
            .success(ok)
            .duration_ms(rng.latency(40.0))
            .at(ts);
        if ok {
            e
        } else {
            e.error_type("timeout")
        }
    } else if r < 0.97 {
        TrackEvent::engagement("reaction")
            .user(user)
            .server("guild-1")
            .at(ts)
    } else if r < 0.995 {
        let (t, msg) = if rng.next() < 0.8 {
            ("timeout", "upstream timed out after 30s")
        } else {
            ("rate_limit", "429 from provider")
        };
        TrackEvent::error(t, "api").message(msg).at(ts)
    } else {
        TrackEvent::custom("checkout")
            .value((rng.next() * 100.0).round())
            .tag("plan", "pro")
            .user(user)
            .at(ts)
    }
}

fn run_demo(args: DemoArgs) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = args.db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let system = actix::System::new();
    system.block_on(async move {
        let config = Config {
            max_batch_size: 500,
            sampling_rates: [("performance.cache_hit_rate".to_string(), 0.1)].into(),
            ..Config::default()
        };
        let tracker = start(config, Store::sqlite(&args.db)).map_err(|e| e.to_string())?;
        println!("eventbatch demo: {} events into {}", args.events, args.db.display());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis() as i64;
        let t0 = (now / WINDOW_MS - SIM_WINDOWS - 1) * WINDOW_MS;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let began = Instant::now();
        let chunk = 1000;
        let mut next_report = 0;
        let mut i = 0;
        while i < args.events {
            let end = (i + chunk).min(args.events);
            let batch: Vec<TrackEvent> = (i..end).map(|j| make_event(j, args.events, t0, &mut rng)).collect();
            tracker.send(TrackBatch(batch)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            i = end;
            if i * 10 / args.events >= next_report {
                let s = tracker.send(GetStats).await.map_err(|e| e.to_string())?;
                println!(
                    "  {:>3}%  {:>9} events in, {:>7} rows written, {:>5} windows open, {:.0} events/s",
                    i * 100 / args.events,
                    s.events_received,
                    s.rows_written,
                    s.windows_open,
                    i as f64 / began.elapsed().as_secs_f64()
                );
                next_report = i * 10 / args.events + 1;
            }
        }
        tracker.send(Flush).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let elapsed = began.elapsed();
        let windows = tracker
            .send(QueryWindows::metric("api_latency").context("api"))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let hours = tracker
            .send(QueryWindows::metric("api_latency").context("api").resolution(Resolution::Hour))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let patterns = tracker.send(QueryPatterns::all()).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let s = tracker.send(Shutdown).await.map_err(|e| e.to_string())?;

        println!("\nsummary ({:.2} s, {:.0} events/s end to end, flush included)", elapsed.as_secs_f64(), s.events_received as f64 / elapsed.as_secs_f64());
        println!("  events in          {:>10}", s.events_received);
        println!("  rejected           {:>10}", s.events_rejected);
        println!("  sampled out        {:>10}   (cache_hit_rate kept at 10%)", s.events_sampled_out);
        println!("  aggregated         {:>10}   (into windows and error counts)", s.events_aggregated);
        println!("  records written    {:>10}", s.records_written);
        println!("  window rows        {:>10}   (written as windows closed; plus {} snapshot rewrites by Flush)", s.windows_written - s.snapshot_rows_written.min(s.windows_written), s.snapshot_rows_written);
        println!("  error counts       {:>10}", s.error_counts_written);
        println!("  rows written       {:>10}   in {} transactions (avg {:.1} rows/batch)", s.rows_written, s.transactions, s.avg_batch_size);
        println!("  write reduction    {:>9.2}%   rows: 1 - rows written / events in", s.write_reduction() * 100.0);
        println!("  commit reduction   {:>9.3}%   transactions: 1 - transactions / events in", s.transaction_reduction() * 100.0);
        println!("  dropped            {:>10}   db errors {}  retries {}", s.events_dropped, s.db_errors, s.retries);
        println!("  patterns detected  {:>10}", s.patterns_detected);
        let lost = s.events_received - s.events_rejected - s.events_sampled_out - s.records_written - s.events_aggregated - s.events_dropped - s.events_quarantined;
        println!("  unaccounted        {:>10}   (received - rejected - sampled - written - aggregated - dropped - quarantined)", lost);

        let mut top = windows.clone();
        top.sort_by(|a, b| b.p99.total_cmp(&a.p99));
        println!("\napi_latency.api: {} windows; the 5 with the highest p99:", windows.len());
        println!("  {:<20} {:>7} {:>9} {:>9} {:>9} {:>9}", "window (UTC)", "count", "mean", "p50", "p95", "p99");
        for w in top.iter().take(5) {
            println!(
                "  {:<20} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                hhmm(w.window_start_ms), w.count, w.mean, w.p50, w.p95, w.p99
            );
        }
        println!("\napi_latency.api by hour (the windows merged; stored roll-ups once an hour closes):");
        println!("  {:<20} {:>7} {:>9} {:>9} {:>9} {:>9}", "hour (UTC)", "count", "mean", "p50", "p95", "p99");
        for w in &hours {
            println!(
                "  {:<20} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                hhmm(w.window_start_ms), w.count, w.mean, w.p50, w.p95, w.p99
            );
        }
        println!("\npatterns ({}):", patterns.len());
        for p in patterns.iter().take(20) {
            println!(
                "  {:<10} {:<24} at {}  confidence {:.2}  {}",
                p.kind.as_str(), p.series, hhmm(p.window_start_ms), p.confidence, p.description
            );
        }
        if patterns.len() > 20 {
            println!("  ... and {} more", patterns.len() - 20);
        }
        println!("\nwritten to {} (try: sqlite3 {} 'select kind, count(*) from events group by kind')", args.db.display(), args.db.display());
        Ok::<(), String>(())
    })
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn hhmm(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
