//! The pipeline's stages behind the supervisor: thin shells that own a pure core each and send
//! on what the core produces (see `ARCHITECTURE.md` for the message graph).
//!
//! - [`front`]: the stages on the application's thread, [`sampler`] then [`aggregator`]. They
//!   are not actors: the supervisor drives them synchronously, in chain order, on the events
//!   it accepted (a mailbox hop between actors on one thread is pure cost, and the
//!   application's System would tear such actors down in an order nobody controls).
//! - [`detector`], [`queue`]: actors on the stages' thread (an actix System of its own).
//! - [`writer`]: an actor on a thread (and System) of its own.
//!
//! The actors stop only on the pipeline's own `Shutdown` marker (or, for the writer, on the
//! supervisor's [`writer::StopWriter`] once that has been answered), never because the
//! application's System went: one stop mechanism, `Tracker::close`.
//!
//! The supervisor (`crate::tracker`) starts and wires them; no stage file names another:
//! each holds `Recipient`s of the messages it sends.

pub(crate) mod aggregator_stage;
pub(crate) mod db_writer;
pub(crate) mod detector_actor;
pub(crate) mod front;
pub(crate) mod nats_sink;
pub(crate) mod queue_actor;
pub(crate) mod sampler_stage;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use actix::prelude::*;

/// The mailbox capacity every internal actor sets: in effect unbounded (2^30 messages, each
/// a batch), as `do_send` is, so [`deliver`] never meets a full mailbox. (`usize::MAX`
/// overflows actix's sender accounting.)
pub(crate) const UNBOUNDED: usize = 1 << 30;

/// Set once a message met a receiver that was gone (logged once).
static RECEIVER_GONE: AtomicBool = AtomicBool::new(false);

/// Sends `msg`. Mailboxes are unbounded ([`UNBOUNDED`]), so a send never waits or fails for
/// room. The back stages stop only on the `Shutdown` marker, behind everything sent to them,
/// so a receiver is gone only if its thread panicked: that is logged (once) as an error.
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
