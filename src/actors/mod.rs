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
