//! The [`Tracker`]: the pipeline's front door, the application's only address, and the
//! only actor on the application's thread. It validates events (and, in durable mode, journals
//! them), decides admission against the queue's bound, answers stats and configuration, starts
//! the threads and actors behind it, drives the front stages (sampling, then aggregation) on
//! the events it accepted, and sends the control markers (flush, queries, shutdown, ticks)
//! down the data path.
//!
//! The chain is a straight line. The sampler and the aggregator are plain cores the supervisor
//! calls in its own turn ([`FrontStages`]); the detector and the queue are actors on the
//! `eventbatch-stages` thread, the writer an actor on the `eventbatch-writer` thread, each
//! thread an actix System of its own that [`spawn_system_thread`] starts (durable mode adds the
//! journal's thread):
//!
//! ```text
//!  application's thread                        ║ eventbatch-stages thread    ║ eventbatch-writer thread
//!                                              ║                             ║
//!  app ─▶ Tracker ────▶ sampler ─▶ aggregator ─╫─▶ Detector ─▶ Queue ────────╫─▶ DbWriter ─▶ SQLite /
//!         (front door)  (cores the front door  ║   (patterns)   (High|Normal ║               PostgreSQL
//!                        calls in its turn)    ║                 |Low) ◀─────╫── Committed
//! ```
//!
//! The counters are not only a report: they are the pipeline's flow control.
//! [`Tracker::room_for`] asks `Counters::room_for`, which reads `Counters::queue_occupancy`
//! (the queue's own count of records queued or in flight) and the events on their way, to decide
//! whether a `TrackBatch` is answered at once or waits for the queue, and to hold durable
//! mode's replay back until the queue has room.
//!
//! Control markers ([`Control`]) take the path front stages → Detector → Queue → DbWriter,
//! behind the data sent before them; the writer answers through the marker's reply channel.
//!
//! Validated events are buffered and run through the front stages in batches: when
//! [`INTAKE_BATCH`] are waiting, and otherwise once the supervisor's mailbox is empty (a
//! self-notification runs after the mailbox), so one event sent alone travels at once and a
//! burst of them travels in batches.
//!
//! One stop mechanism, [`Tracker::close`]: `Shutdown` calls it and awaits the answer; a
//! System stop or the application returning from `main` reaches it too (see
//! `Actor::stopping` and `Drop` below) and waits for the same answer.

mod durable;
mod handlers;

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::db_writer::{ConnectQueue, DbWriter, StopWriter};
use crate::actors::nats_sink::{NatsSink, SinkJournal};
use crate::clock::Clock;
use crate::config::Config;
use crate::counters::{Counters, Stats};
use crate::db::pool::{Pool, StoreWatch};
use crate::db::writer::WriterCore;
use crate::error::{ConfigError, Error, PipelineError, TrackError};
use crate::event::{EventKind, TrackEvent};
use crate::journal::Journal;
use crate::messages::*;
use crate::model::WriteBatch;
use crate::pipeline::stage::{unbounded, Item};
use crate::pipeline::{front_stages, start_back_stages, BackStages, FrontStages};
use crate::settings::Settings;
use crate::telemetry::Publisher;
use crate::window_stats::WindowStats;

/// Most validated events run through the front stages in one batch.
pub(crate) const INTAKE_BATCH: usize = 1024;

/// The pipeline's front door; see the crate docs for the messages it handles.
pub struct Tracker {
    /// The configuration in force, as the application gave it.
    config: Config,
    /// The same, validated.
    settings: Arc<Settings>,
    /// Whether the store answers the writer (see [`answer_within_budget`]).
    store_watch: Arc<StoreWatch>,
    /// The pipeline's counters (shared: every actor adds to them).
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    /// Validated events not yet run through the front stages.
    intake: Vec<TrackEvent>,
    /// A [`ForwardIntake`] is on its way.
    intake_scheduled: bool,
    /// The sampler and the aggregator, which accepted events and markers go through, in
    /// order, before they reach the back stages.
    front: FrontStages,
    /// The writer (to stop it should the stages' thread have failed).
    writer: Recipient<StopWriter>,
    /// The stages' thread and the writer's, joined when the supervisor goes.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The timer that sends [`Control::Tick`].
    timer: Option<SpawnHandle>,
    /// The timer that logs the batching metrics (`stats_log_interval_ms`).
    stats_timer: Option<SpawnHandle>,
    /// Publishes the counters through the `metrics` facade (see `crate::telemetry`).
    publisher: Arc<Publisher>,
    /// The timer that publishes them (`metrics_interval_ms`).
    metrics_timer: Option<SpawnHandle>,
    /// Set by [`Tracker::close`] (on `Shutdown`, or as the supervisor goes without one):
    /// every event after it is refused.
    shutting_down: bool,
    /// Set when actix stops the supervisor without `Shutdown` (its System is going): what is
    /// still in the mailbox is handled without pausing, then [`Tracker::close`] runs.
    closing: bool,
    /// Durable mode: the journal every accepted event is appended to, and checkpoints.
    durable: Option<DurableIntake>,
    /// Pattern subscriptions go to the detector.
    subscriptions: Recipient<Subscription>,
    /// The id of the next subscription.
    next_subscription: u64,
}

/// Durable mode: a new event or batch that came while the replay of an earlier run was not
/// through, waiting behind it (in the order they came) with where its answer goes: the events
/// are neither counted, journaled nor acknowledged until they go in.
enum BehindReplay {
    /// A `TrackEvent` (boxed: a batch waits in a few words), and its answer.
    Event(Box<TrackEvent>, oneshot::Sender<Result<(), TrackError>>),
    /// A `TrackBatch`'s events, and its answer (itself to be awaited: see its handler).
    Batch(
        Vec<TrackEvent>,
        oneshot::Sender<ResponseFuture<Result<BatchAck, TrackError>>>,
    ),
}

/// Durable mode's part of the supervisor.
struct DurableIntake {
    journal: Arc<Journal>,
    /// The journal position of the last event accepted.
    position: u64,
    /// Events that may become records (commands, engagement, custom events, errors)
    /// accepted since the last checkpoint, and how many trigger one (`max_queued_events / 4`:
    /// between checkpoints records wait in the queues, under that bound).
    records_since: usize,
    records_per_checkpoint: usize,
    /// Timer ticks since the last checkpoint (one every four: every `batch_interval_ms`).
    ticks: u32,
    /// Events of an earlier run to replay once started, each with its journal position.
    replay: VecDeque<(u64, TrackEvent)>,
    /// New events that came while `replay` was not empty, waiting behind it.
    behind: VecDeque<BehindReplay>,
}

/// Whether an event of this kind may become an `events` row (and wait in the queues).
fn may_be_record(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Command | EventKind::Engagement | EventKind::Custom | EventKind::Error
    )
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("shutting_down", &self.shutting_down)
            .field("intake", &self.intake.len())
            .finish_non_exhaustive()
    }
}

/// To the supervisor itself: run the intake through the front stages (sent when the first
/// event of a burst arrives; handled after the mailbox is empty).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct ForwardIntake;

impl Tracker {
    /// Starts the pipeline: the writer on the `eventbatch-writer` thread, the detector and the
    /// queue on the `eventbatch-stages` thread (each an actix System of its own), and the
    /// supervisor, with the sampler and the aggregator it drives, on the current Arbiter (the
    /// application's). Returns the supervisor's address.
    ///
    /// Durable mode (`journal_path` given): opens the journal first, and replays the events
    /// after the store's checkpoint as soon as the supervisor starts.
    pub(crate) fn start_pipeline(
        config: Config,
        settings: Settings,
        pool: Pool,
        clock: Arc<dyn Clock>,
        journal_path: Option<std::path::PathBuf>,
    ) -> Result<Addr<Tracker>, Error> {
        let settings = Arc::new(settings);
        let counters = Arc::new(Counters::default());
        let (durable, outbox) = match &journal_path {
            Some(path) => {
                let (intake, outbox) = DurableIntake::open(
                    path,
                    crate::journal::Options::new(&settings, clock.now_ms()),
                    &settings,
                    &pool,
                    counters.clone(),
                )?;
                (Some(intake), outbox)
            }
            None => (None, Vec::new()),
        };
        let journal = durable.as_ref().map(|d| d.journal.clone());
        let sink_journal = journal
            .clone()
            .map(|journal| SinkJournal { journal, outbox });
        // The one place the writer is chosen: the store's, or forwarding mode's sink.
        let (writer, writer_thread) = {
            let (counters, clock) = (counters.clone(), clock.clone());
            let core = WriterCore::new(pool.clone(), &settings).with_journal(journal);
            let forward = settings.forward.clone();
            let (instance, budget) = (settings.instance_id.clone(), settings.store_retry_budget);
            spawn_system_thread("eventbatch-writer", move || match forward {
                None => WriterInbox::of(unbounded(DbWriter {
                    core,
                    counters,
                    clock,
                    queue: None,
                    write_scheduled: false,
                    prune_scheduled: false,
                    end: crate::actors::EndOfChain::new(),
                })),
                Some(forward) => WriterInbox::of(unbounded(NatsSink::new(
                    forward,
                    instance,
                    budget,
                    counters,
                    sink_journal,
                ))),
            })?
        };
        let (back, stages_thread) = {
            let (settings, counters, clock, pool, writer) = (
                settings.clone(),
                counters.clone(),
                clock.clone(),
                pool.clone(),
                writer.items.clone(),
            );
            spawn_system_thread("eventbatch-stages", move || {
                start_back_stages(&settings, counters, clock, pool, writer)
            })?
        };
        let BackStages {
            detector,
            subscriptions,
            committed,
        } = back;
        writer.connect.do_send(ConnectQueue(committed));
        let front = front_stages(&settings, &counters, clock.clone(), detector);
        Ok(unbounded(Tracker {
            config,
            publisher: Arc::new(Publisher::new(&settings, counters.clone())),
            store_watch: pool.watch(),
            settings,
            counters,
            clock,
            intake: Vec::with_capacity(INTAKE_BATCH),
            intake_scheduled: false,
            front,
            writer: writer.stop,
            threads: vec![stages_thread, writer_thread],
            timer: None,
            stats_timer: None,
            metrics_timer: None,
            shutting_down: false,
            closing: false,
            durable,
            subscriptions,
            next_subscription: 0,
        }))
    }

    /// Runs the intake through the front stages (the buffer goes with a full intake, and
    /// [`Tracker::accept`] takes a new one).
    fn forward_intake(&mut self) {
        if !self.intake.is_empty() {
            self.front.take(&mut self.intake);
        }
    }

    /// Sends a marker down the data path, behind every event accepted so far.
    fn send_marker(&mut self, marker: Control) {
        self.forward_intake();
        self.front.marker(marker);
    }

    /// Sends `marker`, in durable mode right behind a checkpoint of every event accepted so
    /// far (the writer commits everything up to them, and what `marker` produces, with it).
    fn send_checkpointed(&mut self, marker: Control) {
        if let Some(d) = &mut self.durable {
            let position = d.position;
            d.records_since = 0;
            d.ticks = 0;
            self.send_marker(Control::Checkpoint(position));
        }
        self.send_marker(marker);
    }

    /// The timer: a tick, in durable mode one in four with a checkpoint before it (so one
    /// every `batch_interval_ms`).
    fn on_timer(&mut self) {
        let due = self.durable.as_mut().is_some_and(|d| {
            d.ticks += 1;
            d.ticks >= 4
        });
        if due {
            self.send_checkpointed(Control::Tick);
        } else {
            self.send_marker(Control::Tick);
        }
    }

    /// The one way the pipeline stops, on `Shutdown` or as the supervisor goes without one:
    /// refuses every later event, ends a replay (durable mode: what fits in the queue goes on,
    /// the rest stays in the journal for the next start, [`Tracker::end_replay`]), hands on
    /// the intake through the front stages, then a checkpoint (durable mode) and the `Shutdown` marker,
    /// which closes every window on its way and stops each back stage behind what it sent.
    /// The writer writes everything and answers once every internal actor has stopped.
    ///
    /// Returns where the writer's answer comes. Whoever waits for it gives up after the store
    /// has gone without answering for the retry budget ([`Tracker::give_up`]).
    fn close(&mut self) -> oneshot::Receiver<Result<(), PipelineError>> {
        self.end_replay();
        self.shutting_down = true;
        self.send_asking(true, Control::Shutdown)
    }

    /// Stops without the store, which has not answered for `silent` (longer than the retry
    /// budget) while the pipeline stopped: no later call into it starts (`StoreWatch::give_up`;
    /// the writer's blocked call is left to end as its transaction does), every accepted event
    /// not written is counted (`Stats::events_unwritten_at_stop`, in `events_dropped` too) and
    /// logged at error level, and in durable mode the journal is committed and closed with
    /// them in it, for the next start to replay.
    fn give_up(&mut self, silent: std::time::Duration) {
        self.store_watch.give_up();
        let unwritten = self.counters.give_up_unwritten();
        Counters::add(&self.counters.db_errors, 1);
        let fate = match &self.durable {
            Some(d) => {
                d.journal.close();
                format!(
                    "they stay in the journal {} and are replayed on the next start",
                    d.journal.id()
                )
            }
            None => "they are lost".to_string(),
        };
        log::error!(
            "the store is unavailable: it has not answered for {} ms (store_retry_budget_ms = {} ms); \
             the pipeline stopped without it, {unwritten} accepted events not written ({fate})",
            silent.as_millis(),
            self.settings.store_retry_budget.as_millis(),
        );
    }

    /// Counts and refuses, or validates, pseudonymises (`identity_key`), journals (durable
    /// mode) and buffers, one event.
    fn accept(&mut self, mut event: TrackEvent, now_ms: i64) -> Result<(), TrackError> {
        let refused = if self.shutting_down {
            Err(TrackError::ShutDown)
        } else {
            let ids = &self.settings.pseudonyms;
            event
                .admit(now_ms, self.settings.window_ms)
                .map(|()| ids.apply(&mut event))
        };
        let refused = refused.and_then(|()| self.journal(std::slice::from_ref(&event)));
        if let Err(e) = refused {
            Counters::add(&self.counters.rejected, 1);
            return Err(e);
        }
        if self.intake.capacity() == 0 {
            // a full intake travels on in its buffer (the sampler copies no event): a new one
            self.intake.reserve_exact(INTAKE_BATCH);
        }
        self.intake.push(event);
        Ok(())
    }

    /// Whether `accepted` more events, already counted as received, could make the queue's
    /// overflow policy drop records: true unless every event not yet past the queue (these
    /// among them), as if each became a record, plus the records queued or in flight, fit
    /// under `max_queued_events`. When false a `TrackBatch` answers at once with
    /// `dropped: 0`; when true it waits for the queue.
    fn may_overflow(&self, accepted: usize) -> bool {
        !self.room_for(0) || accepted > self.settings.max_queued_events.get()
    }

    /// Whether `n` more events, not yet counted as received, fit: every event not yet past
    /// the queue, as if each became a record, plus the records queued or in flight as the
    /// queue counts them, plus these, stay under `max_queued_events`.
    fn room_for(&self, n: usize) -> bool {
        self.counters
            .room_for(n, self.settings.max_queued_events.get())
    }

    /// (Re)arms the timer: a tick four times per batch interval, so the interval is kept to
    /// within a quarter of itself.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        // An actor first polled while the System is being torn down has no runtime for timers
        // (and needs none: the teardown flushes).
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let period = (self.settings.batch_interval / 4).max(std::time::Duration::from_millis(1));
        self.timer = Some(ctx.run_interval(period, |act, _| act.on_timer()));
        if let Some(handle) = self.stats_timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(every) = self.settings.stats_log_interval {
            self.stats_timer = Some(ctx.run_interval(every, |act, _| {
                log::info!("{}", batching_line(&act.counters.snapshot()))
            }));
        }
        if let Some(handle) = self.metrics_timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(every) = self.settings.metrics_interval {
            self.metrics_timer = Some(ctx.run_interval(every, |act, _| {
                act.publisher.snapshot_and_publish();
            }));
        }
    }

    /// The publisher, when metrics are on (`metrics_interval_ms` > 0).
    fn publisher(&self) -> Option<Arc<Publisher>> {
        self.settings
            .metrics_interval
            .map(|_| self.publisher.clone())
    }

    /// A snapshot of the counters, published when metrics are on.
    fn stats(&self) -> Stats {
        match self.publisher() {
            Some(p) => p.snapshot_and_publish(),
            None => self.counters.snapshot(),
        }
    }

    /// [`Tracker::ask`], answered with an error as soon as the writer has been inside one
    /// call into the store for longer than the retry budget (see [`answer_within_budget`]).
    fn ask_within_budget<T: Send + 'static>(
        &mut self,
        checkpointed: bool,
        marker: impl FnOnce(Reply<T>) -> Control,
    ) -> impl std::future::Future<Output = Result<T, PipelineError>> {
        answer_within_budget(
            self.send_asking(checkpointed, marker),
            self.counters.clone(),
            self.store_watch.clone(),
            self.settings.store_retry_budget,
        )
    }

    /// Sends `marker` with a reply channel (with `checkpointed`, in durable mode right behind a
    /// checkpoint, [`Self::send_checkpointed`]); returns where the answer comes.
    fn send_asking<T>(
        &mut self,
        checkpointed: bool,
        marker: impl FnOnce(Reply<T>) -> Control,
    ) -> oneshot::Receiver<Result<T, PipelineError>> {
        let (tx, rx) = oneshot::channel();
        if checkpointed {
            self.send_checkpointed(marker(tx));
        } else {
            self.send_marker(marker(tx));
        }
        rx
    }

    /// A marker whose answer comes back through a channel, as a future of the answer; with
    /// `checkpointed`, in durable mode right behind a checkpoint ([`Self::send_checkpointed`]).
    fn ask<T: Send + 'static>(
        &mut self,
        checkpointed: bool,
        marker: impl FnOnce(Reply<T>) -> Control,
    ) -> impl std::future::Future<Output = Result<T, PipelineError>> {
        let rx = self.send_asking(checkpointed, marker);
        async move { rx.await.unwrap_or_else(|_| Err(not_answered())) }
    }
}

impl Actor for Tracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(d) = self.durable.as_ref().filter(|d| !d.replay.is_empty()) {
            log::info!(
                "replaying {} journaled events an earlier run had not written",
                d.replay.len()
            );
            self.replay(ctx);
        }
        self.arm_timer(ctx);
        log::info!(
            "eventbatch pipeline started (instance {})",
            self.settings.instance_id
        );
    }

    /// Stopped without `Shutdown` (the System is going, or every address is gone): actix
    /// would stop without reading the mailbox (it reads none while the context is stopping),
    /// so the first time the supervisor asks to go on: actix then handles every message
    /// already in the mailbox (nothing pauses it, see `UnlessClosing`) and asks again.
    /// `Drop` then runs `Tracker::close`.
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.shutting_down || self.closing {
            return Running::Stop;
        }
        self.closing = true;
        Running::Continue
    }
}

/// What the pipeline sends its writer: the store's `DbWriter`, or forwarding mode's
/// `NatsSink` (`Config::forward`).
#[derive(Clone)]
struct WriterInbox {
    /// The end of the chain: the queue's batches and markers.
    items: Recipient<Item<WriteBatch>>,
    /// Where the writer confirms the queue's batches (set once the queue exists).
    connect: Recipient<ConnectQueue>,
    /// Stops the writer (should the stages' thread have failed).
    stop: Recipient<StopWriter>,
}

impl WriterInbox {
    fn of<A>(addr: Addr<A>) -> WriterInbox
    where
        A: Actor<Context = Context<A>>
            + Handler<Item<WriteBatch>>
            + Handler<ConnectQueue>
            + Handler<StopWriter>,
    {
        WriterInbox {
            items: addr.clone().recipient(),
            connect: addr.clone().recipient(),
            stop: addr.recipient(),
        }
    }
}

/// A pause of the supervisor's mailbox (`ctx.wait`) that ends at once when the supervisor is
/// closing: actix reads no message while a pause is pending, and in the last poll of a
/// System being torn down nothing would end it, so what is in the mailbox would never be read.
struct UnlessClosing<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future<Output = ()>> UnlessClosing<F> {
    fn new(pause: F) -> Self {
        UnlessClosing(Box::pin(pause))
    }
}

impl<F: std::future::Future<Output = ()>> ActorFuture<Tracker> for UnlessClosing<F> {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        act: &mut Tracker,
        _: &mut Context<Tracker>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if act.closing {
            return std::task::Poll::Ready(());
        }
        self.0.as_mut().poll(task)
    }
}

/// One line of batching metrics, for the periodic log (`stats_log_interval_ms`).
fn batching_line(s: &Stats) -> String {
    format!(
        "eventbatch: {} events in ({} kept, {} rejected, {} sampled out), {} rows in {} transactions (write reduction {:.1}%), {} queued, {} windows open, {} dropped, {} db errors",
        s.events_received,
        s.events_kept,
        s.events_rejected,
        s.events_sampled_out,
        s.rows_written,
        s.transactions,
        s.write_reduction() * 100.0,
        s.events_queued,
        s.windows_open,
        s.events_dropped,
        s.db_errors
    )
}

/// When the supervisor goes without `Shutdown` (a bare System stop, or the application
/// returning from `main`: actix has had it handle what was in its mailbox, see
/// `Actor::stopping`), it runs `Tracker::close` and waits, blocking this thread (which has
/// nothing else to do then), for the writer's answer: within the retry budget when the store
/// fails, and when it does not answer at all, until it has been silent for the retry budget
/// (then it gives up on it, `Tracker::give_up`). The back stages and the writer run in
/// Systems of their own on their own threads, so the application's System going does not stop
/// them; the `Shutdown` marker does. Then it joins their threads, except, once it gave up on
/// the store, a thread still blocked in a call into it: that one is left behind (it can start
/// no other call).
impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.shutting_down {
            let answer = self.close();
            let (watch, budget) = (self.store_watch.clone(), self.settings.store_retry_budget);
            let silent = || watch.silent_for().filter(|age| *age > budget);
            match crate::actors::wait_for(answer, STUCK_CHECK_EVERY, || silent().is_some()) {
                Some(Ok(Ok(()))) => {
                    log::info!("eventbatch pipeline flushed and stopped with its System")
                }
                Some(Ok(Err(e))) => log::error!("the pipeline stopped with its System: {e}"),
                Some(Err(_)) => {
                    log::error!("the pipeline stopped with its System: {}", not_answered())
                }
                None => self.give_up(silent().unwrap_or(budget)),
            }
        }
        // A no-op if the writer has stopped; ends it if the stages' thread failed.
        self.writer.do_send(StopWriter);
        let given_up = self.store_watch.given_up();
        for thread in self.threads.drain(..) {
            if given_up && !thread.is_finished() {
                log::warn!(
                    "{} is blocked in a call into the store: left behind",
                    thread.thread().name().unwrap_or("a pipeline thread")
                );
            } else if thread.join().is_err() {
                log::error!("a pipeline thread panicked");
            }
        }
        // the final counts (every actor has stopped)
        self.stats();
    }
}

/// How often a request waiting for the writer looks whether the writer is stuck in the store.
const STUCK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A call into the store has gone without a sign of life for this long, longer than the retry
/// budget, while a request waited for the writer (see [`within_budget`]).
struct Silent(std::time::Duration);

/// The writer's answer on `rx` (an error if the pipeline stopped without answering), or
/// [`Silent`] once a call into the store has gone without a sign of life from the store (see
/// [`StoreWatch`]) for longer than `budget` (the retry budget) while this waited: a store that
/// took the request and never answers (a hung server or proxy, which keeps the connection
/// alive, so no TCP or libpq timeout ends the call; on a network that drops packets the
/// connection's own timeouts end it at about the same time).
async fn within_budget<T>(
    mut rx: oneshot::Receiver<Result<T, PipelineError>>,
    watch: Arc<StoreWatch>,
    budget: std::time::Duration,
) -> Result<Result<T, PipelineError>, Silent> {
    loop {
        match actix::clock::timeout(STUCK_CHECK_EVERY, &mut rx).await {
            Ok(answer) => return Ok(answer.unwrap_or_else(|_| Err(not_answered()))),
            Err(_) => match watch.silent_for() {
                Some(age) if age > budget => return Err(Silent(age)),
                _ => {}
            },
        }
    }
}

/// The pipeline's answer when it stopped before answering.
fn not_answered() -> PipelineError {
    PipelineError::Unavailable("the pipeline stopped before answering".into())
}

/// [`within_budget`] for `Flush` and queries: a silent store is an error, counted in
/// `db_errors`. The marker stays in the pipeline: the writer carries on when its call returns
/// (the data it holds is written then, once), and its answer to this request goes nowhere.
async fn answer_within_budget<T>(
    rx: oneshot::Receiver<Result<T, PipelineError>>,
    counters: Arc<Counters>,
    watch: Arc<StoreWatch>,
    budget: std::time::Duration,
) -> Result<T, PipelineError> {
    within_budget(rx, watch, budget)
        .await
        .unwrap_or_else(|Silent(age)| {
            Counters::add(&counters.db_errors, 1);
            let e = crate::error::StoreError::retryable(format!(
                "timeout: the store has not answered for {} ms (store_retry_budget_ms = {} ms); \
                 what is not written is held, and written when it answers",
                age.as_millis(),
                budget.as_millis()
            ));
            log::error!("{e}");
            Err(PipelineError::Store(e))
        })
}

/// Runs `make` on a new thread inside an actix System of its own (the application's System
/// stopping does not stop it; the supervisor does, see its `Drop`), and returns what it made.
fn spawn_system_thread<T: Send + 'static>(
    name: &str,
    make: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, std::thread::JoinHandle<()>), Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let _ = tx.send(make());
            });
            if let Err(e) = system.run() {
                log::error!("a pipeline thread ended with an error: {e}");
            }
        })
        .map_err(|e| Error::Start {
            reason: format!("cannot start thread {name}: {e}"),
            source: Some(e),
        })?;
    let made = rx.recv().map_err(|_| Error::Start {
        reason: format!("thread {name} did not start"),
        source: None,
    })?;
    Ok((made, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_periodic_line_says_what_was_batched() {
        let s = Stats {
            events_received: 1000,
            events_kept: 990,
            rows_written: 50,
            transactions: 3,
            ..Stats::default()
        };
        let line = batching_line(&s);
        assert!(line.contains("1000 events in (990 kept"), "{line}");
        assert!(
            line.contains("50 rows in 3 transactions (write reduction 95.0%)"),
            "{line}"
        );
    }
}
