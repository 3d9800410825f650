//! [`FrontStages`]: the stages that run on the application's thread, driven synchronously by
//! the supervisor, in chain order: sample ([`SamplerStage`]), then aggregate
//! ([`AggregatorStage`]), handing their output in batches to the back stages.
//!
//! They run where the events are, cache-hot (measured: moving them to another thread cost 40%
//! of the mostly-metric throughput), and they are not actors: a mailbox hop between actors on
//! one thread is pure cost, and actors on the application's thread are what its System tears
//! down, in an order nobody controls, when the application stops it or returns from `main`.
//! The supervisor alone is on that thread, so what it accepted reaches the back stages
//! however it stops (see `Tracker::close`).

use std::sync::Arc;

use crate::actors::aggregator_stage::AggregatorStage;
use crate::actors::sampler_stage::SamplerStage;
use crate::clock::Clock;
use crate::event::TrackEvent;
use crate::messages::Control;

/// The front stages, in chain order.
pub(crate) struct FrontStages {
    pub sampler: SamplerStage,
    pub aggregator: AggregatorStage,
    /// The pipeline clock, read once per batch and per marker.
    pub clock: Arc<dyn Clock>,
}

impl FrontStages {
    /// Runs a batch of accepted events through the stages, in arrival order.
    pub(crate) fn events(&mut self, events: impl ExactSizeIterator<Item = TrackEvent>) {
        let now = self.clock.now_ms();
        let routed = self.sampler.route(events, now);
        self.aggregator.fold(routed.aggregate, routed.records, now);
    }

    /// Runs a marker through the stages (each does its part), then on to the back stages.
    pub(crate) fn marker(&mut self, marker: Control) {
        let now = self.clock.now_ms();
        self.sampler.marker(&marker, now);
        self.aggregator.marker(marker, now);
    }
}
