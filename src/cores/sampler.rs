//! The sampler: per-key keep/drop decisions, then routing of kept events.
//!
//! [`Sampler`] is the logic (plain, unit-tested); the sampling stage routes each batch of
//! accepted events with it ([`Routed`]: kept samples and errors for the aggregator, kept records
//! for the queue, the events themselves not copied).
//!
//! A sampling key has a fixed rate (`Config::sampling_rates`), or an adaptive one that holds a
//! target of kept events per second (`Config::sampling_targets`, [`RateController`]), or none
//! (everything kept). The keep decision is a coin flip at the rate, or, for a key bound to a
//! field (`Config::sampling_by`), a function of that field's value: its position
//! [`consistent_position`] in `[0, 1)` below the rate. Either way a kept event carries the
//! rate it was kept at, so counts scale back by `1/rate`.

use std::collections::{BTreeMap, HashMap};

use crate::config::SampleBy;
use crate::cores::adaptive::RateController;
use crate::event::{EventKind, TrackEvent};
use crate::model::Record;
use crate::settings::Settings;
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
        EventKind::Counter => "counter.",
        EventKind::Gauge => "gauge.",
    };
    buf.push_str(prefix);
    buf.push_str(&e.name);
    buf.as_str()
}

/// Where a field value falls in `[0, 1)`: its XXH3-64 hash (seed 0) over 2^64, to 53 bits.
/// A value is kept at rate `r` when its position is below `r`, so a value kept at `r` is kept
/// at every higher rate, and every process (any version, any instance, any language with an
/// XXH3 implementation: `xxhash.xxh3_64_intdigest(value) / 2**64` in Python) agrees.
///
/// XXH3 because its output is frozen (since xxHash 0.8.0), it mixes every input bit into every
/// output bit, and it takes a few nanoseconds for an id. FNV-1a, this crate's error hash, does
/// not mix its last bytes into its high bits: `user0` to `user9` all fall within 1e-6 of
/// 0.2584, so consecutive ids would be kept or dropped together. SHA-256 (already here for
/// pseudonyms) would do, at about twenty times the cost per event.
pub(crate) fn consistent_position(value: &str) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64(value.as_bytes());
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl SampleBy {
    /// The bound field's value in `e`, `None` when the event does not have it.
    fn value_of<'e>(&self, e: &'e TrackEvent) -> Option<&'e str> {
        match self {
            SampleBy::User => e.user.as_deref(),
            SampleBy::Server => e.server.as_deref(),
            SampleBy::Tag(key) => e
                .tags
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.as_str()),
        }
    }
}

/// How a key's rate is set.
#[derive(Debug, Clone)]
enum KeyRate {
    /// `Config::sampling_rates`.
    Fixed(f64),
    /// `Config::sampling_targets`.
    Adaptive(RateController),
}

/// A sampling key's rule.
#[derive(Debug, Clone)]
struct KeyRule {
    rate: KeyRate,
    /// `Config::sampling_by`: the field the decision is a function of.
    by: Option<SampleBy>,
}

/// Per-key sampling: fixed or adaptive rates, coin flips or decisions bound to a field. Keys
/// without a rate keep everything (errors included: an error key is sampled only when a rate
/// or target is set for it explicitly).
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    keys: HashMap<String, KeyRule>,
    rng: SplitMix64,
    key_buf: String,
    /// A rate changed since [`Sampler::take_changed_rates`] last reported them.
    rates_changed: bool,
}

/// Where one event of a batch goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Route {
    /// A metric sample or an error, for the aggregator, kept at this rate.
    Aggregate(f64),
    /// A command, engagement or custom event, for the queues, kept at this rate.
    Record(f64),
    /// Sampled out.
    Out,
}

/// A routed batch: its events where they arrived, and where each goes. Routing moves no
/// event: the aggregator reads its samples in place and the records are packed from them, so
/// an event is not copied on its way through the front stages.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// The batch's accepted events, in arrival order.
    pub events: Vec<TrackEvent>,
    /// Where each of `events` goes, in the same order.
    pub routes: Vec<Route>,
    /// How many of `routes` are records (the size of their packed vector).
    pub records: usize,
    /// How many events were sampled out.
    pub sampled_out: u64,
    /// Distinct-user sketches due to be written (counted before sampling, by the stage).
    pub users: Vec<crate::cores::users::UserWindow>,
}

/// Whether events of `kind` fold into windows (metric samples, errors) rather than travel as
/// records.
fn aggregated(kind: EventKind) -> bool {
    match kind {
        EventKind::Performance
        | EventKind::Datastore
        | EventKind::Counter
        | EventKind::Gauge
        | EventKind::Error => true,
        EventKind::Command | EventKind::Engagement | EventKind::Custom => false,
    }
}

impl Routed {
    /// The metric samples and errors to fold, with the rate each was kept at.
    pub(crate) fn aggregate(&self) -> impl Iterator<Item = (&TrackEvent, f64)> {
        self.events
            .iter()
            .zip(&self.routes)
            .filter_map(|(event, route)| match *route {
                Route::Aggregate(rate) => Some((event, rate)),
                Route::Record(_) | Route::Out => None,
            })
    }

    /// The records, packed for the queues, in arrival order (one allocation: their number is
    /// known).
    pub(crate) fn pack_records(&self) -> Vec<Record> {
        let mut records = Vec::with_capacity(self.records);
        for (event, route) in self.events.iter().zip(&self.routes) {
            if let Route::Record(rate) = *route {
                records.push(Record::from_event(event, rate));
            }
        }
        records
    }
}

impl Sampler {
    /// A sampler with the rates, targets and bindings of `s`, flipping coins with `rng`.
    pub(crate) fn new(s: &Settings, rng: SplitMix64) -> Self {
        let mut sampler = Sampler {
            rng,
            ..Sampler::default()
        };
        sampler.set_settings(s);
        sampler
    }

    /// A sampler with the configured rates and a random seed from the OS.
    pub(crate) fn from_settings(s: &Settings) -> Self {
        Sampler::new(s, SplitMix64::from_entropy())
    }

    /// Takes new rates, targets and bindings. An adaptive key that keeps a target keeps its
    /// prediction (the new target applies at once); a new one starts keeping everything.
    pub(crate) fn set_settings(&mut self, s: &Settings) {
        let mut old = std::mem::take(&mut self.keys);
        let by = |key: &str| s.sampling_by.get(key).cloned();
        for (key, &rate) in &s.sampling_rates {
            let rule = KeyRule {
                rate: KeyRate::Fixed(rate),
                by: by(key),
            };
            self.keys.insert(key.clone(), rule);
        }
        for (key, &target) in &s.sampling_targets {
            let controller = match old.remove(key) {
                Some(KeyRule {
                    rate: KeyRate::Adaptive(mut c),
                    ..
                }) => {
                    c.set_target(target);
                    c
                }
                _ => RateController::new(target),
            };
            let rule = KeyRule {
                rate: KeyRate::Adaptive(controller),
                by: by(key),
            };
            self.keys.insert(key.clone(), rule);
        }
        self.rates_changed = true;
    }

    /// The rate an event is kept at, or `None` if it is sampled out; `now_ms` is the pipeline
    /// clock's time (adaptive keys count the event in that interval).
    pub(crate) fn decide(&mut self, e: &TrackEvent, now_ms: i64) -> Option<f64> {
        if self.keys.is_empty() {
            return Some(1.0);
        }
        let key = sampling_key(e, &mut self.key_buf);
        let Some(rule) = self.keys.get_mut(key) else {
            return Some(1.0);
        };
        let rate = match &mut rule.rate {
            KeyRate::Fixed(r) => *r,
            KeyRate::Adaptive(c) => {
                let (r, changed) = c.offer(now_ms);
                self.rates_changed |= changed;
                r
            }
        };
        if rate >= 1.0 {
            return Some(1.0);
        }
        if rate <= 0.0 {
            return None;
        }
        let position = match rule.by.as_ref().and_then(|by| by.value_of(e)) {
            Some(value) => consistent_position(value),
            None => self.rng.next_f64(),
        };
        (position < rate).then_some(rate)
    }

    /// Decides and routes a batch of validated events that arrived at `now_ms`, in one walk
    /// over it: `see` is shown each event before its decision (the stage counts distinct
    /// users there, so sampling never biases them).
    pub(crate) fn route(
        &mut self,
        events: Vec<TrackEvent>,
        now_ms: i64,
        mut see: impl FnMut(&TrackEvent),
    ) -> Routed {
        let mut routes = Vec::with_capacity(events.len());
        let (mut records, mut sampled_out) = (0, 0);
        for event in &events {
            see(event);
            routes.push(match self.decide(event, now_ms) {
                None => {
                    sampled_out += 1;
                    Route::Out
                }
                Some(rate) if aggregated(event.kind) => Route::Aggregate(rate),
                Some(rate) => {
                    records += 1;
                    Route::Record(rate)
                }
            });
        }
        Routed {
            events,
            routes,
            records,
            sampled_out,
            users: Vec::new(),
        }
    }

    /// Moves every adaptive key to the interval holding `now_ms` (on the timer's tick, so an
    /// idle key's rate in force follows the clock too).
    pub(crate) fn advance(&mut self, now_ms: i64) {
        for rule in self.keys.values_mut() {
            if let KeyRate::Adaptive(c) = &mut rule.rate {
                self.rates_changed |= c.advance(now_ms);
            }
        }
    }

    /// The rate in force of every key that has one.
    pub(crate) fn rates_in_force(&self) -> BTreeMap<String, f64> {
        self.keys
            .iter()
            .map(|(key, rule)| {
                let rate = match &rule.rate {
                    KeyRate::Fixed(r) => *r,
                    KeyRate::Adaptive(c) => c.rate(),
                };
                (key.clone(), rate)
            })
            .collect()
    }

    /// [`Sampler::rates_in_force`] if a rate changed since the last call.
    pub(crate) fn take_changed_rates(&mut self) -> Option<BTreeMap<String, f64>> {
        std::mem::take(&mut self.rates_changed).then(|| self.rates_in_force())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NOW: i64 = 1_764_000_000_000;

    fn owned<T: Clone>(pairs: &[(&str, T)]) -> HashMap<String, T> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn sampler_with(config: Config, seed: u64) -> Sampler {
        Sampler::new(&config.settings().unwrap(), SplitMix64::new(seed))
    }

    fn sampler(rates: &[(&str, f64)]) -> Sampler {
        sampler_with(
            Config {
                sampling_rates: owned(rates),
                ..Config::default()
            },
            7,
        )
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
            .filter(|_| s.decide(&TrackEvent::command("help"), NOW).is_some())
            .count();
        // binomial(n, 0.1): sd = sqrt(n p (1-p)) ~ 95; 5 sd = 475
        assert!((kept as f64 - 10_000.0).abs() < 475.0, "kept {kept}");
        assert_eq!(
            s.decide(&TrackEvent::command("help"), NOW).unwrap_or(0.1),
            0.1
        );
        assert_eq!(s.decide(&TrackEvent::command("other"), NOW), Some(1.0));
    }

    #[test]
    fn errors_are_sampled_only_with_their_own_key() {
        let mut s = sampler(&[("timeout", 0.0)]);
        assert_eq!(
            s.decide(&TrackEvent::error("timeout", "api"), NOW),
            Some(1.0)
        );
        let mut s = sampler(&[("error.timeout", 0.0)]);
        assert_eq!(s.decide(&TrackEvent::error("timeout", "api"), NOW), None);
    }

    #[test]
    fn routes_by_kind() {
        let mut s = sampler(&[("drop_me", 0.0)]);
        let mut seen = 0;
        let out = s.route(
            vec![
                TrackEvent::command("help"),
                TrackEvent::performance("rt", 1.0),
                TrackEvent::datastore("save", "db", 1.0),
                TrackEvent::error("t", "c"),
                TrackEvent::engagement("r"),
                TrackEvent::custom("drop_me"),
            ],
            NOW,
            |_| seen += 1,
        );
        assert_eq!(seen, 6, "every event is seen, the sampled-out one too");
        assert_eq!(out.sampled_out, 1);
        assert_eq!(out.events.len(), 6, "the batch travels whole");
        let folded: Vec<&str> = out.aggregate().map(|(e, _)| e.name.as_str()).collect();
        assert_eq!(folded, ["rt", "save", "t"]);
        let records = out.pack_records();
        assert_eq!((out.records, records.len(), records.capacity()), (2, 2, 2));
        let names: Vec<&str> = records.iter().map(Record::name).collect();
        assert_eq!(names, ["help", "r"]);
        assert_eq!(out.routes[5], Route::Out);
    }

    /// Adaptive keys through the sampler: 20,000 events a second for `help` against a target
    /// of 500, the key's rate reported in force, fixed keys beside it untouched.
    #[test]
    fn a_target_sets_the_rate_kept_events_carry_it_and_it_is_reported() {
        let mut s = sampler_with(
            Config {
                sampling_rates: owned(&[("other", 0.5)]),
                sampling_targets: owned(&[("help", 500.0)]),
                ..Config::default()
            },
            1,
        );
        let initial = s.take_changed_rates().unwrap();
        assert_eq!(
            initial,
            [("help".into(), 1.0), ("other".into(), 0.5)].into()
        );
        assert_eq!(s.take_changed_rates(), None);
        let event = TrackEvent::command("help");
        let mut per_second = Vec::new();
        for second in 0..10 {
            let (mut kept, mut estimated) = (0u64, 0.0);
            for i in 0..20_000 {
                let now = NOW + second * 1000 + i / 20;
                if let Some(rate) = s.decide(&event, now) {
                    kept += 1;
                    estimated += 1.0 / rate;
                }
            }
            per_second.push((kept, estimated));
        }
        assert_eq!(
            per_second[0].0, 20_000,
            "the first interval keeps everything"
        );
        for &(kept, _) in &per_second[1..] {
            // binomial(20,000, 0.025): sd ~ 22; 10% is 50
            assert!((kept as f64 - 500.0).abs() < 50.0, "{per_second:?}");
        }
        let estimated: f64 = per_second.iter().map(|s| s.1).sum();
        assert!((estimated / 200_000.0 - 1.0).abs() < 0.02, "{estimated}");
        let rates = s.take_changed_rates().expect("the rate moved");
        assert!((rates["help"] - 0.025).abs() < 1e-9, "{rates:?}");
        assert_eq!(rates["other"], 0.5);
        // the timer's tick moves an idle key on: nothing offered, the rate opens up
        s.advance(NOW + 60_000);
        assert_eq!(s.take_changed_rates().unwrap()["help"], 1.0);
        // a new target applies at once, and keeps the prediction
        let mut settings = Config {
            sampling_targets: owned(&[("help", 500.0)]),
            ..Config::default()
        }
        .settings()
        .unwrap();
        let mut s = sampler_with(Config::default(), 1);
        s.set_settings(&settings);
        for i in 0..10_000 {
            s.decide(&event, NOW + i / 10);
        }
        s.advance(NOW + 1000);
        assert!((s.rates_in_force()["help"] - 0.05).abs() < 1e-9);
        settings.sampling_targets.insert("help".into(), 1000.0);
        s.set_settings(&settings);
        assert!((s.rates_in_force()["help"] - 0.1).abs() < 1e-9);
    }

    fn bound(by: SampleBy, rate: f64) -> Sampler {
        sampler_with(
            Config {
                sampling_rates: owned(&[("help", rate), ("engagement.reaction", rate)]),
                sampling_by: owned(&[("help", by.clone()), ("engagement.reaction", by)]),
                ..Config::default()
            },
            99,
        )
    }

    #[test]
    fn a_key_bound_to_the_user_keeps_every_event_of_a_kept_user_and_none_of_a_dropped_one() {
        let mut s = bound(SampleBy::User, 0.3);
        let users = 10_000;
        let mut kept_users = 0;
        for u in 0..users {
            let user = format!("user{u}");
            let mut decisions = Vec::new();
            for _ in 0..5 {
                let command = TrackEvent::command("help").user(&user);
                decisions.push(s.decide(&command, NOW).is_some());
                let reaction = TrackEvent::engagement("reaction").user(&user);
                decisions.push(s.decide(&reaction, NOW).is_some());
            }
            // the whole story of a user, across keys bound alike: all kept or all dropped
            assert!(
                decisions.iter().all(|&d| d == decisions[0]),
                "{user}: {decisions:?}"
            );
            kept_users += usize::from(decisions[0]);
        }
        // binomial(10,000, 0.3): sd ~ 46; 5 sd
        assert!(
            (kept_users as f64 - 3000.0).abs() < 230.0,
            "kept {kept_users} users"
        );
        // a kept event carries the rate
        let kept = (0..users)
            .map(|u| format!("user{u}"))
            .find_map(|u| s.decide(&TrackEvent::command("help").user(u), NOW));
        assert_eq!(kept, Some(0.3));
    }

    #[test]
    fn servers_and_tags_bind_too_and_a_missing_field_falls_back_to_a_coin() {
        let mut by_server = bound(SampleBy::Server, 0.5);
        let mut by_tag = bound(SampleBy::Tag("tenant".into()), 0.5);
        for v in 0..200 {
            let v = format!("v{v}");
            let server: Vec<bool> = (0..4)
                .map(|_| {
                    by_server
                        .decide(&TrackEvent::command("help").server(&v).user("u"), NOW)
                        .is_some()
                })
                .collect();
            assert!(server.iter().all(|&d| d == server[0]));
            let tag: Vec<bool> = (0..4)
                .map(|_| {
                    by_tag
                        .decide(&TrackEvent::command("help").tag("tenant", &v), NOW)
                        .is_some()
                })
                .collect();
            assert!(tag.iter().all(|&d| d == tag[0]));
            // same value, same position: the bound field decides, not the kind of field
            assert_eq!(server[0], tag[0]);
        }
        // without the field: a coin flip at the rate
        let kept = (0..20_000)
            .filter(|_| {
                by_tag
                    .decide(&TrackEvent::command("help").tag("other", "x"), NOW)
                    .is_some()
            })
            .count();
        // binomial(20,000, 0.5): sd ~ 71; 5 sd
        assert!((kept as f64 - 10_000.0).abs() < 355.0, "{kept}");
    }

    #[test]
    fn decisions_are_stable_across_processes_and_monotone_in_the_rate() {
        // pinned: XXH3-64 (seed 0) of "user123", as Python's xxhash 3.x/4.x computes it
        // (`xxhash.xxh3_64_intdigest(b"user123")`)
        let p = consistent_position("user123");
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64(b"user123"),
            PINNED_XXH3_USER123,
            "the published XXH3-64 of \"user123\""
        );
        assert_eq!(p, (PINNED_XXH3_USER123 >> 11) as f64 / (1u64 << 53) as f64);
        // two samplers with different random seeds agree on every bound decision
        let mut a = bound(SampleBy::User, 0.4);
        let mut b = sampler_with(
            Config {
                sampling_rates: owned(&[("help", 0.4)]),
                sampling_by: owned(&[("help", SampleBy::User)]),
                ..Config::default()
            },
            12_345,
        );
        for u in 0..1000 {
            let e = TrackEvent::command("help").user(format!("u{u}"));
            assert_eq!(a.decide(&e, NOW), b.decide(&e, NOW));
        }
        // a user kept at a rate is kept at every higher rate
        let kept_at = |rate: f64| -> Vec<usize> {
            let mut s = bound(SampleBy::User, rate);
            (0..2000)
                .filter(|u| {
                    s.decide(&TrackEvent::command("help").user(format!("u{u}")), NOW)
                        .is_some()
                })
                .collect()
        };
        let (low, high) = (kept_at(0.1), kept_at(0.35));
        assert!(low.iter().all(|u| high.contains(u)));
        assert!(high.len() > low.len());
    }

    const PINNED_XXH3_USER123: u64 = 0x6f3b_ae88_a40b_238c;

    /// Consecutive ids spread over `[0, 1)` (FNV-1a's high bits would not).
    #[test]
    fn consecutive_ids_spread_evenly() {
        let n = 100_000;
        let mut buckets = [0u32; 10];
        for i in 0..n {
            let p = consistent_position(&format!("user{i}"));
            assert!((0.0..1.0).contains(&p));
            buckets[(p * 10.0) as usize] += 1;
        }
        // binomial(100,000, 0.1) per bucket: sd ~ 95; 5 sd
        for b in buckets {
            assert!((b as f64 - 10_000.0).abs() < 475.0, "{buckets:?}");
        }
        // FNV-1a's positions of user0..user9: all within 1e-6 of each other
        let fnv = |i: u32| crate::util::stable_hash(&[&format!("user{i}")]) as f64 / 2f64.powi(64);
        let (lo, hi) = (0..10)
            .map(fnv)
            .fold((1.0, 0.0), |(lo, hi), p| (p.min(lo), p.max(hi)));
        assert!(hi - lo < 1e-6, "{lo} {hi}");
    }
}
