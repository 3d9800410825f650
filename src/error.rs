//! Errors: one `thiserror` enum per audience.
//!
//! - [`Error`]: `start` failed (bad configuration, a store that cannot be opened or migrated).
//! - [`TrackError`]: an event was rejected; the message says what is wrong with it.
//! - [`ConfigError`]: a configuration value is invalid; names the field and the value.
//! - [`PipelineError`]: a flush or query could not complete (the store failed, or an actor is gone).

use thiserror::Error;

/// What a start-up error keeps of its cause, for [`std::error::Error::source`].
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`crate::start`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration did not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store URL is not one eventbatch understands.
    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password removed (as [`crate::Store::describe`] shows it).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be opened, connected to or migrated.
    #[error("cannot open store {store}: {reason}")]
    Store {
        /// The store, with any password removed.
        store: String,
        /// The underlying error, as text (a PostgreSQL connection error with any password
        /// taken out).
        reason: String,
        /// The underlying error itself, when it is one (the SQLite or PostgreSQL client's, a
        /// migration's, the file system's); `None` for a PostgreSQL connection error, whose
        /// text may hold the password (see `reason`).
        #[source]
        source: Option<Cause>,
    },
    /// Durable mode: the journal could not be opened, read or started (see
    /// `Config::journal_path`).
    #[error("cannot open journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: String,
        /// What went wrong.
        reason: String,
        /// The underlying error, when it is one (the file system's, the journal file's).
        #[source]
        source: Option<Cause>,
    },
    /// The pipeline's threads could not be started.
    #[error("cannot start the pipeline: {reason}")]
    Start {
        /// What could not be started.
        reason: String,
        /// The operating system's error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Why an event was rejected. Rejected events are counted in `Stats::events_rejected` and never
/// reach the store.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum TrackError {
    /// A required name (command, metric, error type, ...) is empty.
    #[error("{field} is empty")]
    EmptyName {
        /// Which field.
        field: &'static str,
    },
    /// A string is longer than its limit ([`crate::MAX_NAME_BYTES`] for names, ids, tags;
    /// [`crate::MAX_MESSAGE_BYTES`] for an error message).
    #[error("{field} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number is NaN or infinite.
    #[error("{field} is not a finite number: {value}")]
    NotFinite {
        /// Which field.
        field: &'static str,
        /// The value.
        value: f64,
    },
    /// A duration or latency is negative.
    #[error("{field} is negative: {value}")]
    Negative {
        /// Which field.
        field: &'static str,
        /// The value.
        value: f64,
    },
    /// A text field contains a NUL byte (0x00): PostgreSQL cannot store it in `TEXT`, so the
    /// event is refused on every backend alike.
    #[error("{field} contains a NUL byte (0x00) at byte {at}; text fields cannot hold it")]
    NulByte {
        /// Which field.
        field: &'static str,
        /// Byte offset of the first NUL.
        at: usize,
    },
    /// More tags than [`crate::MAX_TAGS`].
    #[error("{count} tags; the limit is {max}")]
    TooManyTags {
        /// How many the event carries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same tag key twice (the JSON object stored could keep only one).
    #[error("tag key {key:?} is given twice")]
    DuplicateTag {
        /// The repeated key.
        key: String,
    },
    /// The timestamp is before 2000-01-01 or more than a day in the future.
    #[error("timestamp {ts_ms} ms is out of range (must be from 2000-01-01 to one day after now, {now_ms})")]
    TimestampOutOfRange {
        /// The event time, ms since the Unix epoch.
        ts_ms: i64,
        /// The pipeline clock's now.
        now_ms: i64,
    },
    /// A field the event's kind needs is absent (an event deserialised without it: a
    /// performance sample's value, a datastore operation's latency or store type).
    #[error("a {kind} event needs {field}; it has none")]
    Missing {
        /// The kind, as stored (`performance`, `datastore`).
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The pipeline is shutting down or stopped.
    #[error("the pipeline is shut down")]
    ShutDown,
    /// Durable mode: the journal has failed to commit for longer than `fsync_interval_ms` (or
    /// holds as many unwritten events as `max_queued_events` while failing), so the event
    /// could not be made durable and is refused rather than acknowledged. Events are accepted
    /// again as soon as a journal commit succeeds (it is retried every `fsync_interval_ms`).
    #[error("the journal cannot take events: {reason}")]
    JournalUnavailable {
        /// What the journal file answered (the SQLite error, e.g. a full disk), and since when.
        reason: String,
    },
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid configuration: {field} = {value}: {reason}")]
pub struct ConfigError {
    /// The field, as named in `Config` (for sampling rates, `sampling_rates["key"]`).
    pub field: String,
    /// The offending value, as text.
    pub value: String,
    /// What is required.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// A flush or query could not complete.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The store failed and the data is still held for a later retry.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// An internal actor did not answer (the pipeline is stopping or stopped).
    #[error("pipeline actor unavailable: {0}")]
    Unavailable(String),
    /// Durable mode: the journal is failing to commit (what was accepted before is in the
    /// store if the flush got through, but new events are not durable, and are refused once
    /// it has failed for longer than `fsync_interval_ms`).
    #[error("journal {path} is failing: {reason}")]
    Journal {
        /// The journal file.
        path: String,
        /// What the journal file answered (the SQLite error), and for how long.
        reason: String,
    },
    /// Forwarding mode (`Config::forward`): JetStream did not acknowledge everything accepted
    /// within `store_retry_budget_ms` (it is still retried), or the request needs a store
    /// (queries: read the workers' database).
    #[error("forwarding: {0}")]
    Forward(String),
}

/// A store operation failed: what failed, whether trying again can help, and the cause.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct StoreError {
    /// Whether a retry may succeed: the store is busy or locked, the connection was lost, the
    /// disk is full, a timeout. `false`: the store refused the data itself (a constraint, a
    /// value the column cannot hold), so the writer isolates the rows it refuses and puts them
    /// in the `quarantine` table instead of retrying.
    pub retryable: bool,
    /// The store itself is gone (its SQLite file deleted or replaced): no retry and no
    /// quarantine can help; what is held stays held.
    gone: bool,
    message: String,
    #[source]
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.retryable == other.retryable && self.message == other.message
    }
}

impl StoreError {
    /// A failure that may pass, without a typed cause (a pool that cannot hand out a
    /// connection, a file gone).
    pub(crate) fn retryable(message: impl Into<String>) -> Self {
        StoreError {
            retryable: true,
            gone: false,
            message: message.into(),
            source: None,
        }
    }

    /// The store is gone (see [`StoreError::is_gone`]).
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        StoreError {
            retryable: false,
            gone: true,
            message: message.into(),
            source: None,
        }
    }

    /// A query's error when what arrived before it cannot be written (this error): the store
    /// is unavailable. Keeps this error as its source.
    pub(crate) fn unavailable(self) -> Self {
        StoreError {
            retryable: self.retryable,
            gone: self.gone,
            message: format!(
                "the store is unavailable ({}); an answer now would miss what is held",
                self.message
            ),
            source: Some(std::sync::Arc::new(self)),
        }
    }

    /// The store itself is gone (its SQLite file was deleted or replaced under the running
    /// pipeline): neither a retry nor quarantining the rows can help.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Classifies a diesel error: refused data is not retryable, everything else is.
    pub(crate) fn from_diesel(e: diesel::result::Error) -> Self {
        StoreError {
            retryable: !Self::refuses(&e),
            gone: false,
            message: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        }
    }

    /// Whether `e` is the store refusing the data itself (a retry cannot help): classified by
    /// what the store reports, not only by the few kinds diesel names.
    ///
    /// Diesel names four SQLite extended result codes and a few PostgreSQL SQLSTATEs as
    /// [`diesel::result::DatabaseErrorKind`]s (all of them class 23 / SQLITE_CONSTRAINT: a
    /// refusal; a closed connection, a serialization failure, a read-only transaction: the
    /// store failing) and hands every other code over as its message only. Those messages
    /// split the same way: SQLite gives each primary result code that means "the store cannot
    /// write now" (BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR, CORRUPT, FULL, CANTOPEN,
    /// PROTOCOL, SCHEMA, NOTADB, ...) a fixed text ([`STORE_FAILURES`]), and PostgreSQL's
    /// classes 08, 40, 53, 55, 57 and 58 have the texts listed there too, and a table changed
    /// under the pipeline is told by [`SCHEMA_CHANGES`]. Any other error a
    /// statement got from a store that answers is the store refusing the row: SQLite's
    /// CONSTRAINT family (a trigger's `RAISE(ABORT, 'any text')` is
    /// SQLITE_CONSTRAINT_TRIGGER with the trigger's own text; so are `RAISE(FAIL)` and
    /// `RAISE(ROLLBACK)`, whose own rollback of the transaction makes diesel's ROLLBACK fail:
    /// `keeping_error` in `db::backend` returns the trigger's error, not that one), MISMATCH,
    /// TOOBIG, RANGE;
    /// PostgreSQL's classes 22 and 23 and P0001 (a trigger's `RAISE EXCEPTION`, with its own
    /// text). The rows are then isolated and quarantined, and the quarantine insert itself
    /// must succeed, so a store that fails every write is never taken for one that refuses.
    pub(crate) fn refuses(e: &diesel::result::Error) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match e {
            E::DatabaseError(
                K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation
                | K::RestrictViolation
                | K::ExclusionViolation,
                _,
            ) => true,
            E::DatabaseError(
                K::ClosedConnection
                | K::SerializationFailure
                | K::ReadOnlyTransaction
                | K::UnableToSendCommand,
                _,
            ) => false,
            E::DatabaseError(_, info) => !is_store_failure(info.message()),
            E::QueryBuilderError(_) | E::SerializationError(_) => true,
            _ => false,
        }
    }
}

/// The messages of errors that mean "the store cannot write now" rather than "this row is
/// refused", as `(text, exact)`: `exact` texts are the whole message, the others its start.
///
/// SQLite: `sqlite3_errstr` of each primary result code that is not a refusal (a unit test
/// checks them against the linked library), the two LOCKED texts that name the table, and the
/// SQLITE_ERROR texts of a broken transaction or schema (a table or column gone or renamed).
/// PostgreSQL (the server's English texts): classes 08 (connection), 40 (deadlock), 53 (disk
/// full, out of memory), 55 (lock not available), 57 (statement timeout, administrator
/// shutdown), 58 (I/O), and 42501/42P01/42703/42804 (a permission, a table or column gone or
/// changed: the store, not the row).
pub(crate) const STORE_FAILURES: &[(&str, bool)] = &[
    // SQLite primary result codes
    ("SQL logic error", true),
    ("unknown error", true),
    ("access permission denied", true),
    ("query aborted", true),
    ("abort due to ROLLBACK", true),
    ("database is locked", true),
    ("database table is locked", false),
    ("database schema is locked", false),
    ("out of memory", false),
    ("attempt to write a readonly database", true),
    ("interrupted", true),
    ("disk I/O error", true),
    ("database disk image is malformed", true),
    ("malformed database schema", false),
    ("unknown operation", true),
    ("database or disk is full", true),
    ("unable to open database file", true),
    ("locking protocol", true),
    ("database schema has changed", true),
    ("bad parameter or other API misuse", true),
    ("large file support is disabled", true),
    ("authorization denied", true),
    ("file is not a database", true),
    // SQLite's SQLITE_ERROR: the connection's transaction or the schema, not the row
    ("cannot commit", false),
    ("cannot rollback", false),
    ("cannot start a transaction", false),
    ("no such table", false),
    ("no such column", false),
    ("no such savepoint", false),
    // PostgreSQL
    ("could not ", false),
    ("deadlock detected", true),
    ("out of shared memory", false),
    ("canceling statement due to", false),
    ("terminating connection", false),
    ("the database system is", false),
    ("server closed the connection", false),
    ("no connection to the server", false),
    ("lost synchronization with server", false),
    ("SSL ", false),
    ("cannot execute", false),
    ("current transaction is aborted", false),
    ("permission denied", false),
    ("relation \"", false),
    ("sorry, too many clients", false),
    ("remaining connection slots", false),
];

/// A table changed under the running pipeline (a migration of another version, an operator,
/// a restore), as `(start, and somewhere after it)`: the store, not the row. SQLite: an INSERT
/// naming a column that was renamed or dropped, or giving more values than the table has
/// columns. PostgreSQL: 42703 and 42804 (a column gone, or of another type now). Two parts, so
/// a trigger's own text (`RAISE(ABORT, 'table is closed')`) stays a refusal.
pub(crate) const SCHEMA_CHANGES: &[(&str, &str)] = &[
    ("table ", " has no column named "),
    ("table ", " columns but "),
    ("column \"", "\" does not exist"),
    ("column \"", "\" is of type "),
];

/// Whether `message` is one of [`STORE_FAILURES`] or [`SCHEMA_CHANGES`].
fn is_store_failure(message: &str) -> bool {
    STORE_FAILURES.iter().any(|&(text, exact)| {
        if exact {
            message == text
        } else {
            message.starts_with(text)
        }
    }) || SCHEMA_CHANGES.iter().any(|&(start, then)| {
        message
            .strip_prefix(start)
            .is_some_and(|rest| rest.contains(then))
    })
}

impl From<actix::MailboxError> for PipelineError {
    fn from(e: actix::MailboxError) -> Self {
        PipelineError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's own text of a primary result code.
    fn errstr(code: i32) -> String {
        // SAFETY: sqlite3_errstr returns a static, NUL-terminated English text for any code.
        unsafe { std::ffi::CStr::from_ptr(libsqlite3_sys::sqlite3_errstr(code)) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn sqlite_result_codes_split_into_store_failures_and_refusals() {
        use libsqlite3_sys as ffi;
        let failing = [
            ffi::SQLITE_ERROR,
            ffi::SQLITE_PERM,
            ffi::SQLITE_ABORT,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_NOMEM,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_INTERRUPT,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_FULL,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_PROTOCOL,
            ffi::SQLITE_SCHEMA,
            ffi::SQLITE_MISUSE,
            ffi::SQLITE_NOLFS,
            ffi::SQLITE_AUTH,
            ffi::SQLITE_NOTADB,
        ];
        for code in failing {
            assert!(is_store_failure(&errstr(code)), "{code}: {}", errstr(code));
        }
        let refusing = [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_CONSTRAINT_TRIGGER,
            ffi::SQLITE_MISMATCH,
            ffi::SQLITE_TOOBIG,
            ffi::SQLITE_RANGE,
        ];
        for code in refusing {
            assert!(!is_store_failure(&errstr(code)), "{code}: {}", errstr(code));
        }
    }

    #[test]
    fn what_the_store_refuses_is_told_from_a_store_that_fails() {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        let db = |kind, msg: &str| E::DatabaseError(kind, Box::new(msg.to_string()));
        let refused = [
            db(K::Unknown, "refused by policy"), // a trigger's RAISE, SQLite or PostgreSQL
            db(K::CheckViolation, "new row violates check constraint \"c\""),
            db(K::Unknown, "value too long for type character varying(3)"),
            db(K::Unknown, "datatype mismatch"),
            db(K::Unknown, "string or blob too big"),
            db(K::Unknown, "table is closed for the night"), // a trigger's own words
            db(K::Unknown, "column \"name\" must not say that"),
        ];
        for e in &refused {
            assert!(StoreError::refuses(e), "{e}");
        }
        let failing = [
            db(K::Unknown, "database or disk is full"),
            db(K::Unknown, "database table is locked: events"),
            db(
                K::Unknown,
                "could not extend file \"base/1/2\": No space left on device",
            ),
            db(K::Unknown, "canceling statement due to statement timeout"),
            db(K::Unknown, "deadlock detected"),
            db(K::Unknown, "out of shared memory"), // 53200: max_locks_per_transaction
            db(K::ClosedConnection, "refused by policy"),
            // a table changed under the pipeline, SQLite then PostgreSQL
            db(K::Unknown, "table events has no column named duration_ms"),
            db(
                K::Unknown,
                "table events has 9 columns but 10 values were supplied",
            ),
            db(
                K::Unknown,
                "column \"duration_ms\" of relation \"events\" does not exist",
            ),
            db(
                K::Unknown,
                "column \"ts_ms\" is of type text but expression is of type bigint",
            ),
            E::BrokenTransactionManager,
        ];
        for e in &failing {
            assert!(!StoreError::refuses(e), "{e}");
        }
    }
}
