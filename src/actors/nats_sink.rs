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
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::actors::db_writer::{ConnectQueue, StopWriter};
use crate::actors::EndOfChain;
use crate::counters::Counters;
use crate::db::bookkeeping::Written;
use crate::db::outage::{FIRST_BACKOFF, MAX_BACKOFF};
use crate::error::PipelineError;
use crate::forward::checkpoint::{CheckpointCover, DurableSink};
use crate::forward::wire::{self, Origin};
use crate::forward::Forward;
use crate::journal::outbox::OutboxMessage;
use crate::journal::Journal;
use crate::messages::{Committed, Control, Reply};
use crate::model::WriteBatch;
use crate::pipeline::stage::{deliver, Item};

/// Publishes awaiting JetStream's acknowledgement at once.
const MAX_UNACKED: usize = 32;

/// How long a publish waits for JetStream's acknowledgement, counted from the publish. The
/// acknowledgements are awaited in order, so a wait that began only when a future was first
/// awaited would make acknowledgements lost together (a stream leader that dies with
/// [`MAX_UNACKED`] outstanding) cost one timeout after another: 32 x 5 s, past the retry budget.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Room left in a message for its headers (`Nats-Msg-Id`) under the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

/// The largest message body until the server says its own `max_payload`: nats-server's
/// default (1 MB), less [`HEADER_ROOM`].
const DEFAULT_MAX_BODY: usize = (1 << 20) - HEADER_ROOM;

/// What a message carries, for the counters once it is acknowledged.
#[derive(Debug, Clone, Copy)]
struct Tally {
    written: Written,
    snapshots: u64,
    folded: u64,
    /// Came from the queue: confirmed to it when acknowledged.
    from_queue: bool,
}

impl Tally {
    fn of(batch: &WriteBatch) -> Tally {
        Tally {
            written: Written::of(batch),
            snapshots: (batch.windows.iter().filter(|w| !w.is_final).count()
                + batch.errors.iter().filter(|e| !e.is_final).count())
                as u64,
            folded: batch.folded(),
            from_queue: batch.from_queue,
        }
    }

    /// Counts the message as written, as the writer counts a committed batch.
    fn count(&self, c: &Counters) {
        let w = &self.written;
        Counters::add(&c.records_written, w.records);
        Counters::add(&c.windows_written, w.windows);
        Counters::add(&c.error_counts_written, w.errors);
        Counters::add(&c.patterns_written, w.patterns);
        Counters::add(&c.snapshot_rows, self.snapshots);
        Counters::add(&c.batches_written, 1);
        Counters::add(&c.transactions, 1);
        Counters::add(&c.batch_rows, w.rows());
        Counters::sub(&c.queued, w.records);
        Counters::add(&c.folded_settled, self.folded);
    }

    /// Counts the message as lost: the pipeline stopped before JetStream acknowledged it. Its
    /// folded events move from `aggregated` (counted when folded) to `dropped`, as
    /// `Counters::give_up_unwritten` moves them, so that the conservation law holds.
    fn abandon(&self, c: &Counters) -> u64 {
        let lost = self.written.records + self.folded;
        Counters::sub(&c.queued, self.written.records);
        Counters::sub(&c.aggregated, self.folded);
        Counters::add(&c.dropped, lost);
        Counters::add(&c.unwritten_at_stop, lost);
        lost
    }
}

/// One message on its way.
struct Message {
    id: String,
    body: bytes::Bytes,
    /// What it carries; `None` for a message of an earlier run, published again from the
    /// outbox (counted in `Stats::batches_resent` once acknowledged).
    tally: Option<Tally>,
    /// In the journal's outbox (durable mode): removed from it once acknowledged.
    outbox: bool,
    /// When its batch travels in parts (it was over the server's limit): how many of them
    /// JetStream has not acknowledged yet; the queue's batch is confirmed with the last.
    parts: Option<Arc<AtomicUsize>>,
}

impl Message {
    /// `batch` encoded as the next messages of `origin`: one, or, when its body would be over
    /// `max_body` bytes (the server refuses a larger one, every time), parts of it that fit,
    /// each the next message of `origin` ([`wire::encode_to_fit`]). A single row over the
    /// limit travels alone: the server refuses it, and it is retried and counted as lost at
    /// the stop like any message JetStream never acknowledged.
    fn of(origin: &mut Origin, batch: &WriteBatch, outbox: bool, max_body: usize) -> Vec<Message> {
        // the common case: one message, encoded from the borrowed batch (no copy)
        origin.seq += 1;
        let body = wire::encode(origin, batch);
        if body.len() <= max_body {
            return vec![Message {
                id: origin.msg_id(),
                body: body.into(),
                tally: Some(Tally::of(batch)),
                outbox,
                parts: None,
            }];
        }
        origin.seq -= 1;
        let parts = wire::encode_to_fit(origin, batch.clone(), max_body);
        let left = (parts.len() > 1).then(|| {
            log::debug!(
                "forwarding: a batch of {} rows sent in {} parts",
                batch.rows(),
                parts.len()
            );
            Arc::new(AtomicUsize::new(parts.len()))
        });
        parts
            .into_iter()
            .map(|(seq, part, body)| {
                if body.len() > max_body {
                    log::error!(
                        "forwarding: a row of {} bytes encoded is over the server's limit of \
                         {max_body}: it cannot be sent",
                        body.len()
                    );
                }
                Message {
                    id: Origin {
                        seq,
                        ..origin.clone()
                    }
                    .msg_id(),
                    body: body.into(),
                    tally: Some(Tally {
                        from_queue: batch.from_queue,
                        ..Tally::of(&part)
                    }),
                    outbox,
                    parts: left.clone(),
                }
            })
            .collect()
    }

    /// Counts the message as lost (the pipeline stopped before JetStream acknowledged it);
    /// a message of an earlier run stays in the outbox and counts nothing.
    fn abandon(&self, c: &Counters) -> u64 {
        self.tally.map_or(0, |t| t.abandon(c))
    }
}

/// From the actor to the publisher task.
enum Outgoing {
    Publish(Message),
    /// Answer once everything before is acknowledged; after `budget`, `Err` (and with
    /// `abandon`, count what is left as lost and stop).
    Drain {
        reply: Reply<()>,
        abandon: bool,
    },
}

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
            publisher: Some(Publisher {
                forward,
                from_sink,
                retry_budget,
                counters: counters.clone(),
                queue: None,
                unacked: VecDeque::new(),
                retry: resend,
                acknowledged: durable.is_some().then_some(acknowledged),
                max_body: max_body.clone(),
                backoff: Backoff::default(),
            }),
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

type AckFuture = Pin<
    Box<
        dyn Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// The publisher task: owns the connection, publishes in order, retries until acknowledged.
struct Publisher {
    forward: Forward,
    from_sink: mpsc::UnboundedReceiver<Outgoing>,
    retry_budget: Duration,
    counters: Arc<Counters>,
    queue: Option<Recipient<Committed>>,
    /// Published, awaiting the acknowledgement, oldest first.
    unacked: VecDeque<(Message, AckFuture)>,
    /// To publish (again), oldest first.
    retry: VecDeque<Message>,
    /// Durable mode: where acknowledged outbox messages are named (see [`DurableSink`]).
    acknowledged: Option<Arc<Mutex<Vec<String>>>>,
    /// Shared with the sink: the largest body the server takes.
    max_body: Arc<AtomicUsize>,
    /// The pause after a failure.
    backoff: Backoff,
}

/// The publisher's pause after a failure (a publish refused or unanswered, NATS unreachable,
/// the stream not ready): [`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`], back to the shortest
/// with an acknowledgement. Publishes that fail together (up to [`MAX_UNACKED`] outstanding)
/// make one pause, and until an acknowledgement comes, one message at a time probes
/// ([`Backoff::room`]). Without it, publishes that fail at once ("no responders" while a
/// stream's replicas elect a new leader) were sent again in a tight loop, up to 32 messages of
/// up to 1 MB each round, to the servers doing the electing.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    until: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            delay: FIRST_BACKOFF,
            until: None,
        }
    }
}

impl Backoff {
    /// A failure: a pause begins, unless one is on.
    fn failed(&mut self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(&mut self, now: Instant) {
        if self.until.is_some_and(|u| u > now) {
            return;
        }
        self.until = Some(now + self.delay);
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }

    /// An acknowledgement: no pause, and the next failure's is the shortest.
    fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// Whether publishing may go on (no pause, or it is over).
    fn ready(&self) -> bool {
        self.ready_at(Instant::now())
    }

    fn ready_at(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| u <= now)
    }

    /// How many publishes may be outstanding: [`MAX_UNACKED`], or one (a probe) from a failure
    /// until the next acknowledgement.
    fn room(&self) -> usize {
        if self.until.is_some() {
            1
        } else {
            MAX_UNACKED
        }
    }

    /// When the pause ends (now when there is none).
    fn resume_at(&self) -> Instant {
        self.until.unwrap_or_else(Instant::now)
    }
}

impl Publisher {
    async fn run(mut self) {
        let options = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2));
        let client = match options.connect(self.forward.addrs()).await {
            Ok(c) => c,
            Err(e) => {
                log::error!("forwarding: cannot connect to NATS ({e}): nothing will be sent");
                return self.abandon_all().await;
            }
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        let mut stream_ready = false;
        loop {
            let lookup = Instant::now() + ACK_TIMEOUT;
            self.publish_waiting(&client, &js, &mut stream_ready, lookup)
                .await;
            let paused = !self.retry.is_empty() && self.unacked.is_empty();
            tokio::select! {
                biased;
                Some((_, fut)) = front(&mut self.unacked) => {
                    let (m, _) = self.unacked.pop_front().expect("a front was polled");
                    self.answered(m, fut);
                }
                item = self.from_sink.recv() => {
                    match item {
                        None => return self.abandon_all().await,
                        Some(Outgoing::Publish(m)) => self.retry.push_back(m),
                        Some(Outgoing::Drain { reply, abandon }) => {
                            let result = self.drain(&client, &js, &mut stream_ready).await;
                            if result.is_err() && abandon {
                                let lost: u64 = self
                                    .retry
                                    .drain(..)
                                    .chain(self.unacked.drain(..).map(|(m, _)| m))
                                    .map(|m| m.abandon(&self.counters))
                                    .sum();
                                let fate = match self.acknowledged {
                                    Some(_) => "they stay in the journal's outbox and are published at the next start",
                                    None => "they are lost",
                                };
                                log::error!(
                                    "pipeline stopped while NATS is unreachable: {lost} events not forwarded ({fate})"
                                );
                            }
                            let _ = reply.send(result);
                            if abandon {
                                return;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(self.backoff.resume_at()), if paused => {}
            }
        }
    }

    /// Publishes what waits, while there is room, unless NATS is unreachable, the stream is
    /// not ready or a failure asked for a pause ([`Backoff`]). While disconnected nothing is
    /// tried: each request would wait out its timeout (5 s) with the sink's messages, a
    /// `Flush` among them, unread behind it. A stream lookup gives up at `deadline`.
    async fn publish_waiting(
        &mut self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        stream_ready: &mut bool,
        deadline: Instant,
    ) {
        if self.retry.is_empty() || !self.backoff.ready() {
            return;
        }
        if !is_connected(client) {
            return self.backoff.failed();
        }
        if !*stream_ready {
            *stream_ready = tokio::time::timeout_at(deadline, ensure_stream(js, &self.forward))
                .await
                .unwrap_or(false);
            if !*stream_ready {
                return self.backoff.failed();
            }
            self.learn_max_body(client);
        }
        while self.unacked.len() < self.backoff.room() {
            let Some(m) = self.retry.pop_front() else {
                break;
            };
            match publish(js, &self.forward, &m).await {
                Ok(fut) => self.unacked.push_back((m, fut)),
                Err(e) => {
                    log::debug!("forwarding: publish failed ({e}), retrying");
                    self.retry.push_front(m);
                    return self.backoff.failed();
                }
            }
        }
    }

    /// JetStream's answer to a publish: counted when acknowledged; otherwise published again
    /// after a pause (also "no responders", which is what a publish gets while the stream's
    /// replicas elect a new leader).
    fn answered(
        &mut self,
        m: Message,
        answer: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
    ) {
        match answer {
            Ok(_) => {
                self.backoff.succeeded();
                self.acked(m)
            }
            Err(e) => {
                log::debug!("forwarding: no acknowledgement ({e}), retrying");
                self.backoff.failed();
                self.retry.push_back(m);
            }
        }
    }

    /// Publishes and awaits everything waiting, for at most the retry budget.
    async fn drain(
        &mut self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        stream_ready: &mut bool,
    ) -> Result<(), PipelineError> {
        let deadline = Instant::now() + self.retry_budget;
        while !self.retry.is_empty() || !self.unacked.is_empty() {
            if Instant::now() >= deadline {
                return Err(PipelineError::Forward(format!(
                    "JetStream did not acknowledge {} batches within the retry budget",
                    self.retry.len() + self.unacked.len()
                )));
            }
            self.publish_waiting(client, js, stream_ready, deadline)
                .await;
            match self.unacked.pop_front() {
                Some((m, fut)) => match tokio::time::timeout_at(deadline, fut).await {
                    Ok(answer) => self.answered(m, answer),
                    Err(_) => self.retry.push_front(m),
                },
                None => tokio::time::sleep_until(self.backoff.resume_at().min(deadline)).await,
            }
        }
        Ok(())
    }

    /// Tells the sink the largest body the server takes (its `max_payload`, less the
    /// headers' room), once connected: batches are encoded in parts that fit it.
    fn learn_max_body(&self, client: &async_nats::Client) {
        let max = client.server_info().max_payload;
        if max > HEADER_ROOM {
            self.max_body.store(max - HEADER_ROOM, Ordering::Relaxed);
        }
    }

    fn acked(&mut self, m: Message) {
        if let (true, Some(acknowledged)) = (m.outbox, &self.acknowledged) {
            acknowledged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(m.id);
        }
        let Some(tally) = m.tally else {
            Counters::add(&self.counters.resent, 1);
            return;
        };
        tally.count(&self.counters);
        // a batch in parts is confirmed to the queue once, with its last part; each part's
        // records as it is acknowledged
        let whole = m
            .parts
            .as_ref()
            .is_none_or(|left| left.fetch_sub(1, Ordering::AcqRel) == 1);
        if let (true, Some(queue)) = (tally.from_queue, &self.queue) {
            deliver(
                queue,
                Committed {
                    batches: usize::from(whole),
                    records: tally.written.records as usize,
                },
            );
        }
    }

    /// The sink is gone without a `Shutdown` (its System stopped): what was not acknowledged
    /// is lost, counted.
    async fn abandon_all(mut self) {
        self.from_sink.close();
        while let Some(item) = self.from_sink.recv().await {
            match item {
                Outgoing::Publish(m) => self.retry.push_back(m),
                Outgoing::Drain { reply, .. } => {
                    let _ = reply.send(Err(PipelineError::Forward("publisher stopped".into())));
                }
            }
        }
        for m in self
            .retry
            .drain(..)
            .chain(self.unacked.drain(..).map(|(m, _)| m))
        {
            m.abandon(&self.counters);
        }
    }
}

/// Whether the client is connected to a server (publishing while it is not only queues).
fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// The front publish's acknowledgement, or pending forever when there is none (for `select!`).
async fn front(
    unacked: &mut VecDeque<(Message, AckFuture)>,
) -> Option<(
    (),
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
)> {
    match unacked.front_mut() {
        Some((_, fut)) => Some(((), fut.await)),
        None => std::future::pending().await,
    }
}

async fn publish(
    js: &jetstream::Context,
    forward: &Forward,
    m: &Message,
) -> Result<AckFuture, jetstream::context::PublishError> {
    let publish = Publish::build().payload(m.body.clone()).message_id(&m.id);
    let ack = js
        .send_publish(forward.subject(), publish)
        .await?
        .into_future();
    let deadline = Instant::now() + ACK_TIMEOUT;
    Ok(Box::pin(async move {
        tokio::time::timeout_at(deadline, ack)
            .await
            .unwrap_or_else(|_| Err(PublishErrorKind::TimedOut.into()))
    }))
}

/// Creates the stream when missing; `false` while NATS cannot be reached.
pub(crate) async fn ensure_stream(js: &jetstream::Context, forward: &Forward) -> bool {
    let config = forward.stream_config();
    match js.get_or_create_stream(config).await {
        Ok(_) => true,
        Err(e) => {
            log::debug!("forwarding: stream {} not ready ({e})", forward.stream);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_together_make_one_pause_that_doubles_up_to_the_longest() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready_at(t0));
        // 32 publishes refused at once: one pause of the shortest
        for _ in 0..32 {
            b.failed_at(t0);
        }
        assert!(!b.ready_at(t0));
        assert!(!b.ready_at(t0 + FIRST_BACKOFF - Duration::from_millis(1)));
        assert!(b.ready_at(t0 + FIRST_BACKOFF));
        // each failure after a pause doubles the next, up to the longest
        let mut now = t0 + FIRST_BACKOFF;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            b.failed_at(now);
            let until = b.until.expect("a pause");
            pauses.push(until - now);
            now = until;
        }
        assert_eq!(pauses[0], FIRST_BACKOFF * 2);
        assert_eq!(pauses[1], FIRST_BACKOFF * 4);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap(), MAX_BACKOFF);
    }

    #[test]
    fn an_acknowledgement_ends_the_pause_and_the_next_is_the_shortest() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let mut now = t0;
        for _ in 0..8 {
            b.failed_at(now);
            now = b.until.unwrap();
        }
        b.failed_at(now);
        assert!(!b.ready_at(now));
        b.succeeded();
        assert!(b.ready_at(now));
        b.failed_at(now);
        assert_eq!(b.until, Some(now + FIRST_BACKOFF));
    }

    #[test]
    fn after_a_failure_one_message_probes_until_an_acknowledgement() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.room(), MAX_UNACKED);
        b.failed_at(t0);
        assert_eq!(b.room(), 1);
        // the pause over, still one at a time
        assert!(b.ready_at(t0 + FIRST_BACKOFF));
        assert_eq!(b.room(), 1);
        b.succeeded();
        assert_eq!(b.room(), MAX_UNACKED);
    }
}
