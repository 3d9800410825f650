//! The [`Supervisor`]: the application's only address. It validates events, answers stats,
//! configuration and queries, and drives flushes and the stop.
//!
//! A flush is an awaited chain through the stages, in flow order: sampler, aggregator
//! (snapshot or close windows), detector, queues (write everything), writer (commit). Each
//! step drains the stage's inbox, so by the time the writer answers, everything accepted
//! before the flush is in the store.
//!
//! Stopping the actix `System` without `Shutdown` runs the same stages synchronously from
//! [`Supervisor::stopped`]: all data lives in the shared [`Stages`], never only in a mailbox.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;

use crate::aggregator::AggregatorActor;
use crate::config::Config;
use crate::counters::{Counters, Stats};
use crate::db::writer::DbWriter;
use crate::detector::DetectorActor;
use crate::error::{ConfigError, PipelineError, TrackError};
use crate::event::TrackEvent;
use crate::messages::*;
use crate::pipeline::Stages;
use crate::queue::QueueActor;
use crate::sampler::SamplerActor;

/// The addresses of the internal actors.
#[derive(Clone)]
struct Actors {
    sampler: Addr<SamplerActor>,
    aggregator: Addr<AggregatorActor>,
    detector: Addr<DetectorActor>,
    queue: Addr<QueueActor>,
    writer: Addr<DbWriter>,
}

impl Actors {
    /// The flush chain (see the module docs).
    async fn flush(self, close: bool) -> Result<(), PipelineError> {
        self.sampler.send(Drain).await?;
        self.aggregator.send(FlushWindows { close }).await?;
        self.detector.send(Drain).await?;
        self.queue.send(FlushQueues).await?;
        self.writer.send(WriteAll).await?
    }
}

/// The pipeline's front door; see the crate docs for the messages it handles.
pub struct Supervisor {
    /// Everything the pipeline holds.
    stages: Arc<Stages>,
    /// The internal actors.
    actors: Actors,
    /// Set by `Shutdown`: later events are refused, and the stop path has nothing left to do.
    shut_down: bool,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

macro_rules! restartable {
    ($($actor:ty),*) => {$(
        impl actix::Supervised for $actor {
            fn restarting(&mut self, _: &mut Context<Self>) {
                // All state lives in `Stages`: a restart loses nothing.
                log::warn!("restarting {}", stringify!($actor));
            }
        }
    )*};
}
restartable!(SamplerActor, AggregatorActor, DetectorActor, QueueActor);

impl Supervisor {
    /// Starts the internal actors on the current arbiter (the writer on its own thread).
    pub(crate) fn start_actors(stages: Arc<Stages>) -> Addr<Supervisor> {
        let writer_slot: Rc<RefCell<Option<Addr<DbWriter>>>> = Rc::default();
        let queue = {
            let (stages, slot) = (stages.clone(), writer_slot.clone());
            actix::Supervisor::start(move |ctx: &mut Context<QueueActor>| {
                let queue = ctx.address();
                let for_writer = stages.clone();
                let writer = SyncArbiter::start(1, move || DbWriter {
                    stages: for_writer.clone(),
                    queue: queue.clone(),
                });
                *slot.borrow_mut() = Some(writer.clone());
                QueueActor { stages, writer }
            })
        };
        let Some(writer) = writer_slot.borrow_mut().take() else {
            unreachable!("actix::Supervisor::start runs its factory before returning")
        };
        let detector = {
            let (stages, writer) = (stages.clone(), writer.clone());
            actix::Supervisor::start(move |_| DetectorActor { stages, writer })
        };
        let aggregator = {
            let (stages, queue, detector, writer) = (
                stages.clone(),
                queue.clone(),
                detector.clone(),
                writer.clone(),
            );
            actix::Supervisor::start(move |_| AggregatorActor {
                stages,
                queue,
                detector,
                writer,
            })
        };
        let sampler = {
            let (stages, aggregator, queue) = (stages.clone(), aggregator.clone(), queue.clone());
            actix::Supervisor::start(move |_| SamplerActor {
                stages,
                aggregator,
                queue,
            })
        };
        let actors = Actors {
            sampler,
            aggregator,
            detector,
            queue,
            writer,
        };
        Supervisor {
            stages,
            actors,
            shut_down: false,
        }
        .start()
    }

    /// The last, synchronous flush. What the store still refuses after the retry budget is
    /// counted in `events_dropped` and logged.
    fn final_flush(&mut self) {
        match self.stages.flush_sync(true) {
            Ok(()) => log::info!("pipeline flushed on stop"),
            Err(e) => {
                let lost = crate::pipeline::lock(&self.stages.writer).held_events();
                Counters::add(&self.stages.counters.dropped, lost);
                log::error!(
                    "pipeline stopped while the store is failing: {lost} events not written ({e})"
                );
            }
        }
    }

    /// Validates and accepts one event; returns whether the sampler's inbox was empty.
    fn accept(&mut self, mut event: TrackEvent, now_ms: i64) -> Result<bool, TrackError> {
        if let Err(e) = event.validate(now_ms) {
            Counters::add(&self.stages.counters.rejected, 1);
            return Err(e);
        }
        Ok(self.stages.sampler_in.push(event))
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        log::info!(
            "eventbatch pipeline started (instance {})",
            self.stages.settings().instance_id
        );
    }

    /// The System is stopping (or the supervisor was stopped) without `Shutdown`: flush
    /// synchronously so nothing accepted is lost.
    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        self.final_flush();
    }
}

impl Handler<TrackEvent> for Supervisor {
    type Result = Result<(), TrackError>;

    fn handle(&mut self, event: TrackEvent, _: &mut Context<Self>) -> Self::Result {
        if self.shut_down {
            return Err(TrackError::ShutDown);
        }
        Counters::add(&self.stages.counters.received, 1);
        if self.accept(event, self.stages.clock.now_ms())? {
            self.actors.sampler.do_send(Wake);
        }
        Ok(())
    }
}

impl Handler<TrackBatch> for Supervisor {
    type Result = Result<BatchAck, TrackError>;

    fn handle(&mut self, batch: TrackBatch, _: &mut Context<Self>) -> Self::Result {
        if self.shut_down {
            return Err(TrackError::ShutDown);
        }
        let now = self.stages.clock.now_ms();
        Counters::add(&self.stages.counters.received, batch.0.len() as u64);
        let mut ack = BatchAck::default();
        let mut wake = false;
        for event in batch.0 {
            match self.accept(event, now) {
                Ok(was_empty) => {
                    ack.accepted += 1;
                    wake |= was_empty;
                }
                Err(_) => ack.rejected += 1,
            }
        }
        if wake {
            self.actors.sampler.do_send(Wake);
        }
        Ok(ack)
    }
}

impl Handler<GetStats> for Supervisor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stages.stats())
    }
}

impl Handler<GetConfig> for Supervisor {
    type Result = MessageResult<GetConfig>;
    fn handle(&mut self, _: GetConfig, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stages.config())
    }
}

impl Handler<Configure> for Supervisor {
    type Result = Result<Config, ConfigError>;
    fn handle(&mut self, Configure(patch): Configure, _: &mut Context<Self>) -> Self::Result {
        let mut next = self.stages.config().patched(&patch)?;
        let mut settings = next.validate()?;
        // the instance id stays the one generated at start
        settings.instance_id = self.stages.settings().instance_id.clone();
        if next.instance_id.is_none() {
            next.instance_id = None;
        }
        log::info!("configuration changed: {patch:?}");
        self.stages.reconfigure(next.clone(), settings);
        Ok(next)
    }
}

impl Handler<Tick> for Supervisor {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.actors.sampler.do_send(Drain);
        self.actors.aggregator.do_send(Tick);
        self.actors.queue.do_send(Tick);
        self.actors.writer.do_send(Wake);
    }
}

impl Handler<Flush> for Supervisor {
    type Result = ResponseFuture<Result<Stats, PipelineError>>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let (actors, stages) = (self.actors.clone(), self.stages.clone());
        Box::pin(async move {
            actors.flush(false).await?;
            Ok(stages.stats())
        })
    }
}

impl Handler<QueryWindows> for Supervisor {
    type Result = ResponseFuture<Result<Vec<WindowStats>, PipelineError>>;
    fn handle(&mut self, q: QueryWindows, _: &mut Context<Self>) -> Self::Result {
        let actors = self.actors.clone();
        Box::pin(async move {
            // Open windows are written as snapshots first, so one read sees every window once.
            actors.clone().flush(false).await?;
            actors.writer.send(ReadWindows(q)).await?
        })
    }
}

impl Handler<QueryPatterns> for Supervisor {
    type Result = ResponseFuture<Result<Vec<Pattern>, PipelineError>>;
    fn handle(&mut self, q: QueryPatterns, _: &mut Context<Self>) -> Self::Result {
        let actors = self.actors.clone();
        Box::pin(async move {
            actors.clone().flush(false).await?;
            actors.writer.send(ReadPatterns(q)).await?
        })
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, Stats>;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let actors = self.actors.clone();
        Box::pin(actors.flush(true).into_actor(self).map(|result, act, ctx| {
            act.shut_down = true;
            if let Err(e) = result {
                log::error!("shutdown flush failed ({e}); trying once more on this thread");
                act.final_flush();
            }
            ctx.stop();
            log::info!("eventbatch pipeline shut down");
            act.stages.stats()
        }))
    }
}
