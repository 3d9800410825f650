//! Durable mode at the front door: journaling accepted events before they are acknowledged,
//! checkpoints, and the replay of what an earlier run journaled and the store lacks.

use super::*;
use crate::journal::outbox::OutboxMessage;

impl Tracker {
    /// Durable mode: journals accepted events before they are acknowledged, or refuses them
    /// while the journal fails (the first refusal checkpoints what was accepted before).
    pub(super) fn journal(&mut self, events: &[TrackEvent]) -> Result<(), TrackError> {
        let Some(d) = &mut self.durable else {
            return Ok(());
        };
        match d.journal.append(events) {
            Ok(position) => d.position = position,
            Err(refused) => {
                if refused.first {
                    self.send_checkpointed(Control::Tick);
                }
                return Err(refused.error);
            }
        }
        d.records_since += events.iter().filter(|e| may_be_record(e.kind)).count();
        Ok(())
    }

    /// Durable mode: checkpoints when enough accepted events may be waiting in the queues as
    /// records. Called once the events are on their way (in the intake or sent), so the
    /// checkpoint marker goes behind them.
    pub(super) fn checkpoint_if_due(&mut self) {
        if self
            .durable
            .as_ref()
            .is_some_and(|d| d.records_since >= d.records_per_checkpoint)
        {
            self.send_checkpointed(Control::Tick);
        }
    }

    /// Durable mode: whether events of an earlier run are still to be replayed (new events
    /// wait behind them, see [`BehindReplay`]).
    pub(super) fn replaying(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| !d.replay.is_empty())
    }

    /// Durable mode: hands the events of an earlier run that the store lacks to the front
    /// stages, ahead of every new event (those wait behind the replay, [`BehindReplay`]), then
    /// checkpoints and lets the waiting events in. Like new events, in batches of at most
    /// [`INTAKE_BATCH`] and at most `records_per_checkpoint`, checkpointed every
    /// `records_per_checkpoint` record-like events (each checkpoint at the position of the
    /// last event handed on); unlike them, held back while the queue could overflow, so that
    /// the overflow policy drops no replayed record: every one was acknowledged in the earlier
    /// run. While it is held back it looks again every [`REPLAY_WAIT`] from a timer, so the
    /// mailbox is read meanwhile: `GetStats`, `Configure` and `Shutdown` are answered, and
    /// `Flush` and queries as on any failing store when room does not come (see
    /// [`Tracker::after_replay`]).
    pub(super) fn replay(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || !self.replaying() {
            return;
        }
        if self.replay_what_fits() {
            return self.replay_through();
        }
        // room comes from commits, and in durable mode commits come at checkpoints
        if self.durable.as_ref().is_some_and(|d| d.records_since > 0) {
            self.send_checkpointed(Control::Tick);
        }
        // an actor first polled while its System is torn down has no timers (nor time to
        // wait): its stop ([`Tracker::close`]) ends the replay
        if self.closing || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        ctx.run_later(REPLAY_WAIT, |act, ctx| act.replay(ctx));
    }

    /// Durable mode: hands on replay batches while the queue has room for them; whether the
    /// replay is through.
    fn replay_what_fits(&mut self) -> bool {
        loop {
            let Some(d) = &self.durable else { return true };
            if d.replay.is_empty() {
                return true;
            }
            let n = d
                .replay
                .len()
                .min(INTAKE_BATCH)
                .min(d.records_per_checkpoint);
            if !self.room_for(n) {
                return false;
            }
            self.replay_batch(n);
        }
    }

    /// Durable mode: the replay is through: checkpoints it, then lets in the events that
    /// waited behind it, in the order they came.
    fn replay_through(&mut self) {
        self.send_checkpointed(Control::Tick);
        self.let_in_behind_replay();
    }

    /// Durable mode, as the pipeline stops: hands on what of the replay fits in the queue now
    /// and leaves the rest in the journal, where the next start replays it (it is never
    /// pushed past the queue's bound, where the overflow policy would drop events acknowledged
    /// in an earlier run; the stop's checkpoint is at the last event handed on). The events
    /// waiting behind an unfinished replay cannot go before it: they are refused
    /// ([`TrackError::ShutDown`]).
    pub(super) fn end_replay(&mut self) {
        if !self.replaying() {
            return;
        }
        if self.replay_what_fits() {
            return self.replay_through();
        }
        self.shutting_down = true;
        if let Some(d) = &mut self.durable {
            log::warn!(
                "stopping before the replay is through: {} journaled events not replayed stay in \
                 the journal {} and are replayed on the next start; {} events sent behind the \
                 replay are refused (shut down)",
                d.replay.len(),
                d.journal.id(),
                d.behind.len(),
            );
            d.replay.clear();
        }
        self.let_in_behind_replay();
    }

    /// Durable mode: a new event or batch arrived while the replay is not through: it waits
    /// behind the replay, answered once it has gone in.
    pub(super) fn wait_behind_replay(&mut self, waiting: BehindReplay) {
        if let Some(d) = &mut self.durable {
            d.behind.push_back(waiting);
        }
    }

    /// Handles the events that waited behind the replay, in the order they came, as if they
    /// came now (refused once shutting down), and answers each.
    ///
    /// In a bare stop (the System going, `closing`) they are refused: the context that would
    /// answer them goes with the tracker, so their callers are told the send failed, and an
    /// event accepted unseen could be sent again by a caller that retries.
    fn let_in_behind_replay(&mut self) {
        let Some(d) = &mut self.durable else { return };
        let behind = std::mem::take(&mut d.behind);
        let refusing = self.shutting_down;
        self.shutting_down |= self.closing;
        for waiting in behind {
            match waiting {
                BehindReplay::Event(event, answer) => {
                    let _ = answer.send(self.take_event(*event));
                    if self.intake.len() >= INTAKE_BATCH {
                        self.forward_intake();
                    }
                }
                BehindReplay::Batch(events, answer) => {
                    let _ = answer.send(self.take_batch(events));
                }
            }
        }
        self.shutting_down = refusing;
        self.forward_intake();
    }

    /// Durable mode: `then` once the replay is through (for `Flush` and queries, which answer
    /// for everything accepted before them, the replayed events included). Until it is, one
    /// checkpointed flush at a time goes down behind what the replay has handed on (each lets
    /// the writer commit, which makes room): the first that fails ends the wait with its
    /// error, as a `Flush` fails on a failing store (within the retry budget), since no room
    /// comes while the store fails.
    pub(super) fn after_replay<T, F>(
        &mut self,
        then: F,
    ) -> ResponseActFuture<Self, Result<T, PipelineError>>
    where
        T: 'static,
        F: FnOnce(&mut Self) -> ResponseFuture<Result<T, PipelineError>> + 'static,
    {
        if !self.replaying() || self.shutting_down || self.closing {
            return Box::pin(actix::fut::wrap_future(then(self)));
        }
        let flushed = self.ask_within_budget(true, Control::Flush);
        Box::pin(
            actix::fut::wrap_future::<_, Self>(flushed).then(
                move |flushed, act, _| match flushed {
                    Ok(()) => act.after_replay(then),
                    Err(e) => Box::pin(actix::fut::ready(Err(e))),
                },
            ),
        )
    }

    /// Durable mode: hands the next `n` replayed events to the front stages, counted as
    /// received and replayed, and checkpoints if due.
    pub(super) fn replay_batch(&mut self, n: usize) {
        let Some(d) = &mut self.durable else { return };
        let batch: Vec<(u64, TrackEvent)> = d.replay.drain(..n).collect();
        if let Some((last, _)) = batch.last() {
            d.position = *last;
        }
        let mut events: Vec<TrackEvent> = batch.into_iter().map(|(_, e)| e).collect();
        d.records_since += events.iter().filter(|e| may_be_record(e.kind)).count();
        let n = events.len() as u64;
        Counters::add(&self.counters.received, n);
        Counters::add(&self.counters.replayed, n);
        self.front.take(&mut events);
        self.checkpoint_if_due();
    }
}

/// Durable mode: record-like events between two checkpoints, at most. A quarter of
/// `max_queued_events` (records wait in the queues until a checkpoint, under that bound), and
/// never more than [`MAX_RECORDS_PER_CHECKPOINT`], so that with a large queue bound the writer
/// still commits alongside the intake instead of at the end of a burst.
pub(super) fn records_per_checkpoint(settings: &Settings) -> usize {
    (settings.max_queued_events.get() / 4).clamp(1, MAX_RECORDS_PER_CHECKPOINT)
}

/// How long a replay held back waits for room in the queue before it looks again (a timer:
/// the mailbox is read meanwhile).
pub(super) const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// The most record-like events between two checkpoints: the default `max_queued_events`'
/// quarter, about 40 ms of the writer's work at its record rate on SQLite.
pub(super) const MAX_RECORDS_PER_CHECKPOINT: usize = 25_000;

impl DurableIntake {
    /// Durable mode: opens the journal at `path` (reading the store's checkpoint for it) and what
    /// to replay; with the messages an earlier forwarding run left in the journal's outbox.
    pub(super) fn open(
        path: &std::path::Path,
        options: crate::journal::Options,
        settings: &Settings,
        pool: &Pool,
        counters: Arc<Counters>,
    ) -> Result<(DurableIntake, Vec<OutboxMessage>), Error> {
        let checkpoint_of = |id: &str| {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            conn.checkpoint_of(id).map_err(|e| e.to_string())
        };
        let recovered = crate::journal::recover_with(path, checkpoint_of, options, counters)?;
        if settings.forward.is_none() && !recovered.outbox.is_empty() {
            // the replay starts after the outbox's checkpoint: what it holds is sent, not
            // replayed, and only a forwarding pipeline sends it; starting without would leave
            // it unsent (the journal closes as `recovered` goes, releasing its lock)
            return Err(outbox_waits(path, recovered.outbox.len()).into());
        }
        let replay = VecDeque::from(recovered.replay);
        let intake = DurableIntake {
            // until the replay has handed on its events, the last position handed on is the
            // store's checkpoint
            position: match replay.front() {
                Some((first, _)) => first - 1,
                None => recovered.journal.last_position(),
            },
            journal: recovered.journal,
            records_since: 0,
            records_per_checkpoint: records_per_checkpoint(settings),
            ticks: 0,
            replay,
            behind: VecDeque::new(),
        };
        Ok((intake, recovered.outbox))
    }
}

/// Why a durable pipeline without `forward` does not start on a journal whose outbox holds
/// `messages` an earlier forwarding run committed and JetStream may not have acknowledged.
pub(super) fn outbox_waits(path: &std::path::Path, messages: usize) -> crate::ConfigError {
    crate::ConfigError::new(
        "forward",
        "none",
        format!(
            "journal {} holds {messages} messages of an earlier forwarding run in its outbox, \
             not yet acknowledged by JetStream; start with `forward` (the same stream) to send \
             them, once: without it they would never be sent",
            path.display()
        ),
    )
}
