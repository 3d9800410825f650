//! The scale-out worker (docs/scale-out.md; `eventbatch worker`): consumes a JetStream stream
//! of forwarded batches through the shared durable pull consumer and writes each message to
//! PostgreSQL exactly once: in one transaction with its stream sequence
//! (`crate::db::forward_sql`), acknowledged only after the commit. Several workers on one
//! stream share its messages; a message a dead worker held is delivered to another after the
//! consumer's `ack_wait`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use diesel::{Connection, QueryResult};
use futures_util::StreamExt;
use thiserror::Error;

use crate::db::forward_sql;
use crate::db::open::{open_with, OpenOptions};
use crate::db::pool::Pool;
use crate::error::{ConfigError, StoreError};
use crate::forward::{
    check_replicas, check_stream, check_stream_ages, check_url, redacted_url, stream_config, wire,
    DEFAULT_DUPLICATE_WINDOW,
};
use crate::retention::{PruneRound, Retention};
use crate::Store;

/// The shared durable consumer's default name.
pub const DEFAULT_CONSUMER: &str = "eventbatch-workers";

/// How a worker runs. Its `Debug` shows the NATS URL(s) without credentials and the store
/// without its password.
#[derive(Clone)]
pub struct WorkerOptions {
    /// The NATS server(s): `nats://host:port`, several separated by commas.
    pub nats: String,
    /// The stream (created when missing, with the forwarding pipeline's settings).
    pub stream: String,
    /// The stream's replicas when this worker creates it: 1 to 5 (an existing stream is used
    /// as it is). Default 1.
    pub replicas: usize,
    /// The stream's duplicate window when this worker creates it (as
    /// `Forward::duplicate_window_ms`: 100 ms to a day). Default 2 minutes.
    pub duplicate_window: Duration,
    /// The stream's maximum message age when this worker creates it (as `Forward::max_age_ms`:
    /// zero, none, or at least the duplicate window). Default none.
    pub max_age: Duration,
    /// The PostgreSQL store (migrated at start).
    pub store: Store,
    /// The durable pull consumer all workers of the stream share (created when missing).
    pub consumer: String,
    /// How long a delivered message stays with its worker before JetStream gives it to another:
    /// the takeover time when a worker dies. Default 30 s.
    pub ack_wait: Duration,
    /// Messages fetched at a time. Default 64.
    pub fetch: usize,
    /// How often the worker runs the roll-up job (hour, day and week windows, as the embedded
    /// writer does; one worker at a time holds its lock). `None`: never. Default 60 s.
    pub rollup_interval: Option<Duration>,
    /// The lateness a roll-up bucket waits for past its end: the instances'
    /// `allowed_lateness_ms`. Default 5 s (the `Config` default).
    pub rollup_lateness: Duration,
    /// Stop after this long without a message (`None`: run until [`WorkerOptions`]'s stop
    /// flag is set).
    pub idle_exit: Option<Duration>,
    /// Retention rounds on the workers' database, as the embedded writer runs them (see
    /// [`Retention`]; ages by event time against this machine's clock, a round every
    /// `interval_ms` between fetches, one worker at a time holding the retention lock).
    /// Default: every table kept forever (no round runs).
    pub retention: Retention,
    /// How long the claims of a committed message (its `nats_applied` and `forward_applied`
    /// rows, by `applied_at_ms`) are kept: older ones are deleted in chunks of
    /// `retention.batch_size`, at start and every `retention.interval_ms`, whatever
    /// `retention` prunes otherwise (counted in [`WorkerReport::claims_pruned`]). A message
    /// delivered again, or a batch published again, after that long would be written twice
    /// (docs/scale-out.md). At least [`MIN_APPLIED_MAX_AGE`], the stream's duplicate window and
    /// `ack_wait`; default 7 days.
    pub applied_max_age: Duration,
}

/// The shortest [`WorkerOptions::applied_max_age`]: a claim must outlive the stream's
/// duplicate window and the consumer's `ack_wait` by far.
pub const MIN_APPLIED_MAX_AGE: Duration = Duration::from_secs(600);

/// [`WorkerOptions::applied_max_age`]'s default: 7 days.
pub const DEFAULT_APPLIED_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// Chunks of each claim table one pass deletes at most before the worker fetches again; a pass
/// that leaves old claims behind (its last chunk full) is followed by another after that fetch.
const CLAIM_CHUNKS_PER_PASS: usize = 16;

impl WorkerOptions {
    /// Defaults for `stream` on `nats`, writing to `store`.
    pub fn new(nats: impl Into<String>, stream: impl Into<String>, store: Store) -> Self {
        WorkerOptions {
            nats: nats.into(),
            stream: stream.into(),
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: Duration::ZERO,
            store,
            consumer: DEFAULT_CONSUMER.to_string(),
            ack_wait: Duration::from_secs(30),
            fetch: 64,
            rollup_interval: Some(Duration::from_secs(60)),
            rollup_lateness: Duration::from_secs(5),
            idle_exit: None,
            retention: Retention::default(),
            applied_max_age: DEFAULT_APPLIED_MAX_AGE,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_url("nats", &self.nats)?;
        check_stream("stream", &self.stream)?;
        check_replicas("replicas", self.replicas)?;
        check_stream_ages(
            "duplicate_window",
            self.duplicate_window,
            "max_age",
            self.max_age,
        )?;
        check_stream("consumer", &self.consumer)?;
        if !self.store.is_postgres() {
            return Err(ConfigError::new(
                "store",
                self.store.describe(),
                "must be a PostgreSQL URL (postgres://...)",
            ));
        }
        if self.ack_wait < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "ack_wait",
                self.ack_wait.as_millis(),
                "must be at least 100 ms",
            ));
        }
        if self.fetch == 0 || self.fetch > 10_000 {
            return Err(ConfigError::new("fetch", self.fetch, "must be 1 to 10,000"));
        }
        self.retention.validate()?;
        let shortest = MIN_APPLIED_MAX_AGE
            .max(self.duplicate_window)
            .max(self.ack_wait);
        let longest = Duration::from_millis(crate::retention::MAX_AGE_MS);
        if self.applied_max_age < shortest || self.applied_max_age > longest {
            return Err(ConfigError::new(
                "applied_max_age",
                self.applied_max_age.as_millis(),
                format!(
                    "must be at least 10 minutes (600,000 ms), the duplicate window and \
                     ack_wait ({} ms here), and at most 100 years: a message delivered again \
                     after its claim is pruned would be written twice",
                    shortest.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// Like a derived `Debug`, with the credentials of the NATS URL(s) redacted (as `Forward`'s)
/// and the store shown by `Store::describe`: options end up in logs.
impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("nats", &redacted_url(&self.nats))
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_age", &self.max_age)
            .field("store", &self.store)
            .field("consumer", &self.consumer)
            .field("ack_wait", &self.ack_wait)
            .field("fetch", &self.fetch)
            .field("rollup_interval", &self.rollup_interval)
            .field("rollup_lateness", &self.rollup_lateness)
            .field("idle_exit", &self.idle_exit)
            .field("retention", &self.retention)
            .field("applied_max_age", &self.applied_max_age)
            .finish()
    }
}

/// What a worker did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Messages committed (each once).
    pub messages: u64,
    /// Messages delivered again whose rows were already committed: acknowledged, not written.
    pub duplicates: u64,
    /// Records, window rows, error-count rows and patterns written.
    pub records: u64,
    /// Window snapshots written (a later snapshot of a window replaces the earlier one).
    pub windows: u64,
    /// Error-count snapshots written.
    pub error_counts: u64,
    /// Patterns written.
    pub patterns: u64,
    /// Messages that failed to commit (store down): not acknowledged, delivered again.
    pub failed: u64,
    /// Messages that are not forwarded batches: acknowledged as terminated, logged.
    pub malformed: u64,
    /// Rows deleted by retention rounds ([`WorkerOptions::retention`]).
    pub pruned: u64,
    /// Claims of committed messages deleted (`nats_applied` and `forward_applied` rows older
    /// than [`WorkerOptions::applied_max_age`]); not counted in `pruned`.
    pub claims_pruned: u64,
    /// Rows PostgreSQL refused (a trigger, a CHECK), set aside in the `quarantine` table with
    /// the store's error; the rest of their message is committed once.
    pub quarantined: u64,
}

/// Why a worker stopped.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// An option is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// NATS refused the stream or the consumer.
    #[error("NATS: {0}")]
    Nats(String),
    /// The worker's runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs a worker on this thread (it starts a runtime of its own) until `stop` is set or, with
/// `idle_exit`, until no message came for that long. Creates the stream and the consumer when
/// missing.
pub fn run(opts: WorkerOptions, stop: Arc<AtomicBool>) -> Result<WorkerReport, WorkerError> {
    run_with(opts, stop, || {})
}

fn run_with(
    opts: WorkerOptions,
    stop: Arc<AtomicBool>,
    on_start: impl FnOnce(),
) -> Result<WorkerReport, WorkerError> {
    opts.validate()?;
    let pool = open_with(
        &opts.store,
        &OpenOptions {
            busy_timeout: Duration::from_secs(5),
            // bounds the pool's wait and PostgreSQL's timeouts: a message whose store is
            // down is given back (Nak) within seconds
            retry_budget: Duration::from_secs(5),
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("eventbatch-worker")
        .build()
        .map_err(WorkerError::Runtime)?;
    runtime.block_on(async move {
        on_start();
        consume(opts, pool, stop).await
    })
}

/// [`run`] until SIGTERM or SIGINT (Ctrl-C) arrives, or `idle_exit`.
pub fn run_until_signal(opts: WorkerOptions) -> Result<WorkerReport, WorkerError> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = stop.clone();
    run_with(opts, stop, move || {
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            watcher.store(true, Ordering::Relaxed);
        });
    })
}

async fn consume(
    opts: WorkerOptions,
    pool: Pool,
    stop: Arc<AtomicBool>,
) -> Result<WorkerReport, WorkerError> {
    // the first claims pass runs at start, before the consumer exists: a worker that restarts
    // often still prunes, and its messages are not held while it does
    let (removed, mut claims_left) = tokio::task::block_in_place(|| {
        prune_claims(&pool, opts.applied_max_age, opts.retention.batch_size)
    });
    let mut last_claims = Instant::now();
    let nats = |e: &dyn std::fmt::Display| WorkerError::Nats(e.to_string());
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(crate::forward::addrs(&opts.nats))
        .await
        .map_err(|e| nats(&e))?;
    let js = jetstream::new(client);
    let stream = loop {
        match js
            .get_or_create_stream(stream_config(
                &opts.stream,
                opts.replicas,
                opts.duplicate_window,
                opts.max_age,
            ))
            .await
        {
            Ok(s) => break s,
            // asked to stop before it could start: nothing taken, nothing to report
            Err(_) if stop.load(Ordering::Relaxed) => return Ok(stopped_early(removed)),
            Err(e) => {
                log::warn!("worker: stream {} not ready ({e}); retrying", opts.stream);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let config = consumer::pull::Config {
        durable_name: Some(opts.consumer.clone()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: opts.ack_wait,
        max_ack_pending: 1024,
        ..Default::default()
    };
    // a clustered stream elects the consumer's leader first: creating it may time out
    let consumer: consumer::PullConsumer = loop {
        match stream
            .get_or_create_consumer(&opts.consumer, config.clone())
            .await
        {
            Ok(c) => break c,
            // asked to stop before it could start: nothing taken, nothing to report
            Err(_) if stop.load(Ordering::Relaxed) => return Ok(stopped_early(removed)),
            Err(e) => {
                log::warn!(
                    "worker: consumer {} not ready ({e}); retrying",
                    opts.consumer
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    log::info!(
        "worker: consuming {} as {} into {}",
        opts.stream,
        opts.consumer,
        opts.store.describe()
    );
    let mut report = WorkerReport {
        claims_pruned: removed,
        ..WorkerReport::default()
    };
    let mut last_message = Instant::now();
    let mut last_rollup = Instant::now();
    // the first round runs at start: a worker that restarts often still prunes
    let mut last_prune: Option<Instant> = None;
    let prune_every = Duration::from_millis(opts.retention.interval_ms);
    // claims: a pass every interval, and again after each fetch while a pass leaves old
    // claims behind
    while !stop.load(Ordering::Relaxed) {
        if opts
            .rollup_interval
            .is_some_and(|every| last_rollup.elapsed() >= every)
        {
            last_rollup = Instant::now();
            tokio::task::block_in_place(|| roll_up(&pool, opts.rollup_lateness));
        }
        if opts.retention.is_enabled() && last_prune.is_none_or(|t| t.elapsed() >= prune_every) {
            last_prune = Some(Instant::now());
            let rollups = opts.rollup_interval.is_some();
            report.pruned += tokio::task::block_in_place(|| prune(&pool, &opts.retention, rollups));
        }
        if claims_left || last_claims.elapsed() >= prune_every {
            if !claims_left {
                last_claims = Instant::now();
            }
            let (removed, left) = tokio::task::block_in_place(|| {
                prune_claims(&pool, opts.applied_max_age, opts.retention.batch_size)
            });
            report.claims_pruned += removed;
            claims_left = left;
        }
        if opts
            .idle_exit
            .is_some_and(|idle| last_message.elapsed() >= idle)
        {
            break;
        }
        let batch = consumer
            .fetch()
            .max_messages(opts.fetch)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut messages = match batch {
            Ok(m) => m,
            Err(e) => {
                log::warn!("worker: fetch failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut fetched = Vec::new();
        while let Some(message) = messages.next().await {
            match message {
                Ok(m) => fetched.push(m),
                Err(e) => {
                    log::debug!("worker: fetch ended ({e})");
                    break;
                }
            }
        }
        if !fetched.is_empty() {
            last_message = Instant::now();
            handle_fetched(&opts.stream, &pool, fetched, &mut report).await;
        }
    }
    Ok(report)
}

/// One roll-up run (see `crate::rollup`); a failure is logged, the next run comes an
/// interval later.
fn roll_up(pool: &Pool, lateness: Duration) {
    let mut run = crate::db::rollup_sql::RollupRun::default();
    let now = crate::util::unix_ms() as i64;
    let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
        conn.roll_up(now, lateness.as_millis() as i64, &mut run)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => log::debug!("worker: rolled up {} buckets", run.rows),
        Err(e) => log::warn!("worker: roll-up failed ({e})"),
    }
}

/// One whole retention round (see `crate::retention`), a chunk per transaction; returns the
/// rows deleted. A failure or another worker holding the lock ends the round (logged); the
/// next comes an interval later.
fn prune(pool: &Pool, retention: &Retention, rollups: bool) -> u64 {
    let now = crate::util::unix_ms() as i64;
    let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
        let pending = conn.oldest_pending().map_err(|e| e.to_string())?;
        let mut round = PruneRound::plan(retention, now, rollups, pending);
        while let Some((table, cutoff)) = round.current() {
            match conn.prune_chunk(table, cutoff, retention.batch_size) {
                Ok(Some(removed)) => round.record(removed, retention.batch_size),
                Ok(None) => {
                    log::debug!("worker: retention round ended: another worker is pruning");
                    break;
                }
                Err(e) => {
                    log::warn!(
                        "worker: retention: deleting old {} failed ({e}); the next round retries",
                        table.label()
                    );
                    break;
                }
            }
        }
        Ok(round)
    });
    match result {
        Ok(round) => {
            if round.total() > 0 {
                log::info!(
                    "worker: retention removed {} rows ({})",
                    round.total(),
                    round.summary()
                );
            }
            round.total()
        }
        Err(e) => {
            log::warn!("worker: retention round not started ({e})");
            0
        }
    }
}

/// One pass of claim pruning: at most [`CLAIM_CHUNKS_PER_PASS`] chunks of each claim table,
/// deleting claims committed more than `max_age` ago; returns the rows deleted and whether
/// old claims are left (a table's last chunk was full). A failure or another worker holding
/// the retention lock ends the pass (logged); the next comes an interval later.
fn prune_claims(pool: &Pool, max_age: Duration, batch_size: usize) -> (u64, bool) {
    let cutoff = crate::util::unix_ms() as i64 - max_age.as_millis() as i64;
    let mut removed = 0;
    let mut left = false;
    for table in forward_sql::CLAIM_TABLES {
        for chunk in 1..=CLAIM_CHUNKS_PER_PASS {
            match with_pg(pool, |c| {
                forward_sql::prune_claims_chunk(c, table, cutoff, batch_size)
            }) {
                Ok(Some(n)) => {
                    removed += n;
                    if (n as usize) < batch_size {
                        break;
                    }
                    left |= chunk == CLAIM_CHUNKS_PER_PASS;
                }
                Ok(None) => {
                    log::debug!("worker: claims not pruned: another worker is pruning");
                    return (removed, false);
                }
                Err(e) => {
                    log::warn!("worker: deleting old {table} failed ({e}); the next pass retries");
                    return (removed, false);
                }
            }
        }
    }
    if removed > 0 {
        log::info!("worker: removed {removed} claims older than {max_age:?}");
    }
    (removed, left)
}

/// The report of a worker stopped before its stream and consumer were ready (a stop is not
/// an error): the claims its start-up pass pruned, nothing else.
fn stopped_early(claims_pruned: u64) -> WorkerReport {
    log::info!("worker: stopped before its stream and consumer were ready");
    WorkerReport {
        claims_pruned,
        ..WorkerReport::default()
    }
}

/// Writes the messages of one fetch in one transaction (each claims its sequence and writes
/// its rows, as alone), then acknowledges each: one commit for the lot, which is what a
/// message costs PostgreSQL (a commit's flush), not its rows. If that transaction fails, or a
/// message is not a forwarded batch, the messages go one at a time through [`handle`], so a
/// message that cannot be written holds back only itself.
async fn handle_fetched(
    stream: &str,
    pool: &Pool,
    messages: Vec<jetstream::Message>,
    report: &mut WorkerReport,
) {
    let items: Option<Vec<_>> = messages
        .iter()
        .map(|m| match (m.info(), wire::decode(&m.payload)) {
            (Ok(info), Ok((origin, batch))) => Some((info.stream_sequence, origin, batch)),
            _ => None,
        })
        .collect();
    let Some(items) = items.filter(|_| messages.len() > 1) else {
        for m in &messages {
            handle(stream, pool, m, report).await;
        }
        return;
    };
    let now_ms = crate::util::unix_ms() as i64;
    let written = tokio::task::block_in_place(|| {
        with_pg(pool, |c| {
            c.transaction(|c| {
                items
                    .into_iter()
                    .map(|(seq, origin, batch)| {
                        forward_sql::apply(c, stream, seq, &origin, batch, now_ms)
                    })
                    .collect::<QueryResult<Vec<_>>>()
            })
        })
    });
    match written {
        Ok(applied) => {
            for (m, applied) in messages.iter().zip(applied) {
                acknowledge(m, applied, report).await;
            }
        }
        Err(e) => {
            log::debug!(
                "worker: {} messages not committed together ({e}); one at a time",
                messages.len()
            );
            for m in &messages {
                handle(stream, pool, m, report).await;
            }
        }
    }
}

/// `f` on a PostgreSQL connection of `pool`.
fn with_pg<T>(
    pool: &Pool,
    f: impl FnOnce(&mut diesel::PgConnection) -> QueryResult<T>,
) -> Result<T, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    match &mut conn.backend {
        crate::db::conn::Backend::Pg(c) => f(c).map_err(|e| e.to_string()),
        crate::db::conn::Backend::Sqlite(_) => Err("the worker writes to PostgreSQL".into()),
    }
}

/// Acknowledges a committed message and counts what it wrote.
async fn acknowledge(
    message: &jetstream::Message,
    applied: forward_sql::Applied,
    report: &mut WorkerReport,
) {
    if let Err(e) = message.ack().await {
        // committed: delivered again, it is found in nats_applied and only acknowledged
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        log::warn!("worker: acknowledgement of {seq} failed ({e})");
    }
    if applied.duplicate {
        report.duplicates += 1;
    } else {
        report.messages += 1;
        report.records += applied.records;
        report.windows += applied.windows;
        report.error_counts += applied.errors;
        report.patterns += applied.patterns;
        report.quarantined += applied.quarantined;
    }
}

/// Writes one message and acknowledges it after the commit; a failed commit is not
/// acknowledged (it comes back, to this worker or another).
async fn handle(
    stream: &str,
    pool: &Pool,
    message: &jetstream::Message,
    report: &mut WorkerReport,
) {
    let seq = match message.info() {
        Ok(info) => info.stream_sequence,
        Err(e) => {
            log::error!("worker: message without JetStream metadata ({e})");
            return;
        }
    };
    let (origin, batch) = match wire::decode(&message.payload) {
        Ok(decoded) => decoded,
        Err(e) => {
            log::error!(
                "worker: message {seq} of {stream} is not a forwarded batch ({e}); set aside"
            );
            report.malformed += 1;
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let now_ms = crate::util::unix_ms() as i64;
    let written = tokio::task::block_in_place(|| {
        with_pg(pool, |c| {
            match forward_sql::apply(c, stream, seq, &origin, batch.clone(), now_ms) {
                // rows the store will never take: set aside, the rest committed once
                Err(e) if StoreError::refuses(&e) => {
                    forward_sql::apply_isolating(c, stream, seq, &origin, batch, now_ms)
                }
                other => other,
            }
        })
    });
    match written {
        Ok(applied) => acknowledge(message, applied, report).await,
        Err(e) => {
            report.failed += 1;
            log::warn!("worker: message {seq} not committed ({e}); delivered again later");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credentials_of_the_nats_url_or_the_store() {
        let opts = WorkerOptions::new(
            "nats://alice:s3cret@h:4222,nats://tok3n@h2:4222",
            "events",
            Store::postgres("postgres://bob:pgs3cret@db:5432/eb"),
        );
        let shown = format!("{opts:?}");
        for secret in ["s3cret", "tok3n", "pgs3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("nats://<redacted>@h:4222,nats://<redacted>@h2:4222"),
            "{shown}"
        );
        assert!(
            shown.contains("db:5432/eb") && shown.contains("events"),
            "{shown}"
        );
    }

    #[test]
    fn bad_options_name_their_field_and_value() {
        let ok = WorkerOptions::new("nats://h:4222", "s", Store::postgres("postgres://h/db"));
        assert!(ok.validate().is_ok());
        let field = |f: fn(&mut WorkerOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            let e = o.validate().unwrap_err();
            (e.field, e.value)
        };
        assert_eq!(field(|o| o.replicas = 0), ("replicas".into(), "0".into()));
        assert_eq!(field(|o| o.replicas = 6), ("replicas".into(), "6".into()));
        assert_eq!(field(|o| o.fetch = 0), ("fetch".into(), "0".into()));
        assert_eq!(
            field(|o| o.store = Store::sqlite("x.db")).0,
            "store".to_string()
        );
        assert_eq!(field(|o| o.stream = "a.b".into()).0, "stream".to_string());
        assert_eq!(
            field(|o| o.retention.windows_max_age_ms = crate::retention::MAX_AGE_MS + 1).0,
            "retention.windows_max_age_ms".to_string()
        );
        let mut three = ok.clone();
        three.replicas = 3;
        assert!(three.validate().is_ok());
    }

    #[test]
    fn claims_are_kept_at_least_ten_minutes_the_duplicate_window_and_ack_wait() {
        let ok = WorkerOptions::new("nats://h:4222", "s", Store::postgres("postgres://h/db"));
        assert_eq!(ok.applied_max_age, Duration::from_secs(7 * 86_400));
        let check = |f: fn(&mut WorkerOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().map_err(|e| (e.field, e.value))
        };
        assert_eq!(check(|o| o.applied_max_age = MIN_APPLIED_MAX_AGE), Ok(()));
        assert_eq!(
            check(|o| o.applied_max_age = Duration::from_millis(599_999)),
            Err(("applied_max_age".into(), "599999".into()))
        );
        assert_eq!(
            check(|o| o.applied_max_age = Duration::ZERO).unwrap_err().0,
            "applied_max_age"
        );
        // the duplicate window (at most a day) and ack_wait raise the minimum
        assert_eq!(
            check(|o| {
                o.duplicate_window = Duration::from_secs(3600);
                o.applied_max_age = Duration::from_secs(1800);
            })
            .unwrap_err()
            .0,
            "applied_max_age"
        );
        assert_eq!(
            check(|o| {
                o.ack_wait = Duration::from_secs(1200);
                o.applied_max_age = Duration::from_secs(1199);
            })
            .unwrap_err()
            .0,
            "applied_max_age"
        );
        assert_eq!(
            check(|o| {
                o.duplicate_window = Duration::from_secs(3600);
                o.applied_max_age = Duration::from_secs(3600);
            }),
            Ok(())
        );
        assert_eq!(
            check(|o| o.applied_max_age = Duration::from_secs(u64::MAX))
                .unwrap_err()
                .0,
            "applied_max_age"
        );
    }
}
