//! The store side of retention (see [`crate::retention`]): one chunk of a pruning round, a
//! short transaction that deletes at most `batch_size` rows of one table older than a cut-off,
//! under the retention lock; and the oldest pending roll-up marks a round is planned with.
//!
//! Each chunk finds its rows through an index on the time column (migrations
//! `retention_indexes`, `quarantine_retention` and `users_retention`; `events` through
//! `events_kind_ts` on SQLite and its BRIN index on PostgreSQL), so its cost is that of the rows
//! it deletes, never a scan of the table.

use diesel::prelude::*;

use crate::db::backend::{PruneLock, WriteTxn};
use crate::event::EventKind;
use crate::retention::{OldestPending, Table};
use crate::rollup::Resolution;

/// Every [`EventKind`]: the `events` statement names them all (`kind IN (...)`), so that on
/// SQLite it is a range of the `events_kind_ts (kind, ts_ms)` index per kind instead of a
/// scan (an index on `ts_ms` alone would cost every insert).
const EVENT_KINDS: [EventKind; 8] = EventKind::ALL;

/// The SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The statement deleting at most `batch_size` rows of `table` whose time is below `cutoff`:
/// a subquery picks them through the time index, the delete finds them by key. On PostgreSQL
/// the keys go as an array (`= ANY(ARRAY(...))`), which the planner looks up in the primary key
/// (or by `ctid`, a TID scan), where `IN (SELECT ...)` was planned as a hash join over a scan of
/// the whole table. Only numbers and the crate's own constants are spliced into the text.
pub(crate) fn delete_statement(
    table: Table,
    cutoff: i64,
    batch_size: usize,
    dialect: Dialect,
) -> String {
    let (name, filter) = match table {
        Table::Events => {
            let kinds: Vec<String> = EVENT_KINDS
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            (
                "events",
                format!("kind IN ({}) AND ts_ms < {cutoff}", kinds.join(", ")),
            )
        }
        Table::ErrorCounts => ("error_counts", format!("window_start_ms < {cutoff}")),
        Table::Patterns => ("patterns", format!("window_start_ms < {cutoff}")),
        Table::Windows => ("metric_windows", format!("window_start_ms < {cutoff}")),
        Table::Quarantine => ("quarantine", format!("quarantined_at_ms < {cutoff}")),
        Table::HourRollups | Table::DayRollups | Table::WeekRollups => {
            ("metric_rollups", resolution_before(table, cutoff))
        }
        Table::UserWindows | Table::UserHours | Table::UserDays | Table::UserWeeks => {
            ("command_users", resolution_before(table, cutoff))
        }
    };
    // error_counts and command_users have no id column: on SQLite the primary key (the rowid
    // of command_users, whose key has five columns), on PostgreSQL the row's address
    let key = match (name, dialect) {
        ("error_counts", Dialect::Sqlite) => "(instance_id, error_hash, window_start_ms)",
        ("command_users", Dialect::Sqlite) => "rowid",
        ("error_counts" | "command_users", Dialect::Postgres) => "ctid",
        _ => "id",
    };
    let chosen = format!(
        "SELECT {} FROM {name} WHERE {filter} LIMIT {batch_size}",
        key.trim_matches(|c| c == '(' || c == ')')
    );
    match dialect {
        Dialect::Sqlite => format!("DELETE FROM {name} WHERE {key} IN ({chosen})"),
        Dialect::Postgres => format!("DELETE FROM {name} WHERE {key} = ANY(ARRAY({chosen}))"),
    }
}

/// The filter of a table with a `resolution` column: this entry's rows below `cutoff`.
fn resolution_before(table: Table, cutoff: i64) -> String {
    let res = table.resolution().map_or("", Resolution::as_str);
    format!("resolution = '{res}' AND window_start_ms < {cutoff}")
}

macro_rules! retention_backend {
    ($module:ident, $Conn:ty, $dialect:expr) => {
        pub(crate) mod $module {
            use super::*;
            use crate::db::schema::rollup_pending;

            /// The oldest pending mark of each roll-up level.
            pub(crate) fn oldest_pending(c: &mut $Conn) -> QueryResult<OldestPending> {
                let rows: Vec<(String, Option<i64>)> = rollup_pending::table
                    .group_by(rollup_pending::resolution)
                    .select((
                        rollup_pending::resolution,
                        diesel::dsl::min(rollup_pending::bucket_start_ms),
                    ))
                    .load(c)?;
                let mut out = OldestPending::default();
                for (res, oldest) in rows {
                    match res.as_str() {
                        "hour" => out.hour = oldest,
                        "day" => out.day = oldest,
                        "week" => out.week = oldest,
                        _ => {}
                    }
                }
                Ok(out)
            }

            /// One chunk, one transaction: deletes at most `batch_size` rows of `table` older
            /// than `cutoff` and returns how many it deleted; `None` (nothing deleted) when
            /// another instance holds the retention lock.
            pub(crate) fn prune_chunk(
                c: &mut $Conn,
                table: Table,
                cutoff: i64,
                batch_size: usize,
            ) -> QueryResult<Option<u64>> {
                let statement = delete_statement(table, cutoff, batch_size, $dialect);
                c.write_txn(|c| {
                    if !c.try_prune_lock()? {
                        return Ok(None);
                    }
                    let deleted = diesel::sql_query(statement).execute(c)?;
                    Ok(Some(deleted as u64))
                })
            }
        }
    };
}

retention_backend!(sqlite, diesel::sqlite::SqliteConnection, Dialect::Sqlite);
retention_backend!(pg, diesel::pg::PgConnection, Dialect::Postgres);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open::SQLITE_MIGRATIONS;
    use diesel::sql_types::Text;
    use diesel_migrations::MigrationHarness;

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// A new variant of [`EventKind`] stops this from compiling until [`EVENT_KINDS`] and this
    /// list are brought up to date: an unlisted kind's rows would never be pruned.
    #[test]
    fn every_event_kind_is_listed() {
        let position = |k: EventKind| match k {
            EventKind::Command => 0,
            EventKind::Performance => 1,
            EventKind::Datastore => 2,
            EventKind::Error => 3,
            EventKind::Engagement => 4,
            EventKind::Custom => 5,
            EventKind::Counter => 6,
            EventKind::Gauge => 7,
        };
        for (i, k) in EVENT_KINDS.into_iter().enumerate() {
            assert_eq!(position(k), i);
        }
    }

    /// On SQLite every chunk finds its rows through an index: no full scan of the table, so a
    /// chunk holds the write lock for the rows it deletes, not for the table's size.
    #[test]
    fn every_chunk_is_an_index_search_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let c = &mut SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        for table in Table::ALL {
            let statement = delete_statement(table, 1_764_000_000_000, 1000, Dialect::Sqlite);
            let plan: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
                .load(c)
                .unwrap();
            let plan: Vec<String> = plan.into_iter().map(|l| l.detail).collect();
            assert!(
                plan.iter()
                    .any(|l| l.starts_with("SEARCH") && l.contains("INDEX")),
                "{table:?}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN")),
                "{table:?} scans a table: {plan:?}"
            );
        }
    }

    /// PostgreSQL plans `id IN (SELECT ...)` as a hash join over a scan of the whole table;
    /// an array of keys is looked up in the primary key (or by `ctid`). Checked with `EXPLAIN`
    /// on PostgreSQL 15 and 200,000 events: Index Scan using events_pkey, Tid Scan; and 200,000
    /// `command_users` rows: Bitmap Index Scan on command_users_resolution_start, Tid Scan (a
    /// Seq Scan without that index).
    #[test]
    fn postgres_statements_look_their_rows_up_by_key() {
        let pg = |t| delete_statement(t, 7, 100, Dialect::Postgres);
        assert_eq!(
            pg(Table::Windows),
            "DELETE FROM metric_windows WHERE id = ANY(ARRAY(SELECT id FROM metric_windows \
             WHERE window_start_ms < 7 LIMIT 100))"
        );
        assert_eq!(
            pg(Table::ErrorCounts),
            "DELETE FROM error_counts WHERE ctid = ANY(ARRAY(SELECT ctid FROM error_counts \
             WHERE window_start_ms < 7 LIMIT 100))"
        );
        assert_eq!(
            delete_statement(Table::DayRollups, 7, 100, Dialect::Sqlite),
            "DELETE FROM metric_rollups WHERE id IN (SELECT id FROM metric_rollups \
             WHERE resolution = 'day' AND window_start_ms < 7 LIMIT 100)"
        );
        assert_eq!(
            pg(Table::UserHours),
            "DELETE FROM command_users WHERE ctid = ANY(ARRAY(SELECT ctid FROM command_users \
             WHERE resolution = 'hour' AND window_start_ms < 7 LIMIT 100))"
        );
        assert_eq!(
            delete_statement(Table::UserWindows, 7, 100, Dialect::Sqlite),
            "DELETE FROM command_users WHERE rowid IN (SELECT rowid FROM command_users \
             WHERE resolution = 'window' AND window_start_ms < 7 LIMIT 100)"
        );
    }

    #[test]
    fn the_oldest_pending_mark_of_each_level() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marks.db");
        let c = &mut SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        assert_eq!(sqlite::oldest_pending(c).unwrap(), OldestPending::default());
        c.batch_execute(
            "INSERT INTO rollup_pending (resolution, metric, context_key, bucket_start_ms,
                 instance_id, gen) VALUES ('hour', 'a', '', 7200, 'i', 1),
                 ('hour', 'b', 'api', 3600, 'j', 4), ('day', 'a', '', 86400, '', 1);",
        )
        .unwrap();
        assert_eq!(
            sqlite::oldest_pending(c).unwrap(),
            OldestPending {
                hour: Some(3600),
                day: Some(86400),
                week: None
            }
        );
    }

    #[test]
    fn statements_delete_old_rows_only_and_at_most_a_batch() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.db");
        let c = &mut SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        // five error counts at times 1..=5, two rows each of another table's kind
        for t in 1..=5 {
            c.batch_execute(&format!(
                "INSERT INTO error_counts VALUES ('i', 'h{t}', 'timeout', NULL, {t}, 1, {t}, {t});
                 INSERT INTO error_counts VALUES ('j', 'h{t}', 'timeout', NULL, {t}, 1, {t}, {t});"
            ))
            .unwrap();
        }
        let mut prune = |cutoff, n| sqlite::prune_chunk(c, Table::ErrorCounts, cutoff, n).unwrap();
        assert_eq!(prune(4, 4), Some(4), "a full chunk");
        assert_eq!(prune(4, 4), Some(2), "the rest below the cut-off");
        assert_eq!(prune(4, 4), Some(0));
        assert_eq!(prune(6, 100), Some(4));
        // distinct users: one resolution at a time, rows of the others untouched
        for t in 1..=5 {
            for res in ["window", "hour"] {
                c.batch_execute(&format!(
                    "INSERT INTO command_users VALUES ('i', 'help', '', '{res}', {t}, 1, X'00', 1);"
                ))
                .unwrap();
            }
        }
        let mut prune = |table, cutoff| sqlite::prune_chunk(c, table, cutoff, 100).unwrap();
        assert_eq!(prune(Table::UserWindows, 4), Some(3));
        assert_eq!(prune(Table::UserDays, 6), Some(0));
        assert_eq!(prune(Table::UserHours, 3), Some(2));
        use crate::db::users_sql::command_users as cu;
        let left: Vec<(String, i64)> = cu::table
            .select((cu::resolution, cu::window_start_ms))
            .order((cu::resolution, cu::window_start_ms))
            .load(c)
            .unwrap();
        let expected: Vec<(String, i64)> = [("hour", 3), ("hour", 4), ("hour", 5)]
            .into_iter()
            .chain([("window", 4), ("window", 5)])
            .map(|(r, t)| (r.to_string(), t))
            .collect();
        assert_eq!(left, expected);
    }
}
