//! The sampling stage, first of the chain (`crate::pipeline`): routes each batch of accepted
//! events with its [`Sampler`]: kept samples and errors for the aggregator, kept records toward
//! the queue (with the aggregator's output). Adaptive rates follow the pipeline clock (read
//! once per batch and on each tick); the rates in force are published to the counters whenever
//! one changes.

use std::sync::Arc;

use crate::cores::sampler::{Routed, Sampler};
use crate::counters::Counters;
use crate::event::TrackEvent;
use crate::messages::Control;
use crate::pipeline::stage::{Next, Pass, Stage};

/// The sampling stage: its [`Sampler`] and the counters it adds to.
pub(crate) struct SamplerStage {
    sampler: Sampler,
    counters: Arc<Counters>,
}

impl SamplerStage {
    /// A stage around `sampler`; publishes its rates in force.
    pub(crate) fn new(sampler: Sampler, counters: Arc<Counters>) -> Self {
        let mut stage = SamplerStage { sampler, counters };
        stage.publish_rates();
        stage
    }

    /// Hands the rates in force to the counters (`Stats::sampling_rates_in_force`) if one
    /// changed.
    fn publish_rates(&mut self) {
        if let Some(rates) = self.sampler.take_changed_rates() {
            self.counters.set_sampling_rates(rates);
        }
    }
}

impl Stage for SamplerStage {
    /// Accepted events, in arrival order (taken out, the buffer left empty for reuse).
    type In = Vec<TrackEvent>;
    type Out = Routed;

    /// Routes the events, counting what is kept and sampled out.
    fn take(&mut self, events: &mut Vec<TrackEvent>, now_ms: i64, next: &mut impl Next<Routed>) {
        let n = events.len() as u64;
        let mut routed = Routed::sized_for(events);
        self.sampler.route(events.drain(..), now_ms, &mut routed);
        Counters::add(&self.counters.sampled_out, routed.sampled_out);
        Counters::add(&self.counters.kept, n - routed.sampled_out);
        self.publish_rates();
        next.data(routed);
    }

    /// New settings, or a tick that moves adaptive rates to the clock's second (so an idle
    /// key's rate in force follows).
    fn marker(&mut self, marker: &mut Control, now_ms: i64, _: &mut impl Next<Routed>) -> Pass {
        match marker {
            Control::Settings(s) => self.sampler.set_settings(s),
            Control::Tick => self.sampler.advance(now_ms),
            _ => return Pass::On,
        }
        self.publish_rates();
        Pass::On
    }

    /// Holds nothing.
    fn stop(&mut self, _: i64, _: &mut impl Next<Routed>) {}
}
