//! Everything that touches the store: the schema, row types, the SQL for both backends, and the
//! writer actor.

pub(crate) mod event_insert;
pub(crate) mod models;
pub(crate) mod outage;
pub(crate) mod retention;
pub(crate) mod rollups;
/// The diesel schema shared by both backends.
#[allow(missing_docs)]
pub mod schema;
pub(crate) mod store;
pub(crate) mod writer;

pub use store::{Store, RETENTION_LOCK_KEY};
