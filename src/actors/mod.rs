//! The stages of the chain (`crate::pipeline` draws it and wires them): each holds a pure
//! core (`crate::cores`) and implements `pipeline::stage::Stage`, and the writer's actor.
//!
//! - [`sampler_stage`], [`aggregator_stage`]: on the application's thread, driven by the
//!   tracker synchronously, in chain order (`pipeline::stage::Front`: a mailbox hop between
//!   actors on one thread is pure cost, and the application's System would tear such actors
//!   down in an order nobody controls).
//! - [`detector_stage`], [`queue_stage`]: on the stages' thread (an actix System of its own),
//!   each in the generic actor `pipeline::stage::Shell`.
//! - [`db_writer`]: an actor on a thread (and System) of its own, the end of the chain.
//!
//! The actors stop only on the pipeline's own `Shutdown` marker (or, for the writer, on the
//! tracker's [`db_writer::StopWriter`] once that has been answered), never because the
//! application's System went: one stop mechanism, `Tracker::close`.

pub(crate) mod aggregator_stage;
pub(crate) mod db_writer;
pub(crate) mod detector_stage;
pub(crate) mod nats_sink;
pub(crate) mod queue_stage;
pub(crate) mod sampler_stage;

use crate::counters::Counters;

/// What the actor at the end of the chain (the writer, or the NATS sink in its place) keeps to
/// live alone on the writer's thread and end it: its own address, held so that it stops only
/// when told to (`Shutdown`, [`db_writer::StopWriter`]) or when its thread stops, never because
/// its senders went away (actix stops an actor whose senders are gone without reading what
/// arrived while it was busy), and the `Shutdown` answer, sent as it stops.
pub(crate) struct EndOfChain<A: actix::Actor> {
    own_address: Option<actix::Addr<A>>,
    /// The `Shutdown` answer, sent by [`EndOfChain::stopped`].
    pub shutdown: Option<(
        crate::messages::Reply<()>,
        Result<(), crate::error::PipelineError>,
    )>,
}

impl<A: actix::Actor<Context = actix::Context<A>>> EndOfChain<A> {
    /// Nothing held yet.
    pub(crate) fn new() -> Self {
        EndOfChain {
            own_address: None,
            shutdown: None,
        }
    }

    /// From `Actor::started`: holds the address, counts the actor running.
    pub(crate) fn started(&mut self, ctx: &mut actix::Context<A>, counters: &Counters) {
        use actix::AsyncContext;
        self.own_address = Some(ctx.address());
        Counters::add(&counters.actors_running, 1);
    }

    /// From `Actor::stopped`, first: lets the address go, counts the actor gone.
    pub(crate) fn stopping(&mut self, counters: &Counters) {
        Counters::sub(&counters.actors_running, 1);
        self.own_address = None;
    }

    /// From `Actor::stopped`, last: answers a `Shutdown` and ends the thread's System (the
    /// writer's thread runs one of its own, see `spawn_system_thread`).
    pub(crate) fn stopped(&mut self) {
        if let Some((reply, result)) = self.shutdown.take() {
            let _ = reply.send(result);
        }
        actix::System::current().stop();
    }
}

/// Waits for `answer`, blocking this thread (parked, woken by the answer), for the supervisor
/// as it goes without `Shutdown`; every `every` without an answer it asks `give_up`, and
/// returns `None` once that says yes. Works inside a runtime's task or teardown too: the wait
/// is outside tokio's cooperative budget, and needs no runtime (nor its timers).
pub(crate) fn wait_for<T>(
    answer: impl std::future::Future<Output = T>,
    every: std::time::Duration,
    mut give_up: impl FnMut() -> bool,
) -> Option<T> {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};

    /// Unparks the waiting thread.
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut answer = std::pin::pin!(tokio::task::unconstrained(answer));
    loop {
        if let Poll::Ready(value) = answer.as_mut().poll(&mut cx) {
            return Some(value);
        }
        if give_up() {
            return None;
        }
        std::thread::park_timeout(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_blocks_until_another_thread_answers() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let answering = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(wait_for(rx, EVERY, || false), Some(Ok(7)));
        answering.join().unwrap();
    }

    const EVERY: std::time::Duration = std::time::Duration::from_millis(5);

    #[test]
    fn wait_for_stops_waiting_when_told_to_give_up() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut asked = 0;
        let answer = wait_for(rx, EVERY, || {
            asked += 1;
            asked == 3
        });
        assert_eq!((answer, asked), (None, 3));
    }

    #[test]
    fn wait_for_sees_a_dropped_sender() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        std::thread::spawn(move || drop(tx));
        assert!(wait_for(rx, EVERY, || false).is_some_and(|a| a.is_err()));
    }
}
