//! Upserts whose prepared statement diesel keeps ([`Upsert`]).
//!
//! diesel 2.3 prepares an `INSERT ... ON CONFLICT ... DO UPDATE` built with `on_conflict` again
//! at every execution: `DoUpdate` declares itself unsafe to cache (its changeset may turn out
//! empty, which makes the statement `DO NOTHING`), and `OnConflictValues` has no static query
//! id. The writer runs one such upsert per window, per error count, per distinct-users row and
//! per pending roll-up mark, so each row of a write paid a `sqlite3_prepare_v3` (a parse on
//! PostgreSQL) of a statement of up to 30 columns (`a_writes_statements_are_all_kept_prepared`
//! below fails on that). [`Upsert`] writes the same SQL from the same diesel parts (the
//! `INSERT`, the changeset, the `WHERE`), without the part that forbids the cache.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::QueryResult;

/// `insert ON CONFLICT (target) DO UPDATE SET set [WHERE filter]`: the SQL diesel's
/// `.on_conflict(target).do_update().set(set)[.filter(filter)]` writes, which diesel keeps
/// prepared, keyed by its text (the key diesel uses for a statement without a static query
/// id: the same text reuses the same statement, and a changeset that skips a `None` column
/// is another text, prepared and kept on its own; a window's upsert has at most 2^3 texts, its
/// `context`, `last_value` and `last_ts_ms` being optional).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upsert<I, C, W> {
    /// `insert_into(table).values(row)`: cached by diesel as long as its values are (no
    /// `DEFAULT`, which every insert row here rules out with `treat_none_as_default_value`).
    insert: I,
    /// The uniqueness key the conflict is on, column names.
    target: &'static [&'static str],
    /// The changeset (`AsChangeset::as_changeset`); never empty here (every row has
    /// non-optional columns), so the statement always updates.
    set: C,
    /// The condition on the stored row for the update to happen, if any.
    filter: Option<W>,
}

impl<I, C> Upsert<I, C, ()> {
    /// The upsert of `insert` on `target`, setting `set`.
    pub(crate) fn new<S: diesel::AsChangeset<Changeset = C>>(
        insert: I,
        target: &'static [&'static str],
        set: S,
    ) -> Self {
        Upsert {
            insert,
            target,
            set: set.as_changeset(),
            filter: None,
        }
    }

    /// Updates only where `filter` holds of the stored row (diesel's `.filter` on an upsert).
    pub(crate) fn filter<W>(self, filter: W) -> Upsert<I, C, W> {
        Upsert {
            insert: self.insert,
            target: self.target,
            set: self.set,
            filter: Some(filter),
        }
    }
}

impl<I, C, W> QueryId for Upsert<I, C, W> {
    /// No static id: the cache key is the SQL text.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB, I, C, W> QueryFragment<DB> for Upsert<I, C, W>
where
    DB: Backend,
    I: QueryFragment<DB>,
    C: QueryFragment<DB>,
    W: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(" ON CONFLICT (");
        for (i, column) in self.target.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") DO UPDATE SET ");
        self.set.walk_ast(out.reborrow())?;
        if let Some(filter) = &self.filter {
            out.push_sql(" WHERE ");
            filter.walk_ast(out.reborrow())?;
        }
        Ok(())
    }
}

impl<I, C, W, Conn> diesel::RunQueryDsl<Conn> for Upsert<I, C, W> {}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use diesel::connection::{Connection, InstrumentationEvent};

    use crate::cores::users::UserWindow;
    use crate::db::bookkeeping::{Bases, BatchMark, Txn};
    use crate::db::open::open;
    use crate::db::pool::Pool;
    use crate::db::write_sql::sqlite;
    use crate::db::Store;
    use crate::model::{ErrorCountSnapshot, SeriesKey, WindowSnapshot, WriteBatch};
    use crate::stats::hll::UserSketch;
    use crate::stats::window::{SeriesKind, WindowState};

    const T0: i64 = 1_764_000_000_000;

    /// What a connection did: the SQL text of each statement run, and of each one diesel put
    /// in its prepared-statement cache.
    #[derive(Default)]
    struct Seen {
        run: Vec<String>,
        cached: Vec<String>,
    }

    /// A batch with `n` windows of distinct series (with and without a context, labels, a
    /// gauge's last value), `n` error counts (with and without a category) and `n` users
    /// windows.
    fn batch(n: usize, epoch: u64) -> WriteBatch {
        let mut out = WriteBatch::default();
        for i in 0..n {
            let kind = [
                SeriesKind::Distribution,
                SeriesKind::Counter,
                SeriesKind::Gauge,
            ][i % 3];
            let key = SeriesKey::new(format!("m{i}"), (i % 2 == 0).then_some("ctx"))
                .with_labels([("host".to_string(), format!("h{}", i % 4))].into())
                .with_kind(kind);
            let mut state = WindowState::of_kind(kind);
            state.observe_at(i as f64 + 0.5, 1.0, T0 + i as i64);
            out.windows.push(WindowSnapshot {
                key,
                start_ms: T0,
                end_ms: T0 + 60_000,
                epoch,
                state,
                is_final: false,
            });
            out.errors.push(ErrorCountSnapshot {
                error_hash: format!("e{i}"),
                error_type: "Timeout".into(),
                error_category: (i % 2 == 0).then(|| "network".to_string()),
                start_ms: T0,
                epoch,
                count: 1,
                first_ts_ms: T0,
                last_ts_ms: T0 + 1,
                is_final: false,
            });
            let mut sketch = UserSketch::new();
            sketch.insert(format!("u{i}").as_bytes());
            out.users.push(UserWindow {
                command: format!("c{i}"),
                context: String::new(),
                start_ms: T0,
                window_ms: 60_000,
                sketch,
            });
        }
        out
    }

    #[test]
    fn a_writes_statements_are_all_kept_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let Pool::Sqlite(pool) =
            open(&Store::sqlite(dir.path().join("c.db")), Duration::ZERO).unwrap()
        else {
            unreachable!("an SQLite store opens an SQLite pool")
        };
        let c = &mut *pool.get().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = Arc::clone(&seen);
        c.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            let mut log = log.lock().unwrap();
            match event {
                InstrumentationEvent::StartQuery { query, .. } => {
                    let text = query.to_string();
                    let sql = text.split(" -- binds: ").next().unwrap_or_default();
                    log.run.push(sql.to_string());
                }
                InstrumentationEvent::CacheQuery { sql, .. } => log.cached.push(sql.to_string()),
                _ => {}
            }
        });
        let mut bases = Bases::default();
        let n = 12;
        for seq in 1..=3 {
            let mark = BatchMark { run_id: 7, seq };
            sqlite::write_batch(c, "unit", &batch(n, 1), mark, &mut bases, Txn::Own).unwrap();
        }
        let seen = seen.lock().unwrap();
        let cached: HashSet<&str> = seen.cached.iter().map(String::as_str).collect();
        let texts: HashSet<&str> = seen.run.iter().map(String::as_str).collect();
        let upserts: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|sql| sql.contains("ON CONFLICT"))
            .collect();
        // the window, error count, users, pending mark and batch mark upserts
        for table in [
            "metric_windows",
            "error_counts",
            "command_users",
            "rollup_pending",
            "writer_runs",
        ] {
            assert!(
                upserts
                    .iter()
                    .any(|sql| sql.contains(&format!("`{table}`"))),
                "an upsert of {table} ran: {upserts:#?}"
            );
        }
        let per_row = 3 * n;
        let ran = |sql: &str| seen.run.iter().filter(|s| *s == sql).count();
        for sql in &upserts {
            assert!(cached.contains(sql), "kept prepared: {sql}");
        }
        assert!(
            seen.cached.len() <= 20,
            "each text prepared once ({} statements ran, {} prepared and kept): {:#?}",
            seen.run.len(),
            seen.cached.len(),
            seen.cached
        );
        assert!(
            upserts.iter().map(|sql| ran(sql)).sum::<usize>() >= 3 * per_row,
            "the upserts ran for every row"
        );
        // every statement of the writes is kept: none is prepared per execution
        let not_kept: Vec<&&str> = texts.iter().filter(|sql| !cached.contains(*sql)).collect();
        assert!(
            not_kept
                .iter()
                .all(|sql| sql.starts_with("BEGIN") || sql.starts_with("COMMIT")),
            "only transaction control runs uncached: {not_kept:#?}"
        );
    }

    /// The window upsert as diesel's `on_conflict` builds it (what `upsert_window!` was).
    macro_rules! diesel_upsert {
        ($row:expr) => {{
            use crate::db::schema::metric_windows as w;
            diesel::insert_into(w::table)
                .values($row)
                .on_conflict((
                    w::instance_id,
                    w::metric,
                    w::context_key,
                    w::labels_key,
                    w::kind,
                    w::window_start_ms,
                ))
                .do_update()
                .set($row)
        }};
    }

    #[test]
    fn the_upsert_is_the_sql_and_binds_of_diesels_on_conflict() {
        use diesel::pg::Pg;
        use diesel::query_dsl::methods::FilterDsl;
        use diesel::sqlite::Sqlite;
        use diesel::upsert::excluded;
        use diesel::ExpressionMethods;

        use crate::db::models::NewWindowRow;
        use crate::db::schema::metric_windows;

        let windows = batch(6, 1).windows;
        for w in &windows {
            // with and without a context and a gauge's last value
            let row = NewWindowRow::new("unit", w, &w.state);
            let ours = upsert_window!(&row);
            let theirs = diesel_upsert!(&row);
            assert_eq!(
                diesel::debug_query::<Sqlite, _>(&ours).to_string(),
                diesel::debug_query::<Sqlite, _>(&theirs).to_string()
            );
            assert_eq!(
                diesel::debug_query::<Pg, _>(&ours).to_string(),
                diesel::debug_query::<Pg, _>(&theirs).to_string()
            );
            let newer = metric_windows::count.lt(excluded(metric_windows::count));
            assert_eq!(
                diesel::debug_query::<Pg, _>(&upsert_window!(&row).filter(newer)).to_string(),
                diesel::debug_query::<Pg, _>(&FilterDsl::filter(diesel_upsert!(&row), newer))
                    .to_string()
            );
        }
    }
}
