//! A pooled connection of either backend ([`Conn`]) and the store operations on it, each
//! dispatched to the SQL compiled for its backend.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, PooledConnection};

use crate::db::bookkeeping::*;
use crate::db::pool::{Pool, StoreWatch};
use crate::db::write_sql::{pg, sqlite};
use crate::error::StoreError;
use crate::messages::{Pattern, QueryPatterns, QueryWindows};
use crate::model::{SeriesKey, WriteBatch};
use crate::window_stats::WindowStats;

/// A pooled connection of either backend.
pub(crate) struct Conn {
    pub(crate) backend: Backend,
}

pub(crate) enum Backend {
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
    /// and servers are written as the records carry them (pseudonymised at the front door).
    pub(crate) fn write_batch(
        &mut self,
        instance: &str,
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

    /// The windows (or buckets) a query asks for; with [`QueryWindows::any_labels`], each
    /// label set that holds the labels asked for read apart and merged per start.
    pub(crate) fn query_windows(&mut self, q: &QueryWindows) -> QueryResult<Vec<WindowStats>> {
        if q.any_labels {
            let mut parts = Vec::new();
            for key in self.label_sets(q)? {
                parts.extend(self.query_windows(&q.exactly(&key))?);
            }
            return Ok(WindowStats::merge_by_start(q.key(), parts));
        }
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::query_windows(c, q),
            Backend::Pg(c) => pg::query_windows(c, q),
        }
    }

    /// The stored series a query reads (its metric and context, the label sets that hold the
    /// labels asked for), in key order.
    pub(crate) fn label_sets(&mut self, q: &QueryWindows) -> QueryResult<Vec<SeriesKey>> {
        let context_key = q.context.as_deref().unwrap_or("");
        let kind = q.kind.as_str();
        let sets = match &mut self.backend {
            Backend::Sqlite(c) => sqlite::label_sets(c, &q.metric, context_key, kind, q.resolution),
            Backend::Pg(c) => pg::label_sets(c, &q.metric, context_key, kind, q.resolution),
        }?;
        let mut keys: Vec<SeriesKey> = sets
            .iter()
            .map(|labels| {
                SeriesKey::from_columns(q.metric.clone(), context_key.into(), labels, kind)
            })
            .filter(|k| q.reads(k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Rolls up the buckets closed by `now_ms` (see [`crate::rollup`]).
    pub(crate) fn roll_up(
        &mut self,
        now_ms: i64,
        lateness_ms: i64,
        run: &mut crate::db::rollup_sql::RollupRun,
    ) -> QueryResult<()> {
        match &mut self.backend {
            Backend::Sqlite(c) => {
                crate::db::rollup_sql::sqlite::roll_up(c, now_ms, lateness_ms, run)
            }
            Backend::Pg(c) => crate::db::rollup_sql::pg::roll_up(c, now_ms, lateness_ms, run),
        }
    }

    /// The oldest pending roll-up mark of each level (see [`crate::retention`]).
    pub(crate) fn oldest_pending(&mut self) -> QueryResult<crate::retention::OldestPending> {
        match &mut self.backend {
            Backend::Sqlite(c) => crate::db::prune_sql::sqlite::oldest_pending(c),
            Backend::Pg(c) => crate::db::prune_sql::pg::oldest_pending(c),
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
        use crate::db::prune_sql::{pg, sqlite};
        match &mut self.backend {
            Backend::Sqlite(c) => sqlite::prune_chunk(c, table, cutoff, batch_size),
            Backend::Pg(c) => pg::prune_chunk(c, table, cutoff, batch_size),
        }
    }

    /// Every series with a stored window (see [`crate::StoreReader::series`]).
    pub(crate) fn stored_series(&mut self) -> QueryResult<Vec<crate::db::models::StoredSeriesRow>> {
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

/// Distinct users (`command_users`, SQL in `crate::db::users_sql`).
impl Conn {
    /// The distinct users a query asks for: the stored rows of every instance merged with
    /// `open` (this instance's sketches not yet written), per window or bucket start.
    pub(crate) fn query_users(
        &mut self,
        q: &crate::messages::QueryUsers,
        open: Vec<crate::cores::users::UserWindow>,
    ) -> QueryResult<Vec<crate::users::UserCount>> {
        let stored = match &mut self.backend {
            Backend::Sqlite(c) => crate::db::users_sql::sqlite::read_users(c, q)?,
            Backend::Pg(c) => crate::db::users_sql::pg::read_users(c, q)?,
        };
        let open = crate::users::open_parts(open, q.resolution, q.from_ms, q.to_ms);
        Ok(crate::users::count_by_start(stored.into_iter().chain(open)))
    }

    /// The commands with stored distinct users.
    pub(crate) fn user_commands(&mut self) -> QueryResult<Vec<String>> {
        match &mut self.backend {
            Backend::Sqlite(c) => crate::db::users_sql::sqlite::user_commands(c),
            Backend::Pg(c) => crate::db::users_sql::pg::user_commands(c),
        }
    }
}
