//! The pipeline's pure cores: plain types with synchronous methods and unit tests, each owned
//! by one shell in [`crate::actors`] (or, for the front stages, driven by the supervisor).
//!
//! - [`sampler`]: keep or drop each event per sampling key; [`adaptive`]: the rate controller
//!   of an adaptive key.
//! - [`aggregator`]: event-time windows and error counts; [`watermark`]: the event time that
//!   closes them.
//! - [`detector`]: pattern detection over closed windows.
//! - [`queue`]: the priority queues in front of the writer.
//! - [`users`]: distinct users per command and window (HyperLogLog sketches), counted before
//!   sampling.

pub(crate) mod adaptive;
pub(crate) mod aggregator;
pub(crate) mod detector;
pub(crate) mod queue;
pub(crate) mod sampler;
pub(crate) mod users;
pub(crate) mod watermark;
