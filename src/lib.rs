//! # eventbatch
//!
//! Record analytics events from an actix application without drowning its database: events
//! are validated, sampled per type, queued by priority and written in batched transactions;
//! metric samples are folded into per-series event-time windows (count, sum, min, max, mean,
//! stddev, and p50/p90/p95/p99 within 1% relative error); closed windows are checked for
//! spikes, drops, anomalies and trends. SQLite (one file) or PostgreSQL (many instances, one
//! database). Stopping flushes everything: nothing accepted is lost.
//!
//! ## Quickstart
//!
//! ```
//! use eventbatch::{start, Config, Flush, QueryWindows, Shutdown, Store, TrackEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("analytics.db");
//! actix::System::new().block_on(async move {
//!     let tracker = start(Config::default(), Store::sqlite(&path))?;
//!     tracker.do_send(TrackEvent::command("help").user("user123").success(true).duration_ms(250.0));
//!     for ms in [120.0, 180.0, 950.0] {
//!         tracker.send(TrackEvent::performance("response_time", ms).context("api")).await??;
//!     }
//!     let stats = tracker.send(Flush).await??;
//!     assert_eq!(stats.records_written, 1);
//!     let windows = tracker.send(QueryWindows::metric("response_time").context("api")).await??;
//!     assert_eq!(windows[0].count, 3);
//!     assert!((windows[0].p50 - 180.0).abs() <= 1.8);
//!     let stats = tracker.send(Shutdown).await?;
//!     assert_eq!(stats.events_received, 4);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```
//!
//! ## Hours, days and weeks
//!
//! `QueryWindows::metric("response_time").resolution(Resolution::Hour)` (or `Day`, or `Week`)
//! answers one element per hour (day, week), the exact merge of every window starting in it,
//! over every instance writing to the database. Days are UTC days; weeks are ISO weeks, from
//! Monday 00:00 UTC to the next Monday. Closed hours, days and weeks are rolled up once into
//! `metric_rollups` (from the stored sketches, by whichever instance holds the roll-up lock);
//! the others are merged on the fly, so the answer never lags behind the windows. See
//! `Config::rollups`.
//!
//! ## Retention
//!
//! Nothing is deleted unless asked: [`Config::retention`] ([`Retention`]) gives each table a
//! maximum age by event time; the writer deletes older rows every `interval_ms`, in short
//! transactions between its batches (on PostgreSQL one instance at a time, under an advisory
//! lock), and counts them in `Stats::rows_pruned`.
//!
//! ## Layout
//!
//! The chain is a straight line, each stage with one downstream; only the writer's
//! `Committed` goes back, to the queue:
//!
//! ```text
//!  application's thread                        ║ eventbatch-stages thread    ║ eventbatch-writer thread
//!                                              ║                             ║
//!  app ─▶ Tracker ────▶ sampler ─▶ aggregator ─╫─▶ Detector ─▶ Queue ────────╫─▶ DbWriter ─▶ SQLite /
//!         (front door)  (cores the front door  ║   (patterns)   (High|Normal ║               PostgreSQL
//!                        calls in its turn)    ║                 |Low) ◀─────╫── Committed
//! ```
//!
//! - [`Tracker`] (`src/tracker/`): the front door (validation, the journal in durable mode,
//!   admission, stats, config), the only actor on the application's thread. It drives the sampler and the
//!   aggregator, plain cores, synchronously in its own turn on the events it accepted
//!   (`src/pipeline/`), and sends the markers (`Flush`, queries, `Shutdown`, ticks) down
//!   the same path behind the data.
//! - The detector and the queue run in one generic actor shell, the writer in an actor of its
//!   own, on threads the pipeline owns:
//!   `eventbatch-stages` (detector and queue) and `eventbatch-writer`, each an actix System of
//!   its own; durable mode adds the journal's thread, `eventbatch-journal`.
//! - `src/pipeline/`: the chain in one place (`mod.rs` wires it; `stage.rs`: the `Stage`
//!   trait, the marker and stop protocol, and the generic actor shell).
//! - `src/actors/`: the stages (`sampler_stage.rs`, `aggregator_stage.rs`,
//!   `detector_stage.rs`, `queue_stage.rs`) and the writer's actor (`db_writer.rs`). Each owns
//!   a plain, unit-tested core in `src/cores/` (`sampler.rs` with `adaptive.rs`,
//!   `aggregator.rs`, `detector.rs`, `queue.rs`) or `db/writer/`, and passes typed batches on.
//! - [`stats`]: the window state (exact small windows, DDSketch), the detector's maths.
//! - `db/`: schema, rows, the SQL for both backends, the writer's core.
//! - `journal/`: durable mode (`Config::durable`): the journal of accepted events, its thread,
//!   and the replay at start.
//!
//! ## Build options
//!
//! Cargo features choose how the C libraries under diesel are obtained (`docs/build.md` in the
//! repository has the table and what to install):
//!
//! - `bundled` (default): `bundled-sqlite` + `bundled-libpq`, both compiled from source; a
//!   fresh machine needs only gcc.
//! - `bundled-sqlite`: SQLite compiled in. Without it, the system libsqlite3 (pkg-config).
//! - `bundled-libpq`: libpq compiled in, without OpenSSL: a URL with `sslmode=require` makes
//!   [`start`] fail with an [`Error::Store`] that names the `tls` feature. Without it, the
//!   system libpq (with TLS if the system's has it; Debian's does).
//! - `tls`: libpq compiled in with OpenSSL (the system's, through `openssl-sys`), so
//!   `sslmode=require` and `verify-full` work. Implies `bundled-libpq`.
//!
//! ## Stopping
//!
//! `Shutdown` flushes everything and stops every actor. Stopping the actix `System` without it,
//! or returning from `main` (even right after `do_send`), loses nothing either: the supervisor
//! handles what is in its mailbox, runs the same shutdown and waits for it. For SIGTERM, see
//! [`shutdown_on_signal`].
//!
//! `ARCHITECTURE.md` in the repository maps every actor and message to its file; `docs/` holds
//! the reference (configuration, durable mode, PostgreSQL, retention and roll-ups, privacy,
//! metrics, the command, detection, benchmarks).

#![warn(missing_docs)]

/// The README's examples, compiled as doctests (`cargo test --doc`).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The examples of `docs/`, compiled as doctests (`cargo test --doc`), one page each.
#[cfg(doctest)]
mod docs_doctests {
    #[doc = include_str!("../docs/build.md")]
    pub struct Build;
    #[doc = include_str!("../docs/configuration.md")]
    pub struct Configuration;
    #[doc = include_str!("../docs/sampling.md")]
    pub struct Sampling;
    #[doc = include_str!("../docs/durable.md")]
    pub struct Durable;
    #[doc = include_str!("../docs/postgresql.md")]
    pub struct Postgresql;
    #[doc = include_str!("../docs/retention-and-rollups.md")]
    pub struct RetentionAndRollups;
    #[doc = include_str!("../docs/privacy.md")]
    pub struct Privacy;
    #[doc = include_str!("../docs/metrics.md")]
    pub struct Metrics;
    #[doc = include_str!("../docs/distinct-users.md")]
    pub struct DistinctUsers;
    #[doc = include_str!("../docs/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../docs/detection.md")]
    pub struct Detection;
    #[doc = include_str!("../docs/guarantees.md")]
    pub struct Guarantees;
    #[doc = include_str!("../docs/benchmarks.md")]
    pub struct Benchmarks;
}

mod actors;
mod clock;
mod config;
mod config_file;
mod cores;
mod counters;
/// The store's diesel schema (`db::schema`), for tests that read the tables. Feature `testing`.
#[cfg(any(test, feature = "testing"))]
pub mod db;
#[cfg(not(any(test, feature = "testing")))]
mod db;
mod encoding;
mod error;
mod event;
pub mod forward;
mod journal;
mod messages;
mod model;
mod pipeline;
#[cfg(feature = "prometheus")]
mod prometheus;
mod pseudonyms;
mod reader;
mod retention;
mod rollup;
mod settings;
pub mod stats;
mod telemetry;
mod text;
mod tracker;
mod users;
mod util;
mod window_stats;

use std::sync::Arc;

#[cfg(any(test, feature = "testing"))]
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigPatch, SampleBy, REDACTED_KEY};
pub use config_file::ENV_PREFIX;
pub use counters::Stats;
pub use db::Store;
pub use error::{ConfigError, Error, PipelineError, Result, StoreError, TrackError};
pub use event::{EventKind, Priority, TrackEvent, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_TAGS};
pub use forward::Forward;
#[cfg(any(test, feature = "testing"))]
pub use messages::Tick;
pub use messages::{
    BatchAck, Configure, Flush, GetConfig, GetStats, Pattern, PatternFound, QueryPatterns,
    QueryUsers, QueryWindows, Shutdown, SubscribePatterns, SubscriptionId, TrackBatch,
    UnsubscribePatterns,
};
pub use model::{labelled_name, Labels, PatternStatistic, OVERFLOW_LABEL};
pub use reader::{StoreReader, StoredSeries};
pub use retention::Retention;
pub use rollup::Resolution;
pub use stats::detect::{DetectorSettings, Evidence, PatternKind, View};
pub use tracker::Tracker;
pub use users::UserCount;

/// The front door's former name: it supervises nothing, it is the pipeline's entry point.
#[deprecated(note = "renamed `Tracker`: the pipeline's front door")]
pub type Supervisor = Tracker;
pub use stats::window::SeriesKind;
pub use text::Text;
pub use window_stats::WindowStats;

/// The exporter behind [`serve_prometheus`], for its types (`PrometheusHandle`, `BuildError`,
/// `PrometheusBuilder`). Feature `prometheus`.
#[cfg(feature = "prometheus")]
pub use metrics_exporter_prometheus;
#[cfg(feature = "prometheus")]
pub use prometheus::{prometheus_builder, serve_prometheus};

/// Validates `config`, opens `store` (creating an SQLite file), runs the embedded migrations,
/// starts the pipeline and returns the address of its front door, the [`Tracker`]. The
/// tracker runs on the current actix system (the application's thread), with the sampler
/// and the aggregator it drives; the detector and the queue run on a thread of their own, the
/// writer on another (durable mode adds the journal's), each thread ended by the pipeline's
/// stop. Must be called inside a running actix system.
pub fn start(config: Config, store: Store) -> Result<actix::Addr<Tracker>> {
    start_on(config, store, Arc::new(clock::SystemClock))
}

/// [`start`] with an injected clock (tests drive time with a [`ManualClock`]). Feature
/// `testing`.
#[cfg(any(test, feature = "testing"))]
pub fn start_with_clock(
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
) -> Result<actix::Addr<Tracker>> {
    start_on(config, store, clock)
}

/// [`start`] on `clock`.
fn start_on(
    config: Config,
    store: Store,
    clock: Arc<dyn clock::Clock>,
) -> Result<actix::Addr<Tracker>> {
    let settings = config.settings()?;
    let journal_path = match settings.durable {
        true => Some(journal_path(&settings, &store)?),
        false => None,
    };
    let pool = db::open::open_with(&store, &db::open::OpenOptions::from_settings(&settings))?;
    log::info!(
        "store {} open (instance {})",
        store.describe(),
        settings.instance_id
    );
    Tracker::start_pipeline(config, settings, pool, clock, journal_path)
}

/// Durable mode's journal file: `Config::journal_path`, or the SQLite file's path with
/// `.journal` appended. Refused when it is the store's own file, however spelled.
fn journal_path(settings: &settings::Settings, store: &Store) -> Result<std::path::PathBuf> {
    if let Some(path) = &settings.journal_path {
        if let Some(db) = store.sqlite_path() {
            journal::file::check_path(path, db)?;
        }
        return Ok(path.clone());
    }
    match store.sqlite_path() {
        Some(db) => {
            let mut path = db.as_os_str().to_owned();
            path.push(".journal");
            Ok(path.into())
        }
        None => Err(ConfigError::new(
            "journal_path",
            "None",
            "durable mode on PostgreSQL needs a journal path (a local file of this instance)",
        )
        .into()),
    }
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called; the returned future
/// resolves after one arrives and the pipeline has shut down (everything accepted is
/// written), with the final [`Stats`] (`None` if the pipeline had already stopped). The
/// guide's advice, "always flush on SIGTERM", in one call:
///
/// ```no_run
/// # use eventbatch::{start, Config, Store};
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let tracker = start(Config::default(), Store::sqlite("analytics.db"))?;
///     let stopped = eventbatch::shutdown_on_signal(tracker.clone());
///     // ... hand `tracker` to the parts of the service that track events ...
///     let stats = stopped.await;
///     println!("stopped after {:?} events", stats.map(|s| s.events_received));
///     Ok(())
/// }
/// ```
///
/// Listening replaces the default action of these signals (ending the process), so something
/// must end the program once the future resolves: return from `main` as above, or, in a
/// spawned task, call `actix::System::current().stop()`. Call it inside the actix system.
pub fn shutdown_on_signal(
    tracker: actix::Addr<Tracker>,
) -> impl std::future::Future<Output = Option<Stats>> {
    let signal = signals::Signals::listen();
    async move {
        signal.recv().await;
        log::info!("signal received: shutting the eventbatch pipeline down");
        tracker.send(Shutdown).await.ok()
    }
}

mod signals {
    //! SIGTERM and SIGINT on Unix, Ctrl-C elsewhere, on the runtime actix runs.

    /// Signal listeners, registered when made.
    pub(crate) struct Signals {
        #[cfg(unix)]
        streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    }

    impl Signals {
        #[cfg(unix)]
        pub(crate) fn listen() -> Self {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Signals {
                    streams: Some((term, int)),
                },
                (Err(e), _) | (_, Err(e)) => {
                    log::error!("cannot listen for SIGTERM/SIGINT ({e}); no shutdown on signal");
                    Signals { streams: None }
                }
            }
        }

        #[cfg(not(unix))]
        pub(crate) fn listen() -> Self {
            Signals {}
        }

        /// Resolves when a signal arrives (never, if listening failed).
        #[cfg(unix)]
        pub(crate) async fn recv(self) {
            let Some((mut term, mut int)) = self.streams else {
                return std::future::pending().await;
            };
            std::future::poll_fn(|cx| {
                if term.poll_recv(cx).is_ready() || int.poll_recv(cx).is_ready() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await
        }

        #[cfg(not(unix))]
        pub(crate) async fn recv(self) {
            if let Err(e) = tokio::signal::ctrl_c().await {
                log::error!("cannot listen for Ctrl-C ({e}); no shutdown on signal");
                std::future::pending::<()>().await
            }
        }
    }
}
