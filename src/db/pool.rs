//! An open store's connection pool ([`Pool`]): SQLite pragmas per connection, the watch that
//! tells a hung store from a slow one ([`StoreWatch`]), and the check that an SQLite file is
//! still the one that was opened ([`check_sqlite_file_identity`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool as R2d2Pool, PooledConnection};

use crate::error::StoreError;
use crate::util::{FileChange, FileIdentity};

#[derive(Debug)]
pub(crate) struct SqlitePragmas {
    pub(crate) busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&sqlite_pragmas(self.busy_timeout))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub(crate) fn sqlite_pragmas(busy: Duration) -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        busy.as_millis()
    )
}

/// An open store: a small connection pool for one backend and (SQLite) the file it was opened
/// on. Clones share the pool.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(StorePool<SqliteConnection>),
    Pg(StorePool<PgConnection>),
}

/// One backend's pool (see [`Pool`]).
pub(crate) struct StorePool<C: diesel::r2d2::R2D2Connection + 'static> {
    pub(crate) pool: R2d2Pool<ConnectionManager<C>>,
    /// SQLite: the file and its identity when opened, checked on every checkout.
    pub(crate) file: Option<(PathBuf, FileIdentity)>,
    /// Whether the store answers the call in progress; shared by every clone.
    pub(crate) watch: Arc<StoreWatch>,
    /// SQLite: the busy timeout (`Config::sqlite_busy_timeout_ms`), which
    /// [`StorePool::get_within`] shortens to an attempt's patience.
    pub(crate) busy_timeout: Option<Duration>,
}

/// Milliseconds on a monotonic clock (real time, whatever clock the pipeline runs on: a
/// blocked call takes real time), from the first use in this process.
pub(crate) fn monotonic_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Whether the store answers: while a call into the store is in progress
/// ([`StoreWatch::call`]: the writer's, or the detector's read of window history), the time of
/// the store's last sign of life (the first call's start, then every statement sent or
/// answered: diesel's instrumentation events on the pool's connections). A call blocked on a
/// store that took the request and never answers (a hung server or proxy, which keeps the
/// connection alive, so no TCP or libpq timeout ends it) is seen here by the supervisor, which
/// then answers `Flush`, queries and `Shutdown` within the retry budget instead of waiting with
/// the writer; a long transaction that keeps making progress is not.
///
/// When the pipeline stops and the store has not answered within the retry budget, the
/// supervisor gives up on it ([`StoreWatch::give_up`]): from then on every connection checkout
/// of the pool fails, so a writer whose blocked call returns later starts no other call (the
/// call in flight ends as its transaction does, all or nothing; in durable mode with its
/// checkpoint, so a restart replays exactly what the store lacks).
#[derive(Debug, Default)]
pub(crate) struct StoreWatch {
    /// The calls in progress, and the last sign of life while there are any.
    calls: Mutex<Calls>,
    /// The pipeline gave up on the store as it stopped (see above).
    given_up: AtomicBool,
}

/// See [`StoreWatch`].
#[derive(Debug, Default)]
struct Calls {
    in_progress: u32,
    /// [`monotonic_ms`] of the last sign of life (meaningful while `in_progress > 0`).
    last_sign: u64,
}

impl StoreWatch {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f`, one call into the store, watched.
    pub(crate) fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        /// Ends the call, also should `f` panic.
        struct Ending<'a>(&'a StoreWatch);
        impl Drop for Ending<'_> {
            fn drop(&mut self) {
                let mut calls = self.0.calls();
                calls.in_progress = calls.in_progress.saturating_sub(1);
            }
        }
        {
            let mut calls = self.calls();
            if calls.in_progress == 0 {
                calls.last_sign = monotonic_ms();
            }
            calls.in_progress += 1;
        }
        let _ending = Ending(self);
        f()
    }

    /// The store answered or was sent something (only counts during a call).
    fn alive(&self) {
        let mut calls = self.calls();
        if calls.in_progress > 0 {
            calls.last_sign = monotonic_ms();
        }
    }

    /// The pipeline stops without the store: no later call may start (see the type's docs).
    pub(crate) fn give_up(&self) {
        self.given_up.store(true, SeqCst);
    }

    /// Whether [`Self::give_up`] was called.
    pub(crate) fn given_up(&self) -> bool {
        self.given_up.load(SeqCst)
    }

    /// How long the calls in progress have gone without a sign of life; `None` outside calls.
    pub(crate) fn silent_for(&self) -> Option<Duration> {
        let calls = self.calls();
        (calls.in_progress > 0)
            .then(|| Duration::from_millis(monotonic_ms().saturating_sub(calls.last_sign)))
    }
}

impl<C: diesel::r2d2::R2D2Connection + 'static> Clone for StorePool<C> {
    fn clone(&self) -> Self {
        StorePool {
            pool: self.pool.clone(),
            file: self.file.clone(),
            watch: self.watch.clone(),
            busy_timeout: self.busy_timeout,
        }
    }
}

impl<C: diesel::r2d2::R2D2Connection + 'static> StorePool<C> {
    /// [`Self::get_within`] without a patience of its own.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Result<PooledConnection<ConnectionManager<C>>, StoreError> {
        self.get_within(None)
    }

    /// A connection, after checking that the SQLite file is still the one opened (see
    /// [`check_sqlite_file_identity`]): a deleted or replaced file is an error, not writes
    /// into an unlinked inode that vanish when the last connection closes.
    ///
    /// With `patience`, waits at most that long for a connection, and on SQLite for the
    /// database's lock in what the connection runs (its `busy_timeout`, set on every checkout):
    /// so an attempt of the writer's takes at most what is left of its retry budget.
    pub(crate) fn get_within(
        &self,
        patience: Option<Duration>,
    ) -> Result<PooledConnection<ConnectionManager<C>>, StoreError> {
        if self.watch.given_up() {
            return Err(StoreError::gone(
                "the pipeline stopped without the store, which did not answer within the retry \
                 budget: nothing more is written by it",
            ));
        }
        if let Some((path, opened)) = &self.file {
            check_sqlite_file_identity(path, *opened).map_err(StoreError::gone)?;
        }
        let wait = self.pool.connection_timeout();
        let mut conn = self
            .pool
            .get_timeout(patience.map_or(wait, |p| p.clamp(MIN_POOL_WAIT, wait)))
            .map_err(|e| StoreError::retryable(e.to_string()))?;
        if let Some(busy) = self.busy_timeout {
            let busy = patience.map_or(busy, |p| p.min(busy));
            conn.batch_execute(&format!("PRAGMA busy_timeout = {}", busy.as_millis()))
                .map_err(StoreError::from_diesel)?;
        }
        let watch = self.watch.clone();
        conn.set_instrumentation(move |_: diesel::connection::InstrumentationEvent<'_>| {
            watch.alive()
        });
        Ok(conn)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pool::Sqlite(_) => "Pool::Sqlite",
            Pool::Pg(_) => "Pool::Pg",
        })
    }
}

/// Longest that `Pool::get` waits for a connection. Short: the writer has its own retry loop
/// with backoff under `store_retry_budget_ms`, which counts and logs each failure; a long pool
/// wait would hide an outage from `db_errors`. A shorter retry budget shortens it too (see
/// [`pool_wait`]), so one attempt never overruns the budget.
pub(crate) const POOL_WAIT: Duration = Duration::from_secs(2);

/// The shortest wait for a pooled connection (r2d2 needs a positive wait).
pub(crate) const MIN_POOL_WAIT: Duration = Duration::from_millis(50);

/// The pool's `connection_timeout` for a retry budget: the budget, within [`MIN_POOL_WAIT`]
/// and [`POOL_WAIT`].
pub(crate) fn pool_wait(retry_budget: Duration) -> Duration {
    retry_budget.clamp(MIN_POOL_WAIT, POOL_WAIT)
}

pub(crate) fn pool_builder<C: diesel::r2d2::R2D2Connection + 'static>(
    retry_budget: Duration,
) -> diesel::r2d2::Builder<ConnectionManager<C>> {
    R2d2Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(pool_wait(retry_budget))
        .test_on_check_out(true)
}

/// `Ok` if `path` still names the file that had identity `opened`; otherwise an error saying
/// the database file was deleted or replaced ([`FileIdentity::check`]: one `stat(2)`, cheap
/// enough before every transaction; [`StorePool::get`] runs it on every checkout).
pub(crate) fn check_sqlite_file_identity(path: &Path, opened: FileIdentity) -> Result<(), String> {
    match opened.check(path) {
        Ok(()) => Ok(()),
        Err(FileChange::Replaced) => Err(format!(
            "the database file {} was replaced by another file since the store was opened; \
             refusing to write (restart the pipeline to use the new file)",
            path.display()
        )),
        Err(FileChange::Deleted) => Err(format!(
            "the database file {} was deleted since the store was opened; writes would be lost",
            path.display()
        )),
        Err(FileChange::Unknown(e)) => Err(format!(
            "cannot stat the database file {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::bookkeeping::BatchMark;
    use crate::db::conn::Backend;
    use crate::db::location::Store;
    use crate::db::open::{open, open_with, OpenOptions};

    #[test]
    fn a_watched_call_is_silent_until_the_store_shows_life() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&Store::sqlite(dir.path().join("w.db")), Duration::ZERO).unwrap();
        let watch = pool.watch();
        assert_eq!(watch.silent_for(), None);
        let (silent, after_statement) = watch.call(|| {
            std::thread::sleep(Duration::from_millis(30));
            let silent = watch.silent_for();
            let mut c = pool.get().unwrap();
            c.is_committed("i", BatchMark { run_id: 1, seq: 1 })
                .unwrap();
            (silent, watch.silent_for())
        });
        assert!(
            silent.is_some_and(|s| s >= Duration::from_millis(30)),
            "{silent:?}"
        );
        assert!(
            after_statement.is_some_and(|s| s < Duration::from_millis(30)),
            "a statement is a sign of life: {after_statement:?}"
        );
        assert_eq!(watch.silent_for(), None, "over");
    }

    #[test]
    fn a_deleted_or_replaced_sqlite_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        std::fs::write(&path, b"x").unwrap();
        let opened = FileIdentity::of(&path).unwrap();
        check_sqlite_file_identity(&path, opened).unwrap();
        // replaced: a new file at the same path (a new inode)
        std::fs::write(dir.path().join("b.db"), b"y").unwrap();
        std::fs::rename(dir.path().join("b.db"), &path).unwrap();
        let err = check_sqlite_file_identity(&path, opened).unwrap_err();
        assert!(err.contains("was replaced"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = check_sqlite_file_identity(&path, opened).unwrap_err();
        assert!(err.contains("was deleted"), "{err}");
    }

    #[test]
    fn the_pool_refuses_a_deleted_sqlite_file_and_writes_ids_as_records_carry_them() {
        use crate::model::Record;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let opts = OpenOptions {
            busy_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(1),
        };
        let pool = open_with(&Store::sqlite(&path), &opts).unwrap();
        let mut e = crate::TrackEvent::command("help")
            .user("user123")
            .server("s1");
        e.ts_ms = Some(1_764_000_000_000);
        let records = [Record::from_event(&e, 1.0)];
        let mut c = pool.get().unwrap();
        c.write_records("i", &[&records], BatchMark { run_id: 1, seq: 1 })
            .unwrap();
        let Backend::Sqlite(raw) = &mut c.backend else {
            unreachable!()
        };
        let users: Vec<(Option<String>, Option<String>)> = crate::db::schema::events::table
            .select((
                crate::db::schema::events::user_hash,
                crate::db::schema::events::server_hash,
            ))
            .load(&mut **raw)
            .unwrap();
        assert_eq!(users, vec![(Some("user123".into()), Some("s1".into()))]);
        drop(c);
        std::fs::remove_file(&path).unwrap();
        let err = pool.get().map(drop).unwrap_err();
        assert!(
            err.is_gone() && err.to_string().contains("was deleted"),
            "{err}"
        );
    }
}
