//! [`Stages`]: the state every stage of the pipeline owns, in one place, shared (`Arc`) by the
//! actors and by the supervisor's synchronous stop path.
//!
//! Each stage is an inbox (see [`crate::handoff`]) plus its core logic behind a mutex. Actors
//! lock only their own stage, briefly; the writer's lock is held for a transaction, on the
//! writer's own thread. Lock order (never reversed): a stage, then a downstream inbox.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::aggregator::{Aggregator, ClosedWindow};
use crate::clock::Clock;
use crate::config::{Config, Settings};
use crate::counters::{Counters, Stats};
use crate::db::store::Pool;
use crate::db::writer::WriterCore;
use crate::detector::Detectors;
use crate::error::PipelineError;
use crate::event::TrackEvent;
use crate::handoff::Inbox;
use crate::model::{Record, WriteBatch};
use crate::queue::{PriorityQueues, QueueLimits};
use crate::sampler::{Kept, Sampler};
use crate::util::SplitMix64;

/// Locks a stage, recovering from poisoning (a panicked handler cannot leave these
/// structures half-updated in a way that loses accepted data, and losing the lock forever
/// would lose everything).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// All of the pipeline's state.
pub(crate) struct Stages {
    /// Live counters (`GetStats`).
    pub counters: Counters,
    /// Time for validation, window closing and batch intervals.
    pub clock: Arc<dyn Clock>,
    /// The configuration in force, as given and as validated.
    config: RwLock<(Config, Settings)>,
    /// Validated events waiting for the sampler.
    pub sampler_in: Inbox<TrackEvent>,
    pub sampler: Mutex<Sampler>,
    /// Kept metric samples and errors waiting for the aggregator.
    pub aggregator_in: Inbox<Kept>,
    pub aggregator: Mutex<Aggregator>,
    /// Records waiting for the priority queues.
    pub queue_in: Inbox<Record>,
    pub queues: Mutex<PriorityQueues>,
    /// Closed windows waiting for the detector.
    pub detector_in: Inbox<ClosedWindow>,
    pub detector: Mutex<Detectors>,
    /// Batches waiting for the writer.
    pub writer_in: Inbox<WriteBatch>,
    pub writer: Mutex<WriterCore>,
    /// Record batches handed to the writer and not yet committed.
    pub batches_in_flight: AtomicUsize,
    /// When (pipeline clock, ms) the writer's next roll-up run is due; the queue's timer wakes
    /// an idle writer then.
    pub next_rollup_ms: AtomicI64,
}

pub(crate) fn queue_limits(s: &Settings) -> QueueLimits {
    QueueLimits {
        max_batch_size: s.max_batch_size.get(),
        high_threshold: s.high_priority_flush_threshold.get(),
        batch_interval_ms: s.batch_interval.as_millis() as i64,
        max_events: s.max_queued_events.get(),
    }
}

impl Stages {
    pub(crate) fn new(
        config: Config,
        settings: Settings,
        pool: Pool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let writer = WriterCore::new(
            pool,
            settings.instance_id.clone(),
            settings.hash_identities,
            settings.store_retry_budget,
        );
        Stages {
            counters: Counters::default(),
            clock,
            sampler_in: Inbox::default(),
            sampler: Mutex::new(Sampler::new(
                settings.sampling_rates.clone(),
                SplitMix64::from_entropy(),
            )),
            aggregator_in: Inbox::default(),
            aggregator: Mutex::new(Aggregator::new(
                settings.window_ms,
                settings.allowed_lateness_ms,
            )),
            queue_in: Inbox::default(),
            queues: Mutex::new(PriorityQueues::new(queue_limits(&settings))),
            detector_in: Inbox::default(),
            detector: Mutex::new(Detectors::new(settings.detection.clone())),
            writer_in: Inbox::default(),
            writer: Mutex::new(writer),
            batches_in_flight: AtomicUsize::new(0),
            next_rollup_ms: AtomicI64::new(i64::MIN),
            config: RwLock::new((config, settings)),
        }
    }

    /// The validated settings in force.
    pub(crate) fn settings(&self) -> MappedSettings<'_> {
        MappedSettings(self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The configuration in force, as the application sees it.
    pub(crate) fn config(&self) -> Config {
        self.settings().0 .0.clone()
    }

    /// Installs a new (validated) configuration in every stage.
    pub(crate) fn reconfigure(&self, config: Config, settings: Settings) {
        lock(&self.sampler).set_rates(settings.sampling_rates.clone());
        lock(&self.queues).set_limits(queue_limits(&settings));
        lock(&self.aggregator).set_lateness(settings.allowed_lateness_ms);
        lock(&self.detector).set_settings(settings.detection.clone());
        lock(&self.writer).set_retry_budget(settings.store_retry_budget);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = (config, settings);
    }

    /// Roll-ups are on and their next run is due on the clock.
    pub(crate) fn rollup_due(&self) -> bool {
        self.settings().rollups && self.clock.now_ms() >= self.next_rollup_ms.load(Relaxed)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Runs every stage to completion on the calling thread, in flow order, closing (or, with
    /// `close = false`, snapshotting) every window, and writes everything. This is the stop
    /// path: it needs no actor, so it works while the System is tearing actors down.
    pub(crate) fn flush_sync(&self, close: bool) -> Result<(), PipelineError> {
        crate::sampler::drain(self);
        let mode = if close {
            crate::aggregator::Mode::CloseAll
        } else {
            crate::aggregator::Mode::Snapshot
        };
        crate::aggregator::pump(self, mode);
        crate::detector::pump(self);
        crate::queue::pump(self, true, usize::MAX);
        lock(&self.writer).write_all(self)
    }
}

/// A read guard on the settings.
pub(crate) struct MappedSettings<'a>(RwLockReadGuard<'a, (Config, Settings)>);

impl std::ops::Deref for MappedSettings<'_> {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.0 .1
    }
}
