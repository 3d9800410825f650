//! What differs between the two backends, as traits on their connection types: the write
//! transaction, the bulk insert of `events` rows, and the locks of the roll-up and pruning
//! jobs.

use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;

use crate::db::event_insert::{EventChunk, EVENT_CHUNK};
use crate::db::models::NewEventRow;

/// Per-backend write transaction: SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so
/// a busy database fails at the start instead of half-way through.
///
/// A failed body's own error is returned, also when the store ended the transaction itself
/// ([`keeping_error`]).
pub(crate) trait WriteTxn: R2D2Connection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>;
}

impl WriteTxn for SqliteConnection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        keeping_error(self, |c, f| c.immediate_transaction(f), f)
    }
}

impl WriteTxn for PgConnection {
    fn write_txn<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        keeping_error(self, |c, f| c.transaction(f), f)
    }
}

/// Runs `f` in the transaction (or savepoint) `run` opens, so that when `f` fails its own
/// error is returned even if diesel's ROLLBACK then fails because the store already ended the
/// transaction itself.
///
/// SQLite rolls back the whole transaction on some errors (a trigger's `RAISE(ROLLBACK, ...)`;
/// some FULL, IOERR, BUSY and NOMEM errors). Diesel's ROLLBACK (or `ROLLBACK TO SAVEPOINT`)
/// then fails with `cannot rollback - no transaction is active` (`no such savepoint`), and
/// diesel returns that error in place of the statement's: a trigger's refusal would be taken
/// for a failing store. Diesel also resets its transaction state then (SQLite is back in
/// autocommit), so the connection is clean: [`txn_ended`] tells it. A rollback that failed
/// with a transaction still open leaves diesel's transaction manager broken (r2d2 discards the
/// connection) and its error is returned, as diesel does.
pub(crate) fn keeping_error<C: R2D2Connection, T>(
    c: &mut C,
    run: impl FnOnce(&mut C, &mut dyn FnMut(&mut C) -> QueryResult<T>) -> QueryResult<T>,
    f: impl FnOnce(&mut C) -> QueryResult<T>,
) -> QueryResult<T> {
    let mut f = Some(f);
    let mut failed = None;
    let result = run(c, &mut |c| match f.take() {
        Some(f) => f(c).map_err(|e| {
            failed = Some(e);
            // in its place, so that diesel's answer says whether its rollback succeeded
            diesel::result::Error::RollbackTransaction
        }),
        None => Err(diesel::result::Error::NotInTransaction),
    });
    let ended = failed.is_some() && txn_ended(c);
    kept(result, failed, ended)
}

/// What a transaction whose body failed with `failed` (if it did) returns, from diesel's
/// `result` and whether no transaction is open on the connection now (`ended`): the body's
/// error if diesel rolled back, or if its rollback failed because the store had already
/// ended the transaction; diesel's error otherwise (a failed BEGIN or COMMIT, or a rollback
/// that failed with the transaction still open).
fn kept<T>(
    result: QueryResult<T>,
    failed: Option<diesel::result::Error>,
    ended: bool,
) -> QueryResult<T> {
    let Some(body) = failed else {
        return result;
    };
    match result {
        Err(diesel::result::Error::RollbackTransaction) => Err(body),
        Err(rollback) if ended => {
            log::debug!(
                "the store ended the transaction itself after {body} (rollback: {rollback})"
            );
            Err(body)
        }
        Err(rollback) => {
            log::warn!("rolling back after {body} failed: {rollback}");
            Err(rollback)
        }
        Ok(_) => Err(body),
    }
}

/// Whether no transaction is open on `c` (and its transaction manager is sound): after an
/// error inside a transaction, the store ended it itself (SQLite back in autocommit; diesel
/// resets its state when its next statement fails, see [`keeping_error`]). Diesel's
/// `is_broken` is true while a transaction is open or the manager is in error.
pub(crate) fn txn_ended<C: R2D2Connection>(c: &mut C) -> bool {
    !c.is_broken()
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

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::result::Error as E;

    fn refusal() -> E {
        E::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("refused by policy".to_owned()),
        )
    }

    fn rollback_failed() -> E {
        E::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("cannot rollback - no transaction is active".to_owned()),
        )
    }

    #[test]
    fn the_bodys_error_is_kept_when_the_store_ended_the_transaction() {
        let msg = |r: QueryResult<()>| r.unwrap_err().to_string();
        // diesel rolled back: the body's error
        assert_eq!(
            msg(kept(Err(E::RollbackTransaction), Some(refusal()), false)),
            "refused by policy"
        );
        // the store had ended the transaction: the body's error, not the failed rollback's
        assert_eq!(
            msg(kept(Err(rollback_failed()), Some(refusal()), true)),
            "refused by policy"
        );
        // the rollback failed with the transaction still open: the rollback's error
        assert_eq!(
            msg(kept(Err(rollback_failed()), Some(refusal()), false)),
            "cannot rollback - no transaction is active"
        );
        // the body succeeded: diesel's answer (a failed COMMIT), or the value
        assert_eq!(
            msg(kept(Err(rollback_failed()), None, true)),
            "cannot rollback - no transaction is active"
        );
        assert_eq!(kept(Ok(7), None, false).unwrap(), 7);
    }

    fn sqlite(action: &str) -> SqliteConnection {
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE t (name TEXT NOT NULL);
             CREATE TRIGGER poison BEFORE INSERT ON t WHEN NEW.name = 'poison'
             BEGIN SELECT RAISE({action}, 'refused by policy'); END;"
        ))
        .unwrap();
        c
    }

    fn insert(c: &mut SqliteConnection, name: &str) -> QueryResult<usize> {
        diesel::sql_query(format!("INSERT INTO t VALUES ('{name}')")).execute(c)
    }

    fn count(c: &mut SqliteConnection) -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM t)",
        ))
        .get_result(c)
        .unwrap()
    }

    #[test]
    fn a_trigger_that_rolls_back_the_transaction_is_a_refusal_and_the_connection_stays_usable() {
        let mut c = sqlite("ROLLBACK");
        let e = c
            .write_txn(|c| {
                insert(c, "good")?;
                insert(c, "poison")
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "refused by policy");
        assert!(crate::error::StoreError::refuses(&e));
        assert!(txn_ended(&mut c) && !c.is_broken());
        c.write_txn(|c| insert(c, "good")).unwrap();
        assert_eq!(count(&mut c), 1);
    }

    #[test]
    fn a_savepoint_the_store_rolled_back_with_its_transaction_says_so() {
        for (action, ended, rows) in [("ROLLBACK", true, 0), ("ABORT", false, 1)] {
            let mut c = sqlite(action);
            let r = c.write_txn(|c| {
                insert(c, "good")?;
                let e =
                    keeping_error(c, |c, f| c.transaction(f), |c| insert(c, "poison")).unwrap_err();
                assert_eq!(e.to_string(), "refused by policy", "{action}");
                assert_eq!(txn_ended(c), ended, "{action}");
                if ended {
                    // nothing may run outside the transaction the store ended
                    return Err(e);
                }
                Ok(())
            });
            assert_eq!(r.is_ok(), !ended, "{action}");
            assert!(!c.is_broken(), "{action}");
            assert_eq!(count(&mut c), rows, "{action}");
            c.write_txn(|c| insert(c, "good")).unwrap();
            assert_eq!(count(&mut c), rows + 1, "{action}");
        }
    }
}
