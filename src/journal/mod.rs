//! Durable mode's journal (`Config::durable`): every accepted event is appended here before it
//! is acknowledged, and the journal's own thread commits what was appended to a local SQLite
//! file ([`file`]) at least every `fsync_interval_ms`. A kill -9 then loses at most the events
//! of the last interval (and one commit's time). On start, the events after the store's
//! checkpoint are replayed through the pipeline.
//!
//! Positions number accepted events (1, 2, ... across runs). The supervisor sends a checkpoint
//! marker carrying the last position `P` down the pipeline; the writer commits everything
//! derived from the events up to `P` in one transaction with the row `durable_checkpoints
//! (journal_id, P)`, then asks the journal to delete its entries up to `P` (see
//! ARCHITECTURE.md, "Durable mode", for why that gives exactly once).
//!
//! The cost on the application's thread is an encode and a copy into a buffer under an
//! uncontended lock ([`Journal::append`]); the commit (and its fsync) runs on the journal
//! thread, which takes the whole buffer at once, so a commit writes all that arrived in an
//! interval (a group commit).

pub(crate) mod codec;
pub(crate) mod file;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::error::Error;
use crate::event::TrackEvent;
use codec::{Appender, Entry};
use file::JournalFile;

/// Waiting bytes past which the journal thread commits at once rather than at its interval.
const FLUSH_BYTES: usize = 16 << 20;

/// Waiting bytes past which an append waits (at most [`MAX_APPEND_WAIT`]) for the journal
/// thread to take the buffer: memory stays bounded when the disk is slower than the intake.
const MAX_WAITING_BYTES: usize = 64 << 20;
const MAX_APPEND_WAIT: Duration = Duration::from_secs(1);

/// Commit attempts when stopping with entries the file has refused so far.
const STOP_ATTEMPTS: u32 = 3;

/// The journal: an appendable buffer shared with the journal thread, which commits it to the
/// journal file. Dropping the last handle commits what waits and stops the thread.
pub(crate) struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The id of the journal file, the key of its row in `durable_checkpoints`.
    id: String,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the journal thread: a first event waits, a truncation is asked for, or stop.
    wake: Condvar,
    /// Signalled after each round of the journal thread.
    done: Condvar,
    /// `fsync_interval_ms` (changed at run time by `Configure`).
    interval_ms: AtomicU64,
    counters: Arc<Counters>,
}

struct State {
    appender: Appender,
    /// When the oldest waiting event was appended.
    since: Option<Instant>,
    /// The store holds everything up to this position: delete the entries up to it.
    truncate: u64,
    /// Deleted up to this position.
    truncated: u64,
    /// Committed to the file up to this position.
    written: u64,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Relaxed))
    }
}

/// A journal opened at start: its handle and the events to replay.
pub(crate) struct Recovered {
    pub journal: Arc<Journal>,
    /// The events after the store's checkpoint, in position order, each with its position.
    pub replay: Vec<(u64, TrackEvent)>,
}

/// Opens the journal at `path`, reads the store's checkpoint for it (`checkpoint_of` the
/// journal's id), decodes the events after it, and starts the journal thread numbering on
/// after the last of them.
pub(crate) fn recover(
    path: &Path,
    checkpoint_of: impl FnOnce(&str) -> Result<u64, String>,
    interval: Duration,
    counters: Arc<Counters>,
) -> Result<Recovered, Error> {
    let fail = |reason: String| Error::Journal {
        path: path.display().to_string(),
        reason,
    };
    let (mut file, id) = JournalFile::open(path).map_err(fail)?;
    let checkpoint =
        checkpoint_of(&id).map_err(|e| fail(format!("reading the checkpoint: {e}")))?;
    let entries = file
        .entries_after(checkpoint)
        .map_err(|e| fail(e.to_string()))?;
    let last = file.last_position().map_err(|e| fail(e.to_string()))?;
    let replay = events_after(checkpoint, &entries).map_err(|e| fail(e.to_string()))?;
    if !replay.is_empty() {
        log::info!(
            "journal {}: {} events after checkpoint {checkpoint} to replay",
            path.display(),
            replay.len()
        );
    }
    let journal = Journal::start(file, id, checkpoint.max(last) + 1, interval, counters)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Recovered {
        journal: Arc::new(journal),
        replay,
    })
}

/// The events of `entries` (in position order) whose positions are after `checkpoint`, each
/// with its position.
pub(crate) fn events_after(
    checkpoint: u64,
    entries: &[Entry],
) -> Result<Vec<(u64, TrackEvent)>, codec::Corrupt> {
    let mut out = Vec::new();
    for entry in entries {
        let events = codec::decode_entry(entry)?;
        let skip = checkpoint.saturating_add(1).saturating_sub(entry.first) as usize;
        out.extend((entry.first..).zip(events).skip(skip));
    }
    Ok(out)
}

impl Journal {
    /// Starts the journal thread on `file`; the next event appended gets position `next`.
    fn start(
        file: JournalFile,
        id: String,
        next: u64,
        interval: Duration,
        counters: Arc<Counters>,
    ) -> std::io::Result<Journal> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                appender: Appender::new(next),
                since: None,
                truncate: 0,
                truncated: 0,
                written: next - 1,
                stop: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            interval_ms: AtomicU64::new(interval.as_millis() as u64),
            counters,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("eventbatch-journal".into())
                .spawn(move || run(&shared, file))?
        };
        Ok(Journal {
            shared,
            thread: Mutex::new(Some(thread)),
            id,
        })
    }

    /// The journal file's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Appends accepted events; returns the position of the last one. On disk within
    /// `fsync_interval_ms` (plus one commit).
    pub(crate) fn append(&self, events: &[TrackEvent]) -> u64 {
        let mut s = self.shared.lock();
        if s.since.is_none() {
            s.since = Some(Instant::now());
            self.shared.wake.notify_one();
        }
        for e in events {
            s.appender.append(e);
        }
        if s.appender.bytes() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
            let began = Instant::now();
            while s.appender.bytes() >= MAX_WAITING_BYTES && began.elapsed() < MAX_APPEND_WAIT {
                s = match self.shared.done.wait_timeout(s, MAX_APPEND_WAIT) {
                    Ok((s, _)) => s,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        s.appender.last()
    }

    /// The position of the last event appended.
    pub(crate) fn last_position(&self) -> u64 {
        self.shared.lock().appender.last()
    }

    /// The store holds every event up to `position`: its entries can go.
    pub(crate) fn truncate_through(&self, position: u64) {
        let mut s = self.shared.lock();
        if position > s.truncate {
            s.truncate = position;
            self.shared.wake.notify_one();
        }
    }

    /// Waits (at most `timeout`) until the entries up to `position` are deleted; whether they are.
    pub(crate) fn wait_truncated(&self, position: u64, timeout: Duration) -> bool {
        let began = Instant::now();
        let mut s = self.shared.lock();
        while s.truncated < position {
            let left = timeout.saturating_sub(began.elapsed());
            if left.is_zero() {
                return false;
            }
            s = match self.shared.done.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Applies a new `fsync_interval_ms` from the next commit on.
    pub(crate) fn set_interval(&self, interval: Duration) {
        self.shared
            .interval_ms
            .store(interval.as_millis() as u64, Relaxed);
        self.shared.wake.notify_one();
    }
}

impl Drop for Journal {
    /// Commits what waits, deletes what the store holds, and stops the journal thread.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                log::error!("the journal thread panicked");
            }
        }
    }
}

/// What one round of the journal thread does.
struct Round {
    entries: Vec<Entry>,
    truncate: u64,
    stop: bool,
}

/// The journal thread: waits until the oldest waiting event is due (its append time plus the
/// interval, less the last commit's duration so the commit ends within the interval), a
/// truncation is asked for, or stop; then commits every waiting entry in one transaction and
/// deletes the entries the store holds.
fn run(shared: &Shared, mut file: JournalFile) {
    let mut failed: Vec<Entry> = Vec::new();
    let mut failed_at = Instant::now();
    let mut commit_time = Duration::ZERO;
    let mut truncated = 0;
    let mut stop_attempts = 0;
    loop {
        let round = next_round(shared, &failed, failed_at, commit_time);
        let mut entries = std::mem::take(&mut failed);
        entries.extend(round.entries);
        // entries the store already holds need not be written
        entries.retain(|e| e.last > round.truncate);
        let mut written = None;
        if !entries.is_empty() {
            let began = Instant::now();
            match file.write(&entries) {
                Ok(()) => {
                    commit_time = began.elapsed();
                    written = entries.last().map(|e| e.last);
                }
                Err(e) => {
                    Counters::add(&shared.counters.journal_errors, 1);
                    let events: u64 = entries.iter().map(|e| e.last - e.first + 1).sum();
                    log::error!(
                        "journal {}: cannot write {events} events ({e}); retrying",
                        file.path().display()
                    );
                    failed = entries;
                    failed_at = Instant::now();
                }
            }
        }
        if round.truncate > truncated {
            if let Err(e) = file.truncate_through(round.truncate) {
                Counters::add(&shared.counters.journal_errors, 1);
                log::warn!(
                    "journal {}: cannot delete entries up to {} ({e}); a later checkpoint will",
                    file.path().display(),
                    round.truncate
                );
            }
            truncated = round.truncate;
        }
        {
            let mut s = shared.lock();
            s.truncated = truncated;
            s.written = s.written.max(written.unwrap_or(0));
        }
        shared.done.notify_all();
        if round.stop {
            stop_attempts += 1;
            if failed.is_empty() || stop_attempts >= STOP_ATTEMPTS {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !failed.is_empty() {
        let events: u64 = failed.iter().map(|e| e.last - e.first + 1).sum();
        log::error!(
            "journal {}: stopped with {events} events not written",
            file.path().display()
        );
    }
}

/// Waits for the next round's work and takes it.
fn next_round(
    shared: &Shared,
    failed: &[Entry],
    failed_at: Instant,
    commit_time: Duration,
) -> Round {
    let mut s = shared.lock();
    loop {
        if s.stop || s.truncate > s.truncated {
            break;
        }
        let interval = shared.interval();
        let due = match s.since {
            Some(since) => Some(since + interval.saturating_sub(commit_time.min(interval / 2))),
            None if !failed.is_empty() => Some(failed_at + interval),
            None => None,
        };
        let now = Instant::now();
        s = match due {
            Some(due) if now >= due || s.appender.bytes() >= FLUSH_BYTES => break,
            Some(due) => match shared.wake.wait_timeout(s, due - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            },
            None => shared.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
        };
    }
    s.since = None;
    let entries = s.appender.take();
    shared.done.notify_all();
    Round {
        entries,
        truncate: s.truncate,
        stop: s.stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(path: &Path, checkpoint: u64) -> (Recovered, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let r = recover(
            path,
            |_| Ok(checkpoint),
            Duration::from_millis(5),
            counters.clone(),
        )
        .unwrap();
        (r, counters)
    }

    fn names(events: &[(u64, TrackEvent)]) -> Vec<String> {
        events.iter().map(|(_, e)| e.name().to_string()).collect()
    }

    #[test]
    fn appended_events_are_recovered_after_the_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (r, _) = start(&path, 0);
        assert!(r.replay.is_empty());
        let j = r.journal;
        let batch: Vec<TrackEvent> = (1..=5)
            .map(|i| TrackEvent::command(format!("e{i}")))
            .collect();
        assert_eq!(j.append(&batch), 5);
        assert_eq!(j.append(&[TrackEvent::command("e6")]), 6);
        let id = j.id().to_string();
        drop(j); // commits what waits
                 // the store holds up to 3: 4, 5, 6 are replayed, numbering goes on at 7
        let (r, _) = start(&path, 3);
        assert_eq!(names(&r.replay), ["e4", "e5", "e6"]);
        let positions: Vec<u64> = r.replay.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, [4, 5, 6]);
        assert_eq!(r.journal.id(), id);
        assert_eq!(r.journal.append(&[TrackEvent::command("e7")]), 7);
        r.journal.truncate_through(6);
        assert!(r.journal.wait_truncated(6, Duration::from_secs(10)));
        drop(r);
        let (r, _) = start(&path, 6);
        assert_eq!(names(&r.replay), ["e7"]);
        // a checkpoint ahead of the file (its entries were deleted): nothing to replay, and
        // numbering continues after the checkpoint
        drop(r);
        let (r, _) = start(&path, 10);
        assert!(r.replay.is_empty());
        assert_eq!(r.journal.append(&[TrackEvent::command("e11")]), 11);
    }

    #[test]
    fn the_thread_commits_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (r, _) = start(&path, 0);
        let last = r
            .journal
            .append(&[TrackEvent::command("a"), TrackEvent::command("b")]);
        let began = Instant::now();
        while r.journal.shared.lock().written < last && began.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            r.journal.shared.lock().written,
            2,
            "committed without a stop"
        );
    }

    #[test]
    fn truncation_drops_waiting_entries_the_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (r, _) = start(&path, 0);
        r.journal.set_interval(Duration::from_secs(3600));
        r.journal
            .append(&[TrackEvent::command("a"), TrackEvent::command("b")]);
        r.journal.truncate_through(2);
        assert!(r.journal.wait_truncated(2, Duration::from_secs(10)));
        drop(r);
        let (mut f, _) = JournalFile::open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 0, "never written: the store held them");
    }
}
