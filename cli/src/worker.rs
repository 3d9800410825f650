//! `eventbatch worker`: a scale-out worker (docs/scale-out.md) over the library's
//! `eventbatch::forward::worker`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eventbatch::forward::worker::{self, WorkerOptions, DEFAULT_CONSUMER};
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
    let report = worker::run_until_signal(opts).map_err(|e| e.to_string())?;
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
