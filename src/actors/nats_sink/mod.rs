//! Forwarding mode's writer (`Config::forward`, docs/scale-out.md): started where the
//! [`DbWriter`](crate::actors::db_writer::DbWriter) would be, it receives the same [`Write`]
//! batches and markers, and publishes each batch to the JetStream stream (encoded and
//! compressed, `crate::forward::wire`) with a `Nats-Msg-Id`, so a retried publish is stored
//! once. A batch from the queue is confirmed to it ([`Committed`]) once JetStream has
//! acknowledged it: while NATS is unreachable, batches stay unconfirmed, so the queue's
//! bounds (`max_in_flight_batches`, `max_queued_events`) and its overflow policy hold what
//! waits, counted as today.
//!
//! The actor is thin: it encodes and hands each message to the publisher task (`publish`),
//! on the same thread (its System's runtime), which keeps up to [`MAX_UNACKED`] publishes
//! outstanding, retries each until acknowledged, and answers `Flush` and `Shutdown` once
//! everything before them is acknowledged (or `Err` after the retry budget).
//!
//! Durable mode (`durable` with `forward`, [`DurableSink`]): a batch is held until a journal
//! checkpoint covers it (`crate::forward::checkpoint`), then encoded and committed to the
//! journal's outbox with the checkpoint (`crate::journal::outbox`), and only then published;
//! JetStream's acknowledgements remove messages from the outbox with the next commit. At start
//! the messages an earlier run left in the outbox are published again first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::actors::db_writer::{ConnectQueue, StopWriter};
use crate::actors::EndOfChain;
use crate::counters::Counters;
use crate::error::PipelineError;
use crate::forward::checkpoint::{CheckpointCover, DurableSink};
use crate::forward::wire::Origin;
use crate::forward::Forward;
use crate::journal::outbox::OutboxMessage;
use crate::journal::Journal;
use crate::messages::{Committed, Control};
use crate::model::WriteBatch;
use crate::pipeline::stage::{deliver, Item};

mod message;
mod publisher;

use message::{Message, Outgoing, Tally};
use publisher::{Publisher, DEFAULT_MAX_BODY};

/// The sink's actor, alone on its thread (the writer's).
pub(crate) struct NatsSink {
    counters: Arc<Counters>,
    origin: Origin,
    to_publisher: mpsc::UnboundedSender<Outgoing>,
    /// The queue, for an empty batch (confirmed at once).
    queue: Option<Recipient<Committed>>,
    /// Handed to the publisher task when the queue connects.
    publisher: Option<Publisher>,
    /// Durable mode: the journal's outbox and the batches waiting for a checkpoint.
    durable: Option<DurableSink>,
    /// The largest message body the server takes (learnt by the publisher once connected).
    max_body: Arc<AtomicUsize>,
    /// Its own address and the `Shutdown` answer.
    end: EndOfChain<NatsSink>,
}

/// Durable mode's journal for the sink, and the outbox an earlier run left (to publish again).
pub(crate) struct SinkJournal {
    pub journal: Arc<Journal>,
    pub outbox: Vec<OutboxMessage>,
}

impl NatsSink {
    pub(crate) fn new(
        forward: Forward,
        instance_id: String,
        retry_budget: Duration,
        counters: Arc<Counters>,
        journal: Option<SinkJournal>,
    ) -> NatsSink {
        let (to_publisher, from_sink) = mpsc::unbounded_channel();
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let max_body = Arc::new(AtomicUsize::new(DEFAULT_MAX_BODY));
        let mut resend = VecDeque::new();
        let durable = journal.map(|j| {
            if !j.outbox.is_empty() {
                log::info!(
                    "forwarding: {} messages an earlier run committed to the journal's outbox are published again",
                    j.outbox.len()
                );
            }
            resend.extend(j.outbox.into_iter().map(|m| Message {
                id: m.msg_id,
                body: m.body.into(),
                tally: None,
                outbox: true,
                parts: None,
            }));
            DurableSink {
                journal: j.journal,
                cover: CheckpointCover::default(),
                acknowledged: acknowledged.clone(),
            }
        });
        NatsSink {
            origin: Origin {
                instance: instance_id,
                run: crate::util::os_random_u64(),
                seq: 0,
            },
            to_publisher,
            publisher: Some(Publisher::new(
                forward,
                from_sink,
                retry_budget,
                counters.clone(),
                resend,
                durable.is_some().then_some(acknowledged),
                max_body.clone(),
            )),
            counters,
            queue: None,
            durable,
            max_body,
            end: EndOfChain::new(),
        }
    }

    fn send(&self, item: Outgoing) {
        if let Err(mpsc::error::SendError(item)) = self.to_publisher.send(item) {
            // the publisher stopped (the System is going): nothing will acknowledge it
            match item {
                Outgoing::Publish(m) => {
                    m.abandon(&self.counters);
                }
                Outgoing::Drain { reply, .. } => {
                    let _ = reply.send(Err(PipelineError::Forward("publisher stopped".into())));
                }
            }
        }
    }
}

impl Actor for NatsSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.end.started(ctx, &self.counters);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.end.stopping(&self.counters);
        self.end.stopped();
    }
}

impl Handler<ConnectQueue> for NatsSink {
    type Result = ();
    fn handle(&mut self, ConnectQueue(queue): ConnectQueue, _: &mut Context<Self>) {
        self.queue = Some(queue.clone());
        if let Some(mut publisher) = self.publisher.take() {
            publisher.queue = Some(queue);
            actix::spawn(publisher.run());
        }
    }
}

impl Handler<StopWriter> for NatsSink {
    type Result = ();
    fn handle(&mut self, _: StopWriter, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The end of the chain in forwarding mode: the queue's batches and markers.
impl Handler<Item<WriteBatch>> for NatsSink {
    type Result = ();
    fn handle(&mut self, item: Item<WriteBatch>, ctx: &mut Context<Self>) {
        match item {
            Item::Data(batch) => self.publish(batch),
            Item::Marker(marker) => self.marker(marker, ctx),
        }
    }
}

impl NatsSink {
    /// Publishes a batch (an empty one from the queue is confirmed at once).
    fn publish(&mut self, batch: WriteBatch) {
        if batch.is_empty() {
            if let (true, Some(queue)) = (batch.from_queue, &self.queue) {
                deliver(
                    queue,
                    Committed {
                        batches: 1,
                        records: 0,
                    },
                );
            }
            return;
        }
        match &mut self.durable {
            Some(d) => d.cover.hold(batch),
            None => {
                let max_body = self.max_body.load(Ordering::Relaxed);
                for message in Message::of(&mut self.origin, &batch, false, max_body) {
                    self.send(Outgoing::Publish(message));
                }
            }
        }
    }

    /// Durable mode: after the marker behind a checkpoint, commits the batches it covers to
    /// the journal's outbox with it (removing the messages JetStream acknowledged since the
    /// last commit), then publishes them and lets the journal delete its entries up to it. If
    /// the outbox cannot take them, they wait for the next checkpoint, and the answer is why
    /// (for a `Flush` behind the checkpoint, which must not answer `Ok`).
    fn commit_checkpoint(&mut self) -> Result<(), PipelineError> {
        let Some(d) = &mut self.durable else {
            return Ok(());
        };
        let Some((position, batches)) = d.cover.marker_passed() else {
            return Ok(());
        };
        let max_body = self.max_body.load(Ordering::Relaxed);
        let messages: Vec<Message> = batches
            .iter()
            .flat_map(|b| Message::of(&mut self.origin, b, true, max_body))
            .collect();
        let rows = messages
            .iter()
            .map(|m| OutboxMessage {
                msg_id: m.id.clone(),
                body: m.body.to_vec(),
            })
            .collect();
        let acknowledged = d.take_acknowledged();
        match d
            .journal
            .commit_outbox(position, rows, acknowledged.clone())
        {
            Ok(()) => {
                d.cover.committed(position);
                d.journal.truncate_through(position);
                Counters::add(&self.counters.checkpoints, 1);
                log::debug!(
                    "checkpoint {position} committed to the outbox ({} messages)",
                    messages.len()
                );
                for m in messages {
                    self.send(Outgoing::Publish(m));
                }
                Ok(())
            }
            Err(e) => {
                // the journal logs the failure (once while it lasts)
                log::debug!("forwarding: checkpoint {position} not committed ({e})");
                let held = batches.len();
                d.cover.failed(batches);
                d.give_back(acknowledged);
                Err(PipelineError::Journal {
                    path: d.journal.path(),
                    reason: format!(
                        "the forwarding outbox cannot take checkpoint {position} ({e}): \
                         {held} batches wait for the next checkpoint, unpublished"
                    ),
                })
            }
        }
    }

    /// Durable mode, at a clean stop: removes what JetStream acknowledged from the outbox, so
    /// the next start publishes nothing again; counts what no checkpoint covered as lost in
    /// this run (its events stay in the journal and are replayed at the next start).
    fn settle_outbox(&mut self) {
        let Some(d) = &mut self.durable else { return };
        let lost: u64 = d
            .cover
            .take_all()
            .iter()
            .map(|b| Tally::of(b).abandon(&self.counters))
            .sum();
        if lost > 0 {
            log::error!(
                "forwarding: {lost} events no checkpoint covered at stop; those the journal {} \
                 holds are replayed on the next start (it logs any it could not write)",
                d.journal.id()
            );
        }
        let acknowledged = d.take_acknowledged();
        if acknowledged.is_empty() {
            return;
        }
        let position = d.cover.committed_position();
        if let Err(e) = d.journal.commit_outbox(position, Vec::new(), acknowledged) {
            log::warn!(
                "forwarding: cannot remove acknowledged messages from the outbox ({e}); the next start publishes them again (stored once)"
            );
        }
    }
}

impl NatsSink {
    /// Does the sink's part of a marker, and answers it.
    fn marker(&mut self, marker: Control, ctx: &mut Context<Self>) {
        // Durable mode: a checkpoint covers what is held and what arrives until the next
        // marker, which commits it (see `CheckpointCover`).
        // A `Flush` comes right behind a checkpoint: if the outbox refused it, what came
        // before the `Flush` is not on its way, and the answer says so.
        let mut refused = None;
        if let Some(d) = &mut self.durable {
            match &marker {
                Control::Checkpoint(position) => return d.cover.checkpoint(*position),
                _ => refused = self.commit_checkpoint().err(),
            }
        }
        match marker {
            Control::Flush(reply) => match refused {
                Some(e) => {
                    let _ = reply.send(Err(e));
                }
                None => self.send(Outgoing::Drain {
                    reply,
                    abandon: false,
                }),
            },
            Control::Shutdown(reply) => {
                let (tx, rx) = oneshot::channel();
                self.send(Outgoing::Drain {
                    reply: tx,
                    abandon: true,
                });
                ctx.wait(rx.into_actor(self).map(|answer, act, ctx| {
                    let result = answer.unwrap_or_else(|_| {
                        Err(PipelineError::Forward("publisher stopped".into()))
                    });
                    act.settle_outbox();
                    act.end.shutdown = Some((reply, result));
                    ctx.stop();
                }));
            }
            Control::Windows(q) => {
                let _ = q.reply.send(Err(not_here()));
            }
            Control::Patterns(_, reply) => {
                let _ = reply.send(Err(not_here()));
            }
            Control::Users(q) => {
                let _ = q.reply.send(Err(not_here()));
            }
            Control::Admitted(reply) => {
                let _ = reply.send(Ok(0));
            }
            Control::Tick | Control::Settings(_) | Control::Checkpoint(_) => {}
        }
    }
}

fn not_here() -> PipelineError {
    PipelineError::Forward(
        "queries are answered by the workers' database in forwarding mode (StoreReader)".into(),
    )
}
