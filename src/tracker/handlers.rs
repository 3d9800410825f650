//! The front door's handlers: one per public message.

use super::*;
use crate::users::UserCount;

impl Handler<TrackEvent> for Tracker {
    type Result = ActorResponse<Self, Result<(), TrackError>>;

    /// Answers at once; in durable mode, while the replay of an earlier run is not through,
    /// once the event has gone in behind it.
    fn handle(&mut self, event: TrackEvent, ctx: &mut Context<Self>) -> Self::Result {
        if self.replaying() && !self.shutting_down {
            let (answer, answered) = oneshot::channel();
            self.wait_behind_replay(BehindReplay::Event(Box::new(event), answer));
            return ActorResponse::r#async(actix::fut::wrap_future(async move {
                answered.await.unwrap_or(Err(TrackError::ShutDown))
            }));
        }
        if let Err(e) = self.take_event(event) {
            return ActorResponse::reply(Err(e));
        }
        if self.intake.len() >= INTAKE_BATCH {
            self.forward_intake();
            // Give the other tasks of this thread (the application's) a turn before the
            // mailbox is read on, so a long burst does not hold the thread until it is read.
            ctx.wait(UnlessClosing::new(tokio::task::yield_now()));
        } else if !self.intake_scheduled {
            self.intake_scheduled = true;
            ctx.notify(ForwardIntake);
        }
        ActorResponse::reply(Ok(()))
    }
}

impl Handler<ForwardIntake> for Tracker {
    type Result = ();
    fn handle(&mut self, _: ForwardIntake, _: &mut Context<Self>) {
        self.intake_scheduled = false;
        self.forward_intake();
    }
}

impl Handler<TrackBatch> for Tracker {
    type Result = ResponseFuture<Result<BatchAck, TrackError>>;

    /// Answers once the batch has passed the queue, so the ack can say how many of its
    /// records the overflow policy dropped; in durable mode, while the replay of an earlier
    /// run is not through, the batch first waits behind it.
    fn handle(&mut self, TrackBatch(events): TrackBatch, _: &mut Context<Self>) -> Self::Result {
        if self.replaying() && !self.shutting_down {
            let (answer, answered) = oneshot::channel();
            self.wait_behind_replay(BehindReplay::Batch(events, answer));
            return Box::pin(async move {
                match answered.await {
                    Ok(ack) => ack.await,
                    Err(_) => Err(TrackError::ShutDown),
                }
            });
        }
        self.take_batch(events)
    }
}

impl Tracker {
    /// A `TrackEvent`: counts it as received and accepts it (or refuses it), checkpointing if
    /// due. The caller runs the intake on.
    pub(super) fn take_event(&mut self, event: TrackEvent) -> Result<(), TrackError> {
        Counters::add(&self.counters.received, 1);
        self.accept(event, self.clock.now_ms())?;
        self.checkpoint_if_due();
        Ok(())
    }

    /// A `TrackBatch`: counts, validates, journals (durable mode) and hands on its events;
    /// the answer, once the batch has passed the queue if it may have overflowed it.
    pub(super) fn take_batch(
        &mut self,
        mut events: Vec<TrackEvent>,
    ) -> ResponseFuture<Result<BatchAck, TrackError>> {
        let n = events.len();
        Counters::add(&self.counters.received, n as u64);
        if self.shutting_down {
            Counters::add(&self.counters.rejected, n as u64);
            return Box::pin(async { Err(TrackError::ShutDown) });
        }
        let now = self.clock.now_ms();
        // validated and pseudonymised in place: the batch travels on as it came, without
        // copying its events
        let window_ms = self.settings.window_ms;
        let ids = &self.settings.pseudonyms;
        events.retain_mut(|e| e.admit(now, window_ms).map(|()| ids.apply(e)).is_ok());
        let mut ack = BatchAck {
            accepted: events.len(),
            rejected: n - events.len(),
            dropped: 0,
        };
        Counters::add(&self.counters.rejected, ack.rejected as u64);
        self.forward_intake();
        if !events.is_empty() {
            if let Err(e) = self.journal(&events) {
                Counters::add(&self.counters.rejected, events.len() as u64);
                return Box::pin(async { Err(e) });
            }
            self.front.take(&mut events);
            self.checkpoint_if_due();
        }
        if !self.may_overflow(ack.accepted) {
            return Box::pin(async move { Ok(ack) });
        }
        let admitted = self.ask(false, Control::Admitted);
        Box::pin(async move {
            match admitted.await {
                Ok(dropped) => ack.dropped = dropped,
                Err(e) => log::warn!("batch accepted; its overflow count is unknown: {e}"),
            }
            Ok(ack)
        })
    }
}

impl Handler<GetStats> for Tracker {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}

impl Handler<GetConfig> for Tracker {
    type Result = MessageResult<GetConfig>;
    fn handle(&mut self, _: GetConfig, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.config.clone())
    }
}

impl Handler<Configure> for Tracker {
    type Result = Result<Config, ConfigError>;
    fn handle(&mut self, Configure(patch): Configure, ctx: &mut Context<Self>) -> Self::Result {
        let next = self.config.patched(&patch)?;
        let mut settings = next.settings()?;
        // the instance id stays the one in force (generated at start when not configured)
        settings.instance_id = self.settings.instance_id.clone();
        log::info!("configuration changed: {patch:?}");
        let interval_changed = settings.batch_interval != self.settings.batch_interval
            || settings.stats_log_interval != self.settings.stats_log_interval
            || settings.metrics_interval != self.settings.metrics_interval;
        self.settings = Arc::new(settings);
        self.config = next.clone();
        if let Some(d) = &mut self.durable {
            d.journal.set_interval(self.settings.fsync_interval);
            // a replay under way hands on batches this size: under the new bound, or it could
            // never find room for them
            d.records_per_checkpoint = durable::records_per_checkpoint(&self.settings);
        }
        self.send_marker(Control::Settings(self.settings.clone()));
        if interval_changed {
            self.arm_timer(ctx);
        }
        Ok(next)
    }
}

#[cfg(any(test, feature = "testing"))]
impl Handler<Tick> for Tracker {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.send_checkpointed(Control::Tick);
    }
}

impl Handler<Flush> for Tracker {
    type Result = ResponseActFuture<Self, Result<Stats, PipelineError>>;
    /// Durable mode: once a replay of an earlier run is through (see `Tracker::after_replay`).
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        self.after_replay(|act| Box::pin(act.flush()))
    }
}

impl Tracker {
    /// A flush: the answer, the counters once everything accepted so far is written.
    fn flush(&mut self) -> impl std::future::Future<Output = Result<Stats, PipelineError>> {
        let answer = self.ask_within_budget(true, Control::Flush);
        let counters = self.counters.clone();
        let publisher = self.publisher();
        let journal = self.durable.as_ref().map(|d| d.journal.clone());
        async move {
            answer.await?;
            if let Some(e) = journal.and_then(|j| j.failure()) {
                return Err(e);
            }
            Ok(match publisher {
                Some(p) => p.snapshot_and_publish(),
                None => counters.snapshot(),
            })
        }
    }
}

impl Handler<QueryWindows> for Tracker {
    type Result = ResponseActFuture<Self, Result<Vec<WindowStats>, PipelineError>>;
    fn handle(&mut self, query: QueryWindows, _: &mut Context<Self>) -> Self::Result {
        self.after_replay(|act| {
            Box::pin(act.ask_within_budget(true, |reply| {
                Control::Windows(Box::new(WindowsQuery {
                    query,
                    open: Vec::new(),
                    reply,
                }))
            }))
        })
    }
}

impl Handler<QueryPatterns> for Tracker {
    type Result = ResponseActFuture<Self, Result<Vec<Pattern>, PipelineError>>;
    fn handle(&mut self, query: QueryPatterns, _: &mut Context<Self>) -> Self::Result {
        self.after_replay(|act| {
            Box::pin(act.ask_within_budget(true, |reply| Control::Patterns(query, reply)))
        })
    }
}

impl Handler<QueryUsers> for Tracker {
    type Result = ResponseActFuture<Self, Result<Vec<UserCount>, PipelineError>>;
    fn handle(&mut self, query: QueryUsers, _: &mut Context<Self>) -> Self::Result {
        self.after_replay(|act| {
            Box::pin(act.ask_within_budget(true, |reply| {
                Control::Users(Box::new(UsersQuery {
                    query,
                    open: Vec::new(),
                    reply,
                }))
            }))
        })
    }
}

impl Handler<SubscribePatterns> for Tracker {
    type Result = Result<SubscriptionId, PipelineError>;
    /// Refused once stopping: the detector finds no pattern after `Shutdown`, so an id would
    /// promise what never comes.
    fn handle(
        &mut self,
        SubscribePatterns(to): SubscribePatterns,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if self.shutting_down || self.closing {
            return Err(PipelineError::Unavailable(
                "the pipeline is shut down: no pattern will be found to send".into(),
            ));
        }
        self.next_subscription += 1;
        let id = SubscriptionId(self.next_subscription);
        self.subscriptions.do_send(Subscription::Add(id, to));
        Ok(id)
    }
}

impl Handler<UnsubscribePatterns> for Tracker {
    type Result = ();
    fn handle(&mut self, UnsubscribePatterns(id): UnsubscribePatterns, _: &mut Context<Self>) {
        self.subscriptions.do_send(Subscription::Remove(id));
    }
}

impl Handler<Shutdown> for Tracker {
    type Result = ResponseActFuture<Self, Stats>;
    /// Durable mode: a replay of an earlier run under way goes on first while the store takes
    /// it; on a failing store that wait ends within the retry budget, and what was not
    /// replayed stays in the journal for the next start (`Tracker::end_replay`).
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            // A second Shutdown: the first one is under way.
            return Box::pin(actix::fut::ready(self.stats()));
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if self.replaying() {
            let replayed = self.after_replay(|_| Box::pin(std::future::ready(Ok(()))));
            return Box::pin(replayed.then(|_, act, _| act.shut_down()));
        }
        self.shut_down()
    }
}

impl Tracker {
    /// `Shutdown`, once a replay is through or given up: closes the pipeline and stops.
    fn shut_down(&mut self) -> ResponseActFuture<Self, Stats> {
        if self.shutting_down {
            return Box::pin(actix::fut::ready(self.stats()));
        }
        let answer = within_budget(
            self.close(),
            self.store_watch.clone(),
            self.settings.store_retry_budget,
        );
        Box::pin(answer.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(Ok(())) => log::info!("eventbatch pipeline shut down"),
                Ok(Err(e)) => {
                    log::error!("eventbatch pipeline shut down with the store failing: {e}")
                }
                Err(Silent(age)) => act.give_up(age),
            }
            ctx.stop();
            act.stats()
        }))
    }
}
