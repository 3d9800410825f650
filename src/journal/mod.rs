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
//!
//! **A failing journal** (a full disk, an I/O error, its file deleted or replaced: see
//! [`file::JournalFile::commit`]): the commit is retried every interval
//! (when nothing waits, a one-row probe write), the first failure and the recovery are logged
//! once each, with SQLite's own error. While it fails for less than `fsync_interval_ms`,
//! appended events wait in memory for the next commit; once it has failed for longer, or
//! `max_queued_events` events wait, [`Journal::append`] refuses (the front door answers
//! `TrackError::JournalUnavailable`), and the first refusal asks the supervisor for a
//! checkpoint, so what waits in memory reaches the store. `Flush` answers
//! `PipelineError::Journal` while it fails ([`Journal::failure`]), `Stats::journal_healthy`
//! and `journal_failing_ms` say so.
//!
//! **Recovery at start** trusts no byte: each entry's checksum ([`codec`]) is checked, and
//! each replayed event is admitted again like a new one (`TrackEvent::admit`). Damaged entries
//! are set aside (`journal_rejected`, counted in `Stats::journal_entries_rejected`), invalid
//! events are refused (counted in `events_rejected`), each logged once with how many. A file
//! SQLite finds corrupt is moved aside ([`file::move_aside`], an ERROR line) and a new journal
//! started in its place, so a start never fails for good on a damaged journal.

pub(crate) mod codec;
pub(crate) mod file;
pub(crate) mod outbox;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::error::{Error, PipelineError, TrackError};
use crate::event::TrackEvent;
use crate::settings::Settings;
use crate::util::unix_ms;
use codec::{Appender, Entry};
use file::{JournalFile, OpenError};
use outbox::OutboxMessage;

/// Waiting bytes past which the journal thread commits at once rather than at its interval.
const FLUSH_BYTES: usize = 16 << 20;

/// Waiting bytes past which an append waits (at most [`MAX_APPEND_WAIT`]) for the journal
/// thread to take the buffer: memory stays bounded when the disk is slower than the intake.
const MAX_WAITING_BYTES: usize = 64 << 20;
const MAX_APPEND_WAIT: Duration = Duration::from_secs(1);

/// Commit attempts when stopping with entries the file has refused so far.
const STOP_ATTEMPTS: u32 = 3;

/// Positions past this in a journal file are damage, not positions (the next position is
/// numbered after the largest one below it).
const MAX_POSITION: u64 = 1 << 62;

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
    /// While failing, appends are refused once this many events wait unwritten
    /// (`max_queued_events` at start).
    max_unwritten: u64,
    path: PathBuf,
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
    /// The journal's failure in progress, if any.
    failing: Option<Failure>,
    /// An append was refused during this failure already (the first asks for a checkpoint).
    refused: bool,
    /// Durable forwarding: outbox commits waiting for the journal thread, in order.
    outbox: Vec<OutboxCommit>,
}

/// Durable forwarding: one checkpoint's messages for the outbox ([`Journal::commit_outbox`]).
struct OutboxCommit {
    position: u64,
    messages: Vec<OutboxMessage>,
    acknowledged: Vec<String>,
    /// Where the journal thread answers.
    done: std::sync::mpsc::SyncSender<Result<(), String>>,
}

/// A failure of the journal file: since when, and what it answered first.
#[derive(Debug, Clone)]
struct Failure {
    since: Instant,
    error: String,
}

/// Why [`Journal::append`] refused events.
#[derive(Debug)]
pub(crate) struct Refused {
    /// For the caller's `TrackError::JournalUnavailable`.
    pub error: TrackError,
    /// The first refusal of this failure: the caller should checkpoint, so that the events
    /// waiting in the journal's memory reach the store.
    pub first: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Relaxed))
    }

    /// Why `n` more events cannot be appended now (see the module docs), if they cannot.
    fn refusal(&self, s: &State, n: usize) -> Option<String> {
        let f = s.failing.as_ref()?;
        let failed_for = f.since.elapsed();
        let interval = self.interval();
        let unwritten = s.appender.last().saturating_sub(s.written.max(s.truncate)) + n as u64;
        let why = if failed_for > interval {
            format!(
                "for {} ms, longer than fsync_interval_ms = {} ms",
                failed_for.as_millis(),
                interval.as_millis()
            )
        } else if unwritten > self.max_unwritten {
            format!(
                "{unwritten} events would wait unwritten, more than max_queued_events = {}",
                self.max_unwritten
            )
        } else {
            return None;
        };
        Some(format!(
            "journal {} fails to commit ({}) {why}",
            self.path.display(),
            f.error
        ))
    }

    /// Records the journal's health after a commit (or probe) that failed with `error` (or
    /// succeeded, `None`); logs the first failure and the recovery, once each.
    fn record_health(&self, error: Option<String>, events: u64) {
        let mut s = self.lock();
        match (error, &s.failing) {
            (Some(error), None) => {
                log::error!(
                    "journal {}: cannot commit {events} events: {error}; retrying every {} ms, \
                     new events are refused once this lasts longer than that",
                    self.path.display(),
                    self.interval().as_millis()
                );
                self.counters
                    .journal_failing_since_ms
                    .store(unix_ms().max(1), Relaxed);
                s.failing = Some(Failure {
                    since: Instant::now(),
                    error,
                });
            }
            (None, Some(f)) => {
                log::info!(
                    "journal {}: commits again after failing for {} ms; events are accepted again",
                    self.path.display(),
                    f.since.elapsed().as_millis()
                );
                self.counters.journal_failing_since_ms.store(0, Relaxed);
                s.failing = None;
                s.refused = false;
            }
            _ => {}
        }
    }
}

/// What [`recover`] needs from the settings in force at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `fsync_interval_ms`.
    pub interval: Duration,
    /// `max_queued_events`: while failing, at most this many events wait unwritten.
    pub max_unwritten: usize,
    /// The pipeline clock's now, for admitting replayed events like new ones.
    pub now_ms: i64,
    /// `aggregation_window_ms`, likewise.
    pub window_ms: i64,
}

impl Options {
    pub(crate) fn new(settings: &Settings, now_ms: i64) -> Options {
        Options {
            interval: settings.fsync_interval,
            max_unwritten: settings.max_queued_events.get(),
            now_ms,
            window_ms: settings.window_ms,
        }
    }
}

/// A journal opened at start: its handle and the events to replay.
pub(crate) struct Recovered {
    pub journal: Arc<Journal>,
    /// The events after the store's checkpoint, in position order, each with its position.
    pub replay: Vec<(u64, TrackEvent)>,
    /// Durable forwarding: the messages an earlier run committed and JetStream may not have
    /// acknowledged, to publish again ([`outbox`]).
    pub outbox: Vec<OutboxMessage>,
}

/// [`recover_with`] with the default settings and the system clock.
#[cfg(test)]
pub(crate) fn recover(
    path: &Path,
    checkpoint_of: impl FnOnce(&str) -> Result<u64, String>,
    interval: Duration,
    counters: Arc<Counters>,
) -> Result<Recovered, Error> {
    let settings = crate::config::Config::default().settings()?;
    let options = Options {
        interval,
        ..Options::new(&settings, unix_ms() as i64)
    };
    recover_with(path, checkpoint_of, options, counters)
}

/// Opens the journal at `path` (a corrupt file is moved aside and a new one started), reads
/// the store's checkpoint for it (`checkpoint_of` the journal's id; in forwarding mode the
/// file's own, [`outbox`]: the later of the two), sorts out the events after it (damaged entries set aside, invalid events refused, both counted), and starts the
/// journal thread numbering on after the last of them.
pub(crate) fn recover_with(
    path: &Path,
    checkpoint_of: impl FnOnce(&str) -> Result<u64, String>,
    options: Options,
    counters: Arc<Counters>,
) -> Result<Recovered, Error> {
    let fail =
        |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Journal {
            path: path.display().to_string(),
            reason,
            source,
        };
    let (
        mut file,
        id,
        Read {
            entries,
            forwarded,
            outbox,
        },
    ) = match open_and_read(path) {
        Err(OpenError::Corrupt(reason)) => {
            let aside = file::move_aside(path).map_err(|e| {
                fail(
                    format!("{reason}; cannot move it aside: {e}"),
                    Some(e.into()),
                )
            })?;
            log::error!(
                "journal {} is corrupt ({reason}): moved aside to {} and a new journal started; \
                 the events it held that the store lacks are not replayed",
                path.display(),
                aside.display()
            );
            open_and_read(path).map_err(|e| fail(e.to_string(), Some(e.into())))?
        }
        opened => opened.map_err(|e| fail(e.to_string(), Some(e.into())))?,
    };
    let checkpoint = checkpoint_of(&id)
        .map_err(|e| fail(format!("reading the checkpoint: {e}"), None))?
        .max(forwarded);
    let sorted = sort_out(checkpoint, entries, &options);
    sorted.report(path, &counters);
    if !sorted.damaged.is_empty() {
        if let Err(e) = file.set_aside(&sorted.damaged) {
            log::warn!(
                "journal {}: cannot set the damaged entries aside ({e}); the next start finds them again",
                path.display()
            );
        }
    }
    if !sorted.replay.is_empty() {
        log::info!(
            "journal {}: {} events after checkpoint {checkpoint} to replay",
            path.display(),
            sorted.replay.len()
        );
    }
    let next = checkpoint.max(sorted.last) + 1;
    let journal = Journal::start(file, id, next, options, counters)
        .map_err(|e| fail(e.to_string(), Some(e.into())))?;
    Ok(Recovered {
        journal: Arc::new(journal),
        replay: sorted.replay,
        outbox,
    })
}

/// What a journal file holds at start.
struct Read {
    entries: Vec<Entry>,
    /// The outbox's checkpoint (durable forwarding; 0 otherwise).
    forwarded: u64,
    outbox: Vec<OutboxMessage>,
}

/// Opens the journal file and reads every entry, and the outbox.
fn open_and_read(path: &Path) -> Result<(JournalFile, String, Read), OpenError> {
    let (mut file, id) = JournalFile::open(path)?;
    let read = Read {
        entries: file.entries()?,
        forwarded: file.forward_checkpoint()?,
        outbox: file.outbox()?,
    };
    Ok((file, id, read))
}

/// A journal's entries sorted out at start.
#[derive(Debug, Default)]
pub(crate) struct Sorted {
    /// The admitted events after the checkpoint, in position order, each with its position.
    pub replay: Vec<(u64, TrackEvent)>,
    /// Entries whose checksum failed or that could not be decoded, each with why.
    pub damaged: Vec<(Entry, String)>,
    /// Events after the checkpoint that failed admission, and the first error.
    pub invalid: u64,
    pub first_invalid: Option<TrackError>,
    /// The largest position in the file that is not plainly damage.
    pub last: u64,
}

/// Sorts out `entries` (in position order) against the store's `checkpoint`: the events after
/// it that pass [`TrackEvent::admit`], the damaged entries, the refused events.
pub(crate) fn sort_out(checkpoint: u64, entries: Vec<Entry>, options: &Options) -> Sorted {
    let mut out = Sorted::default();
    for entry in entries {
        if entry.last < MAX_POSITION {
            out.last = out.last.max(entry.last);
        }
        let events = match codec::decode_entry(&entry) {
            Ok(events) => events,
            Err(e) => {
                out.damaged.push((entry, e.to_string()));
                continue;
            }
        };
        let skip = checkpoint.saturating_add(1).saturating_sub(entry.first) as usize;
        for (position, mut event) in (entry.first..=entry.last).zip(events).skip(skip) {
            match event.admit(options.now_ms, options.window_ms) {
                Ok(()) => out.replay.push((position, event)),
                Err(e) => {
                    out.invalid += 1;
                    out.first_invalid.get_or_insert(e);
                }
            }
        }
    }
    out
}

impl Sorted {
    /// Counts and logs (once each) the damaged entries and the refused events. A refused
    /// event counts as received, replayed and rejected, like a new event refused.
    fn report(&self, path: &Path, counters: &Counters) {
        if let Some((_, why)) = self.damaged.first() {
            Counters::add(
                &counters.journal_entries_rejected,
                self.damaged.len() as u64,
            );
            log::error!(
                "journal {}: {} damaged entries set aside in its journal_rejected table, not replayed (first: {why})",
                path.display(),
                self.damaged.len()
            );
        }
        if let Some(e) = &self.first_invalid {
            for c in [&counters.received, &counters.replayed, &counters.rejected] {
                Counters::add(c, self.invalid);
            }
            log::error!(
                "journal {}: {} journaled events refused at replay, as they would be at the front door (first: {e})",
                path.display(),
                self.invalid
            );
        }
    }
}

impl Journal {
    /// Starts the journal thread on `file`; the next event appended gets position `next`.
    fn start(
        file: JournalFile,
        id: String,
        next: u64,
        options: Options,
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
                failing: None,
                refused: false,
                outbox: Vec::new(),
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            interval_ms: AtomicU64::new(options.interval.as_millis() as u64),
            max_unwritten: options.max_unwritten as u64,
            path: file.path().to_path_buf(),
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
    /// `fsync_interval_ms` (plus one commit). Refused while the journal fails (see the module
    /// docs).
    pub(crate) fn append(&self, events: &[TrackEvent]) -> Result<u64, Refused> {
        let mut s = self.shared.lock();
        if let Some(reason) = self.shared.refusal(&s, events.len()) {
            let first = !std::mem::replace(&mut s.refused, true);
            return Err(Refused {
                error: TrackError::JournalUnavailable { reason },
                first,
            });
        }
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
        Ok(s.appender.last())
    }

    /// While the journal fails to commit: the error for `Flush` to answer.
    pub(crate) fn failure(&self) -> Option<PipelineError> {
        let s = self.shared.lock();
        let f = s.failing.as_ref()?;
        Some(PipelineError::Journal {
            path: self.shared.path.display().to_string(),
            reason: format!(
                "{} (failing for {} ms)",
                f.error,
                f.since.elapsed().as_millis()
            ),
        })
    }

    /// The journal file's path, as errors name it.
    pub(crate) fn path(&self) -> String {
        self.shared.path.display().to_string()
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

    /// Durable forwarding: commits `messages` to the outbox with the checkpoint `position`, and
    /// removes the `acknowledged` ones, in one transaction of the journal thread ([`outbox`]);
    /// returns once it is on disk, or with why it is not (SQLite's error, or the journal is
    /// closed). Waits for the journal thread's round: a commit or two, milliseconds.
    pub(crate) fn commit_outbox(
        &self,
        position: u64,
        messages: Vec<OutboxMessage>,
        acknowledged: Vec<String>,
    ) -> Result<(), String> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        {
            let mut s = self.shared.lock();
            if s.stop {
                return Err("the journal is closed".into());
            }
            s.outbox.push(OutboxCommit {
                position,
                messages,
                acknowledged,
                done,
            });
            self.shared.wake.notify_one();
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err("the journal stopped".into()))
    }

    /// Applies a new `fsync_interval_ms` from the next commit on.
    pub(crate) fn set_interval(&self, interval: Duration) {
        self.shared
            .interval_ms
            .store(interval.as_millis() as u64, Relaxed);
        self.shared.wake.notify_one();
    }
}

impl Journal {
    /// Commits what waits, deletes what the store holds, stops the journal thread and closes
    /// the file (releasing its lock). Appends after it are not written; a second close does
    /// nothing. For the supervisor giving up on a store that does not answer, while the writer
    /// still holds the journal; otherwise when the last holder drops it.
    pub(crate) fn close(&self) {
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

impl Drop for Journal {
    /// [`Journal::close`].
    fn drop(&mut self) {
        self.close();
    }
}

/// What one round of the journal thread does.
struct Round {
    entries: Vec<Entry>,
    truncate: u64,
    stop: bool,
    outbox: Vec<OutboxCommit>,
}

/// The journal thread's side: the file, and what it has failed to write so far.
struct Writer {
    file: JournalFile,
    /// Entries the file refused, retried in the next round.
    failed: Vec<Entry>,
    /// While failing: when to try again (with the failed entries, or a probe).
    retry_at: Option<Instant>,
    /// The last successful commit's duration.
    commit_time: Duration,
    /// Deleted up to this position.
    truncated: u64,
    /// Durable forwarding: the last outbox commit failed (its failure is logged once).
    outbox_failing: bool,
}

impl Writer {
    /// Commits the round's entries with those that failed before (a probe when failing and
    /// nothing waits); returns the last position written, if any.
    fn commit(&mut self, shared: &Shared, round: Vec<Entry>, truncate: u64) -> Option<u64> {
        let mut entries = std::mem::take(&mut self.failed);
        entries.extend(round.into_iter().map(|mut e| {
            codec::seal(&mut e);
            e
        }));
        // entries the store already holds need not be written
        entries.retain(|e| e.last > truncate);
        if entries.is_empty() && self.retry_at.is_none() {
            return None;
        }
        let began = Instant::now();
        let result = self.file.commit(&entries);
        let events: u64 = entries.iter().map(|e| e.last - e.first + 1).sum();
        match result {
            Ok(()) => {
                self.commit_time = began.elapsed();
                self.retry_at = None;
                shared.record_health(None, events);
                entries.last().map(|e| e.last)
            }
            Err(e) => {
                Counters::add(&shared.counters.journal_errors, 1);
                shared.record_health(Some(e), events);
                self.failed = entries;
                self.retry_at = Some(Instant::now() + shared.interval());
                None
            }
        }
    }

    /// Durable forwarding: commits each checkpoint's messages to the outbox, answering each.
    /// The first failure and the recovery are logged once each (a checkpoint is tried every
    /// few hundred ms while the outbox refuses).
    fn commit_outbox(&mut self, shared: &Shared, commits: Vec<OutboxCommit>) {
        for c in commits {
            let result = self
                .file
                .commit_outbox(c.position, &c.messages, &c.acknowledged)
                .map_err(|e| e.to_string());
            match (&result, self.outbox_failing) {
                (Err(e), false) => log::warn!(
                    "journal {}: cannot commit checkpoint {} to the forwarding outbox ({e}); \
                     its batches wait, unpublished, for a checkpoint it takes",
                    self.file.path().display(),
                    c.position
                ),
                (Err(e), true) => log::debug!(
                    "journal {}: checkpoint {} not committed to the forwarding outbox ({e})",
                    self.file.path().display(),
                    c.position
                ),
                (Ok(()), true) => log::info!(
                    "journal {}: the forwarding outbox takes checkpoints again ({})",
                    self.file.path().display(),
                    c.position
                ),
                (Ok(()), false) => {}
            }
            if result.is_err() {
                Counters::add(&shared.counters.journal_errors, 1);
            }
            self.outbox_failing = result.is_err();
            let _ = c.done.send(result);
        }
    }

    /// Deletes the entries up to `truncate` (the store holds them).
    fn truncate(&mut self, shared: &Shared, truncate: u64) {
        if truncate <= self.truncated {
            return;
        }
        if let Err(e) = self.file.truncate_through(truncate) {
            Counters::add(&shared.counters.journal_errors, 1);
            log::warn!(
                "journal {}: cannot delete entries up to {truncate} ({e}); a later checkpoint will",
                self.file.path().display(),
            );
        }
        self.truncated = truncate;
    }
}

/// The journal thread: waits until the oldest waiting event is due (its append time plus the
/// interval, less the last commit's duration so the commit ends within the interval), a
/// truncation is asked for, a retry is due, or stop; then commits every waiting entry in one
/// transaction and deletes the entries the store holds. A clean stop truncates the WAL.
fn run(shared: &Shared, file: JournalFile) {
    let mut w = Writer {
        file,
        failed: Vec::new(),
        retry_at: None,
        commit_time: Duration::ZERO,
        truncated: 0,
        outbox_failing: false,
    };
    let mut stop_attempts = 0;
    loop {
        let round = next_round(shared, w.retry_at, w.commit_time);
        let written = w.commit(shared, round.entries, round.truncate);
        w.commit_outbox(shared, round.outbox);
        w.truncate(shared, round.truncate);
        {
            let mut s = shared.lock();
            s.truncated = w.truncated;
            s.written = s.written.max(written.unwrap_or(0));
        }
        shared.done.notify_all();
        if round.stop {
            stop_attempts += 1;
            if w.failed.is_empty() || stop_attempts >= STOP_ATTEMPTS {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !w.failed.is_empty() {
        let events: u64 = w.failed.iter().map(|e| e.last - e.first + 1).sum();
        log::error!(
            "journal {}: stopped with {events} events not written",
            w.file.path().display()
        );
    } else if let Err(e) = w.file.truncate_wal() {
        log::warn!(
            "journal {}: cannot truncate its WAL at stop ({e})",
            w.file.path().display()
        );
    }
}

/// Waits for the next round's work and takes it.
fn next_round(shared: &Shared, retry_at: Option<Instant>, commit_time: Duration) -> Round {
    let mut s = shared.lock();
    loop {
        if s.stop || s.truncate > s.truncated || !s.outbox.is_empty() {
            break;
        }
        let interval = shared.interval();
        let due = match s.since {
            Some(since) => Some(since + interval.saturating_sub(commit_time.min(interval / 2))),
            None => retry_at,
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
        outbox: std::mem::take(&mut s.outbox),
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
        assert_eq!(j.append(&batch).unwrap(), 5);
        assert_eq!(j.append(&[TrackEvent::command("e6")]).unwrap(), 6);
        let id = j.id().to_string();
        drop(j); // commits what waits
                 // the store holds up to 3: 4, 5, 6 are replayed, numbering goes on at 7
        let (r, _) = start(&path, 3);
        assert_eq!(names(&r.replay), ["e4", "e5", "e6"]);
        let positions: Vec<u64> = r.replay.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, [4, 5, 6]);
        assert_eq!(r.journal.id(), id);
        assert_eq!(r.journal.append(&[TrackEvent::command("e7")]).unwrap(), 7);
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
        assert_eq!(r.journal.append(&[TrackEvent::command("e11")]).unwrap(), 11);
    }

    /// Entries written by hand, past the front door: events it would refuse (NaN, infinite
    /// values, timestamps at the ends of `i64`) are refused at replay too and counted; values
    /// it accepts (±1e308) replay; a damaged entry is set aside once and counted.
    #[test]
    fn replay_admits_events_like_the_front_door_and_sets_damaged_entries_aside() {
        const NOW: i64 = 1_764_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let good = [
            TrackEvent::command("ok").at(NOW),
            TrackEvent::performance("big", 1e308).at(NOW),
            TrackEvent::performance("small", -1e308).at(NOW),
        ];
        let bad = [
            TrackEvent::performance("nan", f64::NAN).at(NOW),
            TrackEvent::performance("inf", f64::INFINITY).at(NOW),
            TrackEvent::custom("minus-inf")
                .value(f64::NEG_INFINITY)
                .at(NOW),
            TrackEvent::command("min").at(i64::MIN),
            TrackEvent::command("max").at(i64::MAX),
        ];
        for e in &bad {
            assert!(e.clone().admit(NOW, 60_000).is_err(), "{e:?}");
        }
        let mut a = Appender::new(1);
        for e in good.iter().chain(&bad) {
            a.append(e);
        }
        let mut entries = a.take();
        codec::seal(&mut entries[0]);
        // an entry of its own at position 9, one byte of its name flipped after sealing
        let mut damaged = Appender::new(9);
        damaged.append(&TrackEvent::command("damaged").at(NOW));
        let mut damaged = damaged.take().remove(0);
        codec::seal(&mut damaged);
        damaged.bytes[13] ^= 0x20;
        entries.push(damaged);
        {
            let (mut f, _) = JournalFile::open(&path).unwrap();
            f.write(&entries).unwrap();
        }
        let options = Options {
            interval: Duration::from_millis(5),
            max_unwritten: 100,
            now_ms: NOW,
            window_ms: 60_000,
        };
        let counters = Arc::new(Counters::default());
        let r = recover_with(&path, |_| Ok(0), options, counters.clone()).unwrap();
        assert_eq!(names(&r.replay), ["ok", "big", "small"]);
        let s = counters.snapshot();
        assert_eq!(
            (s.events_rejected, s.events_received, s.events_replayed),
            (5, 5, 5),
            "refused at replay, counted like refusals at the front door"
        );
        assert_eq!(s.journal_entries_rejected, 1);
        // numbering goes on after the damaged entry's position
        assert_eq!(
            r.journal.append(&[TrackEvent::command("next")]).unwrap(),
            10
        );
        drop(r);
        let counters = Arc::new(Counters::default());
        let r = recover_with(&path, |_| Ok(0), options, counters.clone()).unwrap();
        assert_eq!(names(&r.replay), ["ok", "big", "small", "next"]);
        assert_eq!(
            counters.snapshot().journal_entries_rejected,
            0,
            "set aside once"
        );
    }

    #[test]
    fn the_thread_commits_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (r, _) = start(&path, 0);
        let last = r
            .journal
            .append(&[TrackEvent::command("a"), TrackEvent::command("b")])
            .unwrap();
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
            .append(&[TrackEvent::command("a"), TrackEvent::command("b")])
            .unwrap();
        r.journal.truncate_through(2);
        assert!(r.journal.wait_truncated(2, Duration::from_secs(10)));
        drop(r);
        let (mut f, _) = JournalFile::open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 0, "never written: the store held them");
    }
}
