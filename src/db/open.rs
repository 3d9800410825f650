//! Opening a store: checking it, running the embedded migrations, building the [`Pool`].

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::ConnectionManager;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::db::location::{pg_url_with_timeouts, scrub, Store, StoreKind};
use crate::db::pool::{pool_builder, sqlite_pragmas, Pool, SqlitePragmas, StorePool};
use crate::error::Error;
use crate::util::FileIdentity;

/// A start-up error's cause.
type Cause = Box<dyn std::error::Error + Send + Sync>;

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

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
    pub(crate) fn from_settings(settings: &crate::settings::Settings) -> OpenOptions {
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
    let fail = |reason: String, source: Option<Cause>| Error::Store {
        store: store.describe(),
        reason,
        source,
    };
    let failed = |e: Cause| fail(e.to_string(), Some(e));
    match &store.kind {
        StoreKind::Invalid { reason, .. } => Err(Error::InvalidUrl {
            url: store.describe(),
            reason: reason.clone(),
        }),
        StoreKind::Sqlite(path) => {
            let url = path
                .to_str()
                .ok_or_else(|| fail("the path is not valid UTF-8".into(), None))?;
            if path.is_dir() {
                return Err(fail("the path is a directory".into(), None));
            }
            let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            crate::util::create_owner_only(path)
                .map_err(|e| fail(format!("cannot create the file: {e}"), Some(e.into())))?;
            let mut conn = SqliteConnection::establish(url).map_err(|e| failed(e.into()))?;
            conn.batch_execute(&sqlite_pragmas(opts.busy_timeout))
                .map_err(|e| failed(e.into()))?;
            if existed {
                quick_check(&mut conn).map_err(|reason| fail(reason, None))?;
            }
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| fail(format!("migrations: {e}"), Some(e)))?;
            let identity = FileIdentity::of(path).map_err(|e| {
                fail(
                    format!("cannot stat the database file: {e}"),
                    Some(e.into()),
                )
            })?;
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
            // (a connection error keeps only its text, without the password, as its cause)
            let fail = |reason: String, source| fail(scrub(&reason, given), source);
            let url = pg_url_with_timeouts(given, opts.retry_budget);
            let mut conn =
                PgConnection::establish(&url).map_err(|e| fail(pg_connect_error(&e), None))?;
            // Several instances may start at once: migrate under an advisory lock.
            conn.batch_execute("SELECT pg_advisory_lock(727272)")
                .map_err(|e| fail(e.to_string(), Some(e.into())))?;
            let migrated = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            let _ = conn.batch_execute("SELECT pg_advisory_unlock(727272)");
            migrated.map_err(|e| fail(format!("migrations: {e}"), Some(e)))?;
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
pub(crate) fn quick_check(conn: &mut SqliteConnection) -> Result<(), String> {
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

/// libpq's connection error, with the way out when the URL asks for TLS (`sslmode=require`,
/// `verify-full`, ...) from a libpq compiled without it (the default `bundled-libpq` feature).
pub(crate) fn pg_connect_error(e: &diesel::ConnectionError) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_store_that_cannot_be_opened_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(
            &Store::sqlite(dir.path().join("no/such/dir/x.db")),
            Duration::ZERO,
        )
        .map(drop)
        .unwrap_err();
        let cause = std::error::Error::source(&err).expect("the cause is kept");
        let io = cause.downcast_ref::<std::io::Error>();
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
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
