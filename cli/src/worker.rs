//! `eventbatch worker`: a scale-out worker (docs/scale-out.md) over the library's
//! `eventbatch::forward::worker`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eventbatch::forward::worker::{self, WorkerError, WorkerOptions, DEFAULT_CONSUMER};
use eventbatch::forward::DEFAULT_DUPLICATE_WINDOW_MS;
use eventbatch::{Config, Store};

/// `eventbatch worker` arguments.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The NATS server(s): `nats://host:port`, several separated by commas.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// The JetStream stream the instances forward to (created when missing).
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// The stream's replicas when this worker creates it (1 to 5; 3 on a cluster of three
    /// servers or more). An existing stream is used as it is.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: usize,
    /// The PostgreSQL store: `postgres://user@host/db` (migrated at start).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The durable pull consumer the stream's workers share (created when missing).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CONSUMER)]
    pub consumer: String,
    /// How long a delivered message stays with its worker before JetStream gives it to
    /// another: the takeover time when a worker dies (used when the consumer is created).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub ack_wait_ms: u64,
    /// The stream's duplicate window when this worker creates it: a message published again
    /// under the same id within it is stored once. 100 to 86,400,000 (a day); give every
    /// instance (`[forward] duplicate_window_ms`) and worker the same value. An existing
    /// stream is used as it is.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_DUPLICATE_WINDOW_MS)]
    pub duplicate_window_ms: u64,
    /// The stream's maximum message age when this worker creates it: 0 keeps messages until
    /// deleted by hand; otherwise at least `--duplicate-window-ms`, longer than any outage of
    /// the workers (older messages are deleted unread), and at most `--applied-max-age-ms`, so
    /// that the stream holds no message older than its claims (docs/scale-out.md). Give every
    /// instance (`[forward] max_age_ms`) and worker the same value.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub max_age_ms: u64,
    /// How long the claims of committed messages (`nats_applied`, `forward_applied`) are
    /// kept before they are deleted (at start and every `retention.interval_ms`). A message
    /// delivered or published again after that long would be written twice. At least 600,000
    /// (10 minutes), the duplicate window and `--ack-wait-ms`; default 7 days.
    #[arg(long, value_name = "MS", default_value_t = 604_800_000)]
    pub applied_max_age_ms: u64,
    /// Stop after this long without a message (default: run until SIGTERM or Ctrl-C).
    #[arg(long, value_name = "MS")]
    pub idle_exit_ms: Option<u64>,
    /// The instances' configuration file (TOML; `EVENTBATCH_*` environment variables apply):
    /// the worker takes its `retention` (rounds on the workers' database), `rollups`,
    /// `rollup_interval_ms` and `allowed_lateness_ms`. Default: the library's defaults
    /// (nothing pruned, roll-ups every 60 s).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs the worker until a signal (or `--idle-exit-ms`), then prints what it wrote.
pub fn run(args: WorkerArgs) -> Result<(), String> {
    let mut opts = WorkerOptions::new(args.nats, args.stream, Store::from_url(&args.url));
    opts.replicas = args.replicas;
    opts.consumer = args.consumer;
    opts.ack_wait = Duration::from_millis(args.ack_wait_ms);
    opts.idle_exit = args.idle_exit_ms.map(Duration::from_millis);
    opts.applied_max_age = Duration::from_millis(args.applied_max_age_ms);
    opts.duplicate_window = Duration::from_millis(args.duplicate_window_ms);
    opts.max_age = Duration::from_millis(args.max_age_ms);
    let config = match &args.config {
        Some(path) => Config::from_toml_file(path),
        None => Ok(Config::default()),
    }
    .and_then(Config::with_env_overrides)
    .map_err(|e| e.to_string())?;
    opts.retention = config.retention;
    opts.rollup_interval = config
        .rollups
        .then(|| Duration::from_millis(config.rollup_interval_ms));
    opts.rollup_lateness = Duration::from_millis(config.allowed_lateness_ms);
    let report = worker::run_until_signal(opts).map_err(describe)?;
    println!(
        "worker: {} messages written ({} records, {} window rows, {} error counts, {} patterns), {} delivered again and skipped, {} failed and left for redelivery, {} rows refused by the store and quarantined, {} rows pruned, {} old claims pruned",
        report.messages,
        report.records,
        report.windows,
        report.error_counts,
        report.patterns,
        report.duplicates,
        report.failed,
        report.quarantined,
        report.pruned,
        report.claims_pruned
    );
    Ok(())
}

/// The worker's error for the command line: an invalid option named by its flag.
fn describe(e: WorkerError) -> String {
    match e {
        WorkerError::Config(c) => match flag_of(&c.field) {
            Some(flag) => format!("invalid {flag} {}: {}", c.value, c.reason),
            None => c.to_string(),
        },
        e => e.to_string(),
    }
}

/// The flag that sets a `WorkerOptions` field, for those the command line sets.
fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "nats" => "--nats",
        "stream" => "--stream",
        "replicas" => "--replicas",
        "duplicate_window" => "--duplicate-window-ms",
        "max_age" => "--max-age-ms",
        "store" => "--url",
        "consumer" => "--consumer",
        "ack_wait" => "--ack-wait-ms",
        "applied_max_age" => "--applied-max-age-ms",
        _ => return None,
    })
}
