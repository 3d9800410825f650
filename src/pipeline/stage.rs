//! The mechanism every stage of the chain shares (the chain itself is drawn and wired in
//! [`crate::pipeline`]):
//!
//! - [`Stage`]: what a stage does with a batch of its input ([`Stage::take`]), with a marker
//!   ([`Stage::marker`]), and what it gives up when the pipeline stops ([`Stage::stop`]), each
//!   handing what it produces to its one downstream ([`Next`]);
//! - [`pass_marker`]: the marker protocol, the stop included, in one function: a marker goes
//!   through a stage behind everything the stage produced before it, and the `Shutdown` marker
//!   makes the stage give up what it holds before it moves on;
//! - [`Item`]: what travels on a link: a batch of the link's data, or a marker behind it;
//! - [`Then`] and [`Front`]: two stages composed on one thread (a call, no mailbox);
//! - [`Shell`]: the generic actor around a stage on a thread of its own (a mailbox per link).
//!
//! A stage holds its pure core (`crate::cores`) and the counters it adds to; it never names
//! another stage: its downstream is a type parameter.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use actix::prelude::*;

use crate::clock::Clock;
use crate::counters::Counters;
use crate::messages::Control;
use crate::model::{ClosedWindow, Record, WriteBatch};

/// What travels on a link of the chain: a batch of the link's data, or a marker, behind every
/// item sent before it (mailboxes are FIFO and each link has one sender).
#[derive(Debug)]
pub(crate) enum Item<D> {
    /// A batch of data.
    Data(D),
    /// A control marker (`Flush`, `Shutdown`, a query, ...), behind the data sent before it.
    Marker(Control),
}

impl<D: 'static> Message for Item<D> {
    type Result = ();
}

/// What the front stages hand to the detector: the windows that closed (for the detectors),
/// and rows (for the queue, which the detector passes on in order).
#[derive(Debug)]
pub(crate) enum Batch {
    /// Windows that closed, in closing order.
    Closed(Vec<ClosedWindow>),
    /// Rows bound for the queue.
    Rows(Rows),
}

/// What the detector hands to the queue.
#[derive(Debug)]
pub(crate) enum Rows {
    /// `events` rows to queue by priority (commands, engagement, custom events, and the
    /// first error of each hash in a window).
    Records(Vec<Record>),
    /// Rows to commit in one transaction (windows, error counts, patterns): the queue passes
    /// them straight to the writer.
    Write(WriteBatch),
}

/// Whether a marker moves on after a stage did its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// On to the next stage.
    On,
    /// The stage answered it (the queue, an `Admitted`): it goes no further.
    Answered,
}

/// What [`pass_marker`] left to do.
#[must_use]
#[derive(Debug)]
pub(crate) enum Turn {
    /// The marker moved on (or was answered); the stage runs on.
    Running,
    /// The `Shutdown` marker: the stage has given up what it held; the caller stops the stage
    /// and sends the marker on (after whatever must happen first, such as leaving
    /// `actors_running`).
    Stopped(Control),
}

/// A stage's one downstream: the next stage on the same thread ([`Then`]), or the mailbox of
/// the next actor (a `Recipient` of [`Item`]s).
pub(crate) trait Next<D> {
    /// Hands on a batch.
    fn data(&mut self, data: D);
    /// Hands on a marker, behind every batch handed on before it.
    fn marker(&mut self, marker: Control);
}

/// One stage of the chain, over its pure core.
pub(crate) trait Stage {
    /// The batches it takes from upstream.
    type In: Send + 'static;
    /// The batches it hands downstream.
    type Out: Send + 'static;

    /// Does its work on a batch (it may take the batch's contents, leaving it empty) and hands
    /// on what that produced.
    fn take(&mut self, input: &mut Self::In, now_ms: i64, next: &mut impl Next<Self::Out>);

    /// Does its part of a marker (never `Shutdown`: that is [`Stage::stop`]) and hands on what
    /// that produced; the marker follows, unless this answered it.
    fn marker(
        &mut self,
        marker: &mut Control,
        now_ms: i64,
        next: &mut impl Next<Self::Out>,
    ) -> Pass;

    /// The pipeline stops: hands on everything it holds (nothing accepted is left behind);
    /// the `Shutdown` marker follows.
    fn stop(&mut self, now_ms: i64, next: &mut impl Next<Self::Out>);
}

/// A marker through one stage: the stage's part, then the marker on to `next`. `Shutdown`
/// makes the stage give up what it holds ([`Stage::stop`]) and is handed back
/// ([`Turn::Stopped`]) for the caller to stop the stage and send it on. The one stop
/// mechanism: every stage stops this way, in chain order, behind everything sent before it.
pub(crate) fn pass_marker<S: Stage>(
    stage: &mut S,
    mut marker: Control,
    now_ms: i64,
    next: &mut impl Next<S::Out>,
) -> Turn {
    if let Control::Shutdown(_) = marker {
        stage.stop(now_ms, next);
        return Turn::Stopped(marker);
    }
    if stage.marker(&mut marker, now_ms, next) == Pass::On {
        next.marker(marker);
    }
    Turn::Running
}

/// `stage` as the downstream of the stage before it, on the same thread: a batch or a marker
/// handed on is a call, in order.
pub(crate) struct Then<'a, S, N> {
    pub stage: &'a mut S,
    pub next: &'a mut N,
    /// The clock, read once by the first stage.
    pub now_ms: i64,
}

impl<S: Stage, N: Next<S::Out>> Next<S::In> for Then<'_, S, N> {
    fn data(&mut self, mut data: S::In) {
        self.stage.take(&mut data, self.now_ms, self.next);
    }

    fn marker(&mut self, marker: Control) {
        if let Turn::Stopped(marker) = pass_marker(self.stage, marker, self.now_ms, self.next) {
            self.next.marker(marker);
        }
    }
}

/// Two stages on the caller's thread, `first` then `second`, handing on to `next` (the
/// mailbox of the first actor behind them). The tracker drives the sampler and the aggregator
/// so: no mailbox between them (see `crate::pipeline`).
pub(crate) struct Front<A, B: Stage, N> {
    pub first: A,
    pub second: B,
    pub next: N,
    /// The pipeline clock, read once per batch and per marker.
    pub clock: Arc<dyn Clock>,
}

impl<A, B, N> Front<A, B, N>
where
    A: Stage<Out = B::In>,
    B: Stage,
    N: Next<B::Out>,
{
    /// Runs a batch through both stages.
    pub(crate) fn take(&mut self, input: &mut A::In) {
        let now_ms = self.clock.now_ms();
        let mut then = Then {
            stage: &mut self.second,
            next: &mut self.next,
            now_ms,
        };
        self.first.take(input, now_ms, &mut then);
    }

    /// Runs a marker through both stages, then on to `next`.
    pub(crate) fn marker(&mut self, marker: Control) {
        let now_ms = self.clock.now_ms();
        let mut then = Then {
            stage: &mut self.second,
            next: &mut self.next,
            now_ms,
        };
        if let Turn::Stopped(marker) = pass_marker(&mut self.first, marker, now_ms, &mut then) {
            then.marker(marker);
        }
    }
}

/// The mailbox capacity every internal actor sets: in effect unbounded (2^30 messages, each
/// a batch), as `do_send` is, so [`deliver`] never meets a full mailbox. (`usize::MAX`
/// overflows actix's sender accounting.)
pub(crate) const UNBOUNDED: usize = 1 << 30;

/// Starts `actor` on the current Arbiter with an unbounded mailbox (set before its address
/// exists, so no send can meet the default capacity of 16 and be held back or reordered).
pub(crate) fn unbounded<A: Actor<Context = Context<A>>>(actor: A) -> Addr<A> {
    A::create(|ctx| {
        ctx.set_mailbox_capacity(UNBOUNDED);
        actor
    })
}

/// Set once a message met a receiver that was gone (logged once).
static RECEIVER_GONE: AtomicBool = AtomicBool::new(false);

/// Sends `msg`. Mailboxes are unbounded ([`UNBOUNDED`]), so a send never waits or fails for
/// room. The actors stop only on the `Shutdown` marker, behind everything sent to them, so a
/// receiver is gone only if its thread panicked: that is logged (once) as an error.
pub(crate) fn deliver<M>(to: &Recipient<M>, msg: M)
where
    M: Message<Result = ()> + Send + 'static,
{
    match to.try_send(msg) {
        Ok(()) => {}
        // Only before the receiver has set its capacity (it is starting): it is there.
        Err(SendError::Full(msg)) => to.do_send(msg),
        Err(SendError::Closed(_)) => {
            if !RECEIVER_GONE.swap(true, Relaxed) {
                log::error!(
                    "a pipeline stage is gone (its thread panicked?): a {} was not delivered",
                    std::any::type_name::<M>()
                );
            }
        }
    }
}

impl<D: Send + 'static> Next<D> for Recipient<Item<D>> {
    fn data(&mut self, data: D) {
        deliver(self, Item::Data(data));
    }

    fn marker(&mut self, marker: Control) {
        deliver(self, Item::Marker(marker));
    }
}

/// The actor around a stage on a thread of its own: takes [`Item`]s from its one upstream,
/// runs them through the stage (the clock read once per item), and hands on to its one
/// downstream. It is counted in `Stats::actors_running` from its start until it sends the
/// `Shutdown` marker on, and stops then; side inputs (the writer's `Committed` to the queue,
/// subscriptions to the detector) are handlers of `Shell<TheStage>` in the stage's file.
pub(crate) struct Shell<S: Stage> {
    pub stage: S,
    pub next: Recipient<Item<S::Out>>,
    pub clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// In `actors_running` (from `started` until the `Shutdown` marker moves on).
    counted: bool,
    /// The last stage on its thread: its stop ends the thread's System.
    last_on_thread: bool,
}

impl<S: Stage> Shell<S> {
    pub(crate) fn new(
        stage: S,
        next: Recipient<Item<S::Out>>,
        clock: Arc<dyn Clock>,
        counters: Arc<Counters>,
        last_on_thread: bool,
    ) -> Self {
        Shell {
            stage,
            next,
            clock,
            counters,
            counted: false,
            last_on_thread,
        }
    }

    /// Leaves `actors_running`, once: as it sends `Shutdown` on (its last work), before the
    /// writer on its own thread can answer it, so the answer's count is 0.
    fn count_out(&mut self) {
        if std::mem::take(&mut self.counted) {
            Counters::sub(&self.counters.actors_running, 1);
        }
    }
}

impl<S: Stage + Unpin + 'static> Actor for Shell<S> {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        Counters::add(&self.counters.actors_running, 1);
        self.counted = true;
    }

    /// Stopped by `Shutdown` (or, should it fail, with its thread).
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.count_out();
        if self.last_on_thread {
            // the markers stop the stages of a thread in chain order: it can end
            System::current().stop();
        }
    }
}

impl<S: Stage + Unpin + 'static> Handler<Item<S::In>> for Shell<S> {
    type Result = ();

    fn handle(&mut self, item: Item<S::In>, ctx: &mut Context<Self>) {
        let now_ms = self.clock.now_ms();
        match item {
            Item::Data(mut data) => self.stage.take(&mut data, now_ms, &mut self.next),
            Item::Marker(marker) => {
                if let Turn::Stopped(marker) =
                    pass_marker(&mut self.stage, marker, now_ms, &mut self.next)
                {
                    self.count_out();
                    ctx.stop();
                    self.next.marker(marker);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reached the end of a test chain, in order.
    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Next<u32> for Seen {
        fn data(&mut self, data: u32) {
            self.0.push(format!("{data}"));
        }
        fn marker(&mut self, marker: Control) {
            self.0.push(format!("{marker:?}").chars().take(5).collect());
        }
    }

    /// Doubles each number; holds the odd results until a flush or the stop.
    #[derive(Default)]
    struct Doubler(Vec<u32>);

    impl Stage for Doubler {
        type In = Vec<u32>;
        type Out = u32;
        fn take(&mut self, input: &mut Vec<u32>, _: i64, next: &mut impl Next<u32>) {
            for n in input.drain(..) {
                self.0.push(n * 2);
            }
            for n in std::mem::take(&mut self.0) {
                if n % 4 == 0 {
                    next.data(n);
                } else {
                    self.0.push(n);
                }
            }
        }
        fn marker(&mut self, marker: &mut Control, _: i64, next: &mut impl Next<u32>) -> Pass {
            match marker {
                Control::Tick => self.0.drain(..).for_each(|n| next.data(n)),
                Control::Admitted(_) => return Pass::Answered,
                _ => {}
            }
            Pass::On
        }
        fn stop(&mut self, _: i64, next: &mut impl Next<u32>) {
            self.0.drain(..).for_each(|n| next.data(n));
        }
    }

    /// Sums what it takes into one batch per input batch.
    struct Summer;

    impl Stage for Summer {
        type In = u32;
        type Out = u32;
        fn take(&mut self, input: &mut u32, _: i64, next: &mut impl Next<u32>) {
            next.data(*input + 1000);
        }
        fn marker(&mut self, _: &mut Control, _: i64, _: &mut impl Next<u32>) -> Pass {
            Pass::On
        }
        fn stop(&mut self, _: i64, _: &mut impl Next<u32>) {}
    }

    fn front() -> Front<Doubler, Summer, Seen> {
        Front {
            first: Doubler::default(),
            second: Summer,
            next: Seen::default(),
            clock: Arc::new(crate::clock::ManualClock::new(0)),
        }
    }

    #[test]
    fn a_marker_moves_on_behind_what_each_stage_produced_before_it() {
        let mut f = front();
        f.take(&mut vec![1, 2, 3]);
        assert_eq!(f.next.0, ["1004"]);
        f.marker(Control::Tick);
        assert_eq!(f.next.0, ["1004", "1002", "1006", "Tick"]);
    }

    #[test]
    fn the_stop_gives_up_what_a_stage_holds_before_shutdown_moves_on() {
        let mut f = front();
        f.take(&mut vec![5]);
        assert!(f.next.0.is_empty(), "10 is held: {:?}", f.next.0);
        let (reply, _answer) = tokio::sync::oneshot::channel();
        f.marker(Control::Shutdown(reply));
        assert_eq!(f.next.0, ["1010", "Shutd"]);
    }

    #[test]
    fn an_answered_marker_goes_no_further() {
        let mut f = front();
        let (reply, _answer) = tokio::sync::oneshot::channel();
        f.marker(Control::Admitted(reply));
        assert!(f.next.0.is_empty(), "{:?}", f.next.0);
    }
}
