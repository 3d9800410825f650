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

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use tokio::sync::{mpsc, oneshot};

use crate::actors::db_writer::{ConnectQueue, StopWriter};
use crate::actors::EndOfChain;
use crate::counters::Counters;
use crate::db::bookkeeping::Written;
use crate::error::PipelineError;
use crate::forward::wire::{self, Origin};
use crate::forward::Forward;
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

/// The stream's duplicate window: a publish retried within it is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Room left in a message for its headers (`Nats-Msg-Id`) under the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

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

    /// Counts the message as lost: the pipeline stopped before JetStream acknowledged it.
    fn abandon(&self, c: &Counters) -> u64 {
        let lost = self.written.records + self.folded;
        Counters::sub(&c.queued, self.written.records);
        Counters::add(&c.dropped, lost);
        Counters::add(&c.unwritten_at_stop, lost);
        lost
    }
}

/// One message on its way.
struct Message {
    id: String,
    body: bytes::Bytes,
    tally: Tally,
    /// When the batch travels in parts (it was over the server's limit): how many of them
    /// JetStream has not acknowledged yet; the queue's batch is confirmed with the last.
    parts: Option<Arc<AtomicUsize>>,
}

impl Message {
    /// The message as messages of at most `limit` bytes, in order, or itself when it cannot
    /// be split (a single row over the limit: the server refuses it, and it is retried and
    /// counted as lost at the stop like any message JetStream never acknowledged).
    fn split(self, limit: usize) -> Vec<Message> {
        let Ok((origin, batch)) = wire::decode(&self.body) else {
            return vec![self];
        };
        let parts = wire::encode_to_fit(&origin, batch, limit);
        if parts.len() == 1 {
            log::error!(
                "forwarding: batch {} holds one row of {} bytes, over the server's limit of \
                 {limit}: it cannot be sent",
                self.id,
                self.body.len()
            );
            return vec![self];
        }
        log::debug!(
            "forwarding: batch {} sent in {} parts",
            self.id,
            parts.len()
        );
        let left = match self.parts {
            Some(left) => {
                left.fetch_add(parts.len() - 1, Ordering::AcqRel);
                left
            }
            None => Arc::new(AtomicUsize::new(parts.len())),
        };
        parts
            .into_iter()
            .enumerate()
            .map(|(k, (part, body))| Message {
                id: format!("{}.{k}", self.id),
                body: body.into(),
                tally: Tally {
                    from_queue: self.tally.from_queue,
                    ..Tally::of(&part)
                },
                parts: Some(left.clone()),
            })
            .collect()
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
    /// Its own address and the `Shutdown` answer.
    end: EndOfChain<NatsSink>,
}

impl NatsSink {
    pub(crate) fn new(
        forward: Forward,
        instance_id: String,
        retry_budget: Duration,
        counters: Arc<Counters>,
    ) -> NatsSink {
        let (to_publisher, from_sink) = mpsc::unbounded_channel();
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
                retry: VecDeque::new(),
            }),
            counters,
            queue: None,
            end: EndOfChain::new(),
        }
    }

    fn send(&self, item: Outgoing) {
        if let Err(mpsc::error::SendError(item)) = self.to_publisher.send(item) {
            // the publisher stopped (the System is going): nothing will acknowledge it
            match item {
                Outgoing::Publish(m) => {
                    m.tally.abandon(&self.counters);
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
        self.origin.seq += 1;
        let message = Message {
            id: self.origin.msg_id(),
            body: wire::encode(&self.origin, &batch).into(),
            tally: Tally::of(&batch),
            parts: None,
        };
        self.send(Outgoing::Publish(message));
    }
}

impl NatsSink {
    /// Does the sink's part of a marker, and answers it.
    fn marker(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match marker {
            Control::Flush(reply) => self.send(Outgoing::Drain {
                reply,
                abandon: false,
            }),
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
        let mut backoff = Duration::from_millis(10);
        loop {
            if !stream_ready {
                stream_ready = ensure_stream(&js, &self.forward).await;
            }
            // publish what waits, while there is room
            while stream_ready && self.unacked.len() < MAX_UNACKED {
                let Some(m) = self.next_message(&client) else {
                    break;
                };
                match publish(&js, &self.forward, &m).await {
                    Ok(fut) => self.unacked.push_back((m, fut)),
                    Err(e) => {
                        log::debug!("forwarding: publish failed ({e}), retrying");
                        self.retry.push_front(m);
                        break;
                    }
                }
            }
            let waiting = !self.retry.is_empty();
            tokio::select! {
                biased;
                Some((_, fut)) = front(&mut self.unacked) => {
                    let (m, _) = self.unacked.pop_front().expect("a front was polled");
                    match fut {
                        Ok(_) => { backoff = Duration::from_millis(10); self.acked(m) }
                        Err(e) => {
                            log::debug!("forwarding: no acknowledgement ({e}), retrying");
                            self.retry.push_back(m);
                        }
                    }
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
                                    .map(|m| m.tally.abandon(&self.counters))
                                    .sum();
                                log::error!(
                                    "pipeline stopped while NATS is unreachable: {lost} events not forwarded"
                                );
                            }
                            let _ = reply.send(result);
                            if abandon {
                                return;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(backoff), if waiting && self.unacked.is_empty() => {
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
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
        let mut backoff = Duration::from_millis(10);
        while !self.retry.is_empty() || !self.unacked.is_empty() {
            if Instant::now() >= deadline {
                return Err(PipelineError::Forward(format!(
                    "JetStream did not acknowledge {} batches within the retry budget",
                    self.retry.len() + self.unacked.len()
                )));
            }
            if !*stream_ready {
                *stream_ready = ensure_stream(js, &self.forward).await;
            }
            while *stream_ready && self.unacked.len() < MAX_UNACKED {
                let Some(m) = self.next_message(client) else {
                    break;
                };
                match publish(js, &self.forward, &m).await {
                    Ok(fut) => self.unacked.push_back((m, fut)),
                    Err(_) => {
                        self.retry.push_front(m);
                        break;
                    }
                }
            }
            match self.unacked.pop_front() {
                Some((m, fut)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, fut).await {
                        Ok(Ok(_)) => {
                            backoff = Duration::from_millis(10);
                            self.acked(m)
                        }
                        _ => self.retry.push_back(m),
                    }
                }
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Ok(())
    }

    /// The next message to publish, the front of `retry`: split first when it is over the
    /// server's `max_payload` (a batch of many series' sketches or of long fields can be),
    /// which the server would refuse every time.
    fn next_message(&mut self, client: &async_nats::Client) -> Option<Message> {
        let m = self.retry.pop_front()?;
        let limit = client.server_info().max_payload.saturating_sub(HEADER_ROOM);
        if limit == 0 || m.body.len() <= limit {
            return Some(m);
        }
        for part in m.split(limit).into_iter().rev() {
            self.retry.push_front(part);
        }
        self.retry.pop_front()
    }

    fn acked(&mut self, m: Message) {
        m.tally.count(&self.counters);
        // a batch in parts is confirmed to the queue once, with its last part; each part's
        // records as it is acknowledged
        let whole = m
            .parts
            .as_ref()
            .is_none_or(|left| left.fetch_sub(1, Ordering::AcqRel) == 1);
        if let (true, Some(queue)) = (m.tally.from_queue, &self.queue) {
            deliver(
                queue,
                Committed {
                    batches: usize::from(whole),
                    records: m.tally.written.records as usize,
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
            m.tally.abandon(&self.counters);
        }
    }
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
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    Ok(Box::pin(async move {
        tokio::time::timeout_at(deadline, ack)
            .await
            .unwrap_or_else(|_| Err(PublishErrorKind::TimedOut.into()))
    }))
}

/// Creates the stream when missing; `false` while NATS cannot be reached.
pub(crate) async fn ensure_stream(js: &jetstream::Context, forward: &Forward) -> bool {
    let config = stream_config(&forward.stream, forward.replicas);
    match js.get_or_create_stream(config).await {
        Ok(_) => true,
        Err(e) => {
            log::debug!("forwarding: stream {} not ready ({e})", forward.stream);
            false
        }
    }
}

/// The stream's settings when it is created: subjects `<stream>.>`, file storage, limits
/// retention, the duplicate window, `replicas` replicas (an existing stream is used as it is).
pub(crate) fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas,
        ..Default::default()
    }
}
