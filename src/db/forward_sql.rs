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
use diesel::query_dsl::methods::FilterDsl;
use diesel::upsert::excluded;

use crate::db::bookkeeping::{Bases, BatchMark, ErrorBase, Txn};
use crate::db::models::{NewErrorCountRow, NewWindowRow};
use crate::db::schema::{error_counts, metric_windows};
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
    c.transaction(|c| {
        let claimed = diesel::insert_into(nats_applied::table)
            .values((
                nats_applied::stream.eq(stream),
                nats_applied::seq.eq(seq as i64),
                nats_applied::applied_at_ms.eq(now_ms),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        let claimed_origin = match claimed {
            0 => 0,
            _ => diesel::insert_into(forward_applied::table)
                .values((
                    forward_applied::instance_id.eq(&origin.instance),
                    // the run id's bits, as PostgreSQL has no unsigned 64-bit integer
                    forward_applied::run_id.eq(origin.run as i64),
                    forward_applied::seq.eq(origin.seq as i64),
                    forward_applied::applied_at_ms.eq(now_ms),
                ))
                .on_conflict_do_nothing()
                .execute(c)?,
        };
        if claimed_origin == 0 {
            return Ok(Applied {
                duplicate: true,
                ..Applied::default()
            });
        }
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
        };
        if !records.is_empty() || !patterns.is_empty() || !users.is_empty() {
            let rows = WriteBatch {
                records,
                patterns,
                users,
                ..WriteBatch::default()
            };
            let mark = BatchMark {
                run_id: (origin.run >> 1) as i64,
                seq: origin.seq as i64,
            };
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
    })
}
