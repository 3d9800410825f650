//! The forwarding sink's publisher task: owns the NATS connection, publishes the sink's
//! messages in order with up to [`MAX_UNACKED`] awaiting JetStream's acknowledgement, retries
//! each until acknowledged (pausing after failures, [`Backoff`]), and answers the sink's
//! drains (`Flush`, `Shutdown`) once everything before them is acknowledged or the retry
//! budget is spent.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::message::{Message, Outgoing};
use crate::counters::Counters;
use crate::db::outage::{FIRST_BACKOFF, MAX_BACKOFF};
use crate::error::PipelineError;
use crate::forward::Forward;
use crate::messages::Committed;
use crate::pipeline::stage::deliver;

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
pub(super) const DEFAULT_MAX_BODY: usize = (1 << 20) - HEADER_ROOM;

type AckFuture = Pin<
    Box<
        dyn Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// The publisher task: owns the connection, publishes in order, retries until acknowledged.
pub(super) struct Publisher {
    forward: Forward,
    from_sink: mpsc::UnboundedReceiver<Outgoing>,
    retry_budget: Duration,
    counters: Arc<Counters>,
    pub(super) queue: Option<Recipient<Committed>>,
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
    /// The task for `forward`, reading the sink's messages from `from_sink`; `resend` first
    /// (an earlier run's outbox); durable mode names acknowledged outbox messages in
    /// `acknowledged`; `max_body` is where it tells the sink the server's limit.
    pub(super) fn new(
        forward: Forward,
        from_sink: mpsc::UnboundedReceiver<Outgoing>,
        retry_budget: Duration,
        counters: Arc<Counters>,
        resend: VecDeque<Message>,
        acknowledged: Option<Arc<Mutex<Vec<String>>>>,
        max_body: Arc<AtomicUsize>,
    ) -> Publisher {
        Publisher {
            forward,
            from_sink,
            retry_budget,
            counters,
            queue: None,
            unacked: VecDeque::new(),
            retry: resend,
            acknowledged,
            max_body,
            backoff: Backoff::default(),
        }
    }

    pub(super) async fn run(mut self) {
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
