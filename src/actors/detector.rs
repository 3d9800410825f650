//! The detector's actor: feeds each batch of closed windows to its [`Detectors`].

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::remains::{deliver, Remains};
use crate::clock::Clock;
use crate::counters::Counters;
use crate::detector::Detectors;
use crate::messages::{Closed, Control, Write};
use crate::model::WriteBatch;

/// The detector's actor: feeds each batch of closed windows to [`Detectors`] and sends the
/// patterns found to the queue (which passes them to the writer).
pub(crate) struct DetectorActor {
    pub detectors: Detectors,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
    pub write: Recipient<Write>,
    /// Markers go on to the queue.
    pub next: Recipient<Control>,
    pub remains: Arc<Remains>,
}

impl Actor for DetectorActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
    }

    /// Hands the detectors to the last flush (windows closed there are checked too).
    fn stopped(&mut self, _: &mut Context<Self>) {
        Counters::sub(&self.counters.actors_running, 1);
        let settings = self.detectors.settings.clone();
        let detectors = std::mem::replace(&mut self.detectors, Detectors::new(settings));
        self.remains.left().detectors = Some(detectors);
    }
}

impl Handler<Closed> for DetectorActor {
    type Result = ();
    fn handle(&mut self, Closed(closed): Closed, _: &mut Context<Self>) {
        let patterns = self.detectors.observe(closed, self.clock.now_ms());
        if !patterns.is_empty() {
            Counters::add(&self.counters.patterns_detected, patterns.len() as u64);
            let batch = WriteBatch {
                patterns,
                ..WriteBatch::default()
            };
            deliver(&self.write, Write(batch), &self.remains);
        }
    }
}

impl Handler<Control> for DetectorActor {
    type Result = ();
    fn handle(&mut self, marker: Control, ctx: &mut Context<Self>) {
        match &marker {
            Control::Tick => {
                let evicted = self.detectors.evict_idle(self.clock.now_ms());
                if evicted > 0 {
                    log::debug!("dropped the detectors of {evicted} idle series");
                }
                if evicted >= 1_000 {
                    crate::util::release_freed_memory();
                }
            }
            Control::Settings(s) => self.detectors.set_settings(s.detection.clone()),
            Control::Shutdown(_) => ctx.stop(),
            _ => {}
        }
        deliver(&self.next, marker, &self.remains);
    }
}
