//! The queueing stage, fourth of the chain (`crate::pipeline`), last on the stages' thread
//! (its actor is the generic `Shell`): queues the records it receives in its
//! [`PriorityQueues`], and on each record batch, timer tick and confirmation ([`Committed`])
//! hands the due batches to the writer while fewer than `max_in_flight_batches` are
//! unconfirmed (with batching off, each record as it arrives, as a batch the writer commits
//! alone). Window, error-count and pattern batches pass straight through, so the writer has one
//! sender and markers stay in order.
//!
//! It also publishes the flow control the front door reads: `Counters::queue_occupancy` (the
//! records queued or in flight, as it counts them) after each change, and answers the
//! `Admitted` markers with what its overflow policy dropped.

use std::sync::Arc;

use actix::prelude::*;

use crate::cores::queue::{PriorityQueues, Pushed, QueueLimits};
use crate::counters::Counters;
use crate::messages::{Committed, Control};
use crate::model::{Record, WriteBatch};
use crate::pipeline::stage::{Next, Pass, Rows, Shell, Stage};
use crate::settings::Settings;

/// The queueing stage: queues records, hands due batches to the writer while fewer than
/// `max_in_flight_batches` are unconfirmed, and passes other write batches straight on.
pub(crate) struct QueueStage {
    pub queues: PriorityQueues,
    pub max_in_flight: usize,
    /// Record batches handed to the writer and not yet confirmed ([`Committed`]).
    pub in_flight_batches: usize,
    /// Records in them (they count against `max_queued_events`).
    pub in_flight_records: usize,
    /// Records dropped by the overflow policy since the last [`Control::Admitted`].
    pub dropped_since_admitted: usize,
    pub counters: Arc<Counters>,
}

impl QueueStage {
    pub(crate) fn new(settings: &Settings, counters: Arc<Counters>) -> Self {
        QueueStage {
            queues: PriorityQueues::from_settings(settings),
            max_in_flight: settings.max_in_flight_batches.get(),
            in_flight_batches: 0,
            in_flight_records: 0,
            dropped_since_admitted: 0,
            counters,
        }
    }

    /// Queues `records` by priority (the overflow policy counting what it drops).
    fn push(&mut self, records: Vec<Record>, now_ms: i64) {
        let c = &self.counters;
        let (added, mut dropped) = (records.len() as u64, 0u64);
        for record in records {
            match self.queues.push(record, self.in_flight_records, now_ms) {
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
    }

    /// The writer committed some of the queue's batches: room under the limits.
    fn committed(&mut self, done: Committed, now_ms: i64, next: &mut impl Next<WriteBatch>) {
        self.in_flight_batches = self.in_flight_batches.saturating_sub(done.batches);
        self.in_flight_records = self.in_flight_records.saturating_sub(done.records);
        self.send_due(now_ms, false, next);
        self.publish_occupancy();
    }

    /// Publishes what the overflow policy counts (queued and in flight) for admission: flow
    /// control, read by the front door (`Counters::room_for`).
    fn publish_occupancy(&self) {
        let occupancy = (self.queues.len() + self.in_flight_records) as u64;
        self.counters
            .queue_occupancy
            .store(occupancy, std::sync::atomic::Ordering::Release);
    }

    /// Hands due batches (every batch with `force`) to the writer, within the in-flight limit
    /// unless forced.
    fn send_due(&mut self, now_ms: i64, force: bool, next: &mut impl Next<WriteBatch>) {
        while force || self.in_flight_batches < self.max_in_flight {
            let Some(records) = self.queues.take_batch(now_ms, force) else {
                break;
            };
            self.in_flight_batches += 1;
            self.in_flight_records += records.len();
            next.data(WriteBatch {
                records,
                from_queue: true,
                own_transaction: !self.queues.limits.batching,
                ..WriteBatch::default()
            });
        }
    }
}

impl Stage for QueueStage {
    type In = Rows;
    type Out = WriteBatch;

    /// Records are queued (and what is due handed on); other rows pass straight through.
    fn take(&mut self, rows: &mut Rows, now_ms: i64, next: &mut impl Next<WriteBatch>) {
        match rows {
            Rows::Records(records) => {
                self.push(std::mem::take(records), now_ms);
                self.send_due(now_ms, false, next);
            }
            Rows::Write(batch) => next.data(std::mem::take(batch)),
        }
    }

    fn marker(
        &mut self,
        marker: &mut Control,
        now_ms: i64,
        next: &mut impl Next<WriteBatch>,
    ) -> Pass {
        match marker {
            Control::Tick => self.send_due(now_ms, false, next),
            Control::Flush(_) | Control::Checkpoint(_) => self.send_due(now_ms, true, next),
            // records of events sampled after the marker come after it (one sender): they
            // are queued under the new limits and `batching`
            Control::Settings(s) => {
                self.queues.set_limits(QueueLimits::from_settings(s));
                self.max_in_flight = s.max_in_flight_batches.get();
                self.send_due(now_ms, false, next);
            }
            Control::Admitted(_) => {
                let dropped = std::mem::take(&mut self.dropped_since_admitted);
                let answer = std::mem::replace(marker, Control::Tick);
                if let Control::Admitted(reply) = answer {
                    let _ = reply.send(Ok(dropped));
                }
                return Pass::Answered;
            }
            Control::Windows(_)
            | Control::Patterns(..)
            | Control::Users(_)
            | Control::Shutdown(_) => {}
        }
        Pass::On
    }

    /// The pipeline stops: every queued record goes to the writer.
    fn stop(&mut self, now_ms: i64, next: &mut impl Next<WriteBatch>) {
        self.send_due(now_ms, true, next);
    }
}

/// The writer confirms the queue's batches (a side input of the queue's actor, upstream).
impl Handler<Committed> for Shell<QueueStage> {
    type Result = ();
    fn handle(&mut self, done: Committed, _: &mut Context<Self>) {
        let now_ms = self.clock.now_ms();
        self.stage.committed(done, now_ms, &mut self.next);
    }
}
