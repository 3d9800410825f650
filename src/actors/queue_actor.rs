//! The queue's actor: queues the [`Records`] it receives in its [`PriorityQueues`], and on each
//! record batch, timer tick and confirmation ([`Committed`]) hands the due batches to the
//! writer while fewer than `max_in_flight_batches` are unconfirmed (with batching off, each
//! record as it arrives, as a batch the writer commits alone). Window, error-count and
//! pattern batches pass straight through, so the writer has one sender and markers stay in
//! order.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::deliver;
use crate::clock::Clock;
use crate::cores::queue::{PriorityQueues, Pushed, QueueLimits};
use crate::counters::Counters;
use crate::messages::{Committed, Control, Records, Write};
use crate::model::WriteBatch;
use crate::settings::Settings;

/// The queue's actor: queues records, hands due batches to the writer while fewer than
/// `max_in_flight_batches` are unconfirmed, and passes other write batches straight on.
pub(crate) struct QueueActor {
    pub queues: PriorityQueues,
    pub max_in_flight: usize,
    /// Record batches handed to the writer and not yet confirmed ([`Committed`]).
    pub in_flight_batches: usize,
    /// Records in them (they count against `max_queued_events`).
    pub in_flight_records: usize,
    /// Records dropped by the overflow policy since the last [`Control::Admitted`].
    pub dropped_since_admitted: usize,
    /// Counted in `actors_running` (until it forwards `Shutdown`, or stops).
    pub counted: bool,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
    pub writer: Recipient<Write>,
    /// Markers go on to the writer.
    pub next: Recipient<Control>,
}

impl QueueActor {
    pub(crate) fn new(
        settings: &Settings,
        counters: Arc<Counters>,
        clock: Arc<dyn Clock>,
        writer: Recipient<Write>,
        next: Recipient<Control>,
    ) -> Self {
        QueueActor {
            queues: PriorityQueues::from_settings(settings),
            max_in_flight: settings.max_in_flight_batches.get(),
            in_flight_batches: 0,
            in_flight_records: 0,
            dropped_since_admitted: 0,
            counted: false,
            counters,
            clock,
            writer,
            next,
        }
    }

    /// Leaves `actors_running`, once: as it forwards `Shutdown` (its last work), before the
    /// writer on its own thread can answer it, so the answer's count is 0.
    fn count_out(&mut self) {
        if std::mem::take(&mut self.counted) {
            Counters::sub(&self.counters.actors_running, 1);
        }
    }

    /// Takes new limits and the batching switch, and hands over what they make due.
    fn apply_settings(&mut self, s: &Settings) {
        self.queues.set_limits(QueueLimits::from_settings(s));
        self.max_in_flight = s.max_in_flight_batches.get();
        self.send_due(false);
    }

    /// Hands due batches (every batch with `force`) to the writer, within the in-flight limit
    /// unless forced.
    /// Publishes what the overflow policy counts (queued and in flight) for admission.
    fn publish_occupancy(&self) {
        let occupancy = (self.queues.len() + self.in_flight_records) as u64;
        self.counters
            .queue_occupancy
            .store(occupancy, std::sync::atomic::Ordering::Release);
    }

    fn send_due(&mut self, force: bool) {
        let now = self.clock.now_ms();
        while force || self.in_flight_batches < self.max_in_flight {
            let Some(records) = self.queues.take_batch(now, force) else {
                break;
            };
            self.in_flight_batches += 1;
            self.in_flight_records += records.len();
            let batch = WriteBatch {
                records,
                from_queue: true,
                own_transaction: !self.queues.limits.batching,
                ..WriteBatch::default()
            };
            deliver(&self.writer, Write(batch));
        }
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
        self.counted = true;
    }

    /// Stopped by `Shutdown`, which sent every queued record first.
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.count_out();
        // The queue stops last of the stages on their thread (a marker stops them in flow
        // order): that thread's System can end.
        System::current().stop();
    }
}

impl Handler<Records> for QueueActor {
    type Result = ();
    fn handle(&mut self, Records(records): Records, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let c = &self.counters;
        let (added, mut dropped) = (records.len() as u64, 0u64);
        for record in records {
            match self.queues.push(record, self.in_flight_records, now) {
                Pushed::Queued => {}
                Pushed::QueuedWithEviction | Pushed::Dropped => dropped += 1,
            }
        }
        // `queued` counts records in the queues or in flight: add the newcomers that stayed.
        Counters::add(&c.queued, added - dropped);
        // before `admitted`: whoever sees these records admitted sees them in the occupancy
        self.publish_occupancy();
        c.admitted
            .fetch_add(added, std::sync::atomic::Ordering::Release);
        if dropped > 0 {
            self.dropped_since_admitted += dropped as usize;
            Counters::add(&c.dropped, dropped);
            log::warn!(
                "queue full ({} records): dropped {dropped} by the overflow policy",
                self.queues.len() + self.in_flight_records
            );
        }
        self.send_due(false);
    }
}

impl Handler<Write> for QueueActor {
    type Result = ();
    fn handle(&mut self, batch: Write, _: &mut Context<Self>) {
        deliver(&self.writer, batch);
    }
}

impl Handler<Committed> for QueueActor {
    type Result = ();
    fn handle(&mut self, done: Committed, _: &mut Context<Self>) {
        self.in_flight_batches = self.in_flight_batches.saturating_sub(done.batches);
        self.in_flight_records = self.in_flight_records.saturating_sub(done.records);
        self.send_due(false);
        self.publish_occupancy();
    }
}

impl Handler<Control> for QueueActor {
    type Result = ();
    fn handle(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match &marker {
            Control::Tick => self.send_due(false),
            Control::Flush(_) | Control::Checkpoint(_) => self.send_due(true),
            Control::Shutdown(_) => {
                self.send_due(true);
                ctx.stop();
                self.count_out();
            }
            // records of events sampled after the marker come after it (one sender): they
            // are queued under the new limits and `batching`
            Control::Settings(s) => self.apply_settings(s),
            Control::Windows(_) | Control::Patterns(..) => {}
            Control::Admitted(_) => {
                if let Control::Admitted(reply) = marker {
                    let _ = reply.send(Ok(std::mem::take(&mut self.dropped_since_admitted)));
                }
                return;
            }
        }
        deliver(&self.next, marker);
    }
}
