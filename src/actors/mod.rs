//! The actors: thin shells that own a pure core each, receive typed messages and send on what
//! the core produces (see `ARCHITECTURE.md` for the message graph).
//!
//! - [`sampler`], [`aggregator`]: on the application's Arbiter, next to the supervisor.
//! - [`detector`], [`queue`]: on the stages' thread (an actix System of its own).
//! - [`writer`]: on a thread (and System) of its own.
//! - [`remains`]: what they leave when torn down without `Shutdown`, and the last flush.
//!
//! The supervisor (`crate::supervisor`) starts and wires them; no actor names another: each
//! holds `Recipient`s of the messages it sends.

pub(crate) mod aggregator;
pub(crate) mod detector;
pub(crate) mod queue;
pub(crate) mod remains;
pub(crate) mod sampler;
pub(crate) mod writer;
