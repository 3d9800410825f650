//! The sampler: per-key keep/drop decisions, then routing of kept events.
//!
//! [`Sampler`] is the logic (plain, unit-tested); [`SamplerActor`] routes each [`Events`] batch
//! the supervisor sends: kept samples and errors to the aggregator, kept records to the queue.

use std::collections::HashMap;

use crate::config::Settings;
use crate::event::{EventKind, TrackEvent};
use crate::model::{Kept, Record};
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

    /// A sampler with the configured rates and a random seed from the OS.
    pub(crate) fn from_settings(s: &Settings) -> Self {
        Sampler::new(s.sampling_rates.clone(), SplitMix64::from_entropy())
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
