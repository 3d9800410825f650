//! [`Inbox`]: how data moves between the pipeline's stages.
//!
//! Each stage owns an inbox; producers append to it and, when it was empty, ring the stage's
//! doorbell (a typed `Wake`-style message). The stage drains everything waiting in one go,
//! which batches work under load at no latency cost when idle.
//!
//! Why not carry the data in the messages themselves? actix drops a stopped actor's unprocessed
//! mailbox (and the System drops every mailbox when it stops), so anything travelling in a
//! message at that moment would vanish. Data in an inbox stays reachable: the supervisor's
//! synchronous stop path drains every inbox and stage, in order, straight into the store.

use std::sync::{Mutex, MutexGuard};

/// A stage's input buffer. Cheap to share (`Arc<Inbox<T>>`); locks are held only to append or
/// to swap the buffer out.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    items: Mutex<Vec<T>>,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox {
            items: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Inbox<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A panic while holding this lock cannot leave the Vec inconsistent: recover it.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one item; true when the inbox was empty (the caller rings the doorbell).
    pub(crate) fn push(&self, item: T) -> bool {
        let mut items = self.lock();
        items.push(item);
        items.len() == 1
    }

    /// Appends many; true when the inbox was empty and now is not.
    pub(crate) fn extend(&self, new: impl IntoIterator<Item = T>) -> bool {
        let mut items = self.lock();
        let was_empty = items.is_empty();
        items.extend(new);
        was_empty && !items.is_empty()
    }

    /// Takes everything waiting.
    pub(crate) fn drain(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }

    /// How many items wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_reports_the_empty_to_nonempty_edge() {
        let inbox = Inbox::default();
        assert!(inbox.push(1));
        assert!(!inbox.push(2));
        assert!(!inbox.extend([3, 4]));
        assert_eq!(inbox.drain(), vec![1, 2, 3, 4]);
        assert!(!inbox.extend(Vec::<i32>::new()));
        assert!(inbox.extend([5]));
        assert_eq!(inbox.len(), 1);
    }
}
