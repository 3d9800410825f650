//! The sampling stage, first of the chain (`crate::pipeline`): routes each batch of accepted
//! events with its [`Sampler`]: kept samples and errors for the aggregator, kept records toward
//! the queue (with the aggregator's output). Adaptive rates follow the pipeline clock (read
//! once per batch and on each tick); the rates in force are published to the counters whenever
//! one changes. In the same walk over the batch, each accepted command's user is added to its
//! window's distinct-user sketch ([`DistinctUsers`]) before the event's keep-or-drop decision,
//! so sampling never biases the distinct count; the sketches due travel on with the kept
//! events (`Routed::users`).

use std::sync::Arc;

use crate::cores::sampler::{Routed, Sampler};
use crate::cores::users::DistinctUsers;
use crate::counters::Counters;
use crate::event::TrackEvent;
use crate::messages::Control;
use crate::pipeline::stage::{Next, Pass, Stage};

/// The sampling stage: its [`Sampler`], the distinct-user sketches, and the counters it adds
/// to.
pub(crate) struct SamplerStage {
    sampler: Sampler,
    users: DistinctUsers,
    counters: Arc<Counters>,
}

impl SamplerStage {
    /// A stage around `sampler` and `users`; publishes its rates in force.
    pub(crate) fn new(sampler: Sampler, users: DistinctUsers, counters: Arc<Counters>) -> Self {
        let mut stage = SamplerStage {
            sampler,
            users,
            counters,
        };
        stage.publish_rates();
        stage
    }

    /// Hands on the user sketches in `users`, if any (a marker's: `Tick`, `Flush`, ...).
    fn hand_on_users(users: Vec<crate::cores::users::UserWindow>, next: &mut impl Next<Routed>) {
        if !users.is_empty() {
            next.data(Routed {
                users,
                ..Routed::default()
            });
        }
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
    /// Accepted events, in arrival order (taken: with their buffer when they fill half of it,
    /// which leaves the caller an empty one, otherwise moved out of it).
    type In = Vec<TrackEvent>;
    type Out = Routed;

    /// Routes the events, counting what is kept and sampled out, and each command's user,
    /// in one walk. A batch that fills at least half its buffer travels on in it, so no event
    /// is copied; a few events in a large buffer (the intake's, one event sent alone) are
    /// moved to one of their size, and the buffer stays with the caller.
    fn take(&mut self, events: &mut Vec<TrackEvent>, now_ms: i64, next: &mut impl Next<Routed>) {
        let n = events.len() as u64;
        let batch = if events.len() >= events.capacity() / 2 {
            std::mem::take(events)
        } else {
            let mut batch = Vec::with_capacity(events.len());
            batch.append(events);
            batch
        };
        let mut due = Vec::new();
        let users = &mut self.users;
        let mut routed = self
            .sampler
            .route(batch, now_ms, |e| users.observe(e, &mut due));
        routed.users = due;
        Counters::add(&self.counters.sampled_out, routed.sampled_out);
        Counters::add(&self.counters.kept, n - routed.sampled_out);
        self.publish_rates();
        next.data(routed);
    }

    /// New settings, or a tick that moves adaptive rates to the clock's second (so an idle
    /// key's rate in force follows). User sketches: those due on a tick, every open one on
    /// `Flush` and `Checkpoint` (they merge into their rows, so writing early is harmless); a
    /// `Users` query takes copies of the open ones asked for.
    fn marker(&mut self, marker: &mut Control, now_ms: i64, next: &mut impl Next<Routed>) -> Pass {
        let mut users = Vec::new();
        match marker {
            Control::Settings(s) => {
                self.sampler.set_settings(s);
                self.users
                    .set_limits(s.allowed_lateness_ms, s.max_open_series);
            }
            Control::Tick => {
                self.sampler.advance(now_ms);
                self.users.take_due(now_ms, &mut users);
            }
            Control::Flush(_) | Control::Checkpoint(_) => self.users.take_all(&mut users),
            Control::Users(q) => {
                q.open = self
                    .users
                    .open_matching(&q.query.command, q.query.context.as_deref())
            }
            _ => return Pass::On,
        }
        Self::hand_on_users(users, next);
        self.publish_rates();
        Pass::On
    }

    /// The pipeline stops: every open user sketch is handed on.
    fn stop(&mut self, _: i64, next: &mut impl Next<Routed>) {
        let mut users = Vec::new();
        self.users.take_all(&mut users);
        Self::hand_on_users(users, next);
    }
}
