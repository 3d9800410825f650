//! The store: where it is ([`Store`]), opening it (pool, pragmas, migrations), and the SQL the
//! writer runs, compiled once per backend from one body (`backend!` below) so SQLite and
//! PostgreSQL share every query.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool as R2d2Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::db::event_insert::{EventChunk, EVENT_CHUNK};
use crate::db::models::NewEventRow;
use crate::error::{Error, StoreError};
use crate::messages::{Pattern, QueryPatterns, QueryWindows, WindowStats};
use crate::model::{SeriesKey, WriteBatch};
use crate::stats::window::WindowState;

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Where the pipeline writes: an SQLite file or a PostgreSQL database.
///
/// Building a `Store` never fails; a bad URL or an unreachable store is an `Err` from
/// [`crate::start`]. Its `Display` and `Debug` are [`Store::describe`]: never a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Store {
    kind: StoreKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreKind {
    Sqlite(PathBuf),
    Postgres(String),
    Invalid { url: String, reason: String },
}

impl Store {
    /// An SQLite file (created if missing; its directory must exist).
    pub fn sqlite(path: impl Into<PathBuf>) -> Store {
        Store {
            kind: StoreKind::Sqlite(path.into()),
        }
    }

    /// A PostgreSQL database, by libpq URL (`postgres://user@host:port/db`) or key=value
    /// connection string.
    ///
    /// Time toward the server is bounded by default: each of these libpq parameters is added
    /// unless the URL sets it already (`budget` is `Config::store_retry_budget_ms`):
    /// `connect_timeout` = budget in whole seconds, clamped to 2..=10; TCP `keepalives=1`,
    /// `keepalives_idle` = budget / 2 (1..=10 s), `keepalives_interval` = budget / 4
    /// (1..=5 s), `keepalives_count=3`; `tcp_user_timeout` = budget clamped to 2..=120 s
    /// (sent data unacknowledged that long closes the connection: a black-holed network); and
    /// `options=-c statement_timeout=` budget clamped to 10..=300 s (a URL with its own
    /// `options` keeps them, without the statement timeout unless it sets one).
    pub fn postgres(url: impl Into<String>) -> Store {
        Store {
            kind: StoreKind::Postgres(url.into()),
        }
    }

    /// `sqlite://PATH` (`sqlite:///abs/path.db` or `sqlite://relative.db`) or
    /// `postgres://...` / `postgresql://...`.
    pub fn from_url(url: &str) -> Store {
        let invalid = |reason: &str| Store {
            kind: StoreKind::Invalid {
                url: url.to_string(),
                reason: reason.into(),
            },
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return invalid("sqlite:// needs a file path");
            }
            if path == ":memory:" {
                return invalid("in-memory SQLite is not supported: the writer and the stop path need one shared file");
            }
            Store::sqlite(path)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::postgres(url)
        } else {
            invalid("expected sqlite://PATH or postgres://...")
        }
    }

    /// A printable description, without any password: what every log line, error and
    /// report shows. A URL's userinfo password, a `password=` query parameter and a
    /// `password=` pair of a `key=value` connection string show as `***`; a location that
    /// parses as neither shows only its scheme.
    pub fn describe(&self) -> String {
        match &self.kind {
            StoreKind::Sqlite(p) => format!("sqlite://{}", p.display()),
            StoreKind::Postgres(url) | StoreKind::Invalid { url, .. } => redact(url),
        }
    }

    /// Whether this is a PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, StoreKind::Postgres(_))
    }

    /// The SQLite file, if this is an SQLite store.
    pub(crate) fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            StoreKind::Sqlite(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.describe())
    }
}

/// What a password is shown as.
const HIDDEN: &str = "***";

/// A store location (URL or libpq `key=value` connection string) fit to show: the password of
/// a URL's userinfo (`postgres://user:***@host`), a `password=` query parameter, and a
/// `password=` pair of a connection string become `***`; a location that parses as neither
/// shows only its scheme (`postgres://(not shown: unparseable)`), or nothing of itself.
pub(crate) fn redact(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => match redact_uri(rest) {
            Some(rest) => format!("{scheme}://{rest}"),
            None => format!("{scheme}://(not shown: unparseable)"),
        },
        Some(_) => "(a store location, not shown: unparseable)".to_string(),
        None => match conninfo_pairs(location) {
            Some(pairs) => pairs
                .iter()
                .map(|&(key, value)| match is_password(key) {
                    true => format!("{key}={HIDDEN}"),
                    false => format!("{key}={value}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            None => "(a connection string, not shown: unparseable)".to_string(),
        },
    }
}

/// Every password `location` holds (as written), to take out of error texts that might echo
/// it (see [`scrub`]).
fn passwords(location: &str) -> Vec<&str> {
    let found: Vec<&str> = if let Some((_, rest)) = location.split_once("://") {
        // up to the last `@`, as libpq reads a password holding `/` or `?`
        let userinfo = rest.rsplit_once('@').map(|(u, _)| u);
        let in_userinfo = userinfo.and_then(|u| u.split_once(':')).map(|(_, pw)| pw);
        let (_, _, query) = uri_parts(rest);
        let in_query = query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| is_password(k))
            .map(|(_, v)| v);
        in_userinfo.into_iter().chain(in_query).collect()
    } else {
        let pairs = conninfo_pairs(location).unwrap_or_default();
        let quoted = pairs.into_iter().filter(|(k, _)| is_password(k));
        quoted.map(|(_, v)| v.trim_matches('\'')).collect()
    };
    found.into_iter().filter(|pw| !pw.is_empty()).collect()
}

/// `text` (an error from the store's client library) with every password of `location` in it
/// replaced by `***`.
pub(crate) fn scrub(text: &str, location: &str) -> String {
    let mut found = passwords(location);
    // the longest first: one password may contain another
    found.sort_by_key(|pw| std::cmp::Reverse(pw.len()));
    found
        .into_iter()
        .fold(text.to_string(), |t, pw| t.replace(pw, HIDDEN))
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
}

fn is_password(key: &str) -> bool {
    key.trim().eq_ignore_ascii_case("password")
}

/// A URI after its `scheme://`: its authority (userinfo, host, port), path, and query string
/// (`None` when absent).
fn uri_parts(rest: &str) -> (&str, &str, Option<&str>) {
    let (before, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let slash = before.find('/').unwrap_or(before.len());
    (&before[..slash], &before[slash..], query)
}

/// A URI after its `scheme://` with the userinfo password and `password` query parameters
/// hidden; `None` if a parser could read it otherwise (whitespace, or a `@` after the
/// authority: a password holding `/` or `?`), so that nothing of it is shown.
fn redact_uri(rest: &str) -> Option<String> {
    let (authority, path, query) = uri_parts(rest);
    let after_authority = &rest[authority.len()..];
    if rest.contains(char::is_whitespace) || after_authority.contains('@') {
        return None;
    }
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{HIDDEN}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let Some(query) = query else {
        return Some(format!("{authority}{path}"));
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_password(k) => format!("{k}={HIDDEN}"),
            _ => kv.to_string(),
        })
        .collect();
    Some(format!("{authority}{path}?{}", query.join("&")))
}

/// The `key=value` pairs of a libpq connection string (values as written, single-quoted ones
/// with their quotes), or `None` if it is not one (libpq's grammar: whitespace around `=`
/// allowed, `'...'` quoting with backslash escapes).
fn conninfo_pairs(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let (key, after) = rest.split_at(key_end);
        let after = after.trim_start().strip_prefix('=')?.trim_start();
        let value_end = if let Some(quoted) = after.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let end = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })?;
            close.0 + 2
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        if key.is_empty() {
            return None;
        }
        pairs.push((key, &after[..value_end]));
        rest = after[value_end..].trim_start();
    }
    Some(pairs)
}

#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&sqlite_pragmas(self.busy_timeout))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

fn sqlite_pragmas(busy: Duration) -> String {
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
    pool: R2d2Pool<ConnectionManager<C>>,
    /// SQLite: the file and its identity when opened, checked on every checkout.
    file: Option<(PathBuf, FileIdentity)>,
    /// Whether the store answers the call in progress; shared by every clone.
    watch: Arc<StoreWatch>,
    /// SQLite: the busy timeout (`Config::sqlite_busy_timeout_ms`), which
    /// [`StorePool::get_within`] shortens to an attempt's patience.
    busy_timeout: Option<Duration>,
}

/// Milliseconds on a monotonic clock (real time, whatever clock the pipeline runs on: a
/// blocked call takes real time), from the first use in this process.
fn monotonic_ms() -> u64 {
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
const POOL_WAIT: Duration = Duration::from_secs(2);

/// The shortest wait for a pooled connection (r2d2 needs a positive wait).
const MIN_POOL_WAIT: Duration = Duration::from_millis(50);

/// The pool's `connection_timeout` for a retry budget: the budget, within [`MIN_POOL_WAIT`]
/// and [`POOL_WAIT`].
fn pool_wait(retry_budget: Duration) -> Duration {
    retry_budget.clamp(MIN_POOL_WAIT, POOL_WAIT)
}

fn pool_builder<C: diesel::r2d2::R2D2Connection + 'static>(
    retry_budget: Duration,
) -> diesel::r2d2::Builder<ConnectionManager<C>> {
    R2d2Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(pool_wait(retry_budget))
        .test_on_check_out(true)
}

/// How to open a store: the parts of [`crate::Settings`] that opening needs.
#[derive(Debug, Clone)]
pub(crate) struct OpenOptions {
    /// SQLite busy timeout.
    pub busy_timeout: Duration,
    /// `store_retry_budget_ms`: bounds the pool wait and the PostgreSQL timeouts.
    pub retry_budget: Duration,
}

impl OpenOptions {
    /// The options `settings` asks for.
    pub(crate) fn from_settings(settings: &crate::config::Settings) -> OpenOptions {
        OpenOptions {
            busy_timeout: settings.sqlite_busy_timeout,
            retry_budget: settings.store_retry_budget,
        }
    }
}

/// [`open_with`] the default retry budget (30 s) (for tests).
#[cfg(test)]
pub(crate) fn open(store: &Store, busy_timeout: Duration) -> Result<Pool, Error> {
    open_with(
        store,
        &OpenOptions {
            busy_timeout,
            retry_budget: Duration::from_secs(30),
        },
    )
}

/// Opens the store, checks it (SQLite: `PRAGMA quick_check` on an existing file), runs the
/// embedded migrations and builds the pool. Fails fast (no pool retry loop) when the store
/// cannot be reached, and within the connect timeout (see [`Store::postgres`]) when a
/// PostgreSQL server accepts the connection and never answers.
pub(crate) fn open_with(store: &Store, opts: &OpenOptions) -> Result<Pool, Error> {
    let fail = |reason: String| Error::Store {
        store: store.describe(),
        reason,
    };
    match &store.kind {
        StoreKind::Invalid { reason, .. } => Err(Error::InvalidUrl {
            url: store.describe(),
            reason: reason.clone(),
        }),
        StoreKind::Sqlite(path) => {
            let url = path
                .to_str()
                .ok_or_else(|| fail("the path is not valid UTF-8".into()))?;
            if path.is_dir() {
                return Err(fail("the path is a directory".into()));
            }
            let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            crate::util::create_owner_only(path)
                .map_err(|e| fail(format!("cannot create the file: {e}")))?;
            let mut conn = SqliteConnection::establish(url).map_err(|e| fail(e.to_string()))?;
            conn.batch_execute(&sqlite_pragmas(opts.busy_timeout))
                .map_err(|e| fail(e.to_string()))?;
            if existed {
                quick_check(&mut conn).map_err(fail)?;
            }
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| fail(format!("migrations: {e}")))?;
            let identity = FileIdentity::of(path)
                .map_err(|e| fail(format!("cannot stat the database file: {e}")))?;
            let pool = pool_builder(opts.retry_budget)
                .connection_customizer(Box::new(SqlitePragmas {
                    busy_timeout: opts.busy_timeout,
                }))
                .build_unchecked(ConnectionManager::new(url));
            Ok(Pool::Sqlite(StorePool {
                pool,
                file: Some((path.clone(), identity)),
                watch: Arc::default(),
                busy_timeout: Some(opts.busy_timeout),
            }))
        }
        StoreKind::Postgres(given) => {
            // the client library's errors might echo part of the connection string
            let fail = |reason: String| fail(scrub(&reason, given));
            let url = pg_url_with_timeouts(given, opts.retry_budget);
            let mut conn = PgConnection::establish(&url).map_err(|e| fail(pg_connect_error(&e)))?;
            // Several instances may start at once: migrate under an advisory lock.
            conn.batch_execute("SELECT pg_advisory_lock(727272)")
                .map_err(|e| fail(e.to_string()))?;
            let migrated = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            let _ = conn.batch_execute("SELECT pg_advisory_unlock(727272)");
            migrated.map_err(|e| fail(format!("migrations: {e}")))?;
            Ok(Pool::Pg(StorePool {
                pool: pool_builder(opts.retry_budget).build_unchecked(ConnectionManager::new(url)),
                file: None,
                watch: Arc::default(),
                busy_timeout: None,
            }))
        }
    }
}

/// `PRAGMA quick_check` (every page's b-tree structure, in time linear in the file size; not
/// the index-vs-table cross-check of `integrity_check`): `Err` with SQLite's first findings
/// unless it answers `ok`.
fn quick_check(conn: &mut SqliteConnection) -> Result<(), String> {
    #[derive(QueryableByName)]
    struct Finding {
        #[diesel(sql_type = diesel::sql_types::Text)]
        quick_check: String,
    }
    let findings: Vec<Finding> = diesel::sql_query("PRAGMA quick_check(5)")
        .load(conn)
        .map_err(|e| {
            format!("the file is corrupt or unreadable (PRAGMA quick_check failed: {e})")
        })?;
    match findings.as_slice() {
        [only] if only.quick_check == "ok" => Ok(()),
        _ => Err(format!(
            "the database file is corrupt (PRAGMA quick_check: {})",
            findings
                .iter()
                .map(|f| f.quick_check.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The libpq parameters [`Store::postgres`] adds by default, for a retry budget.
///
/// On a network that drops every packet (a black hole), `tcp_user_timeout` closes a connection
/// whose sent data stays unacknowledged, and keepalive probes (whose failure Linux also judges
/// by `tcp_user_timeout`) close one that waits for a reply; both scale with the budget so a
/// short budget detects the outage quickly. A peer that acknowledges and never answers (a hung
/// proxy) is beyond what libpq parameters can bound.
fn pg_timeout_params(budget: Duration) -> [(&'static str, String); 7] {
    // budget / divisor in whole seconds (rounded up), clamped to lo..=hi
    let secs = |divisor: f64, lo: u64, hi: u64| {
        (budget.as_secs_f64() / divisor)
            .ceil()
            .clamp(lo as f64, hi as f64) as u64
    };
    [
        ("connect_timeout", secs(1.0, 2, 10).to_string()),
        ("keepalives", "1".into()),
        ("keepalives_idle", secs(2.0, 1, 10).to_string()),
        ("keepalives_interval", secs(4.0, 1, 5).to_string()),
        ("keepalives_count", "3".into()),
        ("tcp_user_timeout", (secs(1.0, 2, 120) * 1000).to_string()),
        (
            "options",
            format!("-c statement_timeout={}", secs(1.0, 10, 300) * 1000),
        ),
    ]
}

/// `url` with the default timeouts (see [`Store::postgres`]) added where it does not set them.
/// Understands both libpq forms: a `postgres://` URI (query parameters, percent-encoded) and a
/// `key=value` connection string.
pub(crate) fn pg_url_with_timeouts(url: &str, budget: Duration) -> String {
    let is_uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let given: Vec<String> = if is_uri {
        url.split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .map(str::to_ascii_lowercase)
            .collect()
    } else {
        url.split_whitespace()
            .filter_map(|kv| kv.split('=').next())
            .map(|k| k.trim().to_ascii_lowercase())
            .collect()
    };
    let mut out = url.to_string();
    for (key, value) in pg_timeout_params(budget) {
        if given.iter().any(|g| g == key) {
            continue;
        }
        if is_uri {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(key);
            out.push('=');
            out.push_str(&value.replace(' ', "%20").replace('=', "%3D"));
        } else {
            out.push_str(&format!(" {key}='{value}'"));
        }
    }
    out
}

/// libpq's connection error, with the way out when the URL asks for TLS (`sslmode=require`,
/// `verify-full`, ...) from a libpq compiled without it (the default `bundled-libpq` feature).
fn pg_connect_error(e: &diesel::ConnectionError) -> String {
    let message = e.to_string();
    if message.contains("SSL support is not compiled in") {
        format!(
            "{}: this build's libpq has no TLS; build eventbatch with its `tls` feature, or \
             without `bundled-libpq` to use the system libpq",
            message.trim_end()
        )
    } else {
        message
    }
}

/// Which file a path named when the store was opened: device and inode on Unix (a deleted
/// file's connections keep writing to its unlinked inode, and a new file at the same path is
/// a different inode). Elsewhere only the file's existence is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub(crate) fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileIdentity { dev: 0, ino: 0 })
        }
    }
}

/// `Ok` if `path` still names the file that had identity `opened`; otherwise an error saying
/// the database file was deleted or replaced. One `stat(2)`, about a microsecond: cheap
/// enough before every transaction ([`StorePool::get`] runs it on every checkout). `PRAGMA
/// data_version` cannot tell: it sees only commits, and the unlinked file still takes them.
pub(crate) fn check_sqlite_file_identity(path: &Path, opened: FileIdentity) -> Result<(), String> {
    match FileIdentity::of(path) {
        Ok(now) if now == opened => Ok(()),
        Ok(_) => Err(format!(
            "the database file {} was replaced by another file since the store was opened; \
             refusing to write (restart the pipeline to use the new file)",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the database file {} was deleted since the store was opened; writes would be lost",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot stat the database file {}: {e}",
            path.display()
        )),
    }
}

/// What the writer remembers between transactions: for each window (and error count) epoch,
/// the state the store held before the epoch began, so that every snapshot of the epoch is
/// written as `base + epoch` and replaces the previous one.
///
/// A base is recorded as soon as it is read, even if the transaction then fails: only this
/// instance writes its own rows, so what was read is the pre-epoch state whether the attempt
/// rolled back or (outcome unknown) committed. Re-reading after a commit that reported an
/// error would read `base + epoch` and count the epoch twice.
#[derive(Debug, Default)]
pub(crate) struct Bases {
    /// By series and window start.
    windows: HashMap<(SeriesKey, i64), (u64, WindowState)>,
    errors: HashMap<(String, i64), (u64, ErrorBase)>,
}

impl Bases {
    /// What the store held for a window before `epoch` began, if a snapshot of that epoch
    /// was written (the stored row is then `base + an earlier snapshot of the epoch`).
    pub(crate) fn window_base(
        &self,
        key: &SeriesKey,
        start_ms: i64,
        epoch: u64,
    ) -> Option<&WindowState> {
        match self.windows.get(&(key.clone(), start_ms)) {
            Some((e, base)) if *e == epoch => Some(base),
            _ => None,
        }
    }

    /// After `batch` is known committed: windows and error counts that closed with it start a
    /// new epoch next time (a late event re-reads what the store now holds).
    pub(crate) fn forget_final(&mut self, batch: &WriteBatch) {
        for w in batch.windows.iter().filter(|w| w.is_final) {
            self.windows.remove(&(w.key.clone(), w.start_ms));
        }
        for e in batch.errors.iter().filter(|e| e.is_final) {
            self.errors.remove(&(e.error_hash.clone(), e.start_ms));
        }
    }
}

/// Identifies one write batch of one pipeline run, for idempotent retries.
///
/// Each run of a writer draws a random `run_id`; its batches are numbered `seq = 1, 2, ...` in
/// commit order. The transaction that writes batch `seq` also sets `writer_runs.last_seq` for
/// `(instance_id, run_id)` to `seq`. Batches commit strictly in order, so after an attempt
/// whose outcome is unknown (the connection died around COMMIT), `last_seq >= seq` means it
/// committed. One row per run, one extra statement per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMark {
    /// Random per writer run, so a restarted instance with the same `instance_id` never
    /// mistakes its new batches for old ones.
    pub run_id: i64,
    /// Position of the batch in this run, from 1.
    pub seq: i64,
}

diesel::table! {
    /// The last batch each writer run committed (see [`BatchMark`]).
    writer_runs (instance_id, run_id) {
        instance_id -> Text,
        run_id -> BigInt,
        last_seq -> BigInt,
        updated_at_ms -> BigInt,
    }
}

/// A `writer_runs` row.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = writer_runs, treat_none_as_default_value = false)]
struct WriterRunRow<'a> {
    instance_id: &'a str,
    run_id: i64,
    last_seq: i64,
    updated_at_ms: i64,
}

diesel::table! {
    /// Durable mode: the journal position through which the store holds each journal's
    /// events (see `crate::journal`).
    durable_checkpoints (journal_id) {
        journal_id -> Text,
        instance_id -> Text,
        position -> BigInt,
        updated_at_ms -> BigInt,
    }
}

/// A `durable_checkpoints` row.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = durable_checkpoints, treat_none_as_default_value = false)]
struct CheckpointRow<'a> {
    journal_id: &'a str,
    instance_id: &'a str,
    position: i64,
    updated_at_ms: i64,
}

/// Durable mode: the store holds journal `journal_id` through `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint<'a> {
    pub journal_id: &'a str,
    pub position: u64,
}

/// What a durable commit did with one batch: rows written (in one piece, or in pieces around
/// refused rows) and rows quarantined.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub written: Written,
    /// Snapshot (not final) window and error-count rows among those written.
    pub snapshots: u64,
    /// Rows refused by the store, now in `quarantine`, and the records among them.
    pub quarantined_rows: u64,
    pub quarantined_records: u64,
    /// Events folded into the final rows written or quarantined ([`WriteBatch::folded`]).
    pub folded: u64,
}

impl Outcome {
    fn written(&mut self, piece: &WriteBatch) {
        let w = Written::of(piece);
        self.written.records += w.records;
        self.written.windows += w.windows;
        self.written.errors += w.errors;
        self.written.patterns += w.patterns;
        self.snapshots += (piece.windows.iter().filter(|w| !w.is_final).count()
            + piece.errors.iter().filter(|e| !e.is_final).count()) as u64;
        self.folded += piece.folded();
    }

    fn quarantined(&mut self, piece: &WriteBatch) {
        self.quarantined_rows += piece.rows() as u64;
        self.quarantined_records += piece.records.len() as u64;
        self.folded += piece.folded();
    }
}

/// How a write runs with respect to transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// In a transaction of its own ([`WriteTxn::write_txn`]).
    Own,
    /// In a savepoint of the transaction open on the connection, undone alone if it fails
    /// (diesel nests `transaction` as `SAVEPOINT`; SQLite's `BEGIN IMMEDIATE` cannot nest).
    Savepoint,
    /// Directly in the transaction open on the connection.
    Enclosing,
}

/// Runs `f` as `txn` says.
fn in_txn<C: WriteTxn, T>(
    c: &mut C,
    txn: Txn,
    f: impl FnOnce(&mut C) -> QueryResult<T>,
) -> QueryResult<T> {
    match txn {
        Txn::Own => c.write_txn(f),
        Txn::Savepoint => c.transaction(f),
        Txn::Enclosing => f(c),
    }
}

/// An error count as stored: count, first and last time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorBase {
    count: i64,
    first_ts_ms: i64,
    last_ts_ms: i64,
}

/// Rows one committed batch wrote, by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub records: u64,
    pub windows: u64,
    pub errors: u64,
    pub patterns: u64,
}

impl Written {
    /// What committing `batch` writes.
    pub(crate) fn of(batch: &WriteBatch) -> Written {
        Written {
            records: batch.records.len() as u64,
            windows: batch.windows.len() as u64,
            errors: batch.errors.len() as u64,
            patterns: batch.patterns.len() as u64,
        }
    }
}

/// Per-backend write transaction: SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so
/// a busy database fails at the start instead of half-way through.
pub(crate) trait WriteTxn: Connection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>;
}

impl WriteTxn for SqliteConnection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        self.immediate_transaction(f)
    }
}

impl WriteTxn for PgConnection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        self.transaction(f)
    }
}

/// Per-backend bulk insert of `events` rows: the one place the two backends write differently.
pub(crate) trait InsertEvents: Connection {
    fn insert_events(&mut self, rows: &[NewEventRow<'_>]) -> QueryResult<()>;
}

impl InsertEvents for SqliteConnection {
    /// Multi-row INSERTs of [`EVENT_CHUNK`] rows. Each full chunk goes as an [`EventChunk`],
    /// whose prepared statement diesel keeps (parsing a 7,500-parameter statement on every
    /// call was ~15% of the pipeline's CPU); the last partial chunk goes as a slice.
    fn insert_events(&mut self, rows: &[NewEventRow<'_>]) -> QueryResult<()> {
        use crate::db::schema::events;
        let (chunks, rest) = rows.as_chunks::<EVENT_CHUNK>();
        for chunk in chunks {
            EventChunk(chunk).execute(self)?;
        }
        if !rest.is_empty() {
            diesel::insert_into(events::table)
                .values(rest)
                .execute(self)?;
        }
        Ok(())
    }
}

impl InsertEvents for PgConnection {
    /// One binary `COPY events (...) FROM STDIN` for the whole batch: about 3x the rows/s of
    /// multi-row INSERTs (FACTS.md), and no bind-parameter limit.
    fn insert_events(&mut self, rows: &[NewEventRow<'_>]) -> QueryResult<()> {
        use crate::db::schema::events;
        diesel::copy_from(events::table)
            .from_insertable(rows)
            .execute(self)?;
        Ok(())
    }
}

/// Per-backend lock for the roll-up job, so that with many instances on one database one of
/// them rolls up at a time (see [`crate::rollup`]). On PostgreSQL a session advisory lock,
/// taken without waiting (another instance is on it: skip this run); on SQLite every roll-up
/// transaction is `BEGIN IMMEDIATE`, which already serialises writers.
pub(crate) trait RollupLock: Connection {
    fn try_rollup_lock(&mut self) -> QueryResult<bool>;
    fn rollup_unlock(&mut self) -> QueryResult<()>;
}

/// The advisory lock key of the roll-up job ("evntbatc").
const ROLLUP_LOCK_KEY: i64 = 0x6576_6e74_6261_7463;

impl RollupLock for SqliteConnection {
    fn try_rollup_lock(&mut self) -> QueryResult<bool> {
        Ok(true)
    }
    fn rollup_unlock(&mut self) -> QueryResult<()> {
        Ok(())
    }
}

impl RollupLock for PgConnection {
    fn try_rollup_lock(&mut self) -> QueryResult<bool> {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "pg_try_advisory_lock({ROLLUP_LOCK_KEY})"
        )))
        .get_result(self)
    }
    fn rollup_unlock(&mut self) -> QueryResult<()> {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "pg_advisory_unlock({ROLLUP_LOCK_KEY})"
        )))
        .get_result::<bool>(self)
        .map(|_| ())
    }
}

/// Per-backend lock for one chunk of a retention round, so that with many instances on one
/// database one of them prunes at a time (see [`crate::retention`]). On PostgreSQL a
/// transaction-level advisory lock on [`RETENTION_LOCK_KEY`], taken without waiting (another
/// instance is pruning: this round ends, the next comes an interval later) and released by the
/// chunk's COMMIT; on SQLite the chunk's `BEGIN IMMEDIATE` already serialises writers.
pub(crate) trait PruneLock: Connection {
    fn try_prune_lock(&mut self) -> QueryResult<bool>;
}

/// The PostgreSQL advisory lock key that retention rounds take for each chunk ("evntprun").
/// An operator can pause pruning on every instance by holding it
/// (`SELECT pg_advisory_lock(7311152491464389998)`, e.g. during a backup).
pub const RETENTION_LOCK_KEY: i64 = 0x6576_6e74_7072_756e;

impl PruneLock for SqliteConnection {
    fn try_prune_lock(&mut self) -> QueryResult<bool> {
        Ok(true)
    }
}

impl PruneLock for PgConnection {
    fn try_prune_lock(&mut self) -> QueryResult<bool> {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "pg_try_advisory_xact_lock({RETENTION_LOCK_KEY})"
        )))
        .get_result(self)
    }
}

/// One body of SQL code, compiled for each backend's connection type.
macro_rules! backend {
    ($module:ident, $Conn:ty) => {
        pub(crate) mod $module {
            use super::*;
            use crate::db::models::*;
            use crate::db::schema::{error_counts, metric_windows, patterns};
            use crate::model::{Field, Record};

            /// Writes one batch in one transaction (or as `txn` says). On error nothing is
            /// written (by it, with [`Txn::Enclosing`]: the enclosing transaction must roll
            /// back) and `bases` holds only what the store held.
            pub(crate) fn write_batch(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                mark: BatchMark,
                bases: &mut Bases,
                txn: Txn,
            ) -> QueryResult<Written> {
                let written = in_txn(c, txn, |c| {
                    set_mark(c, instance, mark)?;
                    insert_records(c, instance, &[&batch.records])?;
                    for w in &batch.windows {
                        let key = (w.key.clone(), w.start_ms);
                        let base = match bases.windows.get(&key) {
                            Some((epoch, base)) if *epoch == w.epoch => base.clone(),
                            _ => {
                                let stored: Option<Option<Vec<u8>>> = metric_windows::table
                                    .filter(metric_windows::instance_id.eq(instance))
                                    .filter(metric_windows::metric.eq(&w.key.metric))
                                    .filter(metric_windows::context_key.eq(w.key.context_key()))
                                    .filter(metric_windows::window_start_ms.eq(w.start_ms))
                                    .select(metric_windows::sketch)
                                    .first(c)
                                    .optional()?;
                                let base = decode_state(stored.flatten().as_deref());
                                bases.windows.insert(key, (w.epoch, base.clone()));
                                base
                            }
                        };
                        let mut merged = base;
                        merged.merge(&w.state);
                        let s = merged.summary();
                        let blob = merged.to_bytes();
                        let series = w.key.name();
                        let row = NewWindowRow {
                            instance_id: instance,
                            series: &series,
                            metric: &w.key.metric,
                            context: w.key.context.as_deref(),
                            window_start_ms: w.start_ms,
                            window_end_ms: w.end_ms,
                            count: s.count as i64,
                            estimated_count: s.estimated_count,
                            sum: s.sum,
                            min: s.min,
                            max: s.max,
                            mean: s.mean,
                            stddev: s.stddev,
                            p50: s.p50,
                            p90: s.p90,
                            p95: s.p95,
                            p99: s.p99,
                            sketch: Some(&blob),
                            is_final: w.is_final,
                        };
                        diesel::insert_into(metric_windows::table)
                            .values(&row)
                            .on_conflict((
                                metric_windows::instance_id,
                                metric_windows::metric,
                                metric_windows::context_key,
                                metric_windows::window_start_ms,
                            ))
                            .do_update()
                            .set(&row)
                            .execute(c)?;
                    }
                    crate::db::rollups::$module::mark_pending(c, instance, batch)?;
                    for e in &batch.errors {
                        let key = (e.error_hash.clone(), e.start_ms);
                        let base = match bases.errors.get(&key) {
                            Some((epoch, base)) if *epoch == e.epoch => Some(*base),
                            _ => {
                                let stored: Option<(i64, i64, i64)> = error_counts::table
                                    .filter(error_counts::instance_id.eq(instance))
                                    .filter(error_counts::error_hash.eq(&e.error_hash))
                                    .filter(error_counts::window_start_ms.eq(e.start_ms))
                                    .select((
                                        error_counts::count,
                                        error_counts::first_ts_ms,
                                        error_counts::last_ts_ms,
                                    ))
                                    .first(c)
                                    .optional()?;
                                let base =
                                    stored.map(|(count, first_ts_ms, last_ts_ms)| ErrorBase {
                                        count,
                                        first_ts_ms,
                                        last_ts_ms,
                                    });
                                let cached = base.unwrap_or(ErrorBase {
                                    count: 0,
                                    first_ts_ms: i64::MAX,
                                    last_ts_ms: i64::MIN,
                                });
                                bases.errors.insert(key, (e.epoch, cached));
                                base
                            }
                        };
                        let base = base.unwrap_or(ErrorBase {
                            count: 0,
                            first_ts_ms: i64::MAX,
                            last_ts_ms: i64::MIN,
                        });
                        let row = NewErrorCountRow {
                            instance_id: instance,
                            error_hash: &e.error_hash,
                            error_type: &e.error_type,
                            error_category: e.error_category.as_deref(),
                            window_start_ms: e.start_ms,
                            count: base.count + e.count as i64,
                            first_ts_ms: base.first_ts_ms.min(e.first_ts_ms),
                            last_ts_ms: base.last_ts_ms.max(e.last_ts_ms),
                        };
                        diesel::insert_into(error_counts::table)
                            .values(&row)
                            .on_conflict((
                                error_counts::instance_id,
                                error_counts::error_hash,
                                error_counts::window_start_ms,
                            ))
                            .do_update()
                            .set(&row)
                            .execute(c)?;
                    }
                    if !batch.patterns.is_empty() {
                        let names: Vec<String> =
                            batch.patterns.iter().map(|p| p.key.name()).collect();
                        let rows: Vec<NewPatternRow<'_>> = batch
                            .patterns
                            .iter()
                            .zip(&names)
                            .map(|(p, series)| NewPatternRow {
                                instance_id: instance,
                                series,
                                metric: &p.key.metric,
                                context: p.key.context.as_deref(),
                                kind: p.kind.as_str(),
                                confidence: p.confidence,
                                window_start_ms: p.start_ms,
                                window_end_ms: p.end_ms,
                                observed: p.observed,
                                baseline: p.baseline,
                                description: &p.description,
                                detected_at_ms: p.detected_at_ms,
                                statistics: serde_json::to_string(&p.statistics).ok(),
                            })
                            .collect();
                        for chunk in rows.chunks(1000) {
                            diesel::insert_into(patterns::table)
                                .values(chunk)
                                .execute(c)?;
                        }
                    }
                    Ok(Written::of(batch))
                })?;
                bases.forget_final(batch);
                Ok(written)
            }

            /// Writes the records of several records-only batches in one transaction, marked
            /// `mark` (the last batch's: commits are in order, so it stands for them all).
            /// Returns the number of records written.
            pub(crate) fn write_records(
                c: &mut $Conn,
                instance: &str,
                records: &[&[Record]],
                mark: BatchMark,
            ) -> QueryResult<u64> {
                c.write_txn(|c| {
                    set_mark(c, instance, mark)?;
                    insert_records(c, instance, records)
                })
            }

            /// Puts the rows of `batch` (refused by the store) in `quarantine` with `error`,
            /// marked `mark`, in one transaction (or as `txn` says).
            pub(crate) fn quarantine(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                error: &str,
                mark: BatchMark,
                txn: Txn,
            ) -> QueryResult<()> {
                use crate::db::schema::quarantine;
                let error = error.replace('\0', "\\0");
                let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                let rows = quarantine_payloads(batch);
                in_txn(c, txn, |c| {
                    set_mark(c, instance, mark)?;
                    for (kind, payload) in &rows {
                        diesel::insert_into(quarantine::table)
                            .values(&NewQuarantineRow {
                                instance_id: instance,
                                kind,
                                payload,
                                error: &error,
                                quarantined_at_ms: now,
                            })
                            .execute(c)?;
                    }
                    Ok(())
                })
            }

            /// Records in `writer_runs` that batch `mark` is committed (see [`BatchMark`]).
            fn set_mark(c: &mut $Conn, instance: &str, mark: BatchMark) -> QueryResult<()> {
                let run = WriterRunRow {
                    instance_id: instance,
                    run_id: mark.run_id,
                    last_seq: mark.seq,
                    updated_at_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                };
                diesel::insert_into(writer_runs::table)
                    .values(&run)
                    .on_conflict((writer_runs::instance_id, writer_runs::run_id))
                    .do_update()
                    .set(&run)
                    .execute(c)?;
                Ok(())
            }

            /// The last batch of writer run `run_id` that committed, if any.
            pub(crate) fn committed_seq(
                c: &mut $Conn,
                instance: &str,
                run_id: i64,
            ) -> QueryResult<Option<i64>> {
                writer_runs::table
                    .filter(writer_runs::instance_id.eq(instance))
                    .filter(writer_runs::run_id.eq(run_id))
                    .select(writer_runs::last_seq)
                    .first(c)
                    .optional()
            }

            /// Durable mode: writes `batches` (each with its mark, in order) and the checkpoint
            /// in one transaction, so the store holds the effect of every event up to the
            /// checkpoint's position and of none after it. If the store refuses a row, the
            /// transaction is done again with each batch in a savepoint: one the store refuses
            /// is split until the refused rows are isolated, and those go to `quarantine`,
            /// inside the same transaction (savepoints cost a copy of every page a batch
            /// changes, so only then). What became of each batch is in `outcomes` (also when
            /// the COMMIT reports a failure, in case it took effect).
            pub(crate) fn write_durable(
                c: &mut $Conn,
                instance: &str,
                batches: &[(&WriteBatch, BatchMark)],
                bases: &mut Bases,
                checkpoint: Checkpoint<'_>,
                outcomes: &mut Vec<Outcome>,
            ) -> QueryResult<()> {
                outcomes.clear();
                let all = c.write_txn(|c| {
                    for &(batch, mark) in batches {
                        write_batch(c, instance, batch, mark, bases, Txn::Enclosing)?;
                        let mut outcome = Outcome::default();
                        outcome.written(batch);
                        outcomes.push(outcome);
                    }
                    set_checkpoint(c, instance, checkpoint)
                });
                match all {
                    Err(e) if StoreError::refuses(&e) => {
                        log::warn!("the store refused a row of a checkpoint ({e}); isolating it");
                    }
                    other => return other,
                }
                outcomes.clear();
                c.write_txn(|c| {
                    for &(batch, mark) in batches {
                        let mut outcome = Outcome::default();
                        write_isolating(c, instance, batch, mark, bases, &mut outcome)?;
                        outcomes.push(outcome);
                    }
                    set_checkpoint(c, instance, checkpoint)
                })
            }

            /// The `durable_checkpoints` row of `checkpoint`.
            fn set_checkpoint(
                c: &mut $Conn,
                instance: &str,
                checkpoint: Checkpoint<'_>,
            ) -> QueryResult<()> {
                    let row = CheckpointRow {
                        journal_id: checkpoint.journal_id,
                        instance_id: instance,
                        position: checkpoint.position as i64,
                        updated_at_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                    };
                    diesel::insert_into(durable_checkpoints::table)
                        .values(&row)
                        .on_conflict(durable_checkpoints::journal_id)
                        .do_update()
                        .set(&row)
                        .execute(c)?;
                    Ok(())
            }

            /// Writes `batch` in a savepoint; if the store refuses it, halves it until the
            /// refused rows are single, which go to `quarantine` (all in the open transaction).
            fn write_isolating(
                c: &mut $Conn,
                instance: &str,
                batch: &WriteBatch,
                mark: BatchMark,
                bases: &mut Bases,
                outcome: &mut Outcome,
            ) -> QueryResult<()> {
                let e = match write_batch(c, instance, batch, mark, bases, Txn::Savepoint) {
                    Ok(_) => {
                        outcome.written(batch);
                        return Ok(());
                    }
                    Err(e) if StoreError::refuses(&e) => e,
                    Err(e) => return Err(e),
                };
                if batch.rows() <= 1 {
                    quarantine(c, instance, batch, &e.to_string(), mark, Txn::Savepoint)?;
                    log::error!(
                        "the store refused a row ({e}); it is in the quarantine table and the rest is written"
                    );
                    outcome.quarantined(batch);
                    return Ok(());
                }
                let (first, second) = batch.clone().split();
                write_isolating(c, instance, &first, mark, bases, outcome)?;
                write_isolating(c, instance, &second, mark, bases, outcome)
            }

            /// The position the store holds journal `journal_id` through, if any.
            pub(crate) fn checkpoint_of(
                c: &mut $Conn,
                journal_id: &str,
            ) -> QueryResult<Option<i64>> {
                durable_checkpoints::table
                    .filter(durable_checkpoints::journal_id.eq(journal_id))
                    .select(durable_checkpoints::position)
                    .first(c)
                    .optional()
            }

            /// Inserts `records` (several batches' in order) as `events` rows; returns how many.
            fn insert_records(
                c: &mut $Conn,
                instance: &str,
                records: &[&[Record]],
            ) -> QueryResult<u64> {
                let records = || records.iter().flat_map(|batch| batch.iter());
                let mut rows: Vec<NewEventRow<'_>> = records()
                    .map(|r| NewEventRow {
                        instance_id: instance,
                        ts_ms: r.ts_ms,
                        kind: r.kind.as_str(),
                        name: r.name(),
                        priority: r.priority.as_str(),
                        // pseudonymised at the front door when `identity_key` is set
                        user_hash: r.field(Field::User),
                        server_hash: r.field(Field::Server),
                        success: r.success,
                        duration_ms: r.duration_ms(),
                        value: r.value(),
                        error_type: r.field(Field::ErrorType),
                        error_category: r.field(Field::ErrorCategory),
                        sample_rate: r.sample_rate,
                        tags: r.field(Field::Tags),
                        payload: r.field(Field::Payload),
                    })
                    .collect();
                if rows.is_empty() {
                    return Ok(0);
                }
                // In event-time order within the transaction (a stable sort: the queue hands
                // over high priority first, and in one transaction that order is not
                // observable): the `events` index on (kind, ts_ms) then grows at its end, which
                // SQLite does without searching the b-tree (a failed command every 50 events
                // cost the record-heavy bench 14% of the writer's instructions), and
                // PostgreSQL's BRIN ranges stay tight.
                if !rows.is_sorted_by_key(|r| r.ts_ms) {
                    rows.sort_by_key(|r| r.ts_ms);
                }
                c.insert_events(&rows)?;
                Ok(rows.len() as u64)
            }

            /// Windows of one series starting in the query's range, merged per start over
            /// every instance and snapshot row.
            pub(crate) fn query_windows(
                c: &mut $Conn,
                q: &QueryWindows,
            ) -> QueryResult<Vec<WindowStats>> {
                if q.resolution.bucket_ms().is_some() {
                    return crate::db::rollups::$module::query_buckets(c, q, q.resolution);
                }
                Ok(merge_rows(window_rows(c, &q.key(), q.from_ms, q.to_ms)?))
            }

            /// The stored windows of several series starting in `[from_ms, to_ms)`, merged
            /// over instances: one element per series and window, by series (metric, then
            /// context) then start.
            pub(crate) fn recent_windows(
                c: &mut $Conn,
                keys: &[SeriesKey],
                from_ms: i64,
                to_ms: i64,
            ) -> QueryResult<Vec<WindowStats>> {
                // every metric and every context asked for, then exactly the pairs asked for
                let mut metrics: Vec<&str> = keys.iter().map(|k| k.metric.as_str()).collect();
                let mut contexts: Vec<&str> = keys.iter().map(SeriesKey::context_key).collect();
                for v in [&mut metrics, &mut contexts] {
                    v.sort_unstable();
                    v.dedup();
                }
                let wanted: std::collections::HashSet<&SeriesKey> = keys.iter().collect();
                let rows: Vec<WindowRow> = metric_windows::table
                    .filter(metric_windows::metric.eq_any(&metrics))
                    .filter(metric_windows::context_key.eq_any(&contexts))
                    .filter(metric_windows::window_start_ms.ge(from_ms))
                    .filter(metric_windows::window_start_ms.lt(to_ms))
                    .order((
                        metric_windows::metric,
                        metric_windows::context_key,
                        metric_windows::window_start_ms,
                        metric_windows::id,
                    ))
                    .select(WindowRow::as_select())
                    .load(c)?;
                let mut out = Vec::new();
                let mut run: Vec<WindowRow> = Vec::new();
                for row in rows.into_iter().filter(|r| wanted.contains(&r.key())) {
                    let same =
                        |r: &WindowRow| (&r.metric, &r.context) == (&row.metric, &row.context);
                    if run.last().is_some_and(|r| !same(r)) {
                        out.extend(merge_rows(std::mem::take(&mut run)));
                    }
                    run.push(row);
                }
                out.extend(merge_rows(run));
                Ok(out)
            }

            /// The stored rows of one series starting in `[from_ms, to_ms)`, every instance,
            /// ordered by start.
            pub(crate) fn window_rows(
                c: &mut $Conn,
                key: &SeriesKey,
                from_ms: i64,
                to_ms: i64,
            ) -> QueryResult<Vec<WindowRow>> {
                metric_windows::table
                    .filter(metric_windows::metric.eq(&key.metric))
                    .filter(metric_windows::context_key.eq(key.context_key()))
                    .filter(metric_windows::window_start_ms.ge(from_ms))
                    .filter(metric_windows::window_start_ms.lt(to_ms))
                    .order((metric_windows::window_start_ms, metric_windows::id))
                    .select(WindowRow::as_select())
                    .load(c)
            }

            /// Every series with at least one stored window: `(series, metric, context)`, by
            /// series name.
            pub(crate) fn stored_series(
                c: &mut $Conn,
            ) -> QueryResult<Vec<(String, String, Option<String>)>> {
                metric_windows::table
                    .select((
                        metric_windows::series,
                        metric_windows::metric,
                        metric_windows::context,
                    ))
                    .distinct()
                    .order((metric_windows::series, metric_windows::metric))
                    .load(c)
            }

            /// Patterns, filtered.
            pub(crate) fn query_patterns(
                c: &mut $Conn,
                q: &QueryPatterns,
            ) -> QueryResult<Vec<Pattern>> {
                let mut query = patterns::table.into_boxed();
                if let Some(since) = q.since_ms {
                    query = query.filter(patterns::window_start_ms.ge(since));
                }
                if let Some(kind) = q.kind {
                    query = query.filter(patterns::kind.eq(kind.as_str()));
                }
                if let Some(m) = &q.metric {
                    query = query.filter(patterns::metric.eq(m.clone()));
                }
                if let Some(context) = &q.context {
                    query = query.filter(patterns::context.eq(context.clone()));
                }
                let rows: Vec<PatternRow> = query
                    .order((patterns::window_start_ms, patterns::id))
                    .select(PatternRow::as_select())
                    .load(c)?;
                Ok(to_patterns(rows))
            }
        }
    };
}

backend!(sqlite, SqliteConnection);
backend!(pg, PgConnection);

/// A stored window state, or an empty one when the blob is missing or unreadable (logged).
pub(crate) fn decode_state(blob: Option<&[u8]>) -> WindowState {
    match blob.map(WindowState::from_bytes) {
        Some(Ok(state)) => state,
        Some(Err(e)) => {
            log::warn!("unreadable window state in the store ({e}); treating it as empty");
            WindowState::new()
        }
        None => WindowState::new(),
    }
}

/// Rows of one series, ordered by window start, merged per start (over instances and runs).
pub(crate) fn merge_rows(rows: Vec<crate::db::models::WindowRow>) -> Vec<WindowStats> {
    let mut out: Vec<WindowStats> = Vec::new();
    let mut current: Option<(crate::db::models::WindowRow, WindowState)> = None;
    for row in rows {
        let state = decode_state(row.sketch.as_deref());
        match &mut current {
            Some((first, merged)) if first.window_start_ms == row.window_start_ms => {
                merged.merge(&state)
            }
            _ => {
                if let Some((first, merged)) = current.take() {
                    out.push(WindowStats::from_state(
                        first.key(),
                        first.window_start_ms,
                        first.window_end_ms,
                        merged,
                    ));
                }
                current = Some((row, state));
            }
        }
    }
    if let Some((first, merged)) = current {
        out.push(WindowStats::from_state(
            first.key(),
            first.window_start_ms,
            first.window_end_ms,
            merged,
        ));
    }
    out
}

fn to_patterns(rows: Vec<crate::db::models::PatternRow>) -> Vec<Pattern> {
    rows.into_iter()
        .filter_map(|r| {
            let kind = crate::stats::detect::PatternKind::parse(&r.kind)?;
            Some(Pattern {
                series: r.series,
                metric: r.metric,
                context: r.context,
                kind,
                confidence: r.confidence,
                window_start_ms: r.window_start_ms,
                window_end_ms: r.window_end_ms,
                observed: r.observed,
                baseline: r.baseline,
                description: r.description,
                statistics: r
                    .statistics
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Each row of `batch` as `(kind, JSON)` for the `quarantine` table: every field, and for a
/// window its whole state (`state_hex`, as in `metric_windows.sketch`), so it can be
/// recovered. JSON escapes what the store may refuse (a NUL byte becomes `\u0000`).
fn quarantine_payloads(batch: &WriteBatch) -> Vec<(&'static str, String)> {
    use crate::model::Field;
    use serde_json::json;
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = Vec::with_capacity(batch.rows());
    for r in &batch.records {
        let v = json!({
            "ts_ms": r.ts_ms, "kind": r.kind.as_str(), "name": r.name(),
            "priority": r.priority.as_str(), "user": r.field(Field::User),
            "server": r.field(Field::Server), "success": r.success,
            "duration_ms": r.duration_ms(), "value": r.value(),
            "error_type": r.field(Field::ErrorType),
            "error_category": r.field(Field::ErrorCategory), "sample_rate": r.sample_rate,
            "tags": r.field(Field::Tags), "payload": r.field(Field::Payload),
        });
        out.push(("event", v.to_string()));
    }
    for w in &batch.windows {
        let v = json!({
            "series": w.key.name(), "metric": w.key.metric, "context": w.key.context,
            "window_start_ms": w.start_ms, "window_end_ms": w.end_ms, "epoch": w.epoch,
            "count": w.state.count(), "is_final": w.is_final,
            "state_hex": hex(w.state.to_bytes()),
        });
        out.push(("window", v.to_string()));
    }
    for e in &batch.errors {
        let v = json!({
            "error_hash": e.error_hash, "error_type": e.error_type,
            "error_category": e.error_category, "window_start_ms": e.start_ms,
            "count": e.count, "first_ts_ms": e.first_ts_ms, "last_ts_ms": e.last_ts_ms,
        });
        out.push(("error_count", v.to_string()));
    }
    for p in &batch.patterns {
        let v = json!({
            "series": p.key.name(), "metric": p.key.metric, "context": p.key.context,
            "kind": p.kind.as_str(), "confidence": p.confidence,
            "window_start_ms": p.start_ms, "window_end_ms": p.end_ms,
            "observed": p.observed, "baseline": p.baseline, "description": p.description,
            "statistics": p.statistics,
        });
        out.push(("pattern", v.to_string()));
    }
    out
}

/// A pooled connection of either backend.
pub(crate) struct Conn {
    backend: Backend,
}

enum Backend {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Pg(PooledConnection<ConnectionManager<PgConnection>>),
}

impl Pool {
    /// A connection from the pool.
    pub(crate) fn get(&self) -> Result<Conn, StoreError> {
        self.get_patient(None)
    }

    /// A connection for an attempt that may wait at most `patience` for the store (see
    /// [`StorePool::get_within`]).
    pub(crate) fn get_within(&self, patience: Duration) -> Result<Conn, StoreError> {
        self.get_patient(Some(patience))
    }

    fn get_patient(&self, patience: Option<Duration>) -> Result<Conn, StoreError> {
        match self {
            Pool::Sqlite(p) => Ok(Conn {
                backend: Backend::Sqlite(p.get_within(patience)?),
            }),
            Pool::Pg(p) => Ok(Conn {
                backend: Backend::Pg(p.get_within(patience)?),
            }),
        }
    }

    /// Whether the store answers the writer's call in progress (shared by every clone).
    pub(crate) fn watch(&self) -> Arc<StoreWatch> {
        match self {
            Pool::Sqlite(p) => p.watch.clone(),
            Pool::Pg(p) => p.watch.clone(),
        }
    }
}

impl Conn {
    /// Writes `batch` in one transaction, marked as batch `mark` (see [`BatchMark`]). Users
    /// and servers are written as the records carry them (pseudonymised at the front door);
    /// `_hash_ids` is ignored (kept until the writer stops passing it).
    pub(crate) fn write_batch(
        &mut self,
        instance: &str,
        _hash_ids: bool,
        batch: &WriteBatch,
        mark: BatchMark,
        bases: &mut Bases,
    ) -> QueryResult<Written> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::write_batch(c, instance, batch, mark, bases, Txn::Own),
            Backend::Pg(c) => pg::write_batch(c, instance, batch, mark, bases, Txn::Own),
        }
    }

    /// Writes several records-only batches' `records` in one transaction, marked `mark` (the
    /// last batch's); returns the number of records written.
    pub(crate) fn write_records(
        &mut self,
        instance: &str,
        _hash_ids: bool,
        records: &[&[crate::model::Record]],
        mark: BatchMark,
    ) -> QueryResult<u64> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::write_records(c, instance, records, mark),
            Backend::Pg(c) => pg::write_records(c, instance, records, mark),
        }
    }

    /// Puts the rows of a refused batch in the `quarantine` table (see [`quarantine_payloads`]).
    pub(crate) fn quarantine(
        &mut self,
        instance: &str,
        batch: &WriteBatch,
        error: &str,
        mark: BatchMark,
    ) -> QueryResult<()> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::quarantine(c, instance, batch, error, mark, Txn::Own),
            Backend::Pg(c) => pg::quarantine(c, instance, batch, error, mark, Txn::Own),
        }
    }

    /// Durable mode: writes `batches` and the checkpoint in one transaction (see
    /// `write_durable` in the backend modules).
    pub(crate) fn write_durable(
        &mut self,
        instance: &str,
        batches: &[(&WriteBatch, BatchMark)],
        bases: &mut Bases,
        checkpoint: Checkpoint<'_>,
        outcomes: &mut Vec<Outcome>,
    ) -> QueryResult<()> {
        match &mut self.backend {
            Backend::Sqlite(c) => {
                sqlite::write_durable(c, instance, batches, bases, checkpoint, outcomes)
            }
            Backend::Pg(c) => pg::write_durable(c, instance, batches, bases, checkpoint, outcomes),
        }
    }

    /// The journal position the store holds journal `journal_id` through (0: none).
    pub(crate) fn checkpoint_of(&mut self, journal_id: &str) -> QueryResult<u64> {
        let position = match &mut self.backend {
            Backend::Sqlite(c) => sqlite::checkpoint_of(c, journal_id)?,
            Backend::Pg(c) => pg::checkpoint_of(c, journal_id)?,
        };
        Ok(position.unwrap_or(0).max(0) as u64)
    }

    /// Whether batch `mark` of this instance is already committed.
    pub(crate) fn is_committed(&mut self, instance: &str, mark: BatchMark) -> QueryResult<bool> {
        let last = match &mut self.backend {
            Backend::Sqlite(c) => sqlite::committed_seq(c, instance, mark.run_id)?,
            Backend::Pg(c) => pg::committed_seq(c, instance, mark.run_id)?,
        };
        Ok(last.is_some_and(|last| last >= mark.seq))
    }

    /// The stored windows of the series `keys` starting in `[from_ms, to_ms)` (see
    /// `recent_windows` in the backend module).
    pub(crate) fn recent_windows(
        &mut self,
        keys: &[SeriesKey],
        from_ms: i64,
        to_ms: i64,
    ) -> QueryResult<Vec<WindowStats>> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::recent_windows(c, keys, from_ms, to_ms),
            Backend::Pg(c) => pg::recent_windows(c, keys, from_ms, to_ms),
        }
    }

    pub(crate) fn window_rows(
        &mut self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> QueryResult<Vec<crate::db::models::WindowRow>> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::window_rows(c, key, from_ms, to_ms),
            Backend::Pg(c) => pg::window_rows(c, key, from_ms, to_ms),
        }
    }

    pub(crate) fn query_windows(&mut self, q: &QueryWindows) -> QueryResult<Vec<WindowStats>> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::query_windows(c, q),
            Backend::Pg(c) => pg::query_windows(c, q),
        }
    }

    /// Rolls up the buckets closed by `now_ms` (see [`crate::rollup`]).
    pub(crate) fn roll_up(
        &mut self,
        now_ms: i64,
        lateness_ms: i64,
        run: &mut crate::db::rollups::RollupRun,
    ) -> QueryResult<()> {
        match &mut self.backend {
            Backend::Sqlite(c) => crate::db::rollups::sqlite::roll_up(c, now_ms, lateness_ms, run),
            Backend::Pg(c) => crate::db::rollups::pg::roll_up(c, now_ms, lateness_ms, run),
        }
    }

    /// The oldest pending roll-up mark of each level (see [`crate::retention`]).
    pub(crate) fn oldest_pending(&mut self) -> QueryResult<crate::retention::OldestPending> {
        match &mut self.backend {
            Backend::Sqlite(c) => crate::db::retention::sqlite::oldest_pending(c),
            Backend::Pg(c) => crate::db::retention::pg::oldest_pending(c),
        }
    }

    /// Deletes at most `batch_size` rows of `table` older than `cutoff` in one transaction;
    /// `None` when another instance holds the retention lock.
    pub(crate) fn prune_chunk(
        &mut self,
        table: crate::retention::Table,
        cutoff: i64,
        batch_size: usize,
    ) -> QueryResult<Option<u64>> {
        use crate::db::retention::{pg, sqlite};
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::prune_chunk(c, table, cutoff, batch_size),
            Backend::Pg(c) => pg::prune_chunk(c, table, cutoff, batch_size),
        }
    }

    /// Every series with a stored window (see [`crate::StoreReader::series`]).
    pub(crate) fn stored_series(&mut self) -> QueryResult<Vec<(String, String, Option<String>)>> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::stored_series(c),
            Backend::Pg(c) => pg::stored_series(c),
        }
    }

    pub(crate) fn query_patterns(&mut self, q: &QueryPatterns) -> QueryResult<Vec<Pattern>> {
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::query_patterns(c, q),
            Backend::Pg(c) => pg::query_patterns(c, q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Store::from_url("sqlite://a.db"), Store::sqlite("a.db"));
        assert_eq!(
            Store::from_url("sqlite:///tmp/a.db"),
            Store::sqlite("/tmp/a.db")
        );
        assert!(Store::from_url("postgres://u@h/db").is_postgres());
        assert!(matches!(
            Store::from_url("mysql://x").kind,
            StoreKind::Invalid { .. }
        ));
        assert!(matches!(
            Store::from_url("sqlite://").kind,
            StoreKind::Invalid { .. }
        ));
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn every_form_of_password_is_redacted_and_the_rest_kept() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            (
                "postgresql://u@h/db?sslmode=disable&password=pw",
                "postgresql://u@h/db?sslmode=disable&***",
            ),
            (
                "postgres://u@h/db?PassWord=pw&x=1",
                "postgres://u@h/db?PassWord=***&x=1",
            ),
            (
                "postgres://u:p/w?x@h/db",
                "postgres://(not shown: unparseable)",
            ),
            (
                "postgres://u:pw@h/db?a=b c",
                "postgres://(not shown: unparseable)",
            ),
            ("postgres://h", "postgres://h"),
            ("postgress://u:pw@h/db", "postgress://u:***@h/db"),
            (
                "pg sql://u:pw@h/db",
                "(a store location, not shown: unparseable)",
            ),
            (
                "host=h user=u password=pw dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host = h password = 'p w\\'x' port=1",
                "host=h password=*** port=1",
            ),
            (
                "host=h password pw",
                "(a connection string, not shown: unparseable)",
            ),
        ];
        for (given, shown) in cases {
            let shown = shown.replace("&***", "&password=***");
            assert_eq!(redact(given), shown, "{given}");
            assert!(!redact(given).contains("pw"), "{given}");
        }
        assert_eq!(
            scrub(
                "bad pw near 'p w\\'x' and pw",
                "host=h password='p w\\'x' x=pw"
            ),
            "bad pw near '***' and pw"
        );
        assert_eq!(
            scrub("pw and pw2", "postgres://u:pw@h?password=pw2"),
            "*** and ***"
        );
        let store = Store::from_url("postgres://u@h/db?password=pw");
        assert_eq!(format!("{store}"), "postgres://u@h/db?password=***");
        assert_eq!(
            format!("{store:?}"),
            "Store(postgres://u@h/db?password=***)"
        );
    }

    #[test]
    fn pg_timeouts_are_added_unless_the_url_sets_them() {
        let budget = Duration::from_secs(30);
        let url = pg_url_with_timeouts("postgres://u@h/db", budget);
        assert_eq!(
            url,
            "postgres://u@h/db?connect_timeout=10&keepalives=1&keepalives_idle=10\
             &keepalives_interval=5&keepalives_count=3&tcp_user_timeout=30000\
             &options=-c%20statement_timeout%3D30000"
        );
        let own = pg_url_with_timeouts(
            "postgresql://u@h/db?connect_timeout=2&options=-c%20work_mem%3D64MB&sslmode=disable",
            Duration::from_millis(500),
        );
        assert!(own.starts_with("postgresql://u@h/db?connect_timeout=2&options=-c%20work_mem"));
        assert_eq!(own.matches("connect_timeout").count(), 1);
        assert_eq!(own.matches("options").count(), 1);
        assert!(
            own.ends_with(
                "&sslmode=disable&keepalives=1&keepalives_idle=1&keepalives_interval=1\
                 &keepalives_count=3&tcp_user_timeout=2000"
            ),
            "{own}"
        );
        let kv = pg_url_with_timeouts("host=h dbname=db keepalives=0", Duration::ZERO);
        assert_eq!(
            kv,
            "host=h dbname=db keepalives=0 connect_timeout='2' keepalives_idle='1' \
             keepalives_interval='1' keepalives_count='3' tcp_user_timeout='2000' \
             options='-c statement_timeout=10000'"
        );
        assert_eq!(pool_wait(Duration::ZERO), Duration::from_millis(50));
        assert_eq!(pool_wait(Duration::from_secs(30)), POOL_WAIT);
    }

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
        c.write_records("i", true, &[&records], BatchMark { run_id: 1, seq: 1 })
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

    #[test]
    fn a_corrupt_sqlite_file_fails_quick_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            c.batch_execute(
                "CREATE TABLE t (x TEXT); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
                 INSERT INTO t SELECT printf('%0200d', i) FROM n;",
            )
            .unwrap();
        }
        open(&Store::sqlite(&path), Duration::ZERO)
            .map(drop)
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for (i, b) in bytes[mid..mid + 8192].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&path, bytes).unwrap();
        match open(&Store::sqlite(&path), Duration::ZERO) {
            Err(Error::Store { reason, .. }) => assert!(reason.contains("corrupt"), "{reason}"),
            other => panic!("a corrupt file opened: {other:?}"),
        }
    }

    #[test]
    fn bad_stores_fail_fast_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/x.db");
        assert!(matches!(
            open(&Store::sqlite(missing), Duration::ZERO),
            Err(Error::Store { .. })
        ));
        assert!(matches!(
            open(&Store::sqlite(dir.path()), Duration::ZERO),
            Err(Error::Store { .. })
        ));
        assert!(matches!(
            open(&Store::from_url("redis://x"), Duration::ZERO),
            Err(Error::InvalidUrl { .. })
        ));
    }
}
