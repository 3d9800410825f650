//! Errors: one `thiserror` enum per audience.
//!
//! - [`Error`]: `start` failed (bad configuration, a store that cannot be opened or migrated).
//! - [`TrackError`]: an event was rejected; the message says what is wrong with it.
//! - [`ConfigError`]: a configuration value is invalid; names the field and the value.
//! - [`PipelineError`]: a flush or query could not complete (the store failed, or an actor is gone).

use thiserror::Error;

/// `Result` with the crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`crate::start`] failed.
#[derive(Debug, Error)]
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
        /// The underlying error, as text.
        reason: String,
    },
    /// Durable mode: the journal could not be opened, read or started (see
    /// `Config::journal_path`).
    #[error("cannot open journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The pipeline's threads could not be started.
    #[error("cannot start the pipeline: {0}")]
    Start(String),
}

/// Why an event was rejected. Rejected events are counted in `Stats::events_rejected` and never
/// reach the store.
#[derive(Debug, Clone, PartialEq, Error)]
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
pub enum PipelineError {
    /// The store failed and the data is still held for a later retry.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// An internal actor did not answer (the pipeline is stopping or stopped).
    #[error("pipeline actor unavailable: {0}")]
    Unavailable(String),
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

    /// Whether `e` is the store refusing the data itself (a retry cannot help).
    pub(crate) fn refuses(e: &diesel::result::Error) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        let retryable = match e {
            E::DatabaseError(
                K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation,
                _,
            ) => false,
            E::DatabaseError(_, info) => !refuses_data(info.message()),
            E::QueryBuilderError(_) | E::SerializationError(_) => false,
            _ => true,
        };
        !retryable
    }
}

/// Messages of SQLite and PostgreSQL errors that refuse a value rather than fail for a while.
fn refuses_data(message: &str) -> bool {
    const REFUSALS: [&str; 7] = [
        "constraint failed",
        "violates",
        "invalid byte sequence",
        "out of range",
        "datatype mismatch",
        "value too long",
        "invalid input syntax",
    ];
    let m = message.to_ascii_lowercase();
    REFUSALS.iter().any(|r| m.contains(r))
}

impl From<actix::MailboxError> for PipelineError {
    fn from(e: actix::MailboxError) -> Self {
        PipelineError::Unavailable(e.to_string())
    }
}
