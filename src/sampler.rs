//! The sampler: per-key keep/drop decisions, then routing of kept events.
//!
//! [`Sampler`] is the logic (plain, unit-tested); [`SamplerActor`] drains the sampler's inbox
//! when woken and rings the aggregator and the queue.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::event::{EventKind, TrackEvent};
use crate::messages::{Drain, Wake};
use crate::model::Record;
use crate::pipeline::{lock, Stages};
use crate::util::SplitMix64;

/// The sampling key of an event (see the contract's routing rules), written into `buf`.
pub(crate) fn sampling_key<'a>(e: &TrackEvent, buf: &'a mut String) -> &'a str {
    buf.clear();
    let prefix = match e.kind {
        EventKind::Command | EventKind::Custom => "",
        EventKind::Performance => "performance.",
        EventKind::Engagement => "engagement.",
        EventKind::Datastore => "datastore.",
        EventKind::Error => "error.",
    };
    buf.push_str(prefix);
    buf.push_str(&e.name);
    buf.as_str()
}

/// An event the sampler kept, with the rate it was kept at (1.0 when no rate applies).
#[derive(Debug)]
pub(crate) struct Kept {
    pub event: TrackEvent,
    pub rate: f64,
}

/// Per-key Bernoulli sampling. A key with rate `r` keeps each event with probability `r`;
/// keys without a rate keep everything (errors included: an error key is sampled only when a
/// rate is set for it explicitly).
#[derive(Debug)]
pub(crate) struct Sampler {
    rates: HashMap<String, f64>,
    rng: SplitMix64,
    key_buf: String,
}

/// Where a batch of kept events goes.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Metric samples and errors, for the aggregator.
    pub aggregate: Vec<Kept>,
    /// Commands, engagement and custom events, packed for the queues.
    pub records: Vec<Record>,
    /// How many events were sampled out.
    pub sampled_out: u64,
}

impl Sampler {
    pub(crate) fn new(rates: HashMap<String, f64>, rng: SplitMix64) -> Self {
        Sampler {
            rates,
            rng,
            key_buf: String::new(),
        }
    }

    pub(crate) fn set_rates(&mut self, rates: HashMap<String, f64>) {
        self.rates = rates;
    }

    /// The rate an event is kept at, or `None` if it is sampled out.
    pub(crate) fn decide(&mut self, e: &TrackEvent) -> Option<f64> {
        if self.rates.is_empty() {
            return Some(1.0);
        }
        let key = sampling_key(e, &mut self.key_buf);
        match self.rates.get(key) {
            None => Some(1.0),
            Some(&r) if r >= 1.0 => Some(1.0),
            Some(&r) if r <= 0.0 => None,
            Some(&r) => (self.rng.next_f64() < r).then_some(r),
        }
    }

    /// Decides and routes a batch of validated events.
    pub(crate) fn route(&mut self, events: Vec<TrackEvent>, out: &mut Routed) {
        for event in events {
            let Some(rate) = self.decide(&event) else {
                out.sampled_out += 1;
                continue;
            };
            match event.kind {
                EventKind::Performance | EventKind::Datastore | EventKind::Error => {
                    out.aggregate.push(Kept { event, rate })
                }
                EventKind::Command | EventKind::Engagement | EventKind::Custom => {
                    out.records.push(Record::from_event(&event, rate))
                }
            }
        }
    }
}

/// Drains the sampler's inbox into the aggregator's and the queue's. Returns which of the two
/// went from empty to non-empty (their doorbells to ring).
pub(crate) fn drain(stages: &Stages) -> (bool, bool) {
    let events = stages.sampler_in.drain();
    if events.is_empty() {
        return (false, false);
    }
    let n = events.len() as u64;
    let mut routed = Routed::default();
    lock(&stages.sampler).route(events, &mut routed);
    let c = &stages.counters;
    crate::counters::Counters::add(&c.sampled_out, routed.sampled_out);
    crate::counters::Counters::add(&c.kept, n - routed.sampled_out);
    let wake_aggregator = stages.aggregator_in.extend(routed.aggregate);
    let wake_queue = stages.queue_in.extend(routed.records);
    (wake_aggregator, wake_queue)
}

/// The sampler's actor: drains its inbox when woken.
pub(crate) struct SamplerActor {
    pub stages: Arc<Stages>,
    pub aggregator: Addr<crate::aggregator::AggregatorActor>,
    pub queue: Addr<crate::queue::QueueActor>,
}

impl SamplerActor {
    fn run(&mut self) {
        let (wake_aggregator, wake_queue) = drain(&self.stages);
        if wake_aggregator {
            self.aggregator.do_send(Wake);
        }
        if wake_queue {
            self.queue.do_send(Wake);
        }
    }
}

impl Actor for SamplerActor {
    type Context = Context<Self>;
}

impl Handler<Wake> for SamplerActor {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut Context<Self>) {
        self.run();
    }
}

impl Handler<Drain> for SamplerActor {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(rates: &[(&str, f64)]) -> Sampler {
        let rates = rates.iter().map(|(k, r)| (k.to_string(), *r)).collect();
        Sampler::new(rates, SplitMix64::new(7))
    }

    #[test]
    fn keys_follow_the_contract() {
        let mut b = String::new();
        assert_eq!(sampling_key(&TrackEvent::command("help"), &mut b), "help");
        assert_eq!(
            sampling_key(&TrackEvent::performance("rt", 1.0), &mut b),
            "performance.rt"
        );
        assert_eq!(
            sampling_key(&TrackEvent::engagement("reaction"), &mut b),
            "engagement.reaction"
        );
        assert_eq!(
            sampling_key(&TrackEvent::datastore("save", "db", 1.0), &mut b),
            "datastore.save"
        );
        assert_eq!(
            sampling_key(&TrackEvent::error("timeout", "api"), &mut b),
            "error.timeout"
        );
        assert_eq!(
            sampling_key(&TrackEvent::custom("checkout"), &mut b),
            "checkout"
        );
    }

    #[test]
    fn keeps_at_the_configured_rate_within_statistical_bounds() {
        let mut s = sampler(&[("help", 0.1)]);
        let n = 100_000;
        let kept = (0..n)
            .filter(|_| s.decide(&TrackEvent::command("help")).is_some())
            .count();
        // binomial(n, 0.1): sd = sqrt(n p (1-p)) ~ 95; 5 sd = 475
        assert!((kept as f64 - 10_000.0).abs() < 475.0, "kept {kept}");
        assert_eq!(s.decide(&TrackEvent::command("help")).unwrap_or(0.1), 0.1);
        assert_eq!(s.decide(&TrackEvent::command("other")), Some(1.0));
    }

    #[test]
    fn errors_are_sampled_only_with_their_own_key() {
        let mut s = sampler(&[("timeout", 0.0)]);
        assert_eq!(s.decide(&TrackEvent::error("timeout", "api")), Some(1.0));
        let mut s = sampler(&[("error.timeout", 0.0)]);
        assert_eq!(s.decide(&TrackEvent::error("timeout", "api")), None);
    }

    #[test]
    fn routes_by_kind() {
        let mut s = sampler(&[("drop_me", 0.0)]);
        let mut out = Routed::default();
        s.route(
            vec![
                TrackEvent::command("help"),
                TrackEvent::performance("rt", 1.0),
                TrackEvent::datastore("save", "db", 1.0),
                TrackEvent::error("t", "c"),
                TrackEvent::engagement("r"),
                TrackEvent::custom("drop_me"),
            ],
            &mut out,
        );
        assert_eq!(out.sampled_out, 1);
        assert_eq!(out.aggregate.len(), 3);
        assert_eq!(out.records.len(), 2);
    }
}
