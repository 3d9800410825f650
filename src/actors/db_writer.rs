//! The DB writer's actor, the end of the chain (`crate::pipeline`), alone on a thread of its
//! own, so blocking I/O never stalls the event loop. It owns the [`WriterCore`]. Batches and
//! markers arrive from the queue as [`Item`]s; the writer writes
//! once its mailbox is empty (a self-notification runs after the mailbox), so everything that
//! arrived meanwhile is written together, and answers the markers ([`Control`]). Between
//! batches it runs the roll-up job and the retention rounds, a chunk per turn ([`PruneNext`]),
//! so what arrives meanwhile is written between two chunks.
//!
//! While the store fails, the writer never sleeps through its mailbox: batches, ticks and its
//! own retry timer make an attempt only when the shared backoff says one is due
//! ([`WriterCore::write_due`]), a `Flush` or `Shutdown` retries for what is left of the retry
//! budget ([`WriterCore::write_held`]), and a query answers `Err` at once (after at most one
//! attempt) if what arrived before it cannot be written.
//!
//! It is not a `Stage` in a generic `Shell`, as the stages before it are: it hands nothing
//! on (it is the end), it defers its work to an empty mailbox and to timers of its own
//! (`WriteHeld`, `PruneNext`, the retry backoff), it answers the markers, confirms upstream
//! ([`Committed`]), and it answers `Shutdown` from `stopped()`, after every stage before it
//! has stopped, so its actor is the protocol itself, not a shell around one.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::EndOfChain;
use crate::clock::Clock;
use crate::counters::Counters;
use crate::db::writer::WriterCore;
use crate::error::PipelineError;
use crate::messages::{Committed, Control};
use crate::model::WriteBatch;
use crate::pipeline::stage::{deliver, Item};

/// Writes its own pending batches once its mailbox is empty (see the module docs).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct WriteHeld;

/// Deletes the next chunk of the retention round under way, once the mailbox is empty (a
/// self-notification runs after it), and sends itself again while the round has more to do.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct PruneNext;

/// The writer's actor, alone on its thread.
pub(crate) struct DbWriter {
    pub core: WriterCore,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
    /// Told what of the queue's batches is committed (set by [`ConnectQueue`], the first
    /// message the writer gets: the queue is started after it).
    pub queue: Option<Recipient<Committed>>,
    /// A [`WriteHeld`] is on its way.
    pub write_scheduled: bool,
    /// A [`PruneNext`] is on its way.
    pub prune_scheduled: bool,
    /// Its own address and the `Shutdown` answer.
    pub end: EndOfChain<DbWriter>,
}

impl DbWriter {
    /// For a `Flush` or `Shutdown`: writes what is held, retrying while the store fails for
    /// what is left of the retry budget.
    fn write(&mut self) -> Result<(), PipelineError> {
        let (done, result) = self.core.write_held(&self.counters);
        self.confirm(done);
        result
    }

    /// In the background: writes what is held if the store is not in its backoff, and if it
    /// is (or fails now), sets the retry timer. For a query (`once`): one attempt in any case.
    /// A query's answer, after what arrived before it is written (it writes nothing of its
    /// own), or at once an error if that cannot be written now.
    fn answer<T>(
        &mut self,
        ctx: &mut Context<Self>,
        query: impl FnOnce(&mut WriterCore) -> Result<T, PipelineError>,
    ) -> Result<T, PipelineError> {
        self.write_due(ctx, true)
            .map_err(unavailable)
            .and_then(|()| {
                let core = &mut self.core;
                core.watch().call(|| query(core))
            })
    }

    fn write_due(&mut self, ctx: &mut Context<Self>, once: bool) -> Result<(), PipelineError> {
        let (done, result) = match once {
            true => self.core.write_once(&self.counters),
            false => self.core.write_due(&self.counters),
        };
        self.confirm(done);
        if let (true, Some(after)) = (result.is_err(), self.core.next_attempt_in()) {
            if !self.write_scheduled {
                self.write_scheduled = true;
                ctx.notify_later(WriteHeld, after);
            }
        }
        result
    }

    fn confirm(&mut self, done: Committed) {
        if self.core.watch().given_up() {
            return; // the pipeline stopped without the store: the queue is gone
        }
        if let (true, Some(queue)) = (done.batches > 0, &self.queue) {
            deliver(queue, done);
        }
    }

    /// The writer's last write: everything held, then (durable mode) waits until the journal
    /// is truncated to the last checkpoint. If the store fails through the retry budget, what
    /// is still held is lost, and counted so before the answer (the answer's `Stats` keep the
    /// conservation laws).
    fn write_or_abandon(&mut self) -> Result<(), PipelineError> {
        let result = self.write();
        match &result {
            Ok(()) => self.core.wait_journal_truncated(),
            Err(_) if self.core.watch().given_up() => {
                // the supervisor gave up on the store and counted what is not written
                self.core.abandon_held(&self.counters);
            }
            Err(e) => {
                let lost = self.core.abandon_held(&self.counters);
                log::error!(
                    "pipeline stopped while the store is failing: {lost} events not written ({e})"
                );
            }
        }
        result
    }

    /// Starts a retention round if one is due, deletes its first chunk, and leaves the rest to
    /// [`PruneNext`], a chunk per turn.
    fn prune(&mut self, ctx: &mut Context<Self>) {
        self.core
            .start_prune_if_due(self.clock.now_ms(), &self.counters);
        if self.core.prune_chunk(&self.counters) {
            self.schedule_prune(ctx);
        }
    }

    fn schedule_prune(&mut self, ctx: &mut Context<Self>) {
        if !self.prune_scheduled {
            self.prune_scheduled = true;
            ctx.notify(PruneNext);
        }
    }
}

impl Actor for DbWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.end.started(ctx, &self.counters);
    }

    /// Writes what is still held (nothing, after `Shutdown`, which wrote it; something only
    /// when told to stop by [`StopWriter`] without one), answers a `Shutdown`, and ends the
    /// writer's thread.
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.end.stopping(&self.counters);
        if !self.core.is_idle() {
            let _ = self.write_or_abandon();
        }
        self.end.stopped();
    }
}

/// From the supervisor, first: where to confirm the queue's batches.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectQueue(pub Recipient<Committed>);

impl Handler<ConnectQueue> for DbWriter {
    type Result = ();
    fn handle(&mut self, ConnectQueue(queue): ConnectQueue, _: &mut Context<Self>) {
        self.queue = Some(queue);
    }
}

/// From the supervisor as it goes, after its `Shutdown` marker was answered (then a no-op:
/// the writer has stopped), or could not be (a back stage is gone): stop, writing what is
/// held first.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct StopWriter;

impl Handler<StopWriter> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: StopWriter, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The end of the chain: the queue's batches and markers.
impl Handler<Item<WriteBatch>> for DbWriter {
    type Result = ();
    fn handle(&mut self, item: Item<WriteBatch>, ctx: &mut Context<Self>) {
        match item {
            Item::Data(batch) => self.hold(batch, ctx),
            Item::Marker(marker) => self.marker(marker, ctx),
        }
    }
}

impl DbWriter {
    /// Holds a batch, to write once the mailbox is empty.
    fn hold(&mut self, batch: WriteBatch, ctx: &mut Context<Self>) {
        self.core.hold(batch);
        if !self.write_scheduled {
            self.write_scheduled = true;
            ctx.notify(WriteHeld);
        }
    }
}

impl Handler<WriteHeld> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: WriteHeld, ctx: &mut Context<Self>) {
        self.write_scheduled = false;
        let _ = self.write_due(ctx, false);
    }
}

impl Handler<PruneNext> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: PruneNext, ctx: &mut Context<Self>) {
        self.prune_scheduled = false;
        if ctx.state() != ActorState::Running {
            return; // stopping: the round ends here
        }
        // what arrived while the last chunk ran goes first
        let _ = self.write_due(ctx, false);
        if self.core.prune_chunk(&self.counters) {
            self.schedule_prune(ctx);
        }
    }
}

impl DbWriter {
    /// Does the writer's part of a marker, and answers it.
    fn marker(&mut self, marker: Control, ctx: &mut Context<Self>) {
        // Durable mode: a checkpoint covers what is held and what arrives until the next
        // marker, which commits it (see `WriterCore::checkpoint`).
        match &marker {
            Control::Checkpoint(position) => return self.core.checkpoint(*position),
            _ => self.core.marker_passed(),
        }
        match marker {
            Control::Tick => {
                let _ = self.write_due(ctx, false);
                self.core
                    .roll_up_if_due(self.clock.now_ms(), &self.counters);
                self.prune(ctx);
            }
            // Also finishes a retention round that is due or under way, so that once a Flush
            // has answered, rows older than the maximum ages are gone (unless another instance
            // was pruning, or the store failed).
            Control::Flush(reply) => {
                let result = self.write();
                let now = self.clock.now_ms();
                self.core.roll_up_if_due(now, &self.counters);
                self.core.start_prune_if_due(now, &self.counters);
                while self.core.prune_chunk(&self.counters) {}
                let _ = reply.send(result);
            }
            Control::Shutdown(reply) => {
                let result = self.write_or_abandon();
                self.end.shutdown = Some((reply, result));
                ctx.stop();
            }
            // A query answers after what arrived before it is written (it writes nothing
            // of its own), or at once with an error if that cannot be written now.
            Control::Windows(q) => {
                let q = *q;
                let answer = self.answer(ctx, |core| core.query_windows(&q.query, q.open));
                let _ = q.reply.send(answer);
            }
            Control::Patterns(q, reply) => {
                let _ = reply.send(self.answer(ctx, |core| core.query_patterns(&q)));
            }
            Control::Users(q) => {
                let q = *q;
                let answer = self.answer(ctx, |core| core.query_users(&q.query, q.open));
                let _ = q.reply.send(answer);
            }
            Control::Settings(s) => self.core.set_settings(&s),
            // answered by the queue; never reaches the writer
            Control::Admitted(reply) => {
                let _ = reply.send(Ok(0));
            }
            Control::Checkpoint(_) => {}
        }
    }
}

/// A query's answer when what arrived before it cannot be written: the store is unavailable,
/// and an answer without what it holds would be wrong.
fn unavailable(e: PipelineError) -> PipelineError {
    match e {
        PipelineError::Store(e) => PipelineError::Store(e.unavailable()),
        other => other,
    }
}
