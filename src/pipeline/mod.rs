//! The chain, in one place. Every accepted event and every marker takes this one path:
//!
//! ```text
//!  application's thread                          ║ eventbatch-stages thread       ║ eventbatch-writer
//!                                                ║                                ║
//!  Tracker ─▶ SamplerStage ─▶ AggregatorStage ───╫─▶ DetectorStage ─▶ QueueStage ─╫─▶ DbWriter ─▶ store
//!  (front     Vec<TrackEvent>  Routed     Batch  ║   Batch     Rows    Rows       ║   WriteBatch
//!   door)     ╰─ Front: calls, no mailbox ─╯     ║   ╰── Shell actors ──╯   ◀─────╫── Committed
//! ```
//!
//! Each stage has exactly one downstream, and a link carries [`Item`]s of one type: a batch
//! (the `Out` of the stage before, the `In` of the stage after: the compiler checks the chain
//! fits) or a marker behind it. A stage is a [`stage::Stage`] over its pure core (`crate::cores`):
//! what it does with a batch, what it does with a marker, what it gives up at stop. The
//! front two run on the application's thread as calls, composed by [`Front`]; the detector
//! and the queue each run in the generic actor [`Shell`] on the stages' thread; the writer
//! is the end (an actor of its own, `crate::actors::db_writer`, which says why it is no
//! shell). Two side inputs enter the chain from outside it: the writer's `Committed` to the
//! queue (flow control), and pattern subscriptions from the tracker to the detector.
//!
//! Stopping is one mechanism, the `Shutdown` marker through the same chain
//! ([`stage::pass_marker`]): each stage gives up what it holds ([`stage::Stage::stop`]: the
//! aggregator closes every window, the queue hands over every record), sends the marker on
//! behind it and stops; the writer writes everything and answers once every stage before it
//! has stopped. `Tracker::close` sends it, however the pipeline is stopped.
//!
//! Flow control: the queue publishes its occupancy (`Counters::queue_occupancy`), which the
//! front door reads to admit or hold back (`Counters::room_for`); see `crate::tracker`.

pub(crate) mod stage;

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::aggregator_stage::AggregatorStage;
use crate::actors::detector_stage::DetectorStage;
use crate::actors::queue_stage::QueueStage;
use crate::actors::sampler_stage::SamplerStage;
use crate::clock::Clock;
use crate::cores::aggregator::Aggregator;
use crate::cores::detector::Detectors;
use crate::cores::sampler::Sampler;
use crate::cores::users::DistinctUsers;
use crate::counters::Counters;
use crate::db::pool::Pool;
use crate::messages::{Committed, Subscription};
use crate::model::WriteBatch;
use crate::settings::Settings;
use stage::{unbounded, Batch, Front, Item, Shell};

/// The front of the chain, on the application's thread: sampler, then aggregator, handing on
/// to the detector's mailbox.
pub(crate) type FrontStages = Front<SamplerStage, AggregatorStage, Recipient<Item<Batch>>>;

/// The front stages, handing on to `back` (the detector).
pub(crate) fn front_stages(
    settings: &Settings,
    counters: &Arc<Counters>,
    clock: Arc<dyn Clock>,
    back: Recipient<Item<Batch>>,
) -> FrontStages {
    Front {
        first: SamplerStage::new(
            Sampler::from_settings(settings),
            DistinctUsers::new(
                settings.window_ms,
                settings.allowed_lateness_ms,
                settings.max_open_series,
            ),
            counters.clone(),
        ),
        second: AggregatorStage::new(
            Aggregator::from_settings(settings),
            counters.clone(),
            settings.durable,
        ),
        next: back,
        clock,
    }
}

/// Where the back stages take their inputs.
pub(crate) struct BackStages {
    /// The detector: what the front stages hand on.
    pub detector: Recipient<Item<Batch>>,
    /// Pattern subscriptions (to the detector).
    pub subscriptions: Recipient<Subscription>,
    /// The writer's confirmations (to the queue).
    pub committed: Recipient<Committed>,
}

/// Starts the back stages on the current (their own) thread: the detector, then the queue,
/// handing on to `writer`. The sampler and the aggregator run on the application's thread,
/// where the events are (cache-hot, and nothing crosses threads per event); what crosses is
/// compact: records, closed windows, row batches.
pub(crate) fn start_back_stages(
    settings: &Settings,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    pool: Pool,
    writer: Recipient<Item<WriteBatch>>,
) -> BackStages {
    let queue = QueueStage::new(settings, counters.clone());
    let queue = unbounded(Shell::new(
        queue,
        writer,
        clock.clone(),
        counters.clone(),
        true,
    ));
    let detector = DetectorStage {
        detectors: Detectors::from_settings(settings),
        history: pool,
        window_ms: settings.window_ms,
        counters: counters.clone(),
        subscribers: Vec::new(),
    };
    let detector = unbounded(Shell::new(
        detector,
        queue.clone().recipient(),
        clock,
        counters,
        false,
    ));
    BackStages {
        detector: detector.clone().recipient(),
        subscriptions: detector.recipient(),
        committed: queue.recipient(),
    }
}
