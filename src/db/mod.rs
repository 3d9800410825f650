//! Everything that touches the store: the schema, row types, the SQL for both backends, and the
//! writer actor.

/// The condition "this row is of series `key`" on a table keyed by `metric`, `context_key`,
/// `labels_key` and `kind` (`metric_windows`, `metric_rollups`, `rollup_pending`), for
/// `.filter(..)`.
macro_rules! of_series {
    ($table:ident, $key:expr) => {
        $table::metric
            .eq(&$key.metric)
            .and($table::context_key.eq($key.context_key()))
            .and($table::labels_key.eq($key.labels_key()))
            .and($table::kind.eq($key.kind.as_str()))
    };
}

/// The upsert of a `metric_windows` row (`$row`: a [`models::NewWindowRow`]) on its uniqueness
/// key (one row per instance, series and window start), replacing the stored one; the caller
/// may narrow the update with `.filter(..)` before `.execute(..)`. A [`cached::Upsert`], so
/// diesel keeps it prepared.
macro_rules! upsert_window {
    ($row:expr) => {{
        use crate::db::schema::metric_windows as w;
        use diesel::Column;
        crate::db::cached::Upsert::new(
            diesel::insert_into(w::table).values($row),
            &[
                w::instance_id::NAME,
                w::metric::NAME,
                w::context_key::NAME,
                w::labels_key::NAME,
                w::kind::NAME,
                w::window_start_ms::NAME,
            ],
            $row,
        )
    }};
}

/// The upsert of an `error_counts` row (`$row`: a [`models::NewErrorCountRow`]) on its
/// uniqueness key, as [`upsert_window`].
macro_rules! upsert_error_count {
    ($row:expr) => {{
        use crate::db::schema::error_counts as e;
        use diesel::Column;
        crate::db::cached::Upsert::new(
            diesel::insert_into(e::table).values($row),
            &[
                e::instance_id::NAME,
                e::error_hash::NAME,
                e::window_start_ms::NAME,
            ],
            $row,
        )
    }};
}

pub(crate) mod backend;
pub(crate) mod bookkeeping;
pub(crate) mod cached;
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
