//! The `eventbatch` command: try the pipeline and its detector without writing an application.
//!
//! - `eventbatch demo [--db PATH] [--events N]`: a synthetic workload through the real pipeline
//!   into an SQLite file, with a summary of what it did.
//! - `eventbatch detect INPUT.csv --output OUT.csv`: the pattern detector over a
//!   `timestamp,value` CSV.
//! - `eventbatch report --db PATH --output report.html`: a store's series and patterns as one
//!   self-contained HTML page with a chart per series.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::parser::ValueSource;
use clap::{
    ArgGroup, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};
use eventbatch::{
    start, Config, DetectorSettings, Flush, Forward, GetStats, PatternKind, QueryPatterns,
    QueryWindows, Resolution, Shutdown, Store, StoreReader, TrackBatch, TrackEvent,
};
use eventbatch_cli::report::{self, ReportOptions};

/// Try the eventbatch pipeline and its pattern detector without writing an application, and
/// look at what a store holds.
///
/// Logging goes to stderr; set RUST_LOG (default `warn`) to see more, e.g. RUST_LOG=info
/// prints every finding of `detect`.
#[derive(Debug, Parser)]
#[command(name = "eventbatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a synthetic workload (with an injected spike, drop and trend) through the real
    /// pipeline into an SQLite file, then print what it did.
    Demo(DemoArgs),
    /// Run the pattern detector over a `timestamp,value` CSV and write
    /// `timestamp,value,anomaly_score,pattern`.
    Detect(DetectArgs),
    /// Write a store's series and detected patterns as one self-contained HTML page: a chart
    /// per series (the mean over the p50-p99 band, each pattern marked) and the patterns in a
    /// table. Reads only; the page needs no network to view.
    Report(ReportArgs),
    /// Consume a JetStream stream of forwarded batches (`demo --forward`, `Config::forward`)
    /// and write it to PostgreSQL exactly once; several workers share a stream. Runs until
    /// SIGTERM or Ctrl-C (or `--idle-exit-ms` without a message).
    Worker(eventbatch_cli::worker::WorkerArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("store").required(true).args(["db", "url"])))]
struct ReportArgs {
    /// SQLite file to read (it must exist; nothing is written to it).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// The store by URL instead: `sqlite://PATH` or `postgres://user@host/db`.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Only the series of this metric (with and without context).
    #[arg(long, value_name = "METRIC")]
    metric: Option<String>,
    /// Only windows and patterns from this time on: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`
    /// (UTC), RFC 3339, integer ms since the epoch, or a time ago (`30m`, `6h`, `7d`).
    /// Default: everything stored.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    since: Option<i64>,
    /// Only windows and patterns starting before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    until: Option<i64>,
    /// Chart the windows themselves, or hour, day or week buckets (merged exactly from the
    /// windows' sketches, or read from the stored roll-ups; weeks are ISO weeks, from Monday
    /// 00:00 UTC).
    #[arg(long, value_enum, default_value_t = ResolutionArg::Window)]
    resolution: ResolutionArg,
    /// The unit of a metric's values, for its axis (repeatable): `--unit queue_depth=jobs`.
    /// Metrics named like latencies, durations or times, and datastore operations, are in ms
    /// unless given here.
    #[arg(long = "unit", value_name = "METRIC=UNIT", value_parser = parse_unit)]
    units: Vec<(String, String)>,
    /// The HTML file to write (replaced if it exists).
    #[arg(short, long, value_name = "report.html")]
    output: PathBuf,
}

/// `--resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ResolutionArg {
    /// The aggregation windows (a minute by default).
    Window,
    /// Hour buckets (UTC).
    Hour,
    /// Day buckets (UTC).
    Day,
    /// ISO week buckets, from Monday 00:00 UTC.
    Week,
}

impl From<ResolutionArg> for Resolution {
    fn from(r: ResolutionArg) -> Resolution {
        match r {
            ResolutionArg::Window => Resolution::Window,
            ResolutionArg::Hour => Resolution::Hour,
            ResolutionArg::Day => Resolution::Day,
            ResolutionArg::Week => Resolution::Week,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn parse_time_arg(text: &str) -> Result<i64, String> {
    report::parse_time(text, now_ms())
}

/// `METRIC=UNIT`.
fn parse_unit(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((m, u)) if !m.is_empty() && !u.is_empty() => Ok((m.to_string(), u.to_string())),
        _ => Err(format!("expected METRIC=UNIT, got {text:?}")),
    }
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// SQLite file to write (replaced if it exists, with its -wal and -shm files).
    #[arg(long, value_name = "PATH", default_value = "eventbatch-demo.db")]
    db: PathBuf,
    /// Number of events to generate (underscores allowed: 1_000_000).
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = parse_count)]
    events: usize,
    /// Pipeline configuration (TOML, every field optional; `EVENTBATCH_*` environment
    /// variables apply on top). Default: max_batch_size 500 and cache_hit_rate sampled at 10%,
    /// the rest as `Config::default()`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Forwarding mode (docs/scale-out.md): publish to this NATS server's JetStream stream
    /// (`--stream`) instead of writing the SQLite file, which then only serves the detectors'
    /// warm-up; run `eventbatch worker` to write the stream to PostgreSQL.
    #[arg(long, value_name = "NATS_URL", requires = "stream")]
    forward: Option<String>,
    /// The JetStream stream of `--forward` (created when missing).
    #[arg(long, value_name = "NAME", requires = "forward")]
    stream: Option<String>,
}

/// A positive count; `_` separators allowed.
fn parse_count(text: &str) -> Result<usize, String> {
    let n: usize = text
        .replace('_', "")
        .parse()
        .map_err(|_| format!("not a count: {text:?}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

#[derive(Debug, Args)]
struct DetectArgs {
    /// Input CSV: a header naming a `timestamp` and a `value` column (others are ignored);
    /// timestamps `YYYY-MM-DD HH:MM:SS[.ffffff]` or integer milliseconds since the epoch.
    #[arg(value_name = "INPUT.csv")]
    input: PathBuf,
    /// Output CSV: the input's rows in the same order, with their anomaly score and findings.
    #[arg(short, long, value_name = "OUT.csv")]
    output: PathBuf,
    /// Detector settings from a TOML file (or JSON if the name ends in .json) with any of the
    /// fields below in snake_case, e.g. `spike_ratio = 3.0`; flags given on the command line
    /// override the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingFlags,
}

/// The `DetectorSettings` fields as flags; their defaults are the library's.
#[derive(Debug, Args)]
#[command(next_help_heading = "Detector settings")]
struct SettingFlags {
    /// A spike is `observed > spike_ratio * baseline` (> 1).
    #[arg(long, value_name = "R", default_value_t = defaults().spike_ratio)]
    spike_ratio: f64,
    /// A drop is `observed < drop_ratio * baseline`, in (0, 1).
    #[arg(long, value_name = "R", default_value_t = defaults().drop_ratio)]
    drop_ratio: f64,
    /// Minimum robust z-score for a spike, drop or anomaly (> 0).
    #[arg(long, value_name = "SIGMA", default_value_t = defaults().anomaly_sigma)]
    anomaly_sigma: f64,
    /// Minimum anomaly score for a spike, drop or anomaly, in (0, 1).
    #[arg(long, value_name = "SCORE", default_value_t = defaults().alarm_score)]
    alarm_score: f64,
    /// Values behind the baseline median and scale (at least 3).
    #[arg(long, value_name = "N", default_value_t = defaults().baseline_window)]
    baseline_window: usize,
    /// Values behind the short-term median: a level shift longer than half of this becomes
    /// the baseline (1 to baseline-window).
    #[arg(long, value_name = "N", default_value_t = defaults().shift_window)]
    shift_window: usize,
    /// Values remembered for "seen before" and the seasonal view (0 disables both).
    #[arg(long, value_name = "N", default_value_t = defaults().memory_window)]
    memory_window: usize,
    /// Minimum autocorrelation at a period for the seasonal view, in (0, 1].
    #[arg(long, value_name = "ACF", default_value_t = defaults().season_min_acf)]
    season_min_acf: f64,
    /// The fitted tail for bursty series: the fraction of the remembered values whose
    /// largest deviations are fitted with a generalised Pareto tail that caps the level
    /// view's surprise (when heavy and fitted to at least 50), in [0, 0.5] (0: off).
    #[arg(long, value_name = "F", default_value_t = defaults().evt_fraction)]
    evt_fraction: f64,
    /// Values per block of the change view: the median of the last N values against the
    /// medians of earlier blocks, for a lasting change no single value shows (0: off).
    #[arg(long, value_name = "N", default_value_t = defaults().change_window)]
    change_window: usize,
    /// Quantile (each side) that bounds the normal spread of the baseline, in (0, 0.5).
    #[arg(long, value_name = "Q", default_value_t = defaults().tail_quantile)]
    tail_quantile: f64,
    /// Floor of the scale relative to |median|.
    #[arg(long, value_name = "F", default_value_t = defaults().relative_scale_floor)]
    relative_scale_floor: f64,
    /// Surprises averaged before the likelihood test.
    #[arg(long, value_name = "N", default_value_t = defaults().smoothing_window)]
    smoothing_window: usize,
    /// Averages behind the likelihood test's mean and standard deviation (at least 2).
    #[arg(long, value_name = "N", default_value_t = defaults().likelihood_window)]
    likelihood_window: usize,
    /// Floor of the likelihood test's standard deviation, in decades.
    #[arg(long, value_name = "D", default_value_t = defaults().likelihood_sd_floor)]
    likelihood_sd_floor: f64,
    /// Combined surprise (decades) at which the score is 0.5.
    #[arg(long, value_name = "D", default_value_t = defaults().score_half_decades)]
    score_half_decades: f64,
    /// Values seen before the short-history rules apply (3 to warmup).
    #[arg(long, value_name = "N", default_value_t = defaults().early_min_history)]
    early_min_history: usize,
    /// Values seen before the statistical detector takes over.
    #[arg(long, value_name = "N", default_value_t = defaults().warmup)]
    warmup: usize,
    /// Longest event, in values: after this many an event ends even if the series stays
    /// disturbed (0: every alarm is an event of its own).
    #[arg(long, value_name = "N", default_value_t = defaults().cooldown)]
    cooldown: usize,
    /// An event ends once this many values in a row were ordinary (at least 1); a later
    /// alarm is then reported as an event of its own.
    #[arg(long, value_name = "N", default_value_t = defaults().event_gap)]
    event_gap: usize,
    /// Factor applied to the scores of an event's continuation, in [0, 1].
    #[arg(long, value_name = "F", default_value_t = defaults().cooldown_factor)]
    cooldown_factor: f64,
    /// Values in the Mann-Kendall trend test (0 disables trends; else at least 4).
    #[arg(long, value_name = "N", default_value_t = defaults().trend_window)]
    trend_window: usize,
    /// Significance level of the trend test, in (0, 1).
    #[arg(long, value_name = "ALPHA", default_value_t = defaults().trend_alpha)]
    trend_alpha: f64,
    /// Weight of the conformal k-NN model in the score, in [0, 1] (0: off).
    #[arg(long, value_name = "W", default_value_t = defaults().knn_weight)]
    knn_weight: f64,
    /// Values per window of the k-NN model.
    #[arg(long, value_name = "N", default_value_t = defaults().knn_dim)]
    knn_dim: usize,
    /// Neighbours summed into the k-NN model's non-conformity (1 to knn-training).
    #[arg(long, value_name = "N", default_value_t = defaults().knn_k)]
    knn_k: usize,
    /// Windows the k-NN model remembers as neighbours.
    #[arg(long, value_name = "N", default_value_t = defaults().knn_training)]
    knn_training: usize,
    /// Non-conformities the k-NN model ranks a window against (at least 2).
    #[arg(long, value_name = "N", default_value_t = defaults().knn_calibration)]
    knn_calibration: usize,
    /// Weight of the adaptive resonance (ART) model in the score, in [0, 1] (0: off).
    #[arg(long, value_name = "W", default_value_t = defaults().art_weight)]
    art_weight: f64,
    /// Values per block of the ART model.
    #[arg(long, value_name = "N", default_value_t = defaults().art_step)]
    art_step: usize,
    /// Categories the ART model keeps.
    #[arg(long, value_name = "N", default_value_t = defaults().art_categories)]
    art_categories: usize,
    /// Time scales of the ART model (blocks of art-step, 2 art-step, 4 art-step, ...).
    #[arg(long, value_name = "N", default_value_t = defaults().art_scales)]
    art_scales: usize,
}

fn defaults() -> DetectorSettings {
    DetectorSettings::default()
}

impl DetectArgs {
    /// The library's defaults, then the config file, then the flags given on the command
    /// line; validated.
    fn detector_settings(&self, matches: &ArgMatches) -> Result<DetectorSettings, String> {
        let mut s = match &self.config {
            Some(path) => load_settings(path)?,
            None => DetectorSettings::default(),
        };
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let f = &self.settings;
        macro_rules! overlay {
            ($($field:ident),* $(,)?) => {
                $(if given(stringify!($field)) {
                    s.$field = f.$field;
                })*
            };
        }
        overlay!(
            spike_ratio,
            drop_ratio,
            anomaly_sigma,
            alarm_score,
            baseline_window,
            shift_window,
            memory_window,
            season_min_acf,
            evt_fraction,
            change_window,
            tail_quantile,
            relative_scale_floor,
            smoothing_window,
            likelihood_window,
            likelihood_sd_floor,
            score_half_decades,
            early_min_history,
            warmup,
            cooldown,
            event_gap,
            cooldown_factor,
            trend_window,
            trend_alpha,
            knn_weight,
            knn_dim,
            knn_k,
            knn_training,
            knn_calibration,
            art_weight,
            art_step,
            art_categories,
            art_scales,
        );
        s.validate().map_err(|(field, value)| {
            format!(
                "invalid detector setting {field} = {value} (--{}; see `eventbatch detect --help`)",
                field.replace('_', "-")
            )
        })?;
        Ok(s)
    }
}

/// `DetectorSettings` from a TOML file, or JSON when the name ends in `.json`.
fn load_settings(path: &Path) -> Result<DetectorSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
    } else {
        toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Report(args) => run_report(args),
        Command::Worker(args) => eventbatch_cli::worker::run(args),
        Command::Detect(args) => {
            let sub = matches
                .subcommand_matches("detect")
                .expect("the detect subcommand's matches");
            args.detector_settings(sub)
                .and_then(|settings| run_detect(&args, &settings))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_detect(args: &DetectArgs, settings: &DetectorSettings) -> Result<(), String> {
    let (input, output) = (&args.input, &args.output);
    let report = eventbatch_cli::csv_detect::detect_csv(input, output, settings)
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

fn run_report(args: ReportArgs) -> Result<(), String> {
    let store = match (&args.db, &args.url) {
        (Some(path), _) => Store::sqlite(path),
        (None, Some(url)) => Store::from_url(url),
        (None, None) => return Err("give --db PATH or --url URL".into()),
    };
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            return Err(format!(
                "--since ({since} ms) must be before --until ({until} ms)"
            ));
        }
    }
    let reader = StoreReader::open(&store).map_err(|e| e.to_string())?;
    let options = ReportOptions {
        metric: args.metric,
        since_ms: args.since,
        until_ms: args.until,
        resolution: args.resolution.into(),
        units: args.units,
    };
    let data = report::load(&reader, store.describe(), options, now_ms())
        .map_err(|e| format!("reading {}: {e}", store.describe()))?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)
        .map_err(|e| format!("no random source for the page's nonce: {e}"))?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let html = report::page::render(&data, &nonce);
    eventbatch_cli::output::write_file(&args.output, |f| {
        std::io::Write::write_all(f, html.as_bytes())
    })
    .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    println!(
        "{}: {} series, {} {}, {} patterns ({} KiB)",
        args.output.display(),
        data.series.len(),
        data.window_count(),
        data.window_noun(),
        data.patterns.len(),
        html.len().div_ceil(1024)
    );
    let most = data
        .series
        .iter()
        .map(|s| s.windows.len())
        .max()
        .unwrap_or(0);
    if most > 5_000 {
        eprintln!(
            "note: a series has {most} points, more than a chart can show apart; --resolution hour (or day, week), or --since, gives a lighter page"
        );
    }
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
        let config = match &args.config {
            Some(path) => Config::from_toml_file(path),
            None => Ok(Config {
                max_batch_size: 500,
                sampling_rates: [("performance.cache_hit_rate".to_string(), 0.1)].into(),
                ..Config::default()
            }),
        }
        .and_then(Config::with_env_overrides)
        .map_err(|e| e.to_string())?;
        let forward = args.forward.clone().zip(args.stream.clone()).map(|(url, stream)| Forward::new(url, stream));
        let config = Config { forward: forward.clone().or(config.forward), ..config };
        let tracker = start(config, Store::sqlite(&args.db)).map_err(|e| e.to_string())?;
        match &forward {
            Some(f) => println!("eventbatch demo: {} events forwarded to stream {} at {}", args.events, f.stream, f.url),
            None => println!("eventbatch demo: {} events into {}", args.events, args.db.display()),
        }
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
        if let Some(f) = &forward {
            let s = tracker.send(Shutdown).await.map_err(|e| e.to_string())?;
            print_summary(&s, elapsed);
            println!("\nforwarded to stream {} ({} batches acknowledged by JetStream); write it to PostgreSQL with:", f.stream, s.batches_written);
            println!("  eventbatch worker --nats {} --stream {} --url postgres://...", f.url, f.stream);
            return Ok(());
        }
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

        print_summary(&s, elapsed);

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

/// What the demo's pipeline did, from its final counters.
fn print_summary(s: &eventbatch::Stats, elapsed: std::time::Duration) {
    println!(
        "\nsummary ({:.2} s, {:.0} events/s end to end, flush included)",
        elapsed.as_secs_f64(),
        s.events_received as f64 / elapsed.as_secs_f64()
    );
    println!("  events in          {:>10}", s.events_received);
    println!("  rejected           {:>10}", s.events_rejected);
    println!(
        "  sampled out        {:>10}   (cache_hit_rate kept at 10%)",
        s.events_sampled_out
    );
    println!(
        "  aggregated         {:>10}   (into windows and error counts)",
        s.events_aggregated
    );
    println!("  records written    {:>10}", s.records_written);
    println!("  window rows        {:>10}   (written as windows closed; plus {} snapshot rewrites by Flush)", s.windows_written - s.snapshot_rows_written.min(s.windows_written), s.snapshot_rows_written);
    println!("  error counts       {:>10}", s.error_counts_written);
    println!(
        "  rows written       {:>10}   in {} transactions (avg {:.1} rows/batch)",
        s.rows_written, s.transactions, s.avg_batch_size
    );
    println!(
        "  write reduction    {:>9.2}%   rows: 1 - rows written / events in",
        s.write_reduction() * 100.0
    );
    println!(
        "  commit reduction   {:>9.3}%   transactions: 1 - transactions / events in",
        s.transaction_reduction() * 100.0
    );
    println!(
        "  dropped            {:>10}   db errors {}  retries {}",
        s.events_dropped, s.db_errors, s.retries
    );
    println!("  patterns detected  {:>10}", s.patterns_detected);
    let lost = s.events_received
        - s.events_rejected
        - s.events_sampled_out
        - s.records_written
        - s.events_aggregated
        - s.events_dropped
        - s.events_quarantined;
    println!("  unaccounted        {:>10}   (received - rejected - sampled - written - aggregated - dropped - quarantined)", lost);
}

/// `YYYY-MM-DD HH:MM` in UTC (the milliseconds as they are if out of the calendar's range).
fn hhmm(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}
