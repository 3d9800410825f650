//! The sampler's actor: routes each [`Events`] batch the supervisor sends with its
//! [`Sampler`]: kept samples and errors to the aggregator, kept records toward the queue (by
//! way of the aggregator and the detector, so they stay in order with the markers). Adaptive
//! rates follow the pipeline clock (read once per batch and on each tick); the rates in force
//! are published to the counters whenever one changes.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::remains::{deliver, Remains};
use crate::clock::Clock;
use crate::counters::Counters;
use crate::messages::{Control, Events, Records, Samples};
use crate::sampler::{Routed, Sampler};

/// The sampler's actor: routes each batch of events as it comes.
pub(crate) struct SamplerActor {
    pub sampler: Sampler,
    pub counters: Arc<Counters>,
    /// The pipeline clock: adaptive rates change at its interval boundaries.
    pub clock: Arc<dyn Clock>,
    /// Kept metric samples and errors go here.
    pub aggregator: Recipient<Samples>,
    /// Kept records go here: to the aggregator, which passes them on toward the queue behind
    /// what it produced before them (the queue takes everything from one sender, in order).
    pub queue: Recipient<Records>,
    /// Markers go on to the aggregator.
    pub next: Recipient<Control>,
    pub remains: Arc<Remains>,
}

impl Actor for SamplerActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
        self.publish_rates();
    }

    /// Hands the sampler (its rates and random state) to the last flush.
    fn stopped(&mut self, _: &mut Context<Self>) {
        Counters::sub(&self.counters.actors_running, 1);
        let sampler = std::mem::take(&mut self.sampler);
        self.remains.left().sampler = Some(sampler);
    }
}

impl SamplerActor {
    /// Hands the rates in force to the counters (`Stats::sampling_rates_in_force`) if one
    /// changed.
    fn publish_rates(&mut self) {
        if let Some(rates) = self.sampler.take_changed_rates() {
            self.counters.set_sampling_rates(rates);
        }
    }
}

impl Handler<Events> for SamplerActor {
    type Result = ();
    fn handle(&mut self, Events(events): Events, _: &mut Context<Self>) {
        let n = events.len() as u64;
        let mut routed = Routed::default();
        self.sampler.route(events, self.clock.now_ms(), &mut routed);
        Counters::add(&self.counters.sampled_out, routed.sampled_out);
        Counters::add(&self.counters.kept, n - routed.sampled_out);
        if !routed.aggregate.is_empty() {
            deliver(&self.aggregator, Samples(routed.aggregate), &self.remains);
        }
        if !routed.records.is_empty() {
            deliver(&self.queue, Records(routed.records), &self.remains);
        }
        self.publish_rates();
    }
}

impl Handler<Control> for SamplerActor {
    type Result = ();
    fn handle(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match &marker {
            Control::Settings(s) => {
                self.sampler.set_settings(s);
                self.publish_rates();
            }
            Control::Tick => {
                self.sampler.advance(self.clock.now_ms());
                self.publish_rates();
            }
            Control::Shutdown(_) => ctx.stop(),
            _ => {}
        }
        deliver(&self.next, marker, &self.remains);
    }
}
