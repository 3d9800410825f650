//! Everything that touches the store: the schema, row types, the SQL for both backends, and the
//! writer actor.

pub(crate) mod backend;
pub(crate) mod bookkeeping;
pub(crate) mod conn;
pub(crate) mod event_insert;
pub(crate) mod forward_sql;
pub(crate) mod location;
pub(crate) mod models;
pub(crate) mod open;
pub(crate) mod outage;
pub(crate) mod pool;
pub(crate) mod prune_sql;
pub(crate) mod rollup_sql;
/// The diesel schema shared by both backends.
#[allow(missing_docs)]
pub mod schema;
pub(crate) mod users_sql;
pub(crate) mod write_sql;
pub(crate) mod writer;

#[cfg(any(test, feature = "testing"))]
pub use backend::RETENTION_LOCK_KEY;
pub use location::Store;
