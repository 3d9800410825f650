//! What the writer keeps between transactions and hands to the SQL: the per-epoch bases
//! ([`Bases`]), batch marks for idempotent retries ([`BatchMark`]), durable checkpoints, and
//! what a transaction wrote ([`Written`], [`Outcome`]).

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::backend::{keeping_error, WriteTxn};
pub(crate) use crate::db::models::ErrorBase;
use crate::model::{SeriesKey, WriteBatch};
use crate::stats::window::WindowState;

/// What the writer remembers between transactions: for each window (and error count) epoch,
/// the state the store held before the epoch began, so that every snapshot of the epoch is
/// written as `base + epoch` and replaces the previous one.
///
/// A base is recorded as soon as it is read, even if the transaction then fails: only this
/// instance writes its own rows, so what was read is the pre-epoch state whether the attempt
/// rolled back or (outcome unknown) committed. Re-reading after a commit that reported an
/// error would read `base + epoch` and count the epoch twice.
#[derive(Debug, Default)]
pub(crate) struct Bases {
    /// By series and window start.
    pub(crate) windows: HashMap<(SeriesKey, i64), (u64, WindowState)>,
    pub(crate) errors: HashMap<(String, i64), (u64, ErrorBase)>,
}

impl Bases {
    /// What the store held for a window before `epoch` began, if a snapshot of that epoch
    /// was written (the stored row is then `base + an earlier snapshot of the epoch`).
    pub(crate) fn window_base(
        &self,
        key: &SeriesKey,
        start_ms: i64,
        epoch: u64,
    ) -> Option<&WindowState> {
        match self.windows.get(&(key.clone(), start_ms)) {
            Some((e, base)) if *e == epoch => Some(base),
            _ => None,
        }
    }

    /// After `batch` is known committed: windows and error counts that closed with it start a
    /// new epoch next time (a late event re-reads what the store now holds).
    pub(crate) fn forget_final(&mut self, batch: &WriteBatch) {
        for w in batch.windows.iter().filter(|w| w.is_final) {
            self.windows.remove(&(w.key.clone(), w.start_ms));
        }
        for e in batch.errors.iter().filter(|e| e.is_final) {
            self.errors.remove(&(e.error_hash.clone(), e.start_ms));
        }
    }
}

/// Identifies one write batch of one pipeline run, for idempotent retries.
///
/// Each run of a writer draws a random `run_id`; its batches are numbered `seq = 1, 2, ...` in
/// commit order. The transaction that writes batch `seq` also sets `writer_runs.last_seq` for
/// `(instance_id, run_id)` to `seq`. Batches commit strictly in order, so after an attempt
/// whose outcome is unknown (the connection died around COMMIT), `last_seq >= seq` means it
/// committed. One row per run, one extra statement per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMark {
    /// Random per writer run, so a restarted instance with the same `instance_id` never
    /// mistakes its new batches for old ones.
    pub run_id: i64,
    /// Position of the batch in this run, from 1.
    pub seq: i64,
}

diesel::table! {
    /// The last batch each writer run committed (see [`BatchMark`]).
    writer_runs (instance_id, run_id) {
        instance_id -> Text,
        run_id -> BigInt,
        last_seq -> BigInt,
        updated_at_ms -> BigInt,
    }
}

/// A `writer_runs` row.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = writer_runs, treat_none_as_default_value = false)]
pub(crate) struct WriterRunRow<'a> {
    pub(crate) instance_id: &'a str,
    pub(crate) run_id: i64,
    pub(crate) last_seq: i64,
    pub(crate) updated_at_ms: i64,
}

diesel::table! {
    /// Durable mode: the journal position through which the store holds each journal's
    /// events (see `crate::journal`).
    durable_checkpoints (journal_id) {
        journal_id -> Text,
        instance_id -> Text,
        position -> BigInt,
        updated_at_ms -> BigInt,
    }
}

/// A `durable_checkpoints` row.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = durable_checkpoints, treat_none_as_default_value = false)]
pub(crate) struct CheckpointRow<'a> {
    pub(crate) journal_id: &'a str,
    pub(crate) instance_id: &'a str,
    pub(crate) position: i64,
    pub(crate) updated_at_ms: i64,
}

/// Durable mode: the store holds journal `journal_id` through `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint<'a> {
    pub journal_id: &'a str,
    pub position: u64,
}

/// What a durable commit did with one batch: rows written (in one piece, or in pieces around
/// refused rows) and rows quarantined.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub written: Written,
    /// Snapshot (not final) window and error-count rows among those written.
    pub snapshots: u64,
    /// Rows refused by the store, now in `quarantine`, and the records among them.
    pub quarantined_rows: u64,
    pub quarantined_records: u64,
    /// Events folded into the final rows written or quarantined ([`WriteBatch::folded`]).
    pub folded: u64,
}

impl Outcome {
    pub(crate) fn written(&mut self, piece: &WriteBatch) {
        let w = Written::of(piece);
        self.written.records += w.records;
        self.written.windows += w.windows;
        self.written.errors += w.errors;
        self.written.patterns += w.patterns;
        self.written.users += w.users;
        self.snapshots += (piece.windows.iter().filter(|w| !w.is_final).count()
            + piece.errors.iter().filter(|e| !e.is_final).count()) as u64;
        self.folded += piece.folded();
    }

    pub(crate) fn quarantined(&mut self, piece: &WriteBatch) {
        self.quarantined_rows += piece.rows() as u64;
        self.quarantined_records += piece.records.len() as u64;
        self.folded += piece.folded();
    }
}

/// How a write runs with respect to transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// In a transaction of its own ([`WriteTxn::write_txn`]).
    Own,
    /// In a savepoint of the transaction open on the connection, undone alone if it fails
    /// (diesel nests `transaction` as `SAVEPOINT`; SQLite's `BEGIN IMMEDIATE` cannot nest).
    Savepoint,
    /// Directly in the transaction open on the connection.
    Enclosing,
}

/// Runs `f` as `txn` says.
pub(crate) fn in_txn<C: WriteTxn, T>(
    c: &mut C,
    txn: Txn,
    f: impl FnOnce(&mut C) -> QueryResult<T>,
) -> QueryResult<T> {
    match txn {
        Txn::Own => c.write_txn(f),
        Txn::Savepoint => keeping_error(c, |c, f| c.transaction(f), f),
        Txn::Enclosing => f(c),
    }
}

/// Durable mode: the pieces of a checkpoint's batches the store refused in an isolating pass
/// whose whole transaction the store then rolled back (a SQLite trigger's `RAISE(ROLLBACK)`).
/// The pass starts again in a new transaction, splitting these without trying them and
/// quarantining the single rows among them with their error, so each new pass gets further
/// and none writes a row twice.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    /// By batch (its index in the checkpoint) and piece (1: the batch; `2p`, `2p + 1`: the
    /// halves of piece `p`), the store's error.
    pieces: HashMap<(usize, u64), String>,
}

impl Refused {
    /// The store's error for `piece`, if it refused it in an earlier pass.
    pub(crate) fn get(&self, piece: (usize, u64)) -> Option<&str> {
        self.pieces.get(&piece).map(String::as_str)
    }

    /// The store refused `piece` with `error` and ended the transaction.
    pub(crate) fn learn(&mut self, piece: (usize, u64), error: String) {
        self.pieces.insert(piece, error);
    }

    /// How many pieces are known refused (each pass that restarts adds one).
    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }
}

/// Rows one committed batch wrote, by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub records: u64,
    pub windows: u64,
    pub errors: u64,
    pub patterns: u64,
    /// Distinct-user sketches (each merged into its window, hour, day and week rows).
    pub users: u64,
}

impl Written {
    /// The batch's rows, as `WriteBatch::rows` counts them (`Stats::avg_batch_size`).
    pub(crate) fn rows(&self) -> u64 {
        self.records + self.windows + self.errors + self.patterns + self.users
    }

    /// What committing `batch` writes.
    pub(crate) fn of(batch: &WriteBatch) -> Written {
        Written {
            records: batch.records.len() as u64,
            windows: batch.windows.len() as u64,
            errors: batch.errors.len() as u64,
            patterns: batch.patterns.len() as u64,
            users: batch.users.len() as u64,
        }
    }
}
