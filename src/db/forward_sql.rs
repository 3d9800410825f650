//! The scale-out worker's SQL (PostgreSQL; docs/scale-out.md): one forwarded message in one
//! transaction with its stream sequence (`nats_applied`) and its origin (`forward_applied`:
//! the sending instance, run and batch number, which a batch published again keeps whatever
//! its stream sequence), so it is written exactly once.
//!
//! Records, patterns and distinct-user sketches (merged by register maximum) go through the
//! writer's own SQL (`write_sql::pg::write_batch`) under the sending instance's id. Window and
//! error-count rows are written under one id per epoch ([`Origin::epoch_instance`]) with the
//! epoch's whole state, replacing an older snapshot of the same epoch only
//! (`WHERE stored.count <= new.count`), so snapshots may arrive in any order, at any worker,
//! any number of times.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::bookkeeping::{Bases, BatchMark, ErrorBase, Txn};
use crate::db::models::{NewErrorCountRow, NewWindowRow};
use crate::db::schema::{error_counts, metric_windows};
use crate::error::StoreError;
use crate::forward::wire::Origin;
use crate::model::WriteBatch;

diesel::table! {
    /// The stream sequences whose rows are committed (see the module docs).
    nats_applied (stream, seq) {
        stream -> Text,
        seq -> BigInt,
        applied_at_ms -> BigInt,
    }
}

diesel::table! {
    /// The forwarded batches whose rows are committed, by origin (see the module docs).
    forward_applied (instance_id, run_id, seq) {
        instance_id -> Text,
        run_id -> BigInt,
        seq -> BigInt,
        applied_at_ms -> BigInt,
    }
}

/// What one message wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The message was already committed (delivered again): nothing written.
    pub duplicate: bool,
    pub records: u64,
    pub windows: u64,
    pub errors: u64,
    pub patterns: u64,
    /// Rows the store refused, in the `quarantine` table ([`apply_isolating`]).
    pub quarantined: u64,
}

impl Applied {
    fn add(&mut self, o: Applied) {
        self.records += o.records;
        self.windows += o.windows;
        self.errors += o.errors;
        self.patterns += o.patterns;
        self.quarantined += o.quarantined;
    }
}

/// Writes `batch` (message `seq` of `stream`, sent by `origin`) in one transaction with its
/// sequence and its origin; writes nothing if either is already committed (the same message
/// delivered again, or the same batch published again as another message).
pub(crate) fn apply(
    c: &mut PgConnection,
    stream: &str,
    seq: u64,
    origin: &Origin,
    batch: WriteBatch,
    now_ms: i64,
) -> QueryResult<Applied> {
    c.transaction(|c| match claim(c, stream, seq, origin, now_ms)? {
        false => Ok(DUPLICATE),
        true => write_rows(c, origin, batch),
    })
}

/// [`apply`] for a message whose rows the store refuses (a trigger, a CHECK: what
/// `StoreError::refuses` tells from a store that fails): in one transaction with its sequence,
/// the rows are written in savepoints, halved around what the store refuses until each
/// refused row is alone, and that row goes to the `quarantine` table, as the embedded writer
/// does. The message is then committed once, with the rest of its rows, instead of being
/// delivered again for ever.
pub(crate) fn apply_isolating(
    c: &mut PgConnection,
    stream: &str,
    seq: u64,
    origin: &Origin,
    batch: WriteBatch,
    now_ms: i64,
) -> QueryResult<Applied> {
    c.transaction(|c| {
        if !claim(c, stream, seq, origin, now_ms)? {
            return Ok(DUPLICATE);
        }
        let mut applied = Applied::default();
        isolate(c, origin, batch, &mut applied)?;
        Ok(applied)
    })
}

const DUPLICATE: Applied = Applied {
    duplicate: true,
    records: 0,
    windows: 0,
    errors: 0,
    patterns: 0,
    quarantined: 0,
};

/// Claims message `seq` of `stream`, and the batch it carries by its origin, in the open
/// transaction: `false` if either is committed (the message delivered again, or the batch
/// published again after JetStream's duplicate window, a durable instance's outbox re-sent).
fn claim(
    c: &mut PgConnection,
    stream: &str,
    seq: u64,
    origin: &Origin,
    now_ms: i64,
) -> QueryResult<bool> {
    let claimed = diesel::insert_into(nats_applied::table)
        .values((
            nats_applied::stream.eq(stream),
            nats_applied::seq.eq(seq as i64),
            nats_applied::applied_at_ms.eq(now_ms),
        ))
        .on_conflict_do_nothing()
        .execute(c)?;
    if claimed == 0 {
        return Ok(false);
    }
    let claimed_origin = diesel::insert_into(forward_applied::table)
        .values((
            forward_applied::instance_id.eq(&origin.instance),
            // the run id's bits, as PostgreSQL has no unsigned 64-bit integer
            forward_applied::run_id.eq(origin.run as i64),
            forward_applied::seq.eq(origin.seq as i64),
            forward_applied::applied_at_ms.eq(now_ms),
        ))
        .on_conflict_do_nothing()
        .execute(c)?;
    Ok(claimed_origin == 1)
}

/// `batch` in a savepoint; if the store refuses it, its halves, down to single rows, which
/// go to `quarantine`.
fn isolate(
    c: &mut PgConnection,
    origin: &Origin,
    batch: WriteBatch,
    applied: &mut Applied,
) -> QueryResult<()> {
    let e = match c.transaction(|c| write_rows(c, origin, batch.clone())) {
        Ok(part) => {
            applied.add(part);
            return Ok(());
        }
        Err(e) if StoreError::refuses(&e) => e,
        Err(e) => return Err(e),
    };
    if batch.rows() <= 1 {
        let error = e.to_string();
        crate::db::write_sql::pg::quarantine(
            c,
            &origin.instance,
            &batch,
            &error,
            mark(origin),
            Txn::Savepoint,
        )?;
        log::error!(
            "worker: the store refused a row ({error}); it is in the quarantine table and the rest is written"
        );
        applied.quarantined += batch.rows() as u64;
        return Ok(());
    }
    let (first, second) = batch.split();
    isolate(c, origin, first, applied)?;
    isolate(c, origin, second, applied)
}

/// The writer's mark of a forwarded batch.
fn mark(origin: &Origin) -> BatchMark {
    BatchMark {
        run_id: (origin.run >> 1) as i64,
        seq: origin.seq as i64,
    }
}

/// Writes the rows of `batch` in the open transaction (or savepoint).
fn write_rows(c: &mut PgConnection, origin: &Origin, batch: WriteBatch) -> QueryResult<Applied> {
    let WriteBatch {
        records,
        windows,
        errors,
        patterns,
        users,
        ..
    } = batch;
    let applied = Applied {
        duplicate: false,
        records: records.len() as u64,
        windows: windows.len() as u64,
        errors: errors.len() as u64,
        patterns: patterns.len() as u64,
        quarantined: 0,
    };
    if !records.is_empty() || !patterns.is_empty() || !users.is_empty() {
        let rows = WriteBatch {
            records,
            patterns,
            users,
            ..WriteBatch::default()
        };
        let mark = mark(origin);
        let mut no_bases = Bases::default();
        crate::db::write_sql::pg::write_batch(
            c,
            &origin.instance,
            &rows,
            mark,
            &mut no_bases,
            Txn::Enclosing,
        )?;
    }
    for w in &windows {
        let instance = origin.epoch_instance(w.epoch);
        let row = NewWindowRow::new(&instance, w, &w.state);
        upsert_window!(&row)
            // a newer snapshot (more samples), or the final row of the same samples
            .filter(
                metric_windows::count
                    .lt(excluded(metric_windows::count))
                    .or(metric_windows::count
                        .eq(excluded(metric_windows::count))
                        .and(metric_windows::is_final.eq(false))),
            )
            .execute(c)?;
    }
    if !windows.is_empty() {
        let marks = WriteBatch {
            windows,
            ..WriteBatch::default()
        };
        crate::db::rollup_sql::pg::mark_pending(c, &origin.instance, &marks)?;
    }
    for e in &errors {
        let instance = origin.epoch_instance(e.epoch);
        let row = NewErrorCountRow::new(&instance, e, ErrorBase::EMPTY);
        upsert_error_count!(&row)
            .filter(error_counts::count.le(excluded(error_counts::count)))
            .execute(c)?;
    }
    Ok(applied)
}

/// The claim tables, pruned by `applied_at_ms` ([`prune_claims_chunk`]).
pub(crate) const CLAIM_TABLES: [&str; 2] = ["nats_applied", "forward_applied"];

/// The statement deleting at most `batch_size` claims of `table` (one of [`CLAIM_TABLES`])
/// committed before `cutoff`: the subquery picks them through the `applied_at_ms` index
/// (migration `applied_retention`), the delete finds them by address (`ctid`), as
/// `prune_sql::delete_statement` does for tables without an `id`. Only numbers and the
/// crate's own table names are spliced into the text. Checked with `EXPLAIN` on PostgreSQL 15
/// and 200,000 claims in each table: Index Scan using `*_applied_at`, Tid Scan (a Seq Scan
/// without the index).
pub(crate) fn prune_claims_statement(table: &str, cutoff: i64, batch_size: usize) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
         WHERE applied_at_ms < {cutoff} LIMIT {batch_size}))"
    )
}

/// One chunk of claim pruning, one short transaction under the retention lock (one worker at
/// a time, as the retention rounds): deletes at most `batch_size` claims of `table` committed
/// before `cutoff` and returns how many; `None` (nothing deleted) when another worker or
/// instance holds the lock.
pub(crate) fn prune_claims_chunk(
    c: &mut PgConnection,
    table: &str,
    cutoff: i64,
    batch_size: usize,
) -> QueryResult<Option<u64>> {
    use crate::db::backend::{PruneLock, WriteTxn};
    let statement = prune_claims_statement(table, cutoff, batch_size);
    c.write_txn(|c| {
        if !c.try_prune_lock()? {
            return Ok(None);
        }
        let deleted = diesel::sql_query(statement).execute(c)?;
        Ok(Some(deleted as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_chunk_picks_its_rows_by_age_and_deletes_them_by_address() {
        assert_eq!(
            prune_claims_statement("nats_applied", 7, 100),
            "DELETE FROM nats_applied WHERE ctid = ANY(ARRAY(SELECT ctid FROM nats_applied \
             WHERE applied_at_ms < 7 LIMIT 100))"
        );
    }
}
