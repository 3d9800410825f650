//! The sampler's actor: routes each [`Events`] batch the supervisor sends with its
//! [`Sampler`]: kept samples and errors to the aggregator, kept records to the queue.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::remains::{deliver, Remains};
use crate::counters::Counters;
use crate::messages::{Control, Events, Records, Samples};
use crate::sampler::{Routed, Sampler};
use crate::util::SplitMix64;

/// The sampler's actor: routes each batch of events as it comes.
pub(crate) struct SamplerActor {
    pub sampler: Sampler,
    pub counters: Arc<Counters>,
    /// Kept metric samples and errors go here.
    pub aggregator: Recipient<Samples>,
    /// Kept records go here.
    pub queue: Recipient<Records>,
    /// Markers go on to the aggregator.
    pub next: Recipient<Control>,
    pub remains: Arc<Remains>,
}

impl Actor for SamplerActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
    }

    /// Hands the sampler (its rates and random state) to the last flush.
    fn stopped(&mut self, _: &mut Context<Self>) {
        Counters::sub(&self.counters.actors_running, 1);
        let empty = Sampler::new(HashMap::new(), SplitMix64::new(0));
        let sampler = std::mem::replace(&mut self.sampler, empty);
        self.remains.left().sampler = Some(sampler);
    }
}

impl Handler<Events> for SamplerActor {
    type Result = ();
    fn handle(&mut self, Events(events): Events, _: &mut Context<Self>) {
        let n = events.len() as u64;
        let mut routed = Routed::default();
        self.sampler.route(events, &mut routed);
        Counters::add(&self.counters.sampled_out, routed.sampled_out);
        Counters::add(&self.counters.kept, n - routed.sampled_out);
        if !routed.aggregate.is_empty() {
            deliver(&self.aggregator, Samples(routed.aggregate), &self.remains);
        }
        if !routed.records.is_empty() {
            deliver(&self.queue, Records(routed.records), &self.remains);
        }
    }
}

impl Handler<Control> for SamplerActor {
    type Result = ();
    fn handle(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match &marker {
            Control::Settings(s) => self.sampler.set_rates(s.sampling_rates.clone()),
            Control::Shutdown(_) => ctx.stop(),
            _ => {}
        }
        deliver(&self.next, marker, &self.remains);
    }
}
