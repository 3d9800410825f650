//! What differs between the two backends, as traits on their connection types: the write
//! transaction, the bulk insert of `events` rows, and the locks of the roll-up and pruning
//! jobs.

use diesel::prelude::*;

use crate::db::event_insert::{EventChunk, EVENT_CHUNK};
use crate::db::models::NewEventRow;

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
pub(crate) const ROLLUP_LOCK_KEY: i64 = 0x6576_6e74_6261_7463;

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
