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
//! ## Hours and days
//!
//! `QueryWindows::metric("response_time").resolution(Resolution::Hour)` (or `Day`) answers one
//! element per hour (day), the exact merge of every window starting in it, over every instance
//! writing to the database. Closed hours and days are rolled up once into `metric_rollups`
//! (from the stored sketches, by whichever instance holds the roll-up lock); the others are
//! merged on the fly, so the answer never lags behind the windows. See `Config::rollups`.
//!
//! ## Layout
//!
//! ```text
//! app ─TrackEvent─▶ Supervisor ─▶ Sampler ─records─▶ Queue (High|Normal|Low) ─▶ DbWriter ─▶ store
//!                                    └─samples, errors─▶ Aggregator ─windows──────────▲
//!                                                            └─closed─▶ Detector ─patterns┘
//! ```
//!
//! - [`supervisor`](Supervisor): the front door (validation, stats, config, queries, flush, stop).
//! - `sampler.rs`, `queue.rs`, `aggregator.rs`, `detector.rs`, `db/writer.rs`: one actor each,
//!   a thin shell over a plain, unit-tested type.
//! - [`stats`]: the sketch, the window state and the detector's maths.
//! - `db/`: schema, rows, the SQL for both backends, the writer.
//! - `handoff.rs` and `pipeline.rs`: how data moves between stages and why it never lives only in
//!   a mailbox (so stopping the System loses nothing).
//!
//! `ARCHITECTURE.md` in the repository maps every actor and message to its file.

#![warn(missing_docs)]

mod aggregator;
mod clock;
mod config;
mod counters;
pub mod csv_detect;
pub mod db;
mod detector;
mod error;
mod event;
mod handoff;
mod messages;
mod model;
pub mod nab;
mod pipeline;
mod queue;
mod rollup;
mod sampler;
pub mod stats;
mod supervisor;
mod util;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigPatch, Settings};
pub use counters::Stats;
pub use db::Store;
pub use error::{ConfigError, Error, PipelineError, Result, TrackError};
pub use event::{EventKind, Priority, TrackEvent, MAX_NAME_BYTES};
pub use messages::{
    BatchAck, Configure, Flush, GetConfig, GetStats, Pattern, QueryPatterns, QueryWindows,
    Shutdown, Tick, TrackBatch, WindowStats,
};
pub use rollup::Resolution;
pub use stats::detect::{DetectorSettings, PatternKind};
pub use supervisor::Supervisor;

/// Validates `config`, opens `store` (creating an SQLite file), runs the embedded migrations,
/// starts every actor under the [`Supervisor`] on the current actix system, and returns its
/// address. Must be called inside a running actix system.
pub fn start(config: Config, store: Store) -> Result<actix::Addr<Supervisor>> {
    start_with_clock(config, store, Arc::new(SystemClock))
}

/// [`start`] with an injected clock (tests drive time with a [`ManualClock`]).
pub fn start_with_clock(
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
) -> Result<actix::Addr<Supervisor>> {
    let settings = config.validate()?;
    let pool = db::store::open(&store, settings.sqlite_busy_timeout)?;
    log::info!(
        "store {} open (instance {})",
        store.describe(),
        settings.instance_id
    );
    let stages = Arc::new(pipeline::Stages::new(config, settings, pool, clock));
    Ok(Supervisor::start_actors(stages))
}
